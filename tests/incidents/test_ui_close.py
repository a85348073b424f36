"""The incident page's "Close as false positive / duplicate" form (a confirmation page, then the
service), the resolution shown on the page, the list (with its filter), the printable
post-mortem and the reports; the containment confirmation that also moves a detected incident
to Contained. Refusals are pages with their status; auditors are refused."""

from __future__ import annotations

import io
import json
import re
import uuid
from typing import Any

import pytest
from pypdf import PdfReader

from apps.apikeys.models import ApiKey
from apps.incidents.models import Incident
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import audit_events, make_incident, move_to

pytestmark = pytest.mark.django_db


def url(incident: Incident, action: str = "") -> str:
    return f"/incidents/{incident.id}" + (f"/{action}" if action else "")


def text_of(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def fresh(incident: Incident) -> Incident:
    return Incident.objects.get(pk=incident.pk)


def close_body(**fields: str) -> dict[str, str]:
    return {"resolution": "false_positive", "note": "The burst was our own load test.", **fields}


# --- closing as a false positive, a duplicate or benign -----------------------------------


def test_the_close_form_is_offered_on_an_open_incident(officer_client, incident):
    html = text_of(officer_client.get(url(incident)))
    assert "Close as false positive / duplicate…" in html
    assert f'action="/incidents/{incident.id}/close"' in html
    for value in ("false_positive", "duplicate", "benign"):
        assert f'value="{value}"' in html
    assert 'value="true_positive"' not in html.split('id="close"', 1)[1].split("</details>")[0]


def test_a_false_positive_is_closed_from_detected_after_a_confirmation(officer_client, incident):
    first = officer_client.post(url(incident, "close"), close_body())
    assert first.status_code == 200
    page = text_of(first)
    assert "Close as false positive?" in page
    assert "The burst was our own load test." in page
    assert "skipping the phases after Detected, with no post-mortem" in page
    assert '<input type="hidden" name="confirm" value="on">' in page
    assert fresh(incident).status == "detected"  # nothing done yet

    confirmed = officer_client.post(url(incident, "close"), close_body(confirm="on"))
    assert confirmed.status_code == 302 and confirmed["Location"] == url(incident)
    incident = fresh(incident)
    assert (incident.status, incident.resolution) == ("closed", "false_positive")
    assert not incident.has_postmortem
    detail = officer_client.get(url(incident))
    html = text_of(detail)
    assert "Closed as false positive." in html  # the message
    assert "Closed as <strong>false positive</strong>" in html
    assert "Detected → Closed as false positive" in html  # the timeline
    assert "The burst was our own load test." in html
    assert "not needed: closed as false positive" in html
    steps = {s["value"]: s["state"] for s in detail.context["steps"]}
    assert steps == {
        "detected": "done",
        "contained": "skipped",
        "investigating": "skipped",
        "remediated": "skipped",
        "recovered": "skipped",
        "closed": "current",
    }
    assert html.count("(skipped)") == 4
    event = audit_events("incident.transitioned")[-1]
    assert event["details"] == {"from": "detected", "to": "closed", "resolution": "false_positive"}


def test_a_note_with_several_lines_survives_the_confirmation(officer_client, incident):
    note = 'Our load test.\nTicket "LT-42" & <b>done</b>.'
    first = officer_client.post(url(incident, "close"), close_body(note=note))
    assert '<input type="hidden" name="note" value="Our load test.\nTicket &quot;LT-42&quot;' in (
        first.content.decode()
    )
    officer_client.post(url(incident, "close"), close_body(note=note, confirm="on"))
    assert fresh(incident).timeline.get(data__to="closed").text == note


def test_a_benign_incident_closes_from_investigating(officer_client, actors, incident):
    incident = move_to(incident, "investigating", actor=actors["security_officer"])
    body = close_body(resolution="benign", note="A scheduled partner job.", confirm="on")
    assert officer_client.post(url(incident, "close"), body).status_code == 302
    assert (fresh(incident).status, fresh(incident).resolution) == ("closed", "benign")
    steps = {s["value"]: s["state"] for s in officer_client.get(url(incident)).context["steps"]}
    assert steps["contained"] == "done" and steps["remediated"] == "skipped"


def test_a_duplicate_names_the_original_by_id_or_by_its_address(officer_client, actors, incident):
    original = make_incident(actors["security_officer"], title="Leaked key on a paste site")
    address = f"http://testserver/incidents/{original.id}#timeline"
    body = close_body(resolution="duplicate", duplicate_of=address, note="Same key.")
    first = officer_client.post(url(incident, "close"), body)
    assert first.status_code == 200
    page = text_of(first)
    assert "Close as duplicate?" in page and "Leaked key on a paste site" in page
    assert f'<input type="hidden" name="duplicate_of" value="{original.id}">' in page

    confirmed = officer_client.post(
        url(incident, "close"), {**body, "duplicate_of": str(original.id), "confirm": "on"}
    )
    assert confirmed.status_code == 302
    assert fresh(incident).duplicate_of == original
    html = text_of(officer_client.get(url(incident)))
    assert f'Closed as <strong>duplicate</strong> of <a href="/incidents/{original.id}">' in html
    # The original lists it.
    original_page = text_of(officer_client.get(url(original)))
    assert "Closed as its duplicates" in original_page
    assert f'<a href="/incidents/{incident.id}">{incident.title}</a>' in original_page


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"note": " "}, "Every close needs a note saying why."),
        ({"resolution": "duplicate"}, "A duplicate names the incident it repeats."),
        (
            {"resolution": "duplicate", "duplicate_of": "the other one"},
            "Give the other incident&#x27;s id or its page&#x27;s address.",
        ),
        ({"resolution": "true_positive"}, "Select a valid choice."),
        ({"resolution": "resolved"}, "Select a valid choice."),
    ],
)
def test_a_close_form_with_a_mistake_is_refused_on_the_page(
    officer_client, incident, fields, message
):
    for confirm in ({}, {"confirm": "on"}):
        response = officer_client.post(url(incident, "close"), close_body(**fields, **confirm))
        assert response.status_code == 400
        html = text_of(response)
        assert message in html
        assert '<details class="quick-close" id="close" open>' in html  # the form, as sent
    assert fresh(incident).status == "detected"


def test_a_duplicate_of_an_unknown_incident_or_of_itself_is_refused(officer_client, incident):
    for other, message in (
        (uuid.uuid4(), "Is not an incident."),
        (incident.id, "An incident cannot be a duplicate of itself."),
    ):
        body = close_body(resolution="duplicate", duplicate_of=str(other))
        for confirm in ({}, {"confirm": "on"}):
            response = officer_client.post(url(incident, "close"), {**body, **confirm})
            assert response.status_code == 400
            assert message in text_of(response)
    assert fresh(incident).status == "detected"


def test_a_replayed_close_is_a_409_page(officer_client, incident):
    body = close_body(confirm="on")
    assert officer_client.post(url(incident, "close"), body).status_code == 302
    again = officer_client.post(url(incident, "close"), body)
    assert again.status_code == 409
    assert "can only move to investigating" in text_of(again)
    # Not even the confirmation page for a closed incident.
    assert officer_client.post(url(incident, "close"), close_body()).status_code == 409
    assert fresh(incident).timeline.filter(kind="transition").count() == 1


def test_the_closed_page_offers_no_close_form(officer_client, incident):
    officer_client.post(url(incident, "close"), close_body(confirm="on"))
    html = text_of(officer_client.get(url(incident)))
    assert "Close as false positive / duplicate…" not in html
    assert "Reopen incident" in html


def test_an_auditor_cannot_close_but_reads_the_resolution(auditor_client, officer_client, incident):
    refused = auditor_client.post(url(incident, "close"), close_body(confirm="on"))
    assert refused.status_code == 403
    assert fresh(incident).status == "detected"
    officer_client.post(url(incident, "close"), close_body(confirm="on"))
    html = text_of(auditor_client.get(url(incident)))
    assert "Closed as <strong>false positive</strong>" in html
    assert re.findall(r"<form [^>]*>", html) == ['<form method="post" action="/account/logout">']


def test_the_close_form_needs_its_method(officer_client, incident):
    assert officer_client.get(url(incident, "close")).status_code == 405


# --- the list, the printable post-mortem, the reports --------------------------------------


def test_the_list_shows_and_filters_by_resolution(officer_client, actors):
    officer = actors["security_officer"]
    fp = make_incident(officer, title="Load test burst")
    open_one = make_incident(officer, title="Still open")
    walked = move_to(make_incident(officer, title="Real leak"), "closed", actor=officer)
    officer_client.post(url(fp, "close"), close_body(confirm="on"))
    html = text_of(officer_client.get("/incidents/"))
    assert '<span class="resolution resolution-false_positive">False positive</span>' in html
    assert '<span class="resolution resolution-true_positive">True positive</span>' in html
    assert '<select name="resolution"' in html

    filtered = officer_client.get("/incidents/?resolution=false_positive")
    body = filtered.content.decode().split("<tbody>", 1)[1]
    assert fp.title in body and open_one.title not in body and walked.title not in body
    refused = officer_client.get("/incidents/?resolution=bogus")
    assert refused.status_code == 400
    assert "Resolution: must be one of" in text_of(refused)


def test_the_reports_and_the_printable_post_mortem_carry_the_resolution(
    officer_client, actors, incident
):
    original = make_incident(actors["security_officer"], title="The first report")
    body = close_body(resolution="duplicate", duplicate_of=str(original.id), confirm="on")
    officer_client.post(url(incident, "close"), body)

    report = json.loads(officer_client.get(url(incident, "report.json")).content)
    assert report["incident"]["resolution"] == "duplicate"
    assert report["incident"]["duplicate_of"] == {
        "id": str(original.id),
        "title": "The first report",
    }
    close_entry = report["timeline"][-1]
    assert close_entry["data"]["resolution"] == "duplicate"
    assert close_entry["summary"] == f"Detected → Closed as duplicate of {str(original.id)[:8]}"

    pdf = officer_client.get(url(incident, "report.pdf"))
    text = re.sub(r"\s+", " ", PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text())
    assert "Resolution Duplicate of “The first report”" in text

    printable = text_of(officer_client.get(url(incident, "postmortem")))
    assert "Duplicate of" in printable and "no post-mortem is needed" in printable
    assert "This post-mortem is not complete yet" not in printable
    open_report = json.loads(officer_client.get(url(original, "report.json")).content)
    assert open_report["incident"]["resolution"] is None
    assert open_report["incident"]["duplicate_of"] is None


# --- containment that also moves a detected incident to Contained --------------------------


def test_the_containment_confirmation_offers_to_move_a_detected_incident_to_contained(
    officer_client, actors, incident
):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    body = {"action": "revoke_api_key", "key": api_key.prefix}
    page = text_of(officer_client.post(url(incident, "contain"), body))
    assert '<input type="checkbox" name="then_contained" id="then_contained" checked>' in page
    assert "Also move the incident to <strong>Contained</strong>" in page

    done = officer_client.post(
        url(incident, "contain"), {**body, "confirm": "on", "then_contained": "on"}
    )
    assert done.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    incident = fresh(incident)
    assert incident.status == "contained" and incident.contained_at is not None
    html = text_of(officer_client.get(url(incident)))
    assert "The incident moved to Contained." in html
    assert "Detected → Contained" in html
    kinds = list(incident.timeline.order_by("created_at").values_list("kind", flat=True))
    assert kinds == ["created", "containment", "transition"]
    assert [e["action"] for e in audit_events() if e["action"].startswith("incident.")][-2:] == [
        "incident.containment",
        "incident.transitioned",
    ]


def test_unticking_the_box_contains_without_moving(officer_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    body = {"action": "revoke_api_key", "key": api_key.prefix, "confirm": "on"}
    assert officer_client.post(url(incident, "contain"), body).status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert fresh(incident).status == "detected"
    assert "The incident moved to Contained." not in text_of(officer_client.get(url(incident)))


def test_past_detected_the_box_is_not_offered_and_changes_nothing(officer_client, actors, incident):
    incident = move_to(incident, "investigating", actor=actors["security_officer"])
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    body = {"action": "revoke_api_key", "key": api_key.prefix}
    assert "then_contained" not in text_of(officer_client.post(url(incident, "contain"), body))
    sent = {**body, "confirm": "on", "then_contained": "on"}  # a forged or stale box
    assert officer_client.post(url(incident, "contain"), sent).status_code == 302
    assert fresh(incident).status == "investigating"
    assert fresh(incident).timeline.filter(kind="transition").count() == 2


def test_a_refused_containment_moves_nothing(officer_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at="2030-01-01T00:00Z")
    body = {"action": "revoke_api_key", "key": api_key.prefix, "confirm": "on"}
    response = officer_client.post(url(incident, "contain"), {**body, "then_contained": "on"})
    assert response.status_code == 409
    assert fresh(incident).status == "detected"
    assert not fresh(incident).timeline.exclude(kind="created").exists()
