from __future__ import annotations

import pytest
import yaml

pytestmark = pytest.mark.django_db


def test_healthz_touches_nothing(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_readyz_checks_database_cache_and_broker(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": "ok", "cache": "ok", "broker": "ok"},
    }


def test_openapi_schema_is_served_and_documents_the_conventions(client):
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi")
    assert response.status_code == 200
    schema = yaml.safe_load(response.content)
    assert schema["openapi"].startswith("3.")
    assert "/healthz" in schema["paths"] and "/readyz" in schema["paths"]
    description = schema["info"]["description"]
    assert "trailing slash" in description and "cursor" in description


def test_docs_page_is_served_from_our_own_static_files(client):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "cdn" not in html.lower() and "https://" not in html


def test_every_response_has_security_headers(client):
    for path in ("/healthz", "/api/v1/nothing", "/"):
        response = client.get(path)
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["X-Frame-Options"] == "DENY"
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
        assert response["Referrer-Policy"] == "same-origin"


def test_api_answers_are_not_cached(client):
    assert client.get("/api/v1/nothing")["Cache-Control"] == "no-store"


def test_probes_answer_any_host_and_plain_http_where_https_is_enforced(client, settings):
    settings.ALLOWED_HOSTS = ["bulwark.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    for path in ("/healthz", "/readyz"):
        response = client.get(path, HTTP_HOST="10.42.0.17:8000")  # a pod address, as kubelet sends
        assert response.status_code == 200, path
        assert response["X-Request-ID"]
    refused = client.get("/api/v1/anything", HTTP_HOST="10.42.0.17:8000")
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_input"
    redirected = client.get("/api/v1/anything", HTTP_HOST="bulwark.example.com")
    assert redirected.status_code == 301
    assert redirected["Location"].startswith("https://bulwark.example.com/")


def test_the_schema_generates_without_a_single_warning(tmp_path):
    from django.core.management import call_command

    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    assert "/api/v1/audit/events" in out.read_text()
