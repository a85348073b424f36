from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone

from apps.apikeys.keys import hash_secret
from apps.apikeys.models import ApiKey
from apps.apikeys.signatures import SIGNING_PURPOSE
from apps.core.sealing import unseal
from tests.apikeys.conftest import assert_error, audit_events

pytestmark = pytest.mark.django_db

URL = "/api/v1/api-keys"
CREATED_FIELDS = {
    "id", "name", "prefix", "key", "scopes", "expires_at", "rate_limit",
    "require_signature", "allowed_ips", "status", "created_at",
}  # fmt: skip


def create(api_client, user, **body):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(user)
    body = {"name": "pricing svc", "scopes": ["predict:pricing"], **body}
    return api_client.post(URL, body, format="json")


def test_a_new_key_is_shown_once_with_exactly_the_listed_fields(api_client, actors):
    response = create(api_client, actors["ml_engineer"])
    assert response.status_code == 201
    body = response.json()
    assert set(body) == CREATED_FIELDS  # no signing_secret: this key does not sign
    match = re.fullmatch(r"(bwk_[a-z0-9]{12})_([A-Za-z0-9_-]{43})", body["key"])
    assert match and match.group(1) == body["prefix"]
    assert body["status"] == "active" and body["scopes"] == ["predict:pricing"]
    assert body["rate_limit"] == "60/m" and body["require_signature"] is False
    assert body["allowed_ips"] == []
    api_key = ApiKey.objects.get(pk=body["id"])
    # Only a keyed hash of the secret is stored.
    assert api_key.secret_hash == hash_secret(match.group(2)) != match.group(2)
    assert match.group(2) not in str(ApiKey.objects.filter(pk=api_key.pk).values().get())


def test_the_secret_has_at_least_256_bits(api_client, actors):
    secrets = {create(api_client, actors["admin"]).json()["key"].split("_", 2)[2] for _ in range(3)}
    assert len(secrets) == 3
    # 43 URL-safe base64 characters carry 6 bits each: 258 bits (token_urlsafe(32)).
    assert all(len(secret) == 43 for secret in secrets)


def test_defaults_are_90_days_and_60_per_minute(api_client, actors):
    body = create(api_client, actors["admin"]).json()
    expires = ApiKey.objects.get(pk=body["id"]).expires_at
    assert abs(expires - (timezone.now() + timedelta(days=90))) < timedelta(minutes=1)
    assert body["rate_limit"] == "60/m"


def test_every_option_is_kept(api_client, actors):
    response = create(
        api_client,
        actors["admin"],
        scopes=["predict:*", "predict:pricing"],
        expires_in_days=7,
        rate_limit="1000/h",
        allowed_ips=["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"],
    )
    body = response.json()
    assert response.status_code == 201
    assert body["scopes"] == ["predict:*", "predict:pricing"] and body["rate_limit"] == "1000/h"
    assert body["allowed_ips"] == ["203.0.113.0/24", "2001:db8::/32", "198.51.100.7/32"]
    expires = ApiKey.objects.get(pk=body["id"]).expires_at
    assert abs(expires - (timezone.now() + timedelta(days=7))) < timedelta(minutes=1)


def test_a_signing_key_gets_its_secret_once_and_stores_it_sealed(api_client, actors):
    body = create(api_client, actors["admin"], require_signature=True).json()
    assert set(body) == CREATED_FIELDS | {"signing_secret"}
    assert len(body["signing_secret"]) >= 43
    api_key = ApiKey.objects.get(pk=body["id"])
    assert body["signing_secret"] not in api_key.signing_secret_sealed
    assert unseal(api_key.signing_secret_sealed, purpose=SIGNING_PURPOSE) == body["signing_secret"]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"scopes": ["models:pricing"]}, "scopes/0"),
        ({"scopes": ["predict:*", "predict:bad name"]}, "scopes/1"),
        ({"scopes": []}, "scopes"),
        ({"name": ""}, "name"),
        ({"expires_in_days": 0}, "expires_in_days"),
        ({"expires_in_days": 366}, "expires_in_days"),
        ({"rate_limit": "60/d"}, "rate_limit"),
        ({"rate_limit": "0/m"}, "rate_limit"),
        ({"rate_limit": "1000001/s"}, "rate_limit"),
        ({"allowed_ips": ["203.0.113.0/24", "10.0.0.1/8"]}, "allowed_ips/1"),
        ({"allowed_ips": ["not-an-ip"]}, "allowed_ips/0"),
        ({"require_signature": "maybe"}, "require_signature"),
    ],
)
def test_invalid_input_names_the_field(api_client, actors, body, path):
    response = create(api_client, actors["admin"], **body)
    error = assert_error(response, 400, "invalid_input")
    assert path in [detail["path"] for detail in error["details"]]
    assert not ApiKey.objects.exists()


def test_a_missing_name_is_invalid_input(api_client, actors):
    api_client.force_authenticate(actors["admin"])
    error = assert_error(
        api_client.post(URL, {"scopes": ["predict:*"]}, format="json"), 400, "invalid_input"
    )
    assert error["details"][0]["path"] == "name"


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 201),
        ("ml_engineer", 201),
        ("security_officer", 403),
        ("auditor", 403),
        ("api_client", 403),
        ("key_owner", 403),
        ("outsider", 403),
    ],
)
def test_who_may_create_a_key_with_a_predict_scope(api_client, actors, role, expected):
    # Holders of predict on all models hold every predict scope; everyone else needs a grant on
    # the model (none here: tests/registry/test_grants.py covers API clients with grants).
    for scopes in (["predict:pricing"], ["predict:*"]):
        response = create(api_client, actors[role], scopes=scopes)
        if expected == 201:
            assert response.status_code == 201
            assert ApiKey.objects.get(pk=response.json()["id"]).owner == actors[role]
        else:
            error = assert_error(response, 403, "scope_missing")
            assert error["details"] == [{"path": "scopes/0", "message": "beyond your grants"}]
    if expected != 201:
        assert not ApiKey.objects.exists()


def test_anonymous_callers_are_asked_to_authenticate(api_client):
    response = api_client.post(URL, {"name": "x", "scopes": ["predict:*"]}, format="json")
    assert_error(response, 401, "authentication_required")


def test_creation_is_audited_without_the_secret(api_client, actors):
    body = create(api_client, actors["admin"], require_signature=True).json()
    [event] = audit_events("apikey.created")
    assert event["target"] == {"type": "api_key", "id": body["prefix"]}
    assert event["actor"]["type"] == "user"
    assert event["details"]["scopes"] == ["predict:pricing"]
    assert event["details"]["signed_requests"] is True
    assert body["key"].split("_", 2)[2] not in str(event)
    assert body["signing_secret"] not in str(event)


def test_a_trailing_slash_is_404_not_a_redirect(api_client, actors):
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(URL + "/", {"name": "x", "scopes": ["predict:*"]}, format="json")
    assert_error(response, 404, "not_found")
