"""Retries on 503 and what is never retried, against a small local HTTP server that answers
as told (a 503 from the live server needs a broken dependency), and the mapping of codes the
client does not know."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from bulwark_client import (
    ERRORS,
    Bulwark,
    BulwarkError,
    ConnectionFailed,
    InternalError,
    RateLimited,
    ServiceUnavailable,
    error_from_response,
)

from tests.services import free_port


class Script:
    """The answers to give, in order: (status, code or None, Retry-After or None)."""

    def __init__(self) -> None:
        self.answers: list[tuple[int, str | None, str | None]] = []
        self.seen: list[tuple[str, dict[str, str]]] = []


@pytest.fixture
def stub() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # http.server's name
            length = int(self.headers.get("Content-Length") or 0)
            self.rfile.read(length)
            script.seen.append((self.path, dict(self.headers.items())))
            status, code, retry_after = script.answers.pop(0)
            body = (
                {"error": {"code": code, "message": "m", "details": [], "request_id": "r1"}}
                if code
                else {"model": "m", "version": 1, "predictions": [1], "request_id": "r2"}
            )
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.send_header("X-Request-ID", "r1" if code else "r2")
            if retry_after is not None:
                self.send_header("Retry-After", retry_after)
            if 300 <= status < 400:
                self.send_header("Location", "http://127.0.0.1:9/elsewhere")
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def test_503_is_retried_after_retry_after_then_succeeds(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [
        (503, "service_unavailable", "1"),
        (503, "service_unavailable", None),
        (200, None, None),
    ]
    asked: list[float] = []
    client = Bulwark(url, "bwk_a_b", "secret", sleep=asked.append)
    assert client.predict("m", [{}])["predictions"] == [1]
    assert asked == [1.0, 2.0]  # the Retry-After, then backoff 2**1 when none was sent
    signatures = [headers["X-Signature"] for _, headers in script.seen]
    assert len(set(signatures)) == 3  # each attempt signed anew


def test_retries_are_bounded(stub: tuple[str, Script]) -> None:
    url, script = stub
    script.answers = [(429, "rate_limited", "1")] * 3
    asked: list[float] = []
    with pytest.raises(RateLimited) as refused:
        Bulwark(url, "bwk_a_b", max_retries=2, sleep=asked.append).predict("m", [{}])
    assert asked == [1.0, 1.0] and refused.value.retry_after == 1.0
    assert refused.value.request_id == "r1"
    script.answers = [(503, "service_unavailable", "5"), (503, "service_unavailable", "5")]
    with pytest.raises(ServiceUnavailable):
        Bulwark(url, "bwk_a_b", max_wait=7, sleep=asked.append).predict("m", [{}])
    assert asked == [1.0, 1.0, 5.0]  # the second wait would pass max_wait: raised at once


def test_other_codes_are_never_retried(stub: tuple[str, Script]) -> None:
    url, script = stub
    asked: list[float] = []
    script.answers = [(500, "internal_error", "1")]
    with pytest.raises(InternalError):
        Bulwark(url, "bwk_a_b", sleep=asked.append).predict("m", [{}])
    script.answers = [(409, "brand_new_code", "1")]
    with pytest.raises(BulwarkError) as unknown:
        Bulwark(url, "bwk_a_b", sleep=asked.append).predict("m", [{}])
    assert type(unknown.value) is BulwarkError and unknown.value.code == "brand_new_code"
    assert asked == [] and len(script.seen) == 2


def test_a_redirect_is_not_followed(stub: tuple[str, Script]) -> None:
    # urllib would resend the key or token to wherever Location points.
    url, script = stub
    script.answers = [(301, None, None)]
    with pytest.raises(BulwarkError) as moved:
        Bulwark(url, "bwk_a_b").predict("m", [{}])
    assert moved.value.code == "http_301" and moved.value.status == 301
    assert len(script.seen) == 1 and script.answers == []


def test_no_answer_is_connection_failed_and_not_retried() -> None:
    asked: list[float] = []
    started = time.monotonic()
    with pytest.raises(ConnectionFailed) as failed:
        Bulwark(f"http://127.0.0.1:{free_port()}", "bwk_a_b", sleep=asked.append).predict("m", [{}])
    assert failed.value.status == 0 and asked == [] and time.monotonic() - started < 5
    assert "bwk_a_b" not in str(failed.value)


def test_every_documented_code_has_its_class() -> None:
    documented = {
        "invalid_input", "malformed_json", "authentication_required", "invalid_credentials",
        "mfa_required", "token_invalid", "api_key_invalid", "api_key_expired",
        "api_key_revoked", "signature_required", "signature_invalid", "signature_expired",
        "signature_replayed", "permission_denied", "scope_missing", "ip_not_allowed",
        "not_found", "no_production_version", "method_not_allowed", "not_acceptable",
        "invalid_transition", "conflict", "length_required", "payload_too_large",
        "unsupported_media_type", "rate_limited", "privacy_budget_exhausted", "internal_error",
        "service_unavailable",
    }  # fmt: skip
    assert set(ERRORS) == documented
    assert all(cls is not BulwarkError and issubclass(cls, BulwarkError) for cls in ERRORS.values())
    proxy = error_from_response(502, b"<html>Bad gateway</html>", {"X-Request-ID": "p1"})
    assert type(proxy) is BulwarkError and proxy.code == "http_502" and proxy.request_id == "p1"
