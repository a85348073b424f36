"""`POST /api/v1/incidents/{id}/actions`: revoke a key, archive a version, deactivate a user,
through the owning app's service, recorded on the timeline and in the audit trail, and
effective on the very next request."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from apps.apikeys.models import ApiKey
from apps.audit.subjects import pseudonym_for
from apps.incidents.models import LinkedResource, TimelineEntry
from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.services import model_version_stage
from apps.serving.catalog import catalog
from apps.serving.model_cache import models
from tests.accounts.factories import UserFactory
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import INCIDENTS, assert_error, audit_events, move_to
from tests.serving.conftest import ROW, add_version, bearer, post

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"  # UserFactory's


@pytest.fixture
def pricing(actors: dict[str, Any], settings: Any, tmp_path: Path) -> ModelVersion:
    """Model `pricing` with version 1 in production, served as a fresh web process would."""
    settings.MEDIA_ROOT = tmp_path / "media"
    models.clear()  # nothing loaded or resolved from an earlier test
    catalog.sync(object())
    engineer = actors["ml_engineer"]
    model = RegisteredModel.objects.create(name="pricing", created_by=engineer)
    model.owners.add(engineer)
    version = add_version(engineer, model)
    return model_version_stage(actor=engineer, version=version, stage="production")


@pytest.fixture
def contain(api_client, actors, incident, django_capture_on_commit_callbacks):  # type: ignore[no-untyped-def]
    """POST an action on `incident` as the security officer, its transaction committed (the
    caches other requests read are updated on commit)."""
    api_client.force_authenticate(actors["security_officer"])

    def act(action, target, *, on=None):  # type: ignore[no-untyped-def]
        with django_capture_on_commit_callbacks(execute=True):
            return api_client.post(
                f"{INCIDENTS}/{(on or incident).id}/actions",
                {"action": action, "target": target},
                format="json",
            )

    return act


def containment_entries(incident) -> list[TimelineEntry]:  # type: ignore[no-untyped-def]
    return list(incident.timeline.filter(kind="containment"))


# --- Each action, and its effect on the next request -------------------------------------------


def test_revoking_a_key_refuses_its_very_next_predict(client, actors, pricing, incident, contain):
    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], scopes=["predict:pricing"])
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200  # cached

    response = contain("revoke_api_key", str(api_key.id))

    assert response.status_code == 200, response.content
    body = response.json()
    entry = body["timeline"][-1]
    assert entry["kind"] == "containment"
    assert entry["data"] == {"action": "revoke_api_key", "kind": "api_key", "ref": api_key.prefix}
    assert {"kind": "api_key", "ref": api_key.prefix} in [
        {"kind": r["kind"], "ref": r["ref"]} for r in body["resources"]
    ]
    error = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)
    assert error.status_code == 401 and error.json()["error"]["code"] == "api_key_revoked"
    [revoked] = audit_events("apikey.revoked")
    assert revoked["target"]["id"] == api_key.prefix
    assert revoked["details"]["reason"] == f"incident {incident.id}"
    [contained] = audit_events("incident.containment")
    assert contained["target"] == {"type": "incident", "id": str(incident.id)}
    assert contained["details"] == {
        "action": "revoke_api_key",
        "resource": {"type": "api_key", "id": api_key.prefix},
    }


def test_archiving_a_version_makes_the_very_next_predict_404(
    client, actors, pricing, incident, contain
):
    engineer = bearer(actors["ml_engineer"])
    assert post(client, {"inputs": [ROW]}, **engineer).status_code == 200  # resolved, loaded

    response = contain("archive_model_version", {"model": "pricing", "version": 1})

    assert response.status_code == 200, response.content
    assert response.json()["timeline"][-1]["data"]["ref"] == "pricing:1"
    assert ModelVersion.objects.get(pk=pricing.pk).stage == "archived"
    refused = post(client, {"inputs": [ROW]}, **engineer)
    assert refused.status_code == 404, refused.content
    assert refused.json()["error"]["code"] == "no_production_version"
    pinned = post(client, {"inputs": [ROW]}, path="/api/v1/models/pricing/predict?version=1",
                  **engineer)  # fmt: skip
    assert pinned.status_code == 404
    staged = audit_events("model.version.staged")[-1]
    assert staged["details"] == {"from": "production", "to": "archived"}
    assert audit_events("incident.containment")[0]["details"]["resource"] == {
        "type": "model_version",
        "id": "pricing:1",
    }


def test_deactivating_a_user_ends_their_tokens_and_sign_in_at_once(
    api_client, client, actors, pricing, incident, contain
):
    suspect = UserFactory(roles=["ml_engineer"])
    token = bearer(suspect)
    assert post(client, {"inputs": [ROW]}, **token).status_code == 200  # the user is cached

    response = contain("deactivate_user", suspect.username)

    assert response.status_code == 200, response.content
    body = response.json()
    [resource] = [r for r in body["resources"] if r["kind"] == "user"]
    assert resource["ref"] == pseudonym_for(suspect) and resource["username"] == suspect.username
    refused = post(client, {"inputs": [ROW]}, **token)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "token_invalid"
    api_client.force_authenticate(None)
    login = api_client.post(
        "/api/v1/auth/token", {"username": suspect.username, "password": PASSWORD}, format="json"
    )
    assert login.status_code == 401, login.content
    [event] = audit_events("user.deactivated")
    assert event["target"] == {"type": "user", "id": pseudonym_for(suspect)}
    # The audit trail names the user by pseudonym only, the containment event too.
    assert suspect.username not in str(audit_events())


# --- Refusals: nothing half-written ------------------------------------------------------------


def assert_nothing_recorded(incident) -> None:  # type: ignore[no-untyped-def]
    assert containment_entries(incident) == []
    assert not LinkedResource.objects.filter(incident=incident).exists()
    assert audit_events("incident.containment") == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"target": "x"}, "action"),
        ({"action": "delete_everything", "target": "x"}, "action"),
        ({"action": "revoke_api_key"}, "target"),
        ({"action": "revoke_api_key", "target": "not-a-uuid"}, "target"),
        ({"action": "revoke_api_key", "target": 12}, "target"),
        ({"action": "revoke_api_key", "target": {"id": str(uuid.uuid4())}}, "target"),
        ({"action": "archive_model_version", "target": "pricing:1"}, "target"),
        ({"action": "archive_model_version", "target": {"model": "pricing"}}, "target"),
        (
            {"action": "archive_model_version", "target": {"model": "pricing", "version": "1"}},
            "target/version",
        ),
        (
            {"action": "archive_model_version", "target": {"model": "pricing", "version": 0}},
            "target/version",
        ),
        (
            {"action": "archive_model_version", "target": {"model": "pricing", "version": True}},
            "target/version",
        ),
        (
            {"action": "archive_model_version", "target": {"model": 7, "version": 1}},
            "target/model",
        ),
        (
            {"action": "archive_model_version",
             "target": {"model": "pricing", "version": 1, "x": 1}},
            "target",
        ),
        ({"action": "deactivate_user", "target": ["bob"]}, "target"),
        ({"action": "deactivate_user", "target": ""}, "target"),
    ],
)  # fmt: skip
def test_bad_action_input_is_400_naming_the_field(api_client, actors, incident, body, path):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(f"{INCIDENTS}/{incident.id}/actions", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == path
    assert_nothing_recorded(incident)


@pytest.mark.parametrize(
    ("action", "target"),
    [
        ("revoke_api_key", str(uuid.uuid4())),
        ("archive_model_version", {"model": "pricing", "version": 9}),
        ("archive_model_version", {"model": "nope", "version": 1}),
        ("deactivate_user", "nobody-here"),
    ],
)
def test_an_unknown_target_is_404(pricing, incident, contain, action, target):
    assert_error(contain(action, target), 404, "not_found")
    assert_nothing_recorded(incident)


def test_an_unknown_incident_is_404_and_nothing_is_done(actors, contain):
    api_key = ApiKeyFactory()
    missing = type("Missing", (), {"id": uuid.uuid4()})()
    assert_error(contain("revoke_api_key", str(api_key.id), on=missing), 404, "not_found")
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None


def test_containing_twice_is_409_and_records_nothing_more(pricing, incident, contain):
    api_key = ApiKeyFactory()
    suspect = UserFactory()
    assert contain("revoke_api_key", str(api_key.id)).status_code == 200
    assert contain("archive_model_version", {"model": "pricing", "version": 1}).status_code == 200
    assert contain("deactivate_user", suspect.username).status_code == 200
    entries = len(containment_entries(incident))
    assert_error(contain("revoke_api_key", str(api_key.id)), 409, "conflict")
    error = assert_error(
        contain("archive_model_version", {"model": "pricing", "version": 1}), 409, "conflict"
    )
    assert "already archived" in error["message"]
    assert_error(contain("deactivate_user", suspect.username), 409, "conflict")
    assert len(containment_entries(incident)) == entries == 3
    assert len(audit_events("incident.containment")) == 3


def test_a_closed_incident_takes_no_action_until_reopened(actors, incident, contain):
    officer = actors["security_officer"]
    closed = move_to(incident, "closed", actor=officer)
    api_key = ApiKeyFactory()
    error = assert_error(contain("revoke_api_key", str(api_key.id), on=closed), 409, "conflict")
    assert "reopen" in error["message"]
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None
    assert containment_entries(closed) == []


def test_a_refused_containment_rolls_back_the_owning_apps_change(
    actors, incident, contain, monkeypatch
):
    """If recording the containment fails after the key was revoked, the revocation rolls
    back with it: one transaction, nothing half-written."""
    from apps.incidents import services

    api_key = ApiKeyFactory()

    def broken_link(incident, links):  # type: ignore[no-untyped-def]
        raise services.InvalidInput("links: refused for the test")

    monkeypatch.setattr(services, "_link", broken_link)
    assert_error(contain("revoke_api_key", str(api_key.id)), 400, "invalid_input")
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None
    assert audit_events("apikey.revoked") == []


@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 200), ("security_officer", 200), ("auditor", 403), ("ml_engineer", 403),
     ("api_client", 403), ("key_owner", 403)],
)  # fmt: skip
def test_who_may_take_containment_actions(api_client, actors, incident, role, expected):
    api_key = ApiKeyFactory()
    api_client.force_authenticate(actors[role])
    response = api_client.post(
        f"{INCIDENTS}/{incident.id}/actions",
        {"action": "revoke_api_key", "target": str(api_key.id)},
        format="json",
    )
    assert response.status_code == expected
    revoked = ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert revoked is (expected == 200)
    if expected == 403:
        assert_error(response, 403, "permission_denied")
