"""Secrets sent to Bulwark never reach the log output (the real handler, formatter and filter)."""

from __future__ import annotations

import io
import json

import pytest

pytestmark = [pytest.mark.urls("tests.core.urls")]

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
API_KEY_SECRET = "Zt9wQ4rLmX2sK7vB1nY8cD3fG6hJ0pA5"
API_KEY = f"bwk_k3y1d_{API_KEY_SECRET}"
PASSWORD = "Tr0ub4dor&3-horse"
SECRETS = (JWT, API_KEY_SECRET, PASSWORD, "c2lnbmF0dXJlLXNpZ25hdHVyZQ", "hunter2")


def lines(buffer: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]


def test_secrets_in_a_request_never_reach_the_log(client, log_output):
    body = {
        "username": "alice",
        "password": PASSWORD,
        "nested": {
            "api_key": API_KEY,
            "notes": [f"Authorization: Bearer {JWT}", f"called with {API_KEY}"],
        },
        "refresh": JWT,
    }
    response = client.post(
        f"/api/test/echo?token={PASSWORD}",
        body,
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {JWT}",
        HTTP_X_API_KEY=API_KEY,
    )
    assert response.status_code == 200
    output = log_output.getvalue()
    records = lines(log_output)
    echo = next(record for record in records if record["logger"] == "tests.echo")
    assert "alice" in echo["message"]  # the record was written, with its harmless parts
    assert echo["body"]["username"] == "alice"
    assert echo["body"]["password"] == "[MASKED]"
    assert echo["request_id"] == response["X-Request-ID"]
    assert "bwk_k3y1d_[MASKED]" in echo["message"]  # the public prefix stays, for tracing
    for secret in SECRETS:
        assert secret not in output


def test_a_crash_with_a_secret_in_its_message_is_logged_masked(client, log_output):
    client.raise_request_exception = False
    assert client.get("/api/test/boom").status_code == 500
    records = lines(log_output)
    crash = next(record for record in records if record.get("exception"))
    assert "RuntimeError" in crash["exception"]
    assert "password=[MASKED]" in crash["exception"]
    assert "hunter2" not in log_output.getvalue()


def test_every_line_is_json_with_level_logger_and_time(client, log_output):
    client.get("/healthz")
    records = lines(log_output)
    access = next(record for record in records if record["logger"] == "bulwark.access")
    assert access["level"] == "INFO"
    assert access["path"] == "/healthz" and access["status"] == 200
    assert access["ts"].endswith("+00:00")
    assert "duration_ms" in access


def test_query_strings_are_not_in_the_access_log(client, log_output):
    client.get(f"/healthz?token={PASSWORD}&api_key={API_KEY}")
    assert PASSWORD not in log_output.getvalue()
    assert "token=" not in log_output.getvalue()
