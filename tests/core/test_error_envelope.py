"""docs/api.md "Everywhere": every error is the envelope with the documented code."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.urls("tests.core.urls")]


def assert_envelope(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = json.loads(response.content)
    assert list(body) == ["error"]
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    assert error["request_id"] == response["X-Request-ID"]
    return error


def post_raw(client, path: str, body: bytes | str, content_type: str = "application/json"):
    return client.generic("POST", path, body, content_type=content_type)


def test_text_plain_body_to_any_api_path_is_415(client):
    response = post_raw(client, "/api/v1/anything", "x", content_type="text/plain")
    error = assert_envelope(response, 415, "unsupported_media_type")
    assert "text/plain" in error["message"]


def test_body_without_content_type_is_415(client):
    response = post_raw(client, "/api/test/echo", b'{"a": 1}', content_type="")
    assert_envelope(response, 415, "unsupported_media_type")


def test_json_in_another_charset_is_415(client):
    response = post_raw(
        client, "/api/test/echo", b'{"a": 1}', content_type="application/json; charset=latin-1"
    )
    assert_envelope(response, 415, "unsupported_media_type")


def test_form_body_on_a_json_endpoint_is_415(client):
    response = client.post("/api/test/echo", {"a": "1"})  # multipart
    assert_envelope(response, 415, "unsupported_media_type")


def test_json_with_utf8_charset_is_accepted(client):
    response = post_raw(
        client, "/api/test/echo", b'{"a": 1}', content_type="application/json; charset=UTF-8"
    )
    assert response.status_code == 200
    assert response.json() == {"received": {"a": 1}}


def test_unknown_api_path_is_404_envelope(client):
    response = client.get("/api/v1/anything")
    assert_envelope(response, 404, "not_found")


def test_trailing_slash_is_404_not_a_redirect(client):
    response = post_raw(client, "/api/test/echo/", b"{}")
    assert_envelope(response, 404, "not_found")
    response = client.get("/healthz/")
    assert response.status_code == 404


def test_wrong_method_is_405_with_allow(client):
    response = client.delete("/healthz")
    assert_envelope(response, 405, "method_not_allowed")
    assert "GET" in response["Allow"]


def test_body_over_one_mebibyte_is_413_before_parsing(client):
    body = b'{"a": "' + b"x" * (1024 * 1024) + b'"}'
    response = post_raw(client, "/api/test/echo", body)
    error = assert_envelope(response, 413, "payload_too_large")
    assert "1048576" in error["message"]


def test_body_of_exactly_one_mebibyte_is_accepted(client):
    filler = 1024 * 1024 - len(b'{"a": ""}')
    body = b'{"a": "' + b"x" * filler + b'"}'
    assert len(body) == 1024 * 1024
    response = post_raw(client, "/api/test/echo", body)
    assert response.status_code == 200


def test_413_even_on_unknown_path(client):
    response = post_raw(client, "/api/v1/anything", b"x" * (1024 * 1024 + 1))
    assert_envelope(response, 413, "payload_too_large")


def test_bogus_content_length_is_400(client):
    response = client.generic(
        "POST", "/api/test/echo", b"{}", content_type="application/json", CONTENT_LENGTH="ten"
    )
    assert_envelope(response, 400, "invalid_input")


@pytest.mark.parametrize(
    "body",
    [b"{", b'{"a": }', b"[1, 2", b"nope", b'{"a": 1} trailing', b"\xff\xfe{}", b"'single'"],
)
def test_malformed_json_is_400_malformed_json(client, body):
    response = post_raw(client, "/api/test/echo", body)
    assert_envelope(response, 400, "malformed_json")


def test_duplicate_keys_are_malformed_json(client):
    response = post_raw(client, "/api/test/echo", b'{"role": "user", "role": "admin"}')
    error = assert_envelope(response, 400, "malformed_json")
    assert "role" in error["message"]


def test_duplicate_keys_nested_are_malformed_json(client):
    response = post_raw(client, "/api/test/echo", b'{"a": [{"x": 1, "x": 2}]}')
    assert_envelope(response, 400, "malformed_json")


@pytest.mark.parametrize(
    "body",
    [
        b'{"price": NaN}',
        b'{"price": Infinity}',
        b'{"price": -Infinity}',
        b'{"price": 1e400}',
        b'{"price": -1e400}',
        b'{"inputs": [{"price": 1.5e309}]}',
    ],
)
def test_non_finite_numbers_are_invalid_input(client, body):
    response = post_raw(client, "/api/test/echo", body)
    error = assert_envelope(response, 400, "invalid_input")
    assert "finite" in error["message"]


def test_integer_with_too_many_digits_is_invalid_input(client):
    response = post_raw(client, "/api/test/echo", b'{"n": ' + b"9" * 5000 + b"}")
    assert_envelope(response, 400, "invalid_input")


def test_large_but_finite_numbers_are_accepted(client):
    response = post_raw(client, "/api/test/echo", b'{"big": 1.7e308, "int": 123456789012345678901}')
    assert response.status_code == 200
    assert response.json()["received"]["int"] == 123456789012345678901


@pytest.mark.parametrize(
    "body", [b'{"name": "a\\u0000b"}', b'{"a\\u0000": 1}', b'{"list": ["ok", ["\\u0000"]]}']
)
def test_nul_characters_are_invalid_input(client, body):
    response = post_raw(client, "/api/test/echo", body)
    error = assert_envelope(response, 400, "invalid_input")
    assert "NUL" in error["message"]


@pytest.mark.parametrize("url", ["/api/test/users?cursor=%00", "/api/v1/a%00b"])
def test_nul_in_the_url_is_invalid_input(client, url):
    assert_envelope(client.get(url), 400, "invalid_input")


def test_nesting_of_32_is_accepted(client):
    body = "[" * 32 + "]" * 32
    response = post_raw(client, "/api/test/echo", body)
    assert response.status_code == 200


@pytest.mark.parametrize("depth", [33, 500, 100_000])
def test_nesting_deeper_than_32_is_invalid_input_never_a_500(client, depth):
    body = '{"a":' * depth + "1" + "}" * depth
    response = post_raw(client, "/api/test/echo", body)
    error = assert_envelope(response, 400, "invalid_input")
    assert "32" in error["message"]


def test_validation_errors_name_row_and_field(client):
    response = post_raw(client, "/api/test/validate", b'{"inputs": [{"price": 20}, {"price": 0}]}')
    error = assert_envelope(response, 400, "invalid_input")
    assert error["message"].startswith("inputs/1/price: ")
    assert error["details"] == [
        {"path": "inputs/1/price", "message": "Ensure this value is greater than or equal to 10."}
    ]


def test_missing_field_is_reported_with_its_path(client):
    response = post_raw(client, "/api/test/validate", b'{"inputs": [{}]}')
    error = assert_envelope(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "inputs/0/price"


def test_unauthenticated_call_is_401_authentication_required(client):
    response = client.get("/api/test/private")
    assert_envelope(response, 401, "authentication_required")
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_throttled_is_429_rate_limited_with_retry_after(client):
    response = client.get("/api/test/throttled")
    assert_envelope(response, 429, "rate_limited")
    assert response["Retry-After"] == "13"


def test_unexpected_error_is_500_envelope_without_internals(client):
    client.raise_request_exception = False
    response = client.get("/api/test/boom")
    assert_envelope(response, 500, "internal_error")
    text = response.content.decode()
    for leak in ("Traceback", "RuntimeError", "/srv/secret", "hunter2", ".py"):
        assert leak not in text


def test_non_api_404_is_an_html_page(client):
    response = client.get("/no/such/page")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"Request id" in response.content
