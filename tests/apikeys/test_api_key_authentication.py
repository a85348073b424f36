from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from rest_framework.test import APIClient

from apps.accounts.tokens import token_pair_issue
from apps.apikeys import records
from apps.apikeys.authentication import ApiKeyAuthentication, _last_used_claims
from apps.apikeys.keys import format_key, new_secret
from apps.apikeys.models import ApiKey
from apps.audit.models import PendingEvent
from apps.core.permissions import roles_of
from tests.apikeys.conftest import KEYED, assert_error, audit_events, update_key
from tests.apikeys.factories import ApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]


@pytest.fixture
def issued(actors):  # type: ignore[no-untyped-def]
    return ApiKeyFactory.issue(owner=actors["key_owner"], scopes=["predict:pricing"])


def call(client, key, **extra):  # type: ignore[no-untyped-def]
    return client.get(KEYED, HTTP_X_API_KEY=key, **extra)


def test_a_valid_key_authenticates_as_its_owner(client, actors, issued):
    api_key, key = issued
    for _ in range(2):  # from the database, then from the record cache
        response = call(client, key)
        assert response.status_code == 200
        assert response.json() == {
            "owner": str(actors["key_owner"].pk),
            "prefix": api_key.prefix,
            "scopes": ["predict:pricing"],
            "received": None,
        }


def test_a_cached_record_needs_no_database_query(client, issued):
    _, key = issued
    call(client, key)
    with CaptureQueriesContext(connection) as queries:
        assert call(client, key).status_code == 200
    assert len(queries) == 0


def test_a_cached_record_round_trips_every_field_authentication_reads(
    issued, django_assert_num_queries
):
    api_key, _ = issued
    records.store(ApiKey.objects.select_related("owner").get(pk=api_key.pk))
    _, cached = records.lookup(api_key.public_id, "authfail:ip:x", limit=30, window=60)
    assert isinstance(cached, ApiKey)
    for field in ("id", "public_id", "secret_hash", "scopes", "expires_at", "rate_limit",
                  "require_signature", "allowed_ips", "revoked_at", "rotated_to_id",
                  "grace_ends_at", "created_at", "owner_id"):  # fmt: skip
        assert getattr(cached, field) == getattr(api_key, field), field
    assert cached.owner.pk == api_key.owner.pk and cached.owner.is_active is True
    with django_assert_num_queries(0):  # the owner's roles come with the record
        assert roles_of(cached.owner) == {"api_client"}
    assert cached.last_used_at is None  # deferred: read from the database on access


def test_a_tampered_cache_record_is_ignored(client, issued):
    api_key, key = issued
    call(client, key)
    client_redis = records.shared_client()
    raw = client_redis.get(records._REDIS_PREFIX + api_key.public_id).decode()
    forged = raw.replace('"revoked_at":null', '"revoked_at":null ')  # any change breaks the MAC
    client_redis.set(records._REDIS_PREFIX + api_key.public_id, forged)
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=timezone.now())
    assert_error(call(client, key), 401, "api_key_revoked")  # read again from the database


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("", "malformed"),
        ("bwk_", "malformed"),
        ("Bearer something", "malformed"),
        (format_key("abcdefghijk", new_secret()), "malformed"),  # 11-character public id
        (format_key("abcdefghijkl", new_secret()) + "x", "malformed"),
        (format_key("abcdefghijkl", new_secret()), "unknown"),
    ],
)
def test_malformed_and_unknown_keys_are_invalid(client, issued, key, reason):
    assert_error(call(client, key), 401, "api_key_invalid")
    [event] = audit_events("apikey.rejected")
    assert event["details"] == {"code": "api_key_invalid", "reason": reason}
    assert event["actor"] == {"type": "user", "ref": "anonymous"}
    assert event["outcome"] == "failure"


def test_a_wrong_secret_is_invalid(client, issued):
    api_key, _key = issued
    wrong = format_key(api_key.public_id, new_secret())
    response = call(client, wrong)
    error = assert_error(response, 401, "api_key_invalid")
    assert response["WWW-Authenticate"] == 'ApiKey realm="bulwark"'
    assert error["message"] == "The API key is malformed, unknown or wrong."
    [event] = audit_events("apikey.rejected")
    assert event["details"]["reason"] == "wrong_secret"
    assert event["target"] == {"type": "api_key", "id": api_key.prefix}
    assert event["actor"]["ref"] == "anonymous"  # the secret was not shown: not the key acting


def test_an_expired_key_is_refused_before_any_job_runs(client, issued):
    api_key, key = issued
    call(client, key)
    update_key(api_key, expires_at=timezone.now() - timedelta(seconds=1))
    assert_error(call(client, key), 401, "api_key_expired")
    [event] = audit_events("apikey.rejected")
    assert event["details"] == {"code": "api_key_expired", "reason": "expired"}
    assert event["actor"] == {"type": "api_key", "ref": api_key.prefix}
    assert event["outcome"] == "denied"


def test_a_cached_key_expires_at_its_time_without_invalidation(client, issued):
    api_key, key = issued
    soon = timezone.now() + timedelta(seconds=2)
    update_key(api_key, expires_at=soon)
    assert call(client, key).status_code == 200  # cached, with expires_at in the record
    ApiKey.objects.filter(pk=api_key.pk).update(expires_at=timezone.now() + timedelta(days=9))
    # The record still says `soon`; once that has passed the key is refused from the cache.
    cached = records.lookup(api_key.public_id, "x", limit=1, window=1)[1]
    assert cached.status_at(soon) == "expired"


def test_a_revoked_key_is_refused(client, issued):
    api_key, key = issued
    update_key(api_key, revoked_at=timezone.now())
    assert_error(call(client, key), 401, "api_key_revoked")
    assert audit_events("apikey.rejected")[0]["details"]["reason"] == "revoked"


def test_revoked_wins_over_expired(client, issued):
    api_key, key = issued
    update_key(api_key, revoked_at=timezone.now(), expires_at=timezone.now())
    assert_error(call(client, key), 401, "api_key_revoked")


def test_a_deactivated_owners_key_stops_working(
    client, actors, issued, django_capture_on_commit_callbacks
):
    _, key = issued
    assert call(client, key).status_code == 200  # cached with an active owner
    owner = actors["key_owner"]
    owner.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        owner.save()
    assert_error(call(client, key), 401, "api_key_invalid")
    assert audit_events("apikey.rejected")[0]["details"]["reason"] == "owner_inactive"


def test_a_role_change_reaches_the_cached_owner(
    client, actors, issued, django_capture_on_commit_callbacks, django_assert_num_queries
):
    api_key, key = issued
    call(client, key)
    with django_capture_on_commit_callbacks(execute=True):
        actors["key_owner"].roles.add("auditor")
    cached = records.lookup(api_key.public_id, "x", limit=1, window=1)[1]
    with django_assert_num_queries(0):
        assert roles_of(cached.owner) == {"api_client", "auditor"}


@pytest.mark.parametrize(
    ("allowed", "address", "status"),
    [
        (["203.0.113.0/24"], "203.0.113.9", 200),
        (["203.0.113.0/24"], "198.51.100.9", 403),
        (["203.0.113.0/24", "2001:db8::/32"], "2001:db8::1", 200),
        (["2001:db8::/32"], "2001:db9::1", 403),
        (["203.0.113.0/24"], "::ffff:203.0.113.9", 200),  # IPv4-mapped IPv6
        ([], "192.0.2.1", 200),
    ],
)
def test_the_ip_allow_list(client, actors, allowed, address, status):
    _api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"], allowed_ips=allowed)
    response = call(client, key, REMOTE_ADDR=address)
    if status == 200:
        assert response.status_code == 200
    else:
        assert_error(response, 403, "ip_not_allowed")
        [event] = audit_events("apikey.rejected")
        assert event["details"] == {"code": "ip_not_allowed", "reason": "ip"}


def test_the_secret_is_checked_before_the_status(client, issued):
    """Without the secret, nobody learns whether a key is revoked or expired."""
    api_key, _ = issued
    update_key(api_key, revoked_at=timezone.now())
    assert_error(call(client, format_key(api_key.public_id, new_secret())), 401, "api_key_invalid")


@pytest.mark.parametrize("path", ["/api/v1/api-keys", "/api/v1/auth/me"])
def test_elsewhere_an_api_key_authenticates_nobody(client, issued, path):
    _, key = issued
    assert_error(call_path(client, path, key), 401, "authentication_required")
    assert not PendingEvent.objects.filter(body__contains="apikey.rejected").exists()


def call_path(client, path, key):  # type: ignore[no-untyped-def]
    return client.get(path, HTTP_X_API_KEY=key)


def test_elsewhere_a_jwt_still_works_next_to_an_api_key(actors, issued):
    _, key = issued
    access = token_pair_issue(user=actors["key_owner"])["access"]
    client = APIClient()
    response = client.get(
        "/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {access}", HTTP_X_API_KEY=key
    )
    assert response.status_code == 200
    assert response.json()["username"] == actors["key_owner"].username


def test_no_header_means_not_this_authenticator(rf):
    from rest_framework.request import Request

    assert ApiKeyAuthentication().authenticate(Request(rf.get("/"))) is None


def test_a_refusal_stands_when_its_audit_event_cannot_be_written(client, issued):
    api_key, key = issued
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE FUNCTION test_refuse() RETURNS trigger AS $$ BEGIN "
            "RAISE EXCEPTION 'disk full'; END $$ LANGUAGE plpgsql;"
            "CREATE TRIGGER test_refuse BEFORE INSERT ON audit_pendingevent "
            "FOR EACH ROW EXECUTE FUNCTION test_refuse();"
        )
    wrong = format_key(api_key.public_id, new_secret())
    assert_error(call(client, wrong), 401, "api_key_invalid")
    update_key(api_key, revoked_at=timezone.now())
    assert_error(call(client, key), 401, "api_key_revoked")
    with connection.cursor() as cursor:  # the test's transaction is still usable
        cursor.execute("SELECT 1")
    assert PendingEvent.objects.count() == 0


def test_last_used_at_is_written_at_most_once_a_minute(client, issued):
    api_key, key = issued

    def writes() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert call(client, key).status_code == 200
        return sum(
            query["sql"].startswith("UPDATE") and "last_used_at" in query["sql"]
            for query in queries
        )

    assert writes() == 1
    first = ApiKey.objects.get(pk=api_key.pk).last_used_at
    assert first is not None
    assert [writes() for _ in range(5)] == [0] * 5
    _last_used_claims.clear()  # another process, within the same minute
    assert writes() == 0
    # a minute later:
    records.shared_client().delete(f"bulwark:apikey-claim:used:{api_key.public_id}")
    _last_used_claims.clear()
    assert writes() == 1
    assert ApiKey.objects.get(pk=api_key.pk).last_used_at > first


def test_the_cache_marker_of_last_used_at_expires_after_a_minute(client, issued):
    api_key, key = issued
    call(client, key)
    ttl = records.shared_client().ttl(f"bulwark:apikey-claim:used:{api_key.public_id}")
    assert 55 <= ttl <= 60
