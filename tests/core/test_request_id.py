from __future__ import annotations

import re

import pytest

pytestmark = [pytest.mark.urls("tests.core.urls")]


@pytest.mark.parametrize("path", ["/healthz", "/api/v1/missing", "/api/test/boom", "/"])
def test_every_response_carries_a_fresh_request_id(client, path):
    client.raise_request_exception = False
    first = client.get(path)["X-Request-ID"]
    second = client.get(path)["X-Request-ID"]
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


def test_a_sane_client_request_id_is_kept(client):
    response = client.get("/healthz", HTTP_X_REQUEST_ID="trace-42.abc_DEF")
    assert response["X-Request-ID"] == "trace-42.abc_DEF"
    response = client.get("/api/v1/missing", HTTP_X_REQUEST_ID="a" * 128)
    assert response.json()["error"]["request_id"] == "a" * 128


@pytest.mark.parametrize("bad", ["a" * 129, "has space", "semi;colon", "<script>", "ü"])
def test_an_insane_client_request_id_is_replaced(client, bad):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=bad)
    assert response["X-Request-ID"] != bad
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
