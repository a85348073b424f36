from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.models import ApiKey
from apps.apikeys.signatures import SIGNING_PURPOSE
from apps.core.sealing import unseal
from tests.apikeys.conftest import KEYED, assert_error, audit_events, update_key
from tests.apikeys.factories import ApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]


@pytest.fixture(autouse=True)
def _owner_holds_predict(actors):  # type: ignore[no-untyped-def]
    # Rotation re-checks the owner's grants: the factory's keys hold `predict:*`, which only
    # roles with predict on every model (admin, ml_engineer) may hold.
    from apps.accounts.models import Role

    actors["key_owner"].roles.add(Role.objects.get(name="ml_engineer"))


def rotate_url(api_key: ApiKey) -> str:
    return f"/api/v1/api-keys/{api_key.id}/rotate"


def rotate(api_client, user, api_key, **body):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(user)
    response = api_client.post(rotate_url(api_key), body, format="json")
    api_client.force_authenticate(None)
    return response


def call(client, key):  # type: ignore[no-untyped-def]
    return client.get(KEYED, HTTP_X_API_KEY=key)


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 403),
        ("security_officer", 403),
        ("key_owner", 201),
        ("ml_engineer", 404),
        ("auditor", 404),
        ("api_client", 404),
        ("outsider", 404),
    ],
)
def test_who_may_rotate_a_key(api_client, actors, role, expected):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = rotate(api_client, actors[role], api_key)
    if expected == 404:
        assert_error(response, 404, "not_found")
        assert ApiKey.objects.count() == 1
    elif expected == 403:
        # They see the key and may revoke it, but its new secret is the owner's alone.
        assert_error(response, 403, "permission_denied")
        assert ApiKey.objects.count() == 1
    else:
        assert response.status_code == 201
        successor = ApiKey.objects.get(pk=response.json()["id"])
        assert successor.owner == actors["key_owner"]  # the key stays its owner's


def test_an_unknown_key_is_404(api_client, actors):
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(f"/api/v1/api-keys/{uuid.uuid4()}/rotate", {}, format="json")
    assert_error(response, 404, "not_found")
    assert_error(api_client.post("/api/v1/api-keys/not-a-uuid/rotate"), 404, "not_found")


def test_the_new_key_is_shown_once_and_keeps_the_old_keys_policy(api_client, actors):
    old, _ = ApiKeyFactory.issue(
        owner=actors["key_owner"],
        name="svc",
        scopes=["predict:pricing"],
        rate_limit="5/s",
        allowed_ips=["203.0.113.0/24"],
        expires_at=timezone.now() + timedelta(days=30),
    )
    response = rotate(api_client, actors["key_owner"], old)
    body = response.json()
    assert response.status_code == 201 and "key" in body and "signing_secret" not in body
    assert body["prefix"] != old.prefix and body["key"].startswith(body["prefix"] + "_")
    assert (body["name"], body["scopes"], body["rate_limit"], body["allowed_ips"]) == (
        "svc",
        ["predict:pricing"],
        "5/s",
        ["203.0.113.0/24"],
    )
    new = ApiKey.objects.get(pk=body["id"])
    # A fresh lifetime as long as the old key's.
    assert abs(new.expires_at - (timezone.now() + timedelta(days=30))) < timedelta(minutes=1)
    old.refresh_from_db()
    assert old.rotated_to == new and old.status == "rotating"


def test_the_old_key_works_during_the_grace_period_and_expires_after(client, api_client, actors):
    old, old_key = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert call(client, old_key).status_code == 200  # cached as active now
    response = rotate(api_client, actors["key_owner"], old, grace_seconds=60)
    new_key = response.json()["key"]
    # During the grace period both keys work, whatever the cache held before the rotation.
    assert call(client, old_key).json()["prefix"] == old.prefix
    assert call(client, new_key).json()["prefix"] == response.json()["prefix"]
    old.refresh_from_db()
    assert timedelta(seconds=55) < old.grace_ends_at - timezone.now() <= timedelta(seconds=60)
    update_key(old, grace_ends_at=timezone.now() - timedelta(seconds=1))  # the minute passes
    assert_error(call(client, old_key), 401, "api_key_expired")
    assert audit_events("apikey.rejected")[-1]["details"] == {
        "code": "api_key_expired",
        "reason": "grace_over",
    }
    assert call(client, new_key).status_code == 200


def test_without_grace_seconds_the_grace_period_is_a_day(api_client, actors):
    old, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    rotate(api_client, actors["key_owner"], old)
    old.refresh_from_db()
    assert abs(old.grace_ends_at - (timezone.now() + timedelta(days=1))) < timedelta(minutes=1)


def test_a_grace_of_zero_ends_the_old_key_at_once(client, api_client, actors):
    old, old_key = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert rotate(api_client, actors["key_owner"], old, grace_seconds=0).status_code == 201
    assert_error(call(client, old_key), 401, "api_key_expired")


@pytest.mark.parametrize("grace", [-1, 604_801, "soon"])
def test_grace_seconds_out_of_range_is_invalid_input(api_client, actors, grace):
    old, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    error = assert_error(
        rotate(api_client, actors["key_owner"], old, grace_seconds=grace), 400, "invalid_input"
    )
    assert error["details"][0]["path"] == "grace_seconds"
    assert ApiKey.objects.count() == 1


def test_the_longest_grace_period_is_a_week(api_client, actors):
    old, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert rotate(api_client, actors["key_owner"], old, grace_seconds=604_800).status_code == 201


def test_a_signing_key_gets_a_new_signing_secret(api_client, actors):
    old, _, old_signing = ApiKeyFactory.issue_signed(owner=actors["key_owner"])
    body = rotate(api_client, actors["key_owner"], old).json()
    assert body["require_signature"] is True and body["signing_secret"] != old_signing
    new = ApiKey.objects.get(pk=body["id"])
    assert unseal(new.signing_secret_sealed, purpose=SIGNING_PURPOSE) == body["signing_secret"]


@pytest.mark.parametrize("state", ["revoked", "expired", "rotated", "grace_over"])
def test_only_an_active_key_can_be_rotated(api_client, actors, state):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    now = timezone.now()
    if state == "revoked":
        update_key(api_key, revoked_at=now)
    elif state == "expired":
        update_key(api_key, expires_at=now - timedelta(seconds=1))
    else:
        rotate(api_client, actors["key_owner"], api_key, grace_seconds=3600)
        if state == "grace_over":
            update_key(api_key, grace_ends_at=now - timedelta(seconds=1))
    count = ApiKey.objects.count()
    error = assert_error(rotate(api_client, actors["key_owner"], api_key), 409, "conflict")
    assert api_key.prefix in error["message"]
    assert ApiKey.objects.count() == count


def test_rotation_is_audited_for_both_keys(api_client, actors):
    old, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    body = rotate(api_client, actors["key_owner"], old, grace_seconds=120).json()
    [rotated] = audit_events("apikey.rotated")
    assert rotated["target"] == {"type": "api_key", "id": old.prefix}
    assert rotated["details"]["successor"] == body["prefix"]
    assert rotated["details"]["grace_seconds"] == 120
    [created] = audit_events("apikey.created")
    assert created["target"]["id"] == body["prefix"]
    assert created["details"]["rotated_from"] == old.prefix
    assert body["key"].split("_", 2)[2] not in str(rotated) + str(created)


def test_an_owner_who_lost_the_grant_cannot_rotate_into_a_fresh_key(api_client, actors):
    owner = actors["key_owner"]
    api_key, _ = ApiKeyFactory.issue(owner=owner)
    owner.roles.clear()
    assert_error(rotate(api_client, owner, api_key), 403, "scope_missing")
    assert ApiKey.objects.count() == 1
