"""The client library against the live server: predict plain and signed, a replay refused, a
429 retried after its Retry-After (and bounded), errors mapped to their classes with the
request id, JWT sign-in and refresh, and the key calls."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
from bulwark_client import (
    ApiKeyInvalid,
    ApiKeyRevoked,
    Bulwark,
    InvalidCredentials,
    InvalidInput,
    NoProductionVersion,
    NotFound,
    RateLimited,
    ScopeMissing,
    SignatureReplayed,
    SignatureRequired,
    TokenInvalid,
    error_from_response,
    signature_header,
)

from tests.apikeys.factories import ApiKeyFactory
from tests.clients.conftest import PASSWORD
from tests.serving.conftest import ROW

pytestmark = pytest.mark.django_db(transaction=True)

PREDICT = "/api/v1/models/pricing/predict"


class Sleeps:
    """The client's sleep, really sleeping, and remembering how long it was asked to."""

    def __init__(self) -> None:
        self.asked: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        time.sleep(seconds)


def test_plain_and_signed_predict(server: str, people: dict[str, Any]) -> None:
    _, key = ApiKeyFactory.issue(owner=people["ml_engineer"])
    answer = Bulwark(server, key).predict("pricing", [ROW, ROW])
    assert answer["model"] == "pricing" and answer["version"] == 1
    assert len(answer["predictions"]) == 2 and answer["request_id"]

    _, signed_key, secret = ApiKeyFactory.issue_signed(owner=people["ml_engineer"])
    signed = Bulwark(server, signed_key, secret)
    assert signed.predict("pricing", [ROW], version=1)["version"] == 1
    # The same request again at once: the client waits for a new second rather than replay.
    assert len(signed.predict("pricing", [ROW], version=1)["predictions"]) == 1
    # Several secrets (rotation on the client's side): one match is enough.
    assert Bulwark(server, signed_key, ["not-the-secret", secret]).predict("pricing", [ROW])
    with pytest.raises(SignatureRequired) as refused:
        Bulwark(server, signed_key).predict("pricing", [ROW])
    assert refused.value.status == 401 and refused.value.request_id
    assert secret not in repr(signed) and signed_key not in repr(signed)


def test_a_replayed_signature_is_refused_with_its_request_id(
    server: str, people: dict[str, Any]
) -> None:
    _, key, secret = ApiKeyFactory.issue_signed(owner=people["ml_engineer"])
    body = json.dumps({"inputs": [ROW]}).encode()
    header = signature_header(secret, "POST", PREDICT, body)  # what the client sends

    def send(request_id: str) -> tuple[int, bytes, dict[str, str]]:
        request = urllib.request.Request(
            server + PREDICT,
            data=body,
            method="POST",
            headers={
                "Content-Type": "application/json",
                "X-API-Key": key,
                "X-Signature": header,
                "X-Request-ID": request_id,
            },
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as answer:
                return answer.status, answer.read(), dict(answer.headers.items())
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers.items())

    assert send("first-send")[0] == 200
    status, raw, headers = send("captured-and-resent")
    error = error_from_response(status, raw, headers)
    assert isinstance(error, SignatureReplayed)
    assert (error.status, error.code) == (401, "signature_replayed")
    assert error.request_id == "captured-and-resent" == headers["X-Request-ID"]


def test_a_429_is_retried_after_its_retry_after(server: str, people: dict[str, Any]) -> None:
    _, key = ApiKeyFactory.issue(owner=people["ml_engineer"], rate_limit="1/s")
    sleeps = Sleeps()
    client = Bulwark(server, key, sleep=sleeps, max_retries=3, max_wait=5)
    started = time.monotonic()
    for _ in range(4):  # a 1/s window: the second call of a second is refused, then retried
        assert client.predict("pricing", [ROW])["predictions"]
        if sleeps.asked:
            break
    elapsed = time.monotonic() - started
    assert sleeps.asked and all(seconds == 1.0 for seconds in sleeps.asked)  # Retry-After: 1
    assert sum(sleeps.asked) <= elapsed < 5


def test_a_wait_beyond_the_bound_raises_at_once(server: str, people: dict[str, Any]) -> None:
    _, key = ApiKeyFactory.issue(owner=people["ml_engineer"], rate_limit="1/h")
    sleeps = Sleeps()
    client = Bulwark(server, key, sleep=sleeps, max_wait=30)
    client.predict("pricing", [ROW])
    started = time.monotonic()
    with pytest.raises(RateLimited) as refused:
        client.predict("pricing", [ROW])
    assert time.monotonic() - started < 2 and sleeps.asked == []
    assert refused.value.status == 429 and refused.value.retry_after is not None
    assert 3000 < refused.value.retry_after <= 3600 and refused.value.request_id
    # max_retries=0: a 429 within the bound is raised too, without waiting.
    _, fast = ApiKeyFactory.issue(owner=people["ml_engineer"], rate_limit="1/s")
    once = Bulwark(server, fast, sleep=sleeps, max_retries=0)
    with pytest.raises(RateLimited):
        for _ in range(3):
            once.predict("pricing", [ROW])
    assert sleeps.asked == []


def test_refusals_map_to_their_classes_and_are_never_retried(
    server: str, people: dict[str, Any]
) -> None:
    sleeps = Sleeps()
    with pytest.raises(ApiKeyInvalid) as invalid:
        Bulwark(server, "bwk_nope_" + "x" * 43, sleep=sleeps).predict("pricing", [ROW])
    assert (invalid.value.status, invalid.value.code) == (401, "api_key_invalid")
    assert invalid.value.request_id and invalid.value.message

    _, key = ApiKeyFactory.issue(owner=people["ml_engineer"])
    client = Bulwark(server, key, sleep=sleeps)
    with pytest.raises(InvalidInput) as bad_row:
        client.predict("pricing", [{"price": "cheap"}])
    assert bad_row.value.status == 400
    assert any(detail["path"].startswith("inputs/0") for detail in bad_row.value.details)
    with pytest.raises(NotFound):
        client.predict("nothing-here", [ROW])
    with pytest.raises(NotFound):
        client.predict("pricing", [ROW], version=99)
    with pytest.raises(ValueError, match="NaN"):  # refused here: the server would say 400
        client.predict("pricing", [{**ROW, "price": float("nan")}])
    with pytest.raises(ValueError, match="signed-in person"):
        client.keys.list()
    assert sleeps.asked == []

    from apps.registry.models import RegisteredModel

    RegisteredModel.objects.create(name="draft", created_by=people["ml_engineer"])
    with pytest.raises(NoProductionVersion):
        client.predict("draft", [ROW])


def test_sign_in_and_refresh(server: str, people: dict[str, Any]) -> None:
    engineer = people["ml_engineer"]
    with pytest.raises(InvalidCredentials):
        Bulwark.sign_in(server, engineer.username, "wrong password")
    client = Bulwark.sign_in(server, engineer.username, PASSWORD)
    assert client.me()["username"] == engineer.username
    assert client.predict("pricing", [ROW])["predictions"]  # a person's JWT, no key

    # A rejected access token: one refresh with the refresh token, then the call succeeds.
    first_refresh = client.refresh_token
    client.access_token = "not-a-token"
    assert client.me()["username"] == engineer.username
    assert client.refresh_token != first_refresh

    # An access token about to expire is refreshed before the call.
    second_access, second_refresh = client.access_token, client.refresh_token
    client.access_expires_at = time.monotonic() - 1
    assert client.me()["username"] == engineer.username
    assert client.access_token != second_access and client.refresh_token != second_refresh

    # A rotated refresh token reused (stolen?) is 401 token_invalid and ends its whole family:
    # the client's own tokens are refused, its one refresh too, and the error reaches the caller.
    with pytest.raises(TokenInvalid):
        Bulwark(server, refresh_token=first_refresh).refresh()
    with pytest.raises(TokenInvalid):
        client.me()

    # Signed out: the refresh token is dead.
    again = Bulwark.sign_in(server, engineer.username, PASSWORD)
    refresh = again.refresh_token
    again.sign_out()
    with pytest.raises(ValueError, match="signed-in person"):
        again.me()
    with pytest.raises(TokenInvalid):
        Bulwark(server, refresh_token=refresh).refresh()


def test_keys_create_rotate_revoke(server: str, people: dict[str, Any]) -> None:
    engineer = Bulwark.sign_in(server, people["ml_engineer"].username, PASSWORD)
    created = engineer.keys.create(
        "client test", ["predict:pricing"], require_signature=True, rate_limit="100/m"
    )
    assert created["key"].startswith(created["prefix"] + "_") and created["signing_secret"]
    signed = Bulwark(server, created["key"], created["signing_secret"])
    assert signed.predict("pricing", [ROW])["predictions"]

    listed = [key for key in engineer.keys.iterate() if key["id"] == created["id"]]
    assert listed and listed[0]["status"] == "active"
    assert "key" not in listed[0] and "signing_secret" not in listed[0]

    rotated = engineer.keys.rotate(created["id"], grace_seconds=60)
    assert rotated["key"] != created["key"] and rotated["id"] != created["id"]
    assert signed.predict("pricing", [ROW])["predictions"]  # the old key, in its grace
    new_secret = rotated["signing_secret"]  # a signed key's successor has its own secret
    assert new_secret != created["signing_secret"]
    assert Bulwark(server, rotated["key"], new_secret).predict("pricing", [ROW])

    assert engineer.keys.revoke(rotated["id"])["status"] == "revoked"
    with pytest.raises(ApiKeyRevoked):
        Bulwark(server, rotated["key"], new_secret).predict("pricing", [ROW])

    # A scope beyond one's grants: an API client with no grant on pricing.
    client_person = Bulwark.sign_in(server, people["api_client"].username, PASSWORD)
    with pytest.raises(ScopeMissing) as beyond:
        client_person.keys.create("too much", ["predict:pricing"])
    assert beyond.value.status == 403 and beyond.value.details
