from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from django.test import RequestFactory

from apps.apikeys import records, signatures
from apps.apikeys.errors import SignatureInvalid
from apps.apikeys.signatures import (
    SignedRequest,
    parse_signature_header,
    replay_window_seconds,
    signature_refusal,
)
from apps.core.errors import ServiceUnavailable
from tests.apikeys.conftest import KEYED, assert_error, audit_events
from tests.apikeys.factories import ApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]

BODY = {"inputs": [{"price": 12.5}]}


@pytest.fixture
def signed(actors):  # type: ignore[no-untyped-def]
    return ApiKeyFactory.issue_signed(owner=actors["key_owner"])


def signature(secret: str, t: int | str, method: str, path: str, body: bytes) -> str:
    """Written from docs/api.md alone, independently of apps.apikeys.signatures."""
    message = f"{t}.{method}.{path}.{hashlib.sha256(body).hexdigest()}"
    return hmac.new(secret.encode("utf-8"), message.encode(), hashlib.sha256).hexdigest()


def post(client, key, header=None, path=KEYED, body=BODY):  # type: ignore[no-untyped-def]
    raw = json.dumps(body).encode()
    extra = {"HTTP_X_SIGNATURE": header} if header is not None else {}
    return client.post(path, raw, content_type="application/json", HTTP_X_API_KEY=key, **extra)


def header_for(secret, path=KEYED, body=BODY, t=None, method="POST"):  # type: ignore[no-untyped-def]
    t = int(time.time()) if t is None else t
    return f"t={t},v1={signature(secret, t, method, path, json.dumps(body).encode())}"


def test_a_correctly_signed_request_passes(client, signed):
    _api_key, key, secret = signed
    response = post(client, key, header_for(secret))
    assert response.status_code == 200
    assert response.json()["received"] == BODY  # the body is still parsed after hashing it


def test_the_query_string_is_signed_exactly_as_sent(client, signed):
    _, key, secret = signed
    path = f"{KEYED}?version=3&b=%2F"
    assert post(client, key, header_for(secret, path=path), path=path).status_code == 200
    # A signature over the path without the query does not cover this request.
    _, key2, secret2 = ApiKeyFactory.issue_signed(owner=signed[0].owner)
    assert_error(post(client, key2, header_for(secret2), path=path), 401, "signature_invalid")


def test_a_missing_signature_is_signature_required(client, signed):
    _api_key, key, _ = signed
    assert_error(post(client, key), 401, "signature_required")
    assert_error(post(client, key, ""), 401, "signature_required")
    assert audit_events("apikey.rejected")[0]["details"] == {
        "code": "signature_required",
        "reason": "missing",
    }


@pytest.mark.parametrize(
    "change",
    ["body", "method", "path", "secret", "timestamp"],
)
def test_a_signature_over_anything_else_is_invalid(client, signed, change):
    _api_key, key, secret = signed
    t = int(time.time())
    args = {
        "secret": secret,
        "t": t,
        "method": "POST",
        "path": KEYED,
        "body": json.dumps(BODY).encode(),
    }
    args.update(
        {
            "body": {"body": b'{"inputs": []}'},
            "method": {"method": "PUT"},
            "path": {"path": "/api/test/other"},
            "secret": {"secret": "not-the-secret"},
            "timestamp": {"t": t - 1},
        }[change]
    )
    header = f"t={t},v1={signature(**args)}"
    assert_error(post(client, key, header), 401, "signature_invalid")
    assert audit_events("apikey.rejected")[0]["details"]["reason"] == "mismatch"


@pytest.mark.parametrize(
    "header",
    [
        "garbage",
        "t=123",
        "v1=" + "a" * 64,
        "t=abc,v1=" + "a" * 64,
        "t=1,t=2,v1=" + "a" * 64,
        "t=1700000000,v1=zz",
        "t=1700000000,v1=" + "a" * 63,
        "t=1700000000," + ",".join(["v1=" + "a" * 64] * 6),
    ],
)
def test_a_malformed_header_is_invalid(client, signed, header):
    _, key, _ = signed
    assert_error(post(client, key, header), 401, "signature_invalid")


NOW = 1_800_000_000


@pytest.fixture
def frozen_clock(monkeypatch):  # type: ignore[no-untyped-def]
    """The verifier's clock, fixed: boundary cases must not depend on a second ticking by."""

    class Clock:
        @staticmethod
        def time() -> float:
            return float(NOW)

    monkeypatch.setattr(signatures, "time", Clock)


@pytest.mark.parametrize("offset", [-301, 301, -10_000])
def test_a_timestamp_outside_the_tolerance_is_expired(client, signed, frozen_clock, offset):
    _, key, secret = signed
    header = header_for(secret, t=NOW + offset)
    assert_error(post(client, key, header), 401, "signature_expired")


@pytest.mark.parametrize("offset", [-300, -295, 295, 300])
def test_a_timestamp_within_the_tolerance_passes(client, signed, frozen_clock, offset):
    _, key, secret = signed
    assert post(client, key, header_for(secret, t=NOW + offset)).status_code == 200


def test_the_same_signature_twice_is_a_replay(client, signed):
    _api_key, key, secret = signed
    header = header_for(secret)
    assert post(client, key, header).status_code == 200
    assert_error(post(client, key, header), 401, "signature_replayed")
    # Adding a wrong v1 beside the used one does not make it new.
    assert_error(post(client, key, header + ",v1=" + "0" * 64), 401, "signature_replayed")
    assert audit_events("apikey.rejected")[0]["details"]["code"] == "signature_replayed"


def test_the_replay_memory_outlasts_the_tolerance_window(client, signed):
    api_key, key, secret = signed
    header = header_for(secret)
    post(client, key, header)
    t, [v1] = parse_signature_header(header)
    ttl = records.shared_client().ttl(f"bulwark:apikey-claim:sig:{api_key.pk}:{t}:{v1}")
    assert ttl >= 2 * 300 == 2 * signatures.settings.SIGNATURE_TOLERANCE_SECONDS
    assert replay_window_seconds() >= 600


def test_one_matching_v1_among_several_is_enough(client, signed):
    _, key, secret = signed
    t = int(time.time())
    good = signature(secret, t, "POST", KEYED, json.dumps(BODY).encode())
    header = f"t={t},v1={'0' * 64},v1={good.upper()},v2=future-scheme"
    assert post(client, key, header).status_code == 200


def test_every_candidate_is_compared_in_constant_time(signed, monkeypatch):
    api_key, _, secret = signed
    compared = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        compared.append(b)
        return real(a, b)

    monkeypatch.setattr(signatures.hmac, "compare_digest", spy)
    body = json.dumps(BODY).encode()
    t = int(time.time())
    good = signature(secret, t, "POST", "/x", body)
    request = RequestFactory().post(
        "/x",
        body,
        content_type="application/json",
        HTTP_X_SIGNATURE=f"t={t},v1={good},v1={'1' * 64}",
    )
    assert signature_refusal(SignedRequest.of(request), api_key) is None
    assert compared == [good, "1" * 64]  # the second compared too, after a match


def test_keys_without_signing_ignore_the_header(client, actors):
    _, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert post(client, key, "garbage").status_code == 200


def test_an_unopenable_signing_secret_fails_closed(signed):
    api_key, _, _ = signed
    api_key.signing_secret_sealed = api_key.signing_secret_sealed[:-4] + "AAAA"
    t = int(time.time())
    request = RequestFactory().post("/x", b"{}", content_type="application/json",
                                    HTTP_X_SIGNATURE=f"t={t},v1={'a' * 64}")  # fmt: skip
    with pytest.raises(ServiceUnavailable):
        signature_refusal(SignedRequest.of(request), api_key)


def test_the_verifier_works_on_a_plain_django_request(signed):
    api_key, _, secret = signed
    body = b'{"a": 1}'
    t = int(time.time())
    header = f"t={t},v1={signature(secret, t, 'POST', '/p?q=1', body)}"
    request = RequestFactory().post(
        "/p?q=1", body, content_type="application/json", HTTP_X_SIGNATURE=header
    )
    assert signature_refusal(SignedRequest.of(request), api_key) is None
    bad = RequestFactory().post(
        "/p?q=2", body, content_type="application/json", HTTP_X_SIGNATURE=header
    )
    refusal = signature_refusal(SignedRequest.of(bad), api_key)
    assert refusal is not None and isinstance(refusal[0], SignatureInvalid)


def test_the_path_is_taken_as_the_server_received_it(client, signed):
    """Behind gunicorn, RAW_URI is the request target byte for byte; Django's own view of the
    path is decoded and re-escaped. The signature is checked against what was really sent."""
    _, key, secret = signed
    as_sent = f"{KEYED}?name=%61%7eb"  # how this client escapes "a~b"
    raw = json.dumps(BODY).encode()

    def call(signed_path: str):  # type: ignore[no-untyped-def]
        return client.post(
            f"{KEYED}?name=a~b",  # what Django rebuilds the request target as
            raw,
            content_type="application/json",
            HTTP_X_API_KEY=key,
            HTTP_X_SIGNATURE=header_for(secret, path=signed_path),
            RAW_URI=as_sent,
        )

    assert call(as_sent).status_code == 200
    assert_error(call(f"{KEYED}?name=a~b"), 401, "signature_invalid")
