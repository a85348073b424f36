from __future__ import annotations

import uuid

import pytest

from apps.apikeys.models import ApiKey
from tests.apikeys.conftest import KEYED, assert_error, audit_events
from tests.apikeys.factories import ApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]


def revoke(api_client, user, api_key, body=None):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(user)
    response = api_client.post(f"/api/v1/api-keys/{api_key.id}/revoke", body, format="json")
    api_client.force_authenticate(None)
    return response


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("admin", 200),
        ("security_officer", 200),
        ("key_owner", 200),
        ("ml_engineer", 404),
        ("auditor", 404),
        ("api_client", 404),
        ("outsider", 404),
    ],
)
def test_who_may_revoke_a_key(api_client, actors, role, expected):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = revoke(api_client, actors[role], api_key)
    api_key.refresh_from_db()
    if expected == 200:
        assert response.status_code == 200 and response.json() == {"status": "revoked"}
        assert api_key.revoked_at is not None
    else:
        assert_error(response, 404, "not_found")
        assert api_key.revoked_at is None


def test_an_unknown_key_is_404(api_client, actors):
    api_client.force_authenticate(actors["admin"])
    response = api_client.post(f"/api/v1/api-keys/{uuid.uuid4()}/revoke", {}, format="json")
    assert_error(response, 404, "not_found")


def test_the_next_request_with_a_revoked_key_is_refused(
    client, api_client, actors, django_capture_on_commit_callbacks
):
    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert client.get(KEYED, HTTP_X_API_KEY=key).status_code == 200  # its record is cached
    with django_capture_on_commit_callbacks(execute=True):
        assert revoke(api_client, actors["key_owner"], api_key).status_code == 200
    # No cache clearing here: the revocation itself replaced the cached record.
    assert_error(client.get(KEYED, HTTP_X_API_KEY=key), 401, "api_key_revoked")


def test_revoking_twice_is_a_conflict(api_client, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    revoke(api_client, actors["key_owner"], api_key)
    error = assert_error(revoke(api_client, actors["admin"], api_key), 409, "conflict")
    assert "already revoked" in error["message"]
    assert len(audit_events("apikey.revoked")) == 1


def test_a_key_in_its_grace_period_can_be_revoked_at_once(client, api_client, actors):
    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(actors["key_owner"])
    api_client.post(f"/api/v1/api-keys/{api_key.id}/rotate", {}, format="json")
    assert client.get(KEYED, HTTP_X_API_KEY=key).status_code == 200  # still in grace
    assert revoke(api_client, actors["key_owner"], api_key).status_code == 200
    assert_error(client.get(KEYED, HTTP_X_API_KEY=key), 401, "api_key_revoked")


def test_revocation_is_audited_with_its_reason(api_client, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    revoke(api_client, actors["security_officer"], api_key, {"reason": "leaked in a ticket"})
    [event] = audit_events("apikey.revoked")
    assert event["target"] == {"type": "api_key", "id": api_key.prefix}
    assert event["details"] == {"reason": "leaked in a ticket", "status_before": "active"}
    assert event["outcome"] == "success"


def test_a_reason_that_is_not_text_is_invalid_input(api_client, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = revoke(api_client, actors["key_owner"], api_key, {"reason": "x" * 501})
    assert_error(response, 400, "invalid_input")
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None
