"""What no page, form or endpoint should ever see, refused before any of them runs: NUL and
bytes that are not UTF-8 in URLs and form bodies (400 with the error page, or the JSON
envelope on the API). Chunked bodies: tests/serving/test_chunked_bodies.py."""

from __future__ import annotations

import pytest
from django.test import Client

PAGES = [
    "/incidents/?assignee=%00",
    "/incidents/?assignee=%ff%fe",
    "/admin/accounts/user/?q=%00",
    "/admin/accounts/user/?username=%00",
    "/compliance/?framework=%c3%28",
    "/account/login?next=%00",
    "/?x=%00",
]


@pytest.mark.django_db
@pytest.mark.parametrize("path", PAGES)
def test_nul_or_bad_utf8_in_a_pages_query_is_400_with_the_error_page(client, path, actors):
    client.force_login(actors["security_officer"])
    response = client.get(path)
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "NUL" in page and response["X-Request-ID"] in page
    assert "Traceback" not in page


@pytest.mark.django_db
@pytest.mark.parametrize("query", ["cursor=%00", "action=%ff", "since=%c3%28"])
def test_the_api_answers_the_same_with_its_envelope(api_client, actors, query):
    api_client.force_authenticate(actors["auditor"])
    response = api_client.get(f"/api/v1/audit/events?{query}")
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_input"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body",
    ["username=admin%00&password=x", "username=%ff%fe&password=x", "username=a\x00b&password=x"],
)
def test_a_form_body_with_nul_or_bad_utf8_is_400(body):
    client = Client(enforce_csrf_checks=False)
    response = client.post("/account/login", body, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 400
    assert "NUL" in response.content.decode()
