"""`GET/POST /api/v1/incidents` and `GET /api/v1/incidents/{id}`: who may, what comes back,
every refusal."""

from __future__ import annotations

import uuid

import pytest

from apps.audit.services import pseudonym_erase
from apps.audit.subjects import pseudonym_for
from apps.incidents.models import Incident
from apps.incidents.services import incident_assign, incident_note_add
from tests.accounts.factories import UserFactory
from tests.incidents.conftest import INCIDENTS, assert_error, audit_events, make_incident, move_to

pytestmark = pytest.mark.django_db

READERS = ["admin", "security_officer", "auditor"]
WRITERS = ["admin", "security_officer"]
REFUSED = ["ml_engineer", "api_client", "key_owner", "outsider"]


# --- Who may ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "expected"),
    [*((role, 200) for role in READERS), *((role, 403) for role in REFUSED)],
)
def test_who_may_list_incidents(api_client, actors, incident, role, expected):
    api_client.force_authenticate(actors[role])
    response = api_client.get(INCIDENTS)
    assert response.status_code == expected
    if expected == 403:
        assert_error(response, 403, "permission_denied")


@pytest.mark.parametrize(
    ("role", "expected"),
    [*((role, 200) for role in READERS), *((role, 403) for role in REFUSED)],
)
def test_who_may_read_an_incident(api_client, actors, incident, role, expected):
    api_client.force_authenticate(actors[role])
    response = api_client.get(f"{INCIDENTS}/{incident.id}")
    assert response.status_code == expected


@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 201), ("security_officer", 201), ("auditor", 403), *((r, 403) for r in REFUSED)],
)
def test_who_may_open_an_incident(api_client, actors, role, expected):
    api_client.force_authenticate(actors[role])
    response = api_client.post(
        INCIDENTS, {"title": "Leaked key", "severity": "sev2"}, format="json"
    )
    assert response.status_code == expected
    if expected == 403:
        assert_error(response, 403, "permission_denied")
        assert not Incident.objects.exists()


def test_anonymous_callers_are_refused(api_client, incident):
    assert_error(api_client.get(INCIDENTS), 401, "authentication_required")
    assert_error(api_client.get(f"{INCIDENTS}/{incident.id}"), 401, "authentication_required")
    response = api_client.post(INCIDENTS, {"title": "x", "severity": "sev1"}, format="json")
    assert_error(response, 401, "authentication_required")


def test_an_api_key_authenticates_nobody_here(api_client, actors, incident):
    from tests.apikeys.factories import ApiKeyFactory

    _api_key, key = ApiKeyFactory.issue(owner=actors["security_officer"])
    response = api_client.get(INCIDENTS, HTTP_X_API_KEY=key)
    assert_error(response, 401, "authentication_required")


# --- Open ------------------------------------------------------------------------------------


def test_opening_an_incident_starts_it_detected_and_audits_it(api_client, actors):
    officer = actors["security_officer"]
    api_client.force_authenticate(officer)
    response = api_client.post(
        INCIDENTS,
        {
            "title": "  Leaked key  ",
            "severity": "sev2",
            "description": "Found in a public gist.",
            "assignee": officer.username,
        },
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "detected" and body["next_status"] == "contained"
    assert body["title"] == "Leaked key" and body["severity"] == "sev2"
    assert body["description"] == "Found in a public gist."
    assert body["assignee"] == officer.username and body["reported_by"] == officer.username
    assert body["source"] == "person" and body["detector"] == ""
    assert body["phases"]["detected_at"] and body["phases"]["contained_at"] is None
    assert body["durations"] == {
        "time_to_contain": None,
        "time_to_recover": None,
        "time_to_close": None,
    }
    assert body["postmortem"]["complete"] is False and body["postmortem"]["actions"] == []
    [created] = body["timeline"]
    assert created["kind"] == "created" and created["text"] == "Leaked key"
    assert created["actor"] == {
        "type": "user",
        "ref": pseudonym_for(officer),
        "username": officer.username,
    }
    [event] = audit_events("incident.created")
    assert event["target"] == {"type": "incident", "id": body["id"]}
    assert event["actor"] == {"type": "user", "ref": pseudonym_for(officer)}
    assert event["details"] == {"severity": "sev2", "source": "person"}


def test_the_audit_trail_never_names_the_people(api_client, actors):
    officer = actors["security_officer"]
    api_client.force_authenticate(officer)
    response = api_client.post(
        INCIDENTS,
        {"title": "t", "severity": "sev3", "assignee": actors["admin"].username},
        format="json",
    )
    incident = Incident.objects.get(pk=response.json()["id"])
    incident_assign(actor=officer, incident=incident, assignee=officer)
    text = "\n".join(str(event) for event in audit_events())
    assert officer.username not in text and actors["admin"].username not in text


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"severity": "sev2"}, "title"),
        ({"title": "", "severity": "sev2"}, "title"),
        ({"title": "   ", "severity": "sev2"}, "title"),
        ({"title": "x" * 201, "severity": "sev2"}, "title"),
        ({"title": "t"}, "severity"),
        ({"title": "t", "severity": "sev5"}, "severity"),
        ({"title": "t", "severity": "SEV1"}, "severity"),
        ({"title": "t", "severity": 1}, "severity"),
        ({"title": "t", "severity": "sev1", "description": "x" * 10_001}, "description"),
        ({"title": "t", "severity": "sev1", "assignee": "nobody-here"}, "assignee"),
        ({"title": "t", "severity": "sev1", "assignee": ["x"]}, "assignee"),
        ({"title": ["t"], "severity": "sev1"}, "title"),
    ],
)
def test_bad_input_is_400_naming_the_field(api_client, actors, body, path):
    api_client.force_authenticate(actors["security_officer"])
    error = assert_error(api_client.post(INCIDENTS, body, format="json"), 400, "invalid_input")
    assert error["details"][0]["path"] == path
    assert error["message"].startswith(f"{path}:")
    assert not Incident.objects.exists()
    assert audit_events("incident.created") == []


@pytest.mark.parametrize("role", ["ml_engineer", "auditor"])
def test_the_assignee_must_be_able_to_work_the_incident(api_client, actors, role):
    api_client.force_authenticate(actors["security_officer"])
    body = {"title": "t", "severity": "sev1", "assignee": actors[role].username}
    error = assert_error(api_client.post(INCIDENTS, body, format="json"), 400, "invalid_input")
    assert error["details"] == [
        {"path": "assignee", "message": "must be an active security officer or admin"}
    ]
    assert not Incident.objects.exists()


def test_a_deactivated_officer_cannot_be_assigned(api_client, actors):
    retired = UserFactory(roles=["security_officer"], is_active=False)
    api_client.force_authenticate(actors["security_officer"])
    body = {"title": "t", "severity": "sev1", "assignee": retired.username}
    assert_error(api_client.post(INCIDENTS, body, format="json"), 400, "invalid_input")


def test_malformed_and_non_object_bodies_are_400(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(
        INCIDENTS,
        '{"title": "a", "title": "b", "severity": "sev1"}',
        content_type="application/json",
    )
    assert_error(response, 400, "malformed_json")
    response = api_client.post(INCIDENTS, "[1, 2]", content_type="application/json")
    assert_error(response, 400, "invalid_input")
    response = api_client.post(INCIDENTS, "title=t", content_type="text/plain")
    assert_error(response, 415, "unsupported_media_type")
    assert not Incident.objects.exists()


def test_a_trailing_slash_is_404_not_a_redirect(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    response = api_client.post(f"{INCIDENTS}/", {"title": "t", "severity": "sev1"}, format="json")
    assert response.status_code == 404
    assert not Incident.objects.exists()


# --- List ------------------------------------------------------------------------------------


def test_the_list_filters_by_status_and_severity(api_client, actors):
    officer = actors["security_officer"]
    sev1 = make_incident(officer, title="one", severity="sev1")
    sev3 = make_incident(officer, title="three", severity="sev3")
    contained = move_to(
        make_incident(officer, title="c", severity="sev3"), "contained", actor=officer
    )
    api_client.force_authenticate(actors["auditor"])

    def ids(query: str) -> set[str]:
        response = api_client.get(f"{INCIDENTS}{query}")
        assert response.status_code == 200, response.content
        assert set(response.json()) == {"results", "next"}
        return {item["id"] for item in response.json()["results"]}

    assert ids("") == {str(sev1.id), str(sev3.id), str(contained.id)}
    assert ids("?severity=sev1") == {str(sev1.id)}
    assert ids("?severity=sev3") == {str(sev3.id), str(contained.id)}
    assert ids("?status=contained") == {str(contained.id)}
    assert ids("?status=detected&severity=sev3") == {str(sev3.id)}
    assert ids("?status=closed") == set()
    assert ids("?state=open") == {str(sev1.id), str(sev3.id), str(contained.id)}
    item = api_client.get(f"{INCIDENTS}?severity=sev1").json()["results"][0]
    assert item["title"] == "one" and item["status"] == "detected" and "timeline" not in item


@pytest.mark.parametrize(
    ("query", "path"),
    [("status=open", "status"), ("severity=sev9", "severity"), ("state=maybe", "state")],
)
def test_an_unknown_filter_value_is_400(api_client, actors, incident, query, path):
    api_client.force_authenticate(actors["auditor"])
    error = assert_error(api_client.get(f"{INCIDENTS}?{query}"), 400, "invalid_input")
    assert error["details"][0]["path"] == path


def test_the_list_is_cursor_paginated(api_client, actors):
    officer = actors["security_officer"]
    opened = {str(make_incident(officer, title=f"i{n}").id) for n in range(5)}
    api_client.force_authenticate(officer)
    seen: list[str] = []
    response = api_client.get(f"{INCIDENTS}?limit=2")
    while True:
        body = response.json()
        seen += [item["id"] for item in body["results"]]
        if body["next"] is None:
            break
        response = api_client.get(INCIDENTS, {"limit": 2, "cursor": body["next"]})
    assert len(seen) == 5 and set(seen) == opened
    assert_error(api_client.get(f"{INCIDENTS}?cursor=bogus"), 400, "invalid_input")


# --- Detail ----------------------------------------------------------------------------------


def test_an_unknown_or_malformed_id_is_404(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    assert_error(api_client.get(f"{INCIDENTS}/{uuid.uuid4()}"), 404, "not_found")
    assert api_client.get(f"{INCIDENTS}/not-a-uuid").status_code == 404


def test_the_detail_shows_the_timeline_with_names_while_they_exist(api_client, actors):
    officer, admin = actors["security_officer"], actors["admin"]
    incident = make_incident(officer)
    incident_note_add(actor=admin, incident=incident, text="Looking into it.")
    incident_assign(actor=officer, incident=incident, assignee=admin)
    api_client.force_authenticate(actors["auditor"])
    timeline = api_client.get(f"{INCIDENTS}/{incident.id}").json()["timeline"]
    assert [entry["kind"] for entry in timeline] == ["created", "note", "assignment"]
    note, assignment = timeline[1], timeline[2]
    assert note["text"] == "Looking into it." and note["actor"]["username"] == admin.username
    assert assignment["data"]["assignee"] == pseudonym_for(admin)
    assert assignment["data"]["assignee_username"] == admin.username

    # An erased person stays on the timeline as the pseudonym only.
    pseudonym = pseudonym_for(admin)
    pseudonym_erase(user_id=admin.pk)
    timeline = api_client.get(f"{INCIDENTS}/{incident.id}").json()["timeline"]
    assert timeline[1]["actor"] == {"type": "user", "ref": pseudonym, "username": None}
    assert timeline[2]["data"]["assignee_username"] is None


def test_phase_times_and_durations_follow_the_workflow(api_client, actors):
    officer = actors["security_officer"]
    incident = move_to(make_incident(officer), "closed", actor=officer)
    api_client.force_authenticate(officer)
    body = api_client.get(f"{INCIDENTS}/{incident.id}").json()
    assert body["status"] == "closed" and body["next_status"] == "investigating"
    assert all(body["phases"][field] for field in body["phases"])
    durations = body["durations"]
    assert 0 <= durations["time_to_contain"] <= durations["time_to_recover"]
    assert durations["time_to_recover"] <= durations["time_to_close"]
    assert body["postmortem"]["complete"] is True
