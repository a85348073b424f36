"""`POST .../notes`, `POST .../assign` and `PUT .../postmortem` (the last two are additions to
docs/api.md): who may, what is recorded, every refusal."""

from __future__ import annotations

import uuid

import pytest

from apps.audit.subjects import pseudonym_for
from apps.incidents.models import ActionItem, Incident
from tests.incidents.conftest import INCIDENTS, POSTMORTEM, assert_error, audit_events

pytestmark = pytest.mark.django_db

ROLES = [
    ("admin", True),
    ("security_officer", True),
    ("auditor", False),
    ("ml_engineer", False),
    ("api_client", False),
]


# --- Notes -----------------------------------------------------------------------------------


def test_a_note_goes_on_the_timeline_and_is_audited(api_client, actors, incident):
    admin = actors["admin"]
    api_client.force_authenticate(admin)
    response = api_client.post(
        f"{INCIDENTS}/{incident.id}/notes", {"text": "  Key found in a gist.  "}, format="json"
    )
    assert response.status_code == 201, response.content
    entry = response.json()
    assert entry["kind"] == "note" and entry["text"] == "Key found in a gist."
    assert entry["actor"] == {
        "type": "user",
        "ref": pseudonym_for(admin),
        "username": admin.username,
    }
    timeline = api_client.get(f"{INCIDENTS}/{incident.id}").json()["timeline"]
    assert timeline[-1]["id"] == entry["id"]
    [event] = audit_events("incident.note_added")
    assert event["target"] == {"type": "incident", "id": str(incident.id)}
    assert "gist" not in str(event)  # the note's text stays on the incident


@pytest.mark.parametrize(("role", "allowed"), ROLES)
def test_who_may_add_a_note(api_client, actors, incident, role, allowed):
    api_client.force_authenticate(actors[role])
    response = api_client.post(f"{INCIDENTS}/{incident.id}/notes", {"text": "hi"}, format="json")
    if allowed:
        assert response.status_code == 201
    else:
        assert_error(response, 403, "permission_denied")
        assert not incident.timeline.filter(kind="note").exists()


@pytest.mark.parametrize(
    "body", [{}, {"text": ""}, {"text": "  "}, {"text": None}, {"text": "x" * 10_001}]
)
def test_a_bad_note_is_400(api_client, actors, incident, body):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(f"{INCIDENTS}/{incident.id}/notes", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "text"
    assert not incident.timeline.filter(kind="note").exists()


def test_a_note_on_an_unknown_incident_is_404(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(f"{INCIDENTS}/{uuid.uuid4()}/notes", {"text": "x"}, format="json")
    assert_error(response, 404, "not_found")


# --- Assignment ------------------------------------------------------------------------------


def test_assigning_and_unassigning(api_client, actors, incident):
    officer, admin = actors["security_officer"], actors["admin"]
    api_client.force_authenticate(officer)
    url = f"{INCIDENTS}/{incident.id}/assign"
    response = api_client.post(url, {"assignee": admin.username}, format="json")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["assignee"] == admin.username
    assert body["timeline"][-1]["data"] == {
        "assignee": pseudonym_for(admin),
        "assignee_username": admin.username,
    }
    response = api_client.post(url, {"assignee": None}, format="json")
    assert response.status_code == 200 and response.json()["assignee"] is None
    assert [e["details"] for e in audit_events("incident.assigned")] == [
        {"assignee": pseudonym_for(admin)},
        {"assignee": None},
    ]


@pytest.mark.parametrize(("role", "allowed"), ROLES)
def test_who_may_assign(api_client, actors, incident, role, allowed):
    api_client.force_authenticate(actors[role])
    body = {"assignee": actors["security_officer"].username}
    response = api_client.post(f"{INCIDENTS}/{incident.id}/assign", body, format="json")
    if allowed:
        assert response.status_code == 200
    else:
        assert_error(response, 403, "permission_denied")
        assert Incident.objects.get(pk=incident.pk).assignee is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, None),
        ({"assignee": "nobody-here"}, None),
        ({"assignee": 7}, None),
        ({"assignee": "ML"}, "must be an active security officer or admin"),
    ],
)
def test_a_bad_assignee_is_400(api_client, actors, incident, body, message):
    if body.get("assignee") == "ML":
        body = {"assignee": actors["ml_engineer"].username}
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(f"{INCIDENTS}/{incident.id}/assign", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "assignee"
    if message:
        assert error["details"][0]["message"] == message
    assert Incident.objects.get(pk=incident.pk).assignee is None
    assert audit_events("incident.assigned") == []


def test_assigning_an_unknown_incident_is_404(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(
        f"{INCIDENTS}/{uuid.uuid4()}/assign", {"assignee": None}, format="json"
    )
    assert_error(response, 404, "not_found")


# --- Post-mortem -----------------------------------------------------------------------------


def test_saving_a_draft_post_mortem_at_any_phase(api_client, actors, incident):
    officer, engineer = actors["security_officer"], actors["ml_engineer"]
    api_client.force_authenticate(officer)
    url = f"{INCIDENTS}/{incident.id}/postmortem"
    draft = {
        "root_cause": "Unknown yet.",
        "impact": "",
        "lessons": "",
        "actions": [
            {"description": "Audit key usage", "owner": engineer.username, "due_date": "2030-02-01"}
        ],
    }
    response = api_client.put(url, draft, format="json")
    assert response.status_code == 200, response.content
    postmortem = response.json()["postmortem"]
    assert postmortem["root_cause"] == "Unknown yet." and postmortem["complete"] is False
    assert [a["owner"] for a in postmortem["actions"]] == [engineer.username]
    assert response.json()["status"] == "detected"

    # Without `actions` the items stay; with them they are replaced.
    response = api_client.put(url, {**POSTMORTEM, "actions": None}, format="json")
    assert_error(response, 400, "invalid_input")
    complete = {k: v for k, v in POSTMORTEM.items() if k != "actions"}
    response = api_client.put(url, complete, format="json")
    assert response.json()["postmortem"]["complete"] is True
    assert len(response.json()["postmortem"]["actions"]) == 1
    response = api_client.put(url, {**complete, "actions": []}, format="json")
    assert response.json()["postmortem"]["actions"] == []
    assert [e["details"] for e in audit_events("incident.postmortem_saved")] == [
        {"complete": False},
        {"complete": True},
        {"complete": True},
    ]


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"impact": "i", "lessons": "l"}, "root_cause"),
        ({**POSTMORTEM, "root_cause": ["a", "b"]}, "root_cause"),
        ({**POSTMORTEM, "lessons": "x" * 10_001}, "lessons"),
        ({**POSTMORTEM, "actions": "all of them"}, "actions"),
        ({**POSTMORTEM, "actions": [{"due_date": "2030-01-01"}]}, "actions/0/description"),
        ({**POSTMORTEM, "actions": [{"description": "d"}]}, "actions/0/due_date"),
        (
            {**POSTMORTEM, "actions": [{"description": "d", "due_date": "next week"}]},
            "actions/0/due_date",
        ),
        (
            {**POSTMORTEM, "actions": [{"description": "d", "due_date": "2030-01-01",
                                        "owner": "nobody-here"}]},
            "actions/0/owner",
        ),
        ({**POSTMORTEM, "actions": [{"description": "d", "due_date": "2030-01-01"}] * 51},
         "actions"),
    ],
)  # fmt: skip
def test_a_bad_post_mortem_is_400_naming_the_field(api_client, actors, incident, body, path):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.put(f"{INCIDENTS}/{incident.id}/postmortem", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == path
    fresh = Incident.objects.get(pk=incident.pk)
    assert fresh.root_cause == "" and not ActionItem.objects.exists()
    assert audit_events("incident.postmortem_saved") == []


@pytest.mark.parametrize(("role", "allowed"), ROLES)
def test_who_may_write_the_post_mortem(api_client, actors, incident, role, allowed):
    api_client.force_authenticate(actors[role])
    response = api_client.put(f"{INCIDENTS}/{incident.id}/postmortem", POSTMORTEM, format="json")
    if allowed:
        assert response.status_code == 200
    else:
        assert_error(response, 403, "permission_denied")
        assert Incident.objects.get(pk=incident.pk).root_cause == ""


def test_the_post_mortem_of_an_unknown_incident_is_404(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.put(f"{INCIDENTS}/{uuid.uuid4()}/postmortem", POSTMORTEM, format="json")
    assert_error(response, 404, "not_found")


def test_other_methods_are_405(api_client, actors, incident):
    api_client.force_authenticate(actors["security_officer"])
    assert_error(api_client.get(f"{INCIDENTS}/{incident.id}/postmortem"), 405, "method_not_allowed")
    assert_error(api_client.delete(f"{INCIDENTS}/{incident.id}"), 405, "method_not_allowed")
    assert_error(api_client.get(f"{INCIDENTS}/{incident.id}/notes"), 405, "method_not_allowed")
