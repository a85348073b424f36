"""Incident report downloads: a PDF (read back with pypdf) and JSON, each with the timeline and
the phase durations, as attachments; readers only."""

from __future__ import annotations

import io
import json
import re
from datetime import timedelta
from typing import Any

import pytest
from pypdf import PdfReader

from apps.incidents.models import Incident
from apps.incidents.reports import format_duration
from apps.incidents.services import incident_note_add, incident_transition
from tests.incidents.conftest import POSTMORTEM, move_to

pytestmark = pytest.mark.django_db


@pytest.fixture
def closed(actors: dict[str, Any], incident: Incident) -> Incident:
    """The incident walked to `closed`, with a note and an action item; its phases spread
    over known durations (contained after 12 minutes, recovered after 3 h 5 min)."""
    officer = actors["security_officer"]
    incident_note_add(actor=officer, incident=incident, text="Key seen on a paste site.")
    incident = move_to(incident, "recovered", actor=officer)
    incident = incident_transition(
        actor=officer,
        incident=incident,
        to="closed",
        note="moving to closed",
        postmortem={
            **POSTMORTEM,
            "actions": [
                {
                    "description": "Scan pushes for secrets",
                    "owner": actors["admin"].username,
                    "due_date": "2030-03-01",
                }
            ],
        },
    )
    start = incident.detected_at
    Incident.objects.filter(pk=incident.pk).update(
        contained_at=start + timedelta(minutes=12),
        recovered_at=start + timedelta(hours=3, minutes=5),
        closed_at=start + timedelta(days=2, hours=4),
    )
    return Incident.objects.get(pk=incident.pk)


def test_the_pdf_report_is_a_download_with_the_title_timeline_and_durations(officer_client, closed):
    response = officer_client.get(f"/incidents/{closed.id}/report.pdf")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert re.fullmatch(
        r'attachment; filename="incident-[0-9a-f]{8}-\d{8}\.pdf"', response["Content-Disposition"]
    )
    reader = PdfReader(io.BytesIO(response.content))
    text = re.sub(r"\s+", " ", "\n".join(page.extract_text() for page in reader.pages))
    assert "Incident report: Suspicious predictions" in text
    assert reader.metadata.title == "SEV2 Suspicious predictions"
    # The timeline: the note and every transition's note.
    assert "Key seen on a paste site." in text
    for phase in ("contained", "investigating", "remediated", "recovered", "closed"):
        assert f"moving to {phase}" in text
    # The phase durations.
    assert "Time to contain 12 min" in text
    assert "Time to recover 3 h 05 min" in text
    assert "Time to close 2 d 4 h" in text
    # The post-mortem and its action items.
    assert "A leaked key in a public repository." in text
    assert "Scan pushes for secrets" in text


def test_the_json_report_has_the_incident_timeline_durations_and_post_mortem(
    auditor_client, actors, closed
):
    response = auditor_client.get(f"/incidents/{closed.id}/report.json")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith('attachment; filename="incident-')
    report = json.loads(response.content)
    assert set(report) == {
        "report",
        "incident",
        "phase_durations",
        "timeline",
        "linked_resources",
        "postmortem",
    }
    assert report["incident"]["id"] == str(closed.id)
    assert report["incident"]["status"] == "closed"
    assert set(report["incident"]["phases"]) == {
        "detected",
        "contained",
        "investigating",
        "remediated",
        "recovered",
        "closed",
    }
    assert report["phase_durations"]["time_to_contain"] == {"seconds": 720.0, "text": "12 min"}
    assert report["phase_durations"]["time_to_close"]["seconds"] == 2 * 86400 + 4 * 3600
    kinds = [entry["kind"] for entry in report["timeline"]]
    assert kinds[0] == "created" and kinds.count("transition") == 5 and "note" in kinds
    note = next(entry for entry in report["timeline"] if entry["kind"] == "note")
    assert note["text"] == "Key seen on a paste site."
    assert note["actor"]["type"] == "user"
    assert note["actor"]["name"] == actors["security_officer"].username
    assert note["actor"]["ref"] != note["actor"]["name"]  # the pseudonym, and the name
    assert report["postmortem"]["complete"] is True
    assert report["postmortem"]["action_items"] == [
        {
            "description": "Scan pushes for secrets",
            "owner": actors["admin"].username,
            "due_date": "2030-03-01",
            "done": False,
        }
    ]


def test_an_open_incident_reports_durations_not_reached_yet_as_null(officer_client, incident):
    report = officer_client.get(f"/incidents/{incident.id}/report.json").json()
    assert report["phase_durations"] == {
        "time_to_contain": None,
        "time_to_recover": None,
        "time_to_close": None,
    }
    pdf = officer_client.get(f"/incidents/{incident.id}/report.pdf")
    text = PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text()
    assert "Time to contain" in text and "—" in text


def test_user_text_cannot_inject_pdf_markup(officer_client, actors):
    from tests.incidents.conftest import make_incident

    incident = make_incident(actors["security_officer"], title="<b>bold</b> & <font size=40>x")
    response = officer_client.get(f"/incidents/{incident.id}/report.pdf")
    assert response.status_code == 200
    text = PdfReader(io.BytesIO(response.content)).pages[0].extract_text()
    assert "<b>bold</b> & <font size=40>x" in text


@pytest.mark.parametrize("role", ["api_client", "ml_engineer"])
def test_reports_are_for_readers_only(client, actors, incident, role):
    client.force_login(actors[role])
    for ext in ("pdf", "json"):
        assert client.get(f"/incidents/{incident.id}/report.{ext}").status_code == 403


@pytest.mark.parametrize(
    ("delta", "text"),
    [
        (None, "—"),
        (timedelta(seconds=42), "42 s"),
        (timedelta(minutes=59, seconds=59), "59 min"),
        (timedelta(hours=1, minutes=2), "1 h 02 min"),
        (timedelta(days=3, hours=1), "3 d 1 h"),
    ],
)
def test_durations_read_as_people_say_them(delta, text):
    assert format_duration(delta) == text
