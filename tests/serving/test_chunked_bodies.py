"""A body sent with `Transfer-Encoding: chunked` and no Content-Length is read within the
JSON limit (413 past it) instead of being taken for empty (README "Behaviour shared by
every endpoint")."""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from tests.apikeys.factories import ApiKeyFactory
from tests.services import database_url_of, web_process
from tests.serving.conftest import PREDICT, ROW


@pytest.mark.django_db
def test_a_small_chunked_body_is_read_and_a_large_one_is_413(actors, pricing):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    client = Client()
    small = json.dumps({"inputs": [ROW]}).encode()
    response = _without_length(client, PREDICT, small, HTTP_X_API_KEY=key)
    assert response.status_code == 200, response.content
    assert len(response.json()["predictions"]) == 1
    big = b'{"inputs": [' + b" " * (2 * 1024 * 1024) + b"]}"
    refused = _without_length(client, PREDICT, big, HTTP_X_API_KEY=key)
    assert refused.status_code == 413
    assert refused.json()["error"]["code"] == "payload_too_large"


@pytest.mark.django_db
def test_a_chunked_upload_past_the_json_limit_is_413_before_anyone_is_authenticated():
    # Upload paths take bodies far larger than the JSON limit, with Content-Length. Chunked,
    # an anonymous client gets no more than the JSON limit held for it.
    body = b"--x\r\n" + b"a" * (2 * 1024 * 1024)
    refused = _without_length(
        Client(),
        "/api/v1/models/pricing/versions",
        body,
        CONTENT_TYPE="multipart/form-data; boundary=x",
    )
    assert refused.status_code == 413
    error = refused.json()["error"]
    assert error["code"] == "payload_too_large"
    assert "send Content-Length for a larger upload" in error["message"]


def _without_length(client: Client, path: str, body: bytes, **headers: Any) -> Any:
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "CONTENT_TYPE": "application/json",
        "HTTP_TRANSFER_ENCODING": "chunked",
        "wsgi.input": io.BytesIO(body),
    }
    environ.update(headers)
    return client.request(**environ)


def _post_chunked(port: int, body: bytes, key: str) -> tuple[int, Any]:
    """POST `body` in 64 KiB chunks while reading the answer, as a client should (RFC 9112
    section 9.6): the server may answer 413 and close before the rest is sent, and a client
    that only reads once it has sent everything then sees its send fail instead."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"X-API-Key: {key}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()

    def send() -> None:
        with contextlib.suppress(OSError):  # refused mid-body: the answer says why
            sock.sendall(head)
            for start in range(0, len(body), 65536):
                chunk = body[start : start + 65536]
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sock.sendall(b"0\r\n\r\n")

    sender = threading.Thread(target=send)
    sender.start()
    try:
        answer = http.client.HTTPResponse(sock)
        answer.begin()
        return answer.status, json.loads(answer.read())
    finally:
        sender.join(timeout=120)
        sock.close()


@pytest.mark.django_db(transaction=True)
def test_gunicorn_hands_over_a_chunked_body_which_is_read_within_the_limit(
    actors, pricing, media_root: Path, tmp_path: Path
):
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
    env = {"DATABASE_URL": database_url_of(connection.settings_dict), "MEDIA_ROOT": str(media_root)}
    small = json.dumps({"inputs": [ROW]}).encode()
    big = b'{"inputs": [' + b" " * (2 * 1024 * 1024) + b"]}"
    with web_process(env, tmp_path / "web.log") as port:
        statuses = [_post_chunked(port, body, key) for body in (small, big)]
    (ok, body_ok), (too_large, body_large) = statuses
    assert ok == 200 and len(body_ok["predictions"]) == 1, body_ok
    assert too_large == 413 and body_large["error"]["code"] == "payload_too_large"
