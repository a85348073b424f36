"""The workflow through `POST /api/v1/incidents/{id}/transition`: detected → contained →
investigating → remediated → recovered → closed, closed → investigating; every other pair is
409 invalid_transition; a note always, a post-mortem to close."""

from __future__ import annotations

import itertools
import uuid

import pytest

from apps.audit.subjects import pseudonym_for
from apps.incidents.models import Incident, TimelineEntry
from apps.incidents.workflow import PHASES, TRANSITIONS
from tests.incidents.conftest import (
    INCIDENTS,
    POSTMORTEM,
    assert_error,
    audit_events,
    make_incident,
    move_to,
)

pytestmark = pytest.mark.django_db

ALLOWED = [
    ("detected", "contained"),
    ("contained", "investigating"),
    ("investigating", "remediated"),
    ("remediated", "recovered"),
    ("recovered", "closed"),
    ("closed", "investigating"),
]
DISALLOWED = [pair for pair in itertools.product(PHASES, PHASES) if pair not in ALLOWED]


def transition(client, incident, to, note="because", **extra):  # type: ignore[no-untyped-def]
    body = {"to": to, "note": note, **extra}
    return client.post(f"{INCIDENTS}/{incident.id}/transition", body, format="json")


def test_the_allowed_transitions_are_exactly_the_workflow():
    assert set(TRANSITIONS.items()) == set(ALLOWED)
    assert len(DISALLOWED) == 36 - 6


@pytest.mark.parametrize(("start", "to"), ALLOWED)
def test_each_allowed_transition(api_client, actors, start, to):
    officer = actors["security_officer"]
    incident = move_to(make_incident(officer), start, actor=officer)
    entries_before = incident.timeline.count()
    api_client.force_authenticate(officer)
    extra = {"postmortem": POSTMORTEM} if to == "closed" else {}
    response = transition(api_client, incident, to, note=f"{start} to {to}", **extra)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == to
    assert body["phases"][f"{to}_at"] is not None
    # The transition is on the timeline (after a post-mortem entry when closing) and audited.
    # A close records its resolution (true_positive, the default) on both.
    resolved = {"resolution": "true_positive"} if to == "closed" else {}
    entry = body["timeline"][-1]
    assert entry["kind"] == "transition" and entry["text"] == f"{start} to {to}"
    assert entry["data"] == {"from": start, "to": to, "reopen": start == "closed", **resolved}
    assert entry["actor"]["username"] == officer.username
    assert len(body["timeline"]) == entries_before + (2 if to == "closed" else 1)
    event = audit_events("incident.transitioned")[-1]
    assert event["details"] == {"from": start, "to": to, **resolved}
    assert event["target"] == {"type": "incident", "id": str(incident.id)}
    assert event["actor"] == {"type": "user", "ref": pseudonym_for(officer)}


@pytest.mark.parametrize(("start", "to"), DISALLOWED)
def test_each_disallowed_transition_is_409(api_client, actors, start, to):
    officer = actors["security_officer"]
    incident = move_to(make_incident(officer), start, actor=officer)
    updated_at = Incident.objects.get(pk=incident.pk).updated_at
    entries = incident.timeline.count()
    events = len(audit_events("incident.transitioned"))
    api_client.force_authenticate(officer)
    error = assert_error(
        transition(api_client, incident, to, postmortem=POSTMORTEM), 409, "invalid_transition"
    )
    assert f"can only move to {TRANSITIONS[start]}" in error["message"]
    fresh = Incident.objects.get(pk=incident.pk)
    assert fresh.status == start and fresh.updated_at == updated_at
    assert fresh.timeline.count() == entries
    assert len(audit_events("incident.transitioned")) == events


@pytest.mark.parametrize("note", [None, "", "   "])
def test_a_transition_without_a_note_is_400(api_client, actors, incident, note):
    api_client.force_authenticate(actors["security_officer"])
    body = {"to": "contained"} if note is None else {"to": "contained", "note": note}
    response = api_client.post(f"{INCIDENTS}/{incident.id}/transition", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "note"
    assert Incident.objects.get(pk=incident.pk).status == "detected"
    assert audit_events("incident.transitioned") == []


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"note": "n"}, "to"),
        ({"to": "resolved", "note": "n"}, "to"),
        ({"to": None, "note": "n"}, "to"),
        ({"to": "contained", "note": "x" * 10_001}, "note"),
        ({"to": "contained", "note": "n", "postmortem": "fine"}, "postmortem/non_field_errors"),
    ],
)
def test_bad_transition_input_is_400(api_client, actors, incident, body, path):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(f"{INCIDENTS}/{incident.id}/transition", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] in {path, path.removesuffix("/non_field_errors")}
    assert Incident.objects.get(pk=incident.pk).status == "detected"


def test_closing_needs_a_post_mortem_then_succeeds_with_one(api_client, actors):
    officer = actors["security_officer"]
    incident = move_to(make_incident(officer), "recovered", actor=officer)
    api_client.force_authenticate(officer)

    error = assert_error(transition(api_client, incident, "closed"), 400, "invalid_input")
    assert error["details"][0]["path"] == "postmortem"
    # An incomplete one is refused too, and nothing of it is kept.
    partial = {"root_cause": "A leaked key.", "impact": "", "lessons": "Scan for keys."}
    response = transition(api_client, incident, "closed", postmortem=partial)
    assert_error(response, 400, "invalid_input")
    fresh = Incident.objects.get(pk=incident.pk)
    assert fresh.status == "recovered" and fresh.root_cause == "" and fresh.closed_at is None
    assert not fresh.timeline.filter(kind="postmortem").exists()

    response = transition(api_client, incident, "closed", note="done", postmortem=POSTMORTEM)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "closed" and body["phases"]["closed_at"]
    assert body["postmortem"]["root_cause"] == POSTMORTEM["root_cause"]
    assert body["postmortem"]["complete"] is True
    assert [entry["kind"] for entry in body["timeline"][-2:]] == ["postmortem", "transition"]


def test_closing_with_a_post_mortem_saved_before(api_client, actors):
    officer = actors["security_officer"]
    incident = move_to(make_incident(officer), "recovered", actor=officer)
    api_client.force_authenticate(officer)
    saved = api_client.put(f"{INCIDENTS}/{incident.id}/postmortem", POSTMORTEM, format="json")
    assert saved.status_code == 200, saved.content
    response = transition(api_client, incident, "closed")
    assert response.status_code == 200 and response.json()["status"] == "closed"


def test_a_post_mortem_with_action_items_closes_the_incident(api_client, actors):
    officer, engineer = actors["security_officer"], actors["ml_engineer"]
    incident = move_to(make_incident(officer), "recovered", actor=officer)
    api_client.force_authenticate(officer)
    postmortem = {
        **POSTMORTEM,
        "actions": [
            {"description": "Add a pre-commit key scanner", "owner": engineer.username,
             "due_date": "2030-01-31"},
            {"description": "Rotate every key", "due_date": "2030-01-15"},
        ],
    }  # fmt: skip
    response = transition(api_client, incident, "closed", postmortem=postmortem)
    assert response.status_code == 200, response.content
    actions = response.json()["postmortem"]["actions"]
    assert [(a["description"], a["owner"], a["due_date"]) for a in actions] == [
        ("Rotate every key", None, "2030-01-15"),
        ("Add a pre-commit key scanner", engineer.username, "2030-01-31"),
    ]


def test_reopening_a_closed_incident(api_client, actors):
    officer = actors["security_officer"]
    incident = move_to(make_incident(officer), "closed", actor=officer)
    closed_at = Incident.objects.get(pk=incident.pk).closed_at
    api_client.force_authenticate(officer)
    response = transition(api_client, incident, "investigating", note="It came back.")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "investigating" and body["reopened_count"] == 1
    assert body["next_status"] == "remediated"
    assert body["timeline"][-1]["data"]["reopen"] is True
    # The post-mortem stays; it is closed again through the same path.
    assert body["postmortem"]["complete"] is True
    incident = move_to(Incident.objects.get(pk=incident.pk), "closed", actor=officer)
    assert incident.reopened_count == 1 and incident.closed_at > closed_at


@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 200), ("security_officer", 200), ("auditor", 403), ("ml_engineer", 403),
     ("api_client", 403)],
)  # fmt: skip
def test_who_may_move_an_incident(api_client, actors, incident, role, expected):
    api_client.force_authenticate(actors[role])
    response = transition(api_client, incident, "contained")
    assert response.status_code == expected
    if expected == 403:
        assert_error(response, 403, "permission_denied")
        assert Incident.objects.get(pk=incident.pk).status == "detected"


def test_moving_an_unknown_incident_is_404(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(
        f"{INCIDENTS}/{uuid.uuid4()}/transition", {"to": "contained", "note": "n"}, format="json"
    )
    assert_error(response, 404, "not_found")


def test_every_step_is_recorded_in_order(actors):
    officer = actors["security_officer"]
    incident = move_to(make_incident(officer), "closed", actor=officer)
    kinds = list(
        TimelineEntry.objects.filter(incident=incident)
        .order_by("created_at")
        .values_list("kind", flat=True)
    )
    assert kinds == ["created", *(["transition"] * 4), "postmortem", "transition"]
    moves = [event["details"] for event in audit_events("incident.transitioned")]
    assert moves == [{"from": a, "to": b} for a, b in ALLOWED[:4]] + [
        {"from": "recovered", "to": "closed", "resolution": "true_positive"}
    ]
