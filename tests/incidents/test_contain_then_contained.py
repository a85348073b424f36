"""A containment action that also moves a detected incident to Contained (issue 16): through the
API (`then_contained`) and the service, in one transaction, audited as two events
(incident.containment, then incident.transitioned with the action)."""

from __future__ import annotations

import pytest

from apps.apikeys.models import ApiKey
from apps.incidents.models import Incident
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import INCIDENTS, assert_error, audit_events, move_to

pytestmark = pytest.mark.django_db


def contain(client, incident, api_key, **extra):  # type: ignore[no-untyped-def]
    body = {"action": "revoke_api_key", "target": str(api_key.id), **extra}
    return client.post(f"{INCIDENTS}/{incident.id}/actions", body, format="json")


def test_revoking_a_key_moves_a_detected_incident_to_contained(api_client, actors, incident):
    officer = actors["security_officer"]
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(officer)
    response = contain(api_client, incident, api_key, then_contained=True)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "contained" and body["phases"]["contained_at"] is not None
    assert body["durations"]["time_to_contain"] is not None
    containment, moved = body["timeline"][-2:]
    assert containment["kind"] == "containment"
    assert moved["kind"] == "transition"
    assert moved["data"] == {
        "from": "detected",
        "to": "contained",
        "reopen": False,
        "containment": "revoke_api_key",
    }
    assert moved["text"] == f"Contained by the containment action: revoke api key {api_key.prefix}."
    events = [e for e in audit_events() if e["action"].startswith("incident.")][-2:]
    assert [e["action"] for e in events] == ["incident.containment", "incident.transitioned"]
    assert events[1]["details"] == {
        "from": "detected",
        "to": "contained",
        "containment": "revoke_api_key",
    }


def test_without_the_flag_the_incident_stays_detected(api_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(actors["security_officer"])
    response = contain(api_client, incident, api_key)
    assert response.status_code == 200 and response.json()["status"] == "detected"
    assert audit_events("incident.transitioned") == []


def test_past_detected_the_flag_moves_nothing(api_client, actors, incident):
    officer = actors["security_officer"]
    incident = move_to(incident, "remediated", actor=officer)
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(officer)
    response = contain(api_client, incident, api_key, then_contained=True)
    assert response.status_code == 200 and response.json()["status"] == "remediated"
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert len(audit_events("incident.transitioned")) == 3  # the walk only


def test_a_refused_containment_moves_nothing(api_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(actors["security_officer"])
    assert contain(api_client, incident, api_key).status_code == 200
    again = contain(api_client, incident, api_key, then_contained=True)  # already revoked
    assert_error(again, 409, "conflict")
    fresh = Incident.objects.get(pk=incident.pk)
    assert fresh.status == "detected" and fresh.contained_at is None
    assert audit_events("incident.transitioned") == []


def test_a_garbage_flag_is_400(api_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(actors["security_officer"])
    error = assert_error(
        contain(api_client, incident, api_key, then_contained="perhaps"), 400, "invalid_input"
    )
    assert error["details"][0]["path"] == "then_contained"
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None


def test_an_auditor_cannot_contain(api_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    api_client.force_authenticate(actors["auditor"])
    assert_error(
        contain(api_client, incident, api_key, then_contained=True), 403, "permission_denied"
    )
    assert Incident.objects.get(pk=incident.pk).status == "detected"
