"""The key store's edges: erasure of an owner, failing closed when Redis is gone, and the
Django-cache fallback of the embedded default (no Redis)."""

from __future__ import annotations

import pytest
import redis
from django.db.models import ProtectedError
from redis.backoff import NoBackoff
from redis.retry import Retry

from apps.apikeys import records
from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_erase_owner, api_key_issue
from apps.core.permissions import roles_of
from tests.apikeys.conftest import KEYED, assert_error, audit_events
from tests.apikeys.factories import ApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]


@pytest.fixture
def dead_redis(monkeypatch):  # type: ignore[no-untyped-def]
    """Redis gone for the key store (nothing listens on port 1)."""
    dead = redis.Redis(
        host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    monkeypatch.setattr(records, "shared_client", lambda: dead)


@pytest.fixture
def no_redis(monkeypatch):  # type: ignore[no-untyped-def]
    """The embedded default's path: no Redis client, the Django cache API instead."""
    monkeypatch.setattr(records, "shared_client", lambda: None)


def test_a_user_with_keys_cannot_be_deleted_behind_the_services_back(actors):
    ApiKeyFactory(owner=actors["key_owner"])
    with pytest.raises(ProtectedError):
        actors["key_owner"].delete()


def test_erasing_an_owner_revokes_then_deletes_their_keys(
    client, actors, django_capture_on_commit_callbacks
):
    owner = actors["key_owner"]
    live, key = ApiKeyFactory.issue(owner=owner)
    successor = ApiKeyFactory(owner=owner)
    ApiKey.objects.filter(pk=live.pk).update(
        rotated_to=successor, grace_ends_at=successor.expires_at
    )
    already = ApiKeyFactory(owner=owner, revoked_at=successor.created_at)
    kept = ApiKeyFactory(owner=actors["outsider"])
    assert client.get(KEYED, HTTP_X_API_KEY=key).status_code == 200  # cached as live
    with django_capture_on_commit_callbacks(execute=True):
        assert api_key_erase_owner(actor="privacy.erasure", owner=owner) == 3
    assert (
        not ApiKey.objects.filter(owner=owner).exists()
        and ApiKey.objects.filter(pk=kept.pk).exists()
    )
    revoked = {event["target"]["id"]: event for event in audit_events("apikey.revoked")}
    assert set(revoked) == {live.prefix, successor.prefix}  # not the one already revoked
    assert already.prefix not in revoked
    assert all(event["details"] == {"reason": "erasure"} for event in revoked.values())
    assert_error(client.get(KEYED, HTTP_X_API_KEY=key), 401, "api_key_invalid")
    owner.delete()  # nothing protects the user any more


def test_authentication_fails_closed_when_redis_is_down(client, actors, dead_redis):
    _, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = client.get(KEYED, HTTP_X_API_KEY=key)
    error = assert_error(response, 503, "service_unavailable")
    assert "cache" in error["message"] and response["Retry-After"]


def test_a_revocation_is_refused_whole_when_redis_cannot_take_it(api_client, actors, dead_redis):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(actors["key_owner"])
    response = api_client.post(f"/api/v1/api-keys/{api_key.id}/revoke", {}, format="json")
    assert_error(response, 503, "service_unavailable")
    api_key.refresh_from_db()
    assert api_key.revoked_at is None  # no 200 that the cache would contradict
    assert audit_events("apikey.revoked") == []


def test_without_redis_the_django_cache_serves_the_same_rules(client, api_client, actors, no_redis):
    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert client.get(KEYED, HTTP_X_API_KEY=key).status_code == 200
    assert isinstance(records.lookup(api_key.public_id, "b", limit=1, window=1)[1], ApiKey)
    api_client.force_authenticate(actors["key_owner"])
    assert api_client.post(f"/api/v1/api-keys/{api_key.id}/revoke").status_code == 200  # no body
    assert_error(client.get(KEYED, HTTP_X_API_KEY=key), 401, "api_key_revoked")
    records.forget(api_key.public_id)
    assert records.lookup(api_key.public_id, "b", limit=1, window=1)[1] is records.MISSING


def test_an_issued_key_never_prints_its_secrets(actors):
    issued = api_key_issue(
        actor=actors["admin"], owner=actors["admin"], name="x", scopes=["predict:*"],
        require_signature=True,
    )  # fmt: skip
    text = repr(issued) + str(issued)
    assert issued.api_key.prefix in text
    assert issued.key not in text and issued.signing_secret not in text


def test_each_write_of_a_record_reads_the_owners_roles_anew(actors, django_assert_num_queries):
    """A state change writes the record inside its transaction and again after commit; the
    second write carries the roles as they are then, not as the first write read them."""
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    loaded = ApiKey.objects.select_related("owner").get(pk=api_key.pk)
    records.store(loaded)
    actors["key_owner"].roles.add("auditor")
    records.store(loaded)
    cached = records.lookup(api_key.public_id, "b", limit=1, window=1)[1]
    with django_assert_num_queries(0):
        assert roles_of(cached.owner) == {"api_client", "auditor"}
