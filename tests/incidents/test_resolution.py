"""Closing with a resolution (docs/api.md "Incidents", issue 16): a true positive walks the
phases and needs its post-mortem; a false positive, a duplicate (of another incident) or a
benign incident closes from any open phase with a note and no post-mortem. Every refusal is
400 or 409 and writes nothing; reopening clears the resolution; the database refuses an
incident closed without one."""

from __future__ import annotations

import uuid

import pytest
from django.db import IntegrityError, transaction

from apps.incidents.models import Incident
from apps.incidents.services import incident_transition
from tests.incidents.conftest import (
    INCIDENTS,
    POSTMORTEM,
    assert_error,
    audit_events,
    make_incident,
    move_to,
)

pytestmark = pytest.mark.django_db

OPEN_PHASES = ["detected", "contained", "investigating", "remediated", "recovered"]


def close(client, incident, note="Not what it looked like.", **extra):  # type: ignore[no-untyped-def]
    body = {"to": "closed", "note": note, **extra}
    return client.post(f"{INCIDENTS}/{incident.id}/transition", body, format="json")


def duplicate(client, incident, *, of):  # type: ignore[no-untyped-def]
    """Close `incident` as a duplicate of `of`; the status."""
    return close(client, incident, resolution="duplicate", duplicate_of=str(of.id)).status_code


def unchanged(incident: Incident, status: str = "detected") -> None:
    """Nothing of a refused close was written."""
    fresh = Incident.objects.get(pk=incident.pk)
    assert (fresh.status, fresh.resolution, fresh.duplicate_of_id) == (status, "", None)
    assert fresh.closed_at is None
    assert not fresh.timeline.filter(kind="transition", data__to="closed").exists()
    assert not [
        event
        for event in audit_events("incident.transitioned")
        if event["details"]["to"] == "closed" and event["target"]["id"] == str(incident.id)
    ]


@pytest.fixture
def officer(api_client, actors):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(actors["security_officer"])
    return actors["security_officer"]


# --- what closes from where ---------------------------------------------------------------


@pytest.mark.parametrize("start", OPEN_PHASES)
@pytest.mark.parametrize("resolution", ["false_positive", "benign"])
def test_a_false_positive_or_benign_incident_closes_from_any_open_phase_without_post_mortem(
    api_client, officer, start, resolution
):
    incident = move_to(make_incident(officer), start, actor=officer)
    response = close(api_client, incident, resolution=resolution)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["resolution"], body["duplicate_of"]) == (
        "closed",
        resolution,
        None,
    )
    assert body["phases"]["closed_at"] is not None
    assert body["postmortem"]["complete"] is False  # none was needed
    entry = body["timeline"][-1]
    assert entry["kind"] == "transition" and entry["text"] == "Not what it looked like."
    assert entry["data"] == {
        "from": start,
        "to": "closed",
        "reopen": False,
        "resolution": resolution,
    }
    event = audit_events("incident.transitioned")[-1]
    assert event["details"] == {"from": start, "to": "closed", "resolution": resolution}
    assert event["target"] == {"type": "incident", "id": str(incident.id)}


def test_a_duplicate_closes_naming_the_incident_it_repeats(api_client, officer):
    original = make_incident(officer, title="Leaked key on a paste site")
    incident = make_incident(officer, title="Same key seen again")
    response = close(api_client, incident, resolution="duplicate", duplicate_of=str(original.id))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["resolution"], body["duplicate_of"]) == ("duplicate", str(original.id))
    assert body["timeline"][-1]["data"]["duplicate_of"] == str(original.id)
    assert audit_events("incident.transitioned")[-1]["details"] == {
        "from": "detected",
        "to": "closed",
        "resolution": "duplicate",
        "duplicate_of": str(original.id),
    }
    assert list(original.duplicates.all()) == [Incident.objects.get(pk=incident.pk)]


def test_a_duplicate_of_a_closed_incident_or_of_a_duplicate_is_fine(api_client, officer):
    first = move_to(make_incident(officer, title="first"), "closed", actor=officer)
    second = make_incident(officer, title="second")
    assert duplicate(api_client, second, of=first) == 200
    third = make_incident(officer, title="third")  # a duplicate of a duplicate: a chain
    assert duplicate(api_client, third, of=second) == 200


def test_a_true_positive_still_walks_every_phase(api_client, officer):
    incident = make_incident(officer)
    for resolution in ({}, {"resolution": "true_positive"}):
        error = assert_error(
            close(api_client, incident, postmortem=POSTMORTEM, **resolution),
            409,
            "invalid_transition",
        )
        assert "can only move to contained, not closed" in error["message"]
        assert "false positive, a duplicate or a benign incident" in error["message"]
    unchanged(incident)


def test_closing_a_true_positive_without_a_post_mortem_is_refused_as_before(api_client, officer):
    incident = move_to(make_incident(officer), "recovered", actor=officer)
    error = assert_error(
        close(api_client, incident, resolution="true_positive"), 400, "invalid_input"
    )
    assert error["details"][0]["path"] == "postmortem"
    unchanged(incident, "recovered")
    response = close(api_client, incident, resolution="true_positive", postmortem=POSTMORTEM)
    assert response.status_code == 200 and response.json()["resolution"] == "true_positive"


# --- refusals -----------------------------------------------------------------------------


@pytest.mark.parametrize("resolution", ["resolved", "", None, "TRUE_POSITIVE", 1])
def test_an_unknown_resolution_is_400(api_client, officer, resolution):
    incident = make_incident(officer)
    error = assert_error(close(api_client, incident, resolution=resolution), 400, "invalid_input")
    assert error["details"][0]["path"] == "resolution"
    unchanged(incident)


def test_an_unknown_resolution_is_refused_by_the_service_too(actors):
    officer = actors["security_officer"]
    incident = make_incident(officer)
    with pytest.raises(Exception, match="resolution: must be one of") as refused:
        incident_transition(
            actor=officer, incident=incident, to="closed", note="n", resolution="resolved"
        )
    assert refused.value.status_code == 400
    unchanged(incident)


def test_a_resolution_on_a_move_that_is_not_a_close_is_400(api_client, officer):
    incident = make_incident(officer)
    body = {"to": "contained", "note": "n", "resolution": "false_positive"}
    response = api_client.post(f"{INCIDENTS}/{incident.id}/transition", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "resolution"
    assert Incident.objects.get(pk=incident.pk).status == "detected"


@pytest.mark.parametrize("note", [None, "", "   "])
def test_a_quick_close_without_a_note_is_400(api_client, officer, note):
    incident = make_incident(officer)
    body = {"to": "closed", "resolution": "false_positive"}
    if note is not None:
        body["note"] = note
    response = api_client.post(f"{INCIDENTS}/{incident.id}/transition", body, format="json")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "note"
    unchanged(incident)


def test_a_duplicate_without_the_incident_it_repeats_is_400(api_client, officer):
    incident = make_incident(officer)
    error = assert_error(close(api_client, incident, resolution="duplicate"), 400, "invalid_input")
    assert error["details"][0] == {
        "path": "duplicate_of",
        "message": "a duplicate names the incident it repeats",
    }
    unchanged(incident)


@pytest.mark.parametrize("resolution", ["false_positive", "benign", "true_positive"])
def test_only_a_duplicate_names_another_incident(api_client, officer, resolution):
    other = make_incident(officer, title="other")
    incident = move_to(make_incident(officer), "recovered", actor=officer)
    response = close(
        api_client,
        incident,
        resolution=resolution,
        duplicate_of=str(other.id),
        postmortem=POSTMORTEM,
    )
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "duplicate_of"
    unchanged(incident, "recovered")


def test_a_duplicate_of_an_unknown_incident_is_400(api_client, officer):
    incident = make_incident(officer)
    response = close(api_client, incident, resolution="duplicate", duplicate_of=str(uuid.uuid4()))
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0] == {"path": "duplicate_of", "message": "is not an incident"}
    unchanged(incident)


def test_a_malformed_duplicate_of_is_400(api_client, officer):
    incident = make_incident(officer)
    response = close(api_client, incident, resolution="duplicate", duplicate_of="not-an-id")
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "duplicate_of"
    unchanged(incident)


def test_an_incident_is_not_a_duplicate_of_itself(api_client, officer):
    incident = make_incident(officer)
    response = close(api_client, incident, resolution="duplicate", duplicate_of=str(incident.id))
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0] == {
        "path": "duplicate_of",
        "message": "an incident cannot be a duplicate of itself",
    }
    unchanged(incident)


@pytest.mark.parametrize("length", [1, 3])
def test_a_chain_of_duplicates_never_comes_back_to_the_incident(api_client, officer, length):
    incident = make_incident(officer, title="the original")
    previous = incident
    for hop in range(length):  # each closed as a duplicate of the one before: … → incident
        nxt = make_incident(officer, title=f"repeat {hop}")
        assert duplicate(api_client, nxt, of=previous) == 200
        previous = nxt
    response = close(api_client, incident, resolution="duplicate", duplicate_of=str(previous.id))
    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == "duplicate_of"
    assert "is itself a duplicate of this incident" in error["message"]
    unchanged(incident)


def test_a_closed_incident_cannot_be_closed_again(api_client, officer):
    incident = make_incident(officer)
    assert close(api_client, incident, resolution="false_positive").status_code == 200
    again = close(api_client, incident, resolution="benign")
    error = assert_error(again, 409, "invalid_transition")
    assert "can only move to investigating" in error["message"]
    assert Incident.objects.get(pk=incident.pk).resolution == "false_positive"


@pytest.mark.parametrize("role", ["auditor", "ml_engineer", "api_client"])
def test_who_may_not_close(api_client, actors, role):
    incident = make_incident(actors["security_officer"])
    api_client.force_authenticate(actors[role])
    assert_error(close(api_client, incident, resolution="false_positive"), 403, "permission_denied")
    unchanged(incident)


def test_an_admin_may_close(api_client, actors):
    incident = make_incident(actors["security_officer"])
    api_client.force_authenticate(actors["admin"])
    assert close(api_client, incident, resolution="benign").status_code == 200


# --- reopening, reading, the database's own rules ----------------------------------------


def test_reopening_clears_the_resolution_and_a_true_positive_closes_as_before(api_client, officer):
    original = make_incident(officer, title="original")
    incident = make_incident(officer)
    assert duplicate(api_client, incident, of=original) == 200
    reopened = api_client.post(
        f"{INCIDENTS}/{incident.id}/transition",
        {"to": "investigating", "note": "Not the same key after all."},
        format="json",
    )
    assert reopened.status_code == 200, reopened.content
    body = reopened.json()
    assert (body["status"], body["resolution"], body["duplicate_of"]) == (
        "investigating",
        None,
        None,
    )
    assert body["timeline"][-1]["data"] == {"from": "closed", "to": "investigating", "reopen": True}
    assert not original.duplicates.exists()
    incident = move_to(Incident.objects.get(pk=incident.pk), "closed", actor=officer)
    assert incident.resolution == "true_positive" and incident.duplicate_of is None
    # The timeline keeps both closes with their resolutions.
    closes = incident.timeline.filter(kind="transition", data__to="closed").order_by("created_at")
    assert [e.data["resolution"] for e in closes] == ["duplicate", "true_positive"]


def test_the_api_shows_the_resolution_in_lists_and_filters_by_it(api_client, officer):
    original = make_incident(officer, title="original")
    fp = make_incident(officer, title="fp")
    dup = make_incident(officer, title="dup")
    close(api_client, fp, resolution="false_positive")
    close(api_client, dup, resolution="duplicate", duplicate_of=str(original.id))

    rows = {row["title"]: row for row in api_client.get(INCIDENTS).json()["results"]}
    assert (rows["original"]["resolution"], rows["original"]["duplicate_of"]) == (None, None)
    assert (rows["fp"]["resolution"], rows["fp"]["duplicate_of"]) == ("false_positive", None)
    assert (rows["dup"]["resolution"], rows["dup"]["duplicate_of"]) == (
        "duplicate",
        str(original.id),
    )

    def titles(query: str) -> set[str]:
        return {row["title"] for row in api_client.get(INCIDENTS + query).json()["results"]}

    assert titles("?resolution=false_positive") == {"fp"}
    assert titles("?resolution=duplicate&state=closed") == {"dup"}
    assert titles("?resolution=benign") == set()
    error = assert_error(api_client.get(INCIDENTS + "?resolution=bogus"), 400, "invalid_input")
    assert error["details"][0]["path"] == "resolution"


def test_the_schema_documents_the_resolution(api_client, officer):
    schema = api_client.get("/api/schema", HTTP_ACCEPT="application/json").json()
    schemas = schema["components"]["schemas"]
    transition = schemas["IncidentTransitionRequest"]["properties"]
    enum = transition["resolution"]["allOf"][0]["$ref"].rsplit("/", 1)[1]
    assert schemas[enum]["enum"] == ["true_positive", "false_positive", "duplicate", "benign"]
    assert transition["duplicate_of"]["format"] == "uuid"
    assert "then_contained" in schemas["IncidentContainmentRequest"]["properties"]
    summary = schemas["IncidentSummary"]["properties"]
    assert summary["resolution"]["nullable"] is True
    assert summary["duplicate_of"]["nullable"] is True


def test_the_database_refuses_a_close_without_resolution_and_a_duplicate_of_itself(actors):
    incident = make_incident(actors["security_officer"])
    rows = Incident.objects.filter(pk=incident.pk)
    for change in (
        {"status": "closed"},  # no resolution
        {"resolution": "false_positive"},  # a resolution while open
        {"status": "closed", "resolution": "duplicate"},  # a duplicate of nothing
        {"status": "closed", "resolution": "duplicate", "duplicate_of": incident},  # of itself
    ):
        with pytest.raises(IntegrityError), transaction.atomic():
            rows.update(**change)
    other = make_incident(actors["security_officer"], title="other")
    with pytest.raises(IntegrityError), transaction.atomic():  # a non-duplicate naming one
        rows.update(status="closed", resolution="benign", duplicate_of=other)


# --- under concurrency --------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_incidents_closed_at_once_as_duplicates_in_a_ring_never_make_a_cycle(actors):
    """Eight incidents, each closed at the same moment as a duplicate of the next (the last of
    the first): each check alone would pass; serialised, the one that would close the ring
    is refused and the others stand."""
    from apps.core.errors import ApplicationError
    from tests.incidents.test_detectors_concurrency import THREADS, race

    officer = actors["security_officer"]
    ring = [make_incident(officer, title=f"report {i}") for i in range(THREADS)]

    def close_one(index: int) -> Incident:
        return incident_transition(
            actor=officer,
            incident=ring[index],
            to="closed",
            note="Same thing.",
            resolution="duplicate",
            duplicate_of=ring[(index + 1) % THREADS].id,
        )

    results = race(close_one)
    refused = [r for r in results if isinstance(r, Exception)]
    assert len(refused) == 1, results
    assert isinstance(refused[0], ApplicationError) and refused[0].status_code == 400
    assert "is itself a duplicate of this incident" in str(refused[0])
    edges = dict(Incident.objects.filter(resolution="duplicate").values_list("pk", "duplicate_of"))
    assert len(edges) == THREADS - 1
    for start in edges:  # following any chain ends at the one incident still open
        node, hops = start, 0
        while node in edges:
            node, hops = edges[node], hops + 1
            assert hops <= THREADS
        assert Incident.objects.get(pk=node).status == "detected"
