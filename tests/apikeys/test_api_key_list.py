from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.models import ApiKey
from tests.apikeys.conftest import assert_error, update_key
from tests.apikeys.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db

URL = "/api/v1/api-keys"


@pytest.fixture
def keys(actors):  # type: ignore[no-untyped-def]
    """One key of each of key_owner and outsider."""
    return {
        "key_owner": ApiKeyFactory.issue(owner=actors["key_owner"])[0],
        "outsider": ApiKeyFactory.issue(owner=actors["outsider"])[0],
    }


def listed(api_client, user, url=URL):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(user)
    response = api_client.get(url)
    assert response.status_code == 200
    assert set(response.json()) == {"results", "next"}
    return response.json()


@pytest.mark.parametrize(
    ("role", "sees"),
    [
        ("admin", {"key_owner", "outsider"}),
        ("security_officer", {"key_owner", "outsider"}),
        ("ml_engineer", set()),
        ("auditor", set()),
        ("api_client", set()),
        ("key_owner", {"key_owner"}),
        ("outsider", {"outsider"}),
    ],
)
def test_who_sees_which_keys(api_client, actors, keys, role, sees):
    body = listed(api_client, actors[role])
    assert {item["id"] for item in body["results"]} == {str(keys[name].id) for name in sees}


def test_anonymous_callers_are_asked_to_authenticate(api_client):
    assert_error(api_client.get(URL), 401, "authentication_required")


def test_an_item_shows_the_contract_fields_and_never_a_secret(api_client, actors):
    api_key, key = ApiKeyFactory.issue_signed(owner=actors["key_owner"])[:2]
    [item] = listed(api_client, actors["key_owner"])["results"]
    assert {"id", "name", "prefix", "scopes", "status", "expires_at", "last_used_at"} <= set(item)
    assert item["prefix"] == api_key.prefix and item["status"] == "active"
    assert item["last_used_at"] is None and item["require_signature"] is True
    for hidden in ("key", "signing_secret", "secret_hash", "signing_secret_sealed"):
        assert hidden not in item
    text = str(item)
    assert key.split("_", 2)[2] not in text and api_key.secret_hash not in text
    assert api_key.signing_secret_sealed not in text


def test_each_status_is_derived_from_the_keys_times(api_client, actors):
    owner = actors["key_owner"]
    now = timezone.now()
    active = ApiKeyFactory(owner=owner)
    successor = ApiKeyFactory(owner=owner)
    rotating = ApiKeyFactory(owner=owner)
    update_key(rotating, rotated_to=successor, grace_ends_at=now + timedelta(hours=1))
    grace_over = ApiKeyFactory(owner=owner)
    update_key(grace_over, rotated_to=successor, grace_ends_at=now - timedelta(seconds=1))
    expired = ApiKeyFactory(owner=owner)
    update_key(expired, expires_at=now - timedelta(seconds=1))
    revoked = ApiKeyFactory(owner=owner, revoked_at=now)
    statuses = {item["id"]: item["status"] for item in listed(api_client, owner)["results"]}
    assert statuses == {
        str(active.id): "active",
        str(successor.id): "active",
        str(rotating.id): "rotating",
        str(grace_over.id): "expired",
        str(expired.id): "expired",
        str(revoked.id): "revoked",
    }


def test_the_list_is_cursor_paginated_newest_first(api_client, actors):
    made = [ApiKeyFactory(owner=actors["key_owner"]) for _ in range(3)]
    first = listed(api_client, actors["key_owner"], f"{URL}?limit=2")
    assert [item["id"] for item in first["results"]] == [str(made[2].id), str(made[1].id)]
    assert first["next"]
    second = listed(api_client, actors["key_owner"], f"{URL}?limit=2&cursor={first['next']}")
    assert [item["id"] for item in second["results"]] == [str(made[0].id)]
    assert second["next"] is None


def test_a_bad_cursor_is_invalid_input(api_client, actors):
    api_client.force_authenticate(actors["key_owner"])
    assert_error(api_client.get(f"{URL}?cursor=garbage"), 400, "invalid_input")


def test_listing_changes_nothing(api_client, actors, keys):
    before = list(ApiKey.objects.order_by("id").values())
    listed(api_client, actors["admin"])
    assert list(ApiKey.objects.order_by("id").values()) == before
