"""`api_key_authenticate` as one explicit call: plain data in, a typed outcome out; nothing
read from or left on a request (docs/architecture.md "A predict request", step 3)."""

from __future__ import annotations

import pytest

from apps.apikeys import records
from apps.apikeys.authentication import (
    ANONYMOUS,
    KeyAccepted,
    KeyRefused,
    PresentedKey,
    api_key_authenticate,
)
from apps.apikeys.errors import ApiKeyInvalid, AuthFailuresLocked
from apps.apikeys.keys import format_key, new_secret
from apps.apikeys.signatures import SignedRequest
from apps.audit.models import PendingEvent
from apps.core import ratelimit
from apps.core.auth_failures import failure_bucket_of, failure_limit
from tests.apikeys.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db

ADDRESS = "198.51.100.23"


def unsigned() -> SignedRequest:
    def no_body() -> bytes:
        raise AssertionError("the body is read only for a key that requires signing")

    return SignedRequest(header=None, method="POST", path="/p", body=no_body)


def failures_counted() -> int:
    limit, window = failure_limit()
    return ratelimit.peek(failure_bucket_of(ADDRESS), limit=limit, window=window).count


def test_a_valid_key_is_accepted_with_its_owner(actors):
    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    outcome = api_key_authenticate(
        key=PresentedKey.parse(key), client_address=ADDRESS, signed=unsigned()
    )
    assert isinstance(outcome, KeyAccepted)
    assert outcome.api_key.pk == api_key.pk
    assert outcome.owner.pk == actors["key_owner"].pk
    assert failures_counted() == 0


def test_a_refusal_is_counted_and_returned_but_recorded_by_the_caller(actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    wrong = PresentedKey.parse(format_key(api_key.public_id, new_secret()))
    outcome = api_key_authenticate(key=wrong, client_address=ADDRESS, signed=unsigned())
    assert isinstance(outcome, KeyRefused)
    assert isinstance(outcome.error, ApiKeyInvalid)
    assert (outcome.reason, outcome.actor) == ("wrong_secret", ANONYMOUS)
    assert outcome.api_key is not None and outcome.api_key.pk == api_key.pk
    assert failures_counted() == 1
    assert not PendingEvent.objects.exists()


def test_a_malformed_key_is_refused_without_a_public_id():
    presented = PresentedKey.parse("bwk_nope")
    assert presented.public_id is None
    outcome = api_key_authenticate(key=presented, client_address=ADDRESS, signed=unsigned())
    assert isinstance(outcome, KeyRefused) and outcome.reason == "malformed"


def test_the_gates_reading_stands_in_for_authentications_own(actors):
    """What the gate read is used as read: a failure count there locks the address out though
    Redis holds none; a reading taken for another address is ignored."""
    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    records.store(api_key)
    presented = PresentedKey.parse(key)
    limit, _ = failure_limit()
    locked = records.GateReading(
        api_key.public_id, failure_bucket_of(ADDRESS), str(limit).encode(), None
    )
    outcome = api_key_authenticate(
        key=presented, client_address=ADDRESS, signed=unsigned(), gate=locked
    )
    assert isinstance(outcome, KeyRefused) and isinstance(outcome.error, AuthFailuresLocked)
    assert (outcome.reason, outcome.actor) == (None, ANONYMOUS)
    assert failures_counted() == 0  # a lock-out is not counted again
    # A reading taken for another address is not this request's: ignored.
    elsewhere = records.GateReading(api_key.public_id, failure_bucket_of("192.0.2.1"), b"99", None)
    outcome = api_key_authenticate(
        key=presented, client_address=ADDRESS, signed=unsigned(), gate=elsewhere
    )
    assert isinstance(outcome, KeyAccepted)
