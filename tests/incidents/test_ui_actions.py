"""The incidents UI's forms: transitions (each needs a note; closing needs a post-mortem),
notes, assignment, containment with its confirmation step, the post-mortem form; refusals
shown on the page; auditors refused; CSRF enforced."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.test import Client

from apps.apikeys.models import ApiKey
from apps.incidents.models import Incident
from apps.incidents.workflow import PHASES
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import move_to
from tests.serving.conftest import media_root, pricing  # noqa: F401  # fixtures used below

pytestmark = pytest.mark.django_db


def url(incident: Incident, action: str = "") -> str:
    return f"/incidents/{incident.id}" + (f"/{action}" if action else "")


def text_of(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def fresh(incident: Incident) -> Incident:
    return Incident.objects.get(pk=incident.pk)


# --- transitions ----------------------------------------------------------------------------


def test_each_transition_form_moves_the_incident_on_with_its_note(officer_client, incident):
    postmortem = {
        "root_cause": "A key committed to a public repository.",
        "impact": "Forty predictions by an unknown caller.",
        "lessons": "Scan pushes for keys.",
        "actions-TOTAL_FORMS": "0",
        "actions-INITIAL_FORMS": "0",
    }
    for to in PHASES[1:]:
        if to == "closed":
            saved = officer_client.post(url(incident, "postmortem/edit"), postmortem)
            assert saved.status_code == 302
        response = officer_client.post(url(incident, "transition"), {"to": to, "note": f"to {to}"})
        assert response.status_code == 302, text_of(response)
        assert response["Location"] == url(incident)
        assert fresh(incident).status == to
        page = text_of(officer_client.get(url(incident)))
        assert f"to {to}" in page  # the note on the timeline
    notes = list(incident.timeline.filter(kind="transition").values_list("text", flat=True))
    assert notes == [f"to {to}" for to in PHASES[1:]]


def test_a_transition_without_a_note_is_refused_on_the_page(officer_client, incident):
    response = officer_client.post(url(incident, "transition"), {"to": "contained", "note": " "})
    assert response.status_code == 400
    assert "Every transition needs a note saying why." in text_of(response)
    assert fresh(incident).status == "detected"


def test_closing_without_a_post_mortem_is_refused_with_the_message(
    officer_client, actors, incident
):
    incident = move_to(incident, "recovered", actor=actors["security_officer"])
    page = text_of(officer_client.get(url(incident)))
    assert "Closing needs a post-mortem" in page  # said before trying, too
    response = officer_client.post(
        url(incident, "transition"), {"to": "closed", "note": "All good, closing."}
    )
    assert response.status_code == 400
    html = text_of(response)
    assert "Closing needs a post-mortem: root cause, impact and lessons." in html
    assert 'href="#postmortem"' in html
    assert "All good, closing." in html  # the note typed is kept
    assert fresh(incident).status == "recovered"


def test_a_transition_that_is_no_longer_the_next_one_is_a_409_with_the_message(
    officer_client, incident
):
    # Another officer moved it first: this form still says "contained".
    officer_client.post(url(incident, "transition"), {"to": "contained", "note": "first"})
    response = officer_client.post(
        url(incident, "transition"), {"to": "contained", "note": "Key revoked."}
    )
    assert response.status_code == 409
    html = text_of(response)
    assert "can only move to investigating, not contained" in html
    # The form now aims at the phase that is next, and keeps the note typed.
    assert '<input type="hidden" name="to" value="investigating"' in html
    assert "Key revoked.</textarea>" in html
    again = officer_client.post(
        url(incident, "transition"), {"to": "investigating", "note": "Key revoked."}
    )
    assert again.status_code == 302


def test_reopening_a_closed_incident(officer_client, actors, incident):
    incident = move_to(incident, "closed", actor=actors["security_officer"])
    response = officer_client.post(
        url(incident, "transition"), {"to": "investigating", "note": "New evidence."}
    )
    assert response.status_code == 302
    incident = fresh(incident)
    assert (incident.status, incident.reopened_count) == ("investigating", 1)
    page = text_of(officer_client.get(url(incident)))
    assert "Reopened: back to Investigating." in page
    assert "Reopened: Closed → Investigating" in page


# --- notes and assignment ---------------------------------------------------------------------


def test_a_note_goes_on_the_timeline(officer_client, incident):
    response = officer_client.post(url(incident, "notes"), {"text": "Customer called in."})
    assert response.status_code == 302 and response["Location"].endswith("#timeline")
    assert "Customer called in." in text_of(officer_client.get(url(incident)))


def test_an_empty_note_is_refused_on_the_page(officer_client, incident):
    response = officer_client.post(url(incident, "notes"), {"text": ""})
    assert response.status_code == 400
    assert "A note needs text." in text_of(response)
    assert not incident.timeline.filter(kind="note").exists()


def test_assigning_and_unassigning(officer_client, actors, incident):
    admin = actors["admin"]
    response = officer_client.post(url(incident, "assign"), {"assignee": admin.username})
    assert response.status_code == 302
    assert fresh(incident).assignee == admin
    page = text_of(officer_client.get(url(incident)))
    assert f"Assigned to {admin.username}." in page
    assert f"Assigned to {admin.username}</span>" in page  # the timeline entry, by name
    officer_client.post(url(incident, "assign"), {"assignee": ""})
    assert fresh(incident).assignee is None


def test_only_people_who_may_work_incidents_can_be_assigned(officer_client, actors, incident):
    response = officer_client.post(
        url(incident, "assign"), {"assignee": actors["auditor"].username}
    )
    assert response.status_code == 400
    assert "Choose someone who may work incidents." in text_of(response)
    assert fresh(incident).assignee is None


# --- containment, with its confirmation step -------------------------------------------------


def test_revoking_a_key_asks_for_confirmation_first(officer_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"], name="pricing service")
    first = officer_client.post(
        url(incident, "contain"), {"action": "revoke_api_key", "key": api_key.prefix}
    )
    assert first.status_code == 200
    page = text_of(first)
    assert "Revoke API key?" in page
    assert api_key.prefix in page and "pricing service" in page
    assert actors["key_owner"].username in page
    assert '<input type="hidden" name="confirm" value="on">' in page
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None  # nothing done yet

    confirmed = officer_client.post(
        url(incident, "contain"),
        {"action": "revoke_api_key", "key": api_key.prefix, "confirm": "on"},
    )
    assert confirmed.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None
    assert incident.resources.filter(kind="api_key", ref=api_key.prefix).exists()
    page = text_of(officer_client.get(url(incident)))
    assert f"Done: Revoked API key {api_key.prefix}." in page


def test_a_key_can_be_named_by_its_id_too(officer_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = officer_client.post(
        url(incident, "contain"),
        {"action": "revoke_api_key", "key": str(api_key.id), "confirm": "on"},
    )
    assert response.status_code == 302
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is not None


def test_a_linked_key_is_revoked_from_its_own_button(officer_client, actors, incident):
    from apps.incidents.services import incident_detector_hit

    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    incident, _ = incident_detector_hit(
        detector="signature_replays",
        subject=api_key.prefix,
        severity="sev2",
        title="Replays",
        evidence={"replays": 3},
        links=[("api_key", api_key.prefix, api_key.name)],
    )
    html = officer_client.get(url(incident)).content.decode()
    assert f'<input type="hidden" name="key" value="{api_key.prefix}">' in html
    step = officer_client.post(
        url(incident, "contain"), {"action": "revoke_api_key", "key": api_key.prefix}
    )
    assert step.status_code == 200 and "Revoke API key?" in text_of(step)


def test_an_unknown_key_is_said_on_the_page(officer_client, incident):
    response = officer_client.post(
        url(incident, "contain"), {"action": "revoke_api_key", "key": "bwk_nosuchkey0000"}
    )
    assert response.status_code == 404
    assert "No API key with this prefix or id." in text_of(response)


def test_revoking_a_revoked_key_is_a_409_on_the_page(officer_client, actors, incident):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    body = {"action": "revoke_api_key", "key": api_key.prefix, "confirm": "on"}
    assert officer_client.post(url(incident, "contain"), body).status_code == 302
    again = officer_client.post(url(incident, "contain"), body)
    assert again.status_code == 409
    assert "Not done." in text_of(again)


def test_a_containment_action_without_its_target_is_refused(officer_client, incident):
    response = officer_client.post(url(incident, "contain"), {"action": "archive_model_version"})
    assert response.status_code == 400
    html = text_of(response)
    assert "Say what to contain: Archive model version." in html
    assert "This field is required for this action." in html


def test_archiving_a_model_version_asks_for_confirmation_first(
    officer_client,
    incident,
    pricing,  # noqa: F811  # the fixture imported above
):
    body = {"action": "archive_model_version", "model": "pricing", "version": "1"}
    first = officer_client.post(url(incident, "contain"), body)
    assert first.status_code == 200
    page = text_of(first)
    assert "Archive model version?" in page and "production" in page
    pricing.refresh_from_db()
    assert pricing.stage == "production"
    confirmed = officer_client.post(url(incident, "contain"), {**body, "confirm": "on"})
    assert confirmed.status_code == 302
    pricing.refresh_from_db()
    assert pricing.stage == "archived"
    assert incident.resources.filter(kind="model_version", ref="pricing:1").exists()


def test_deactivating_a_user_asks_for_confirmation_first(officer_client, actors, incident):
    suspect = actors["outsider"]
    body = {"action": "deactivate_user", "username": suspect.username}
    first = officer_client.post(url(incident, "contain"), body)
    assert first.status_code == 200
    assert "Deactivate user?" in text_of(first)
    suspect.refresh_from_db()
    assert suspect.is_active
    confirmed = officer_client.post(url(incident, "contain"), {**body, "confirm": "on"})
    assert confirmed.status_code == 302
    suspect.refresh_from_db()
    assert not suspect.is_active
    page = text_of(officer_client.get(url(incident)))
    assert f"Deactivated user {suspect.username}" in page  # the pseudonym shown by name


def test_deactivating_a_deactivated_user_is_a_409_on_the_page(officer_client, actors, incident):
    body = {"action": "deactivate_user", "username": actors["outsider"].username, "confirm": "on"}
    assert officer_client.post(url(incident, "contain"), body).status_code == 302
    again = officer_client.post(url(incident, "contain"), body)
    assert again.status_code == 409
    assert "This user is already deactivated." in text_of(again)


def test_containment_on_a_closed_incident_is_refused_on_the_page(officer_client, actors, incident):
    incident = move_to(incident, "closed", actor=actors["security_officer"])
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = officer_client.post(
        url(incident, "contain"),
        {"action": "revoke_api_key", "key": api_key.prefix, "confirm": "on"},
    )
    assert response.status_code == 409
    assert "reopen it before taking containment actions" in text_of(response)
    assert ApiKey.objects.get(pk=api_key.pk).revoked_at is None


# --- the post-mortem form ---------------------------------------------------------------------


def pm_body(**extra: str) -> dict[str, str]:
    return {
        "root_cause": "A key committed to a public repository.",
        "impact": "Forty predictions by an unknown caller.",
        "lessons": "Scan pushes for keys.",
        "actions-TOTAL_FORMS": "2",
        "actions-INITIAL_FORMS": "0",
        **extra,
    }


def test_the_post_mortem_form_saves_root_cause_impact_lessons_and_action_items(
    officer_client, actors, incident
):
    owner = actors["admin"].username
    response = officer_client.post(
        url(incident, "postmortem/edit"),
        pm_body(
            **{
                "actions-0-description": "Add a pre-push secret scanner",
                "actions-0-owner": owner,
                "actions-0-due_date": "2030-01-31",
            }
        ),
    )
    assert response.status_code == 302 and response["Location"].endswith("#postmortem")
    incident = fresh(incident)
    assert incident.has_postmortem
    items = list(incident.actions.values_list("description", "owner__username", "due_date"))
    assert [(d, o, str(due)) for d, o, due in items] == [
        ("Add a pre-push secret scanner", owner, "2030-01-31")
    ]
    page = text_of(officer_client.get(url(incident)))
    assert 'value="Add a pre-push secret scanner"' in page  # the form shows what is saved
    printable = text_of(officer_client.get(url(incident, "postmortem")))
    assert "Add a pre-push secret scanner" in printable and "2030-01-31" in printable


def test_an_action_item_needs_an_owner_and_a_date(officer_client, incident):
    response = officer_client.post(
        url(incident, "postmortem/edit"), pm_body(**{"actions-0-description": "Rotate keys"})
    )
    assert response.status_code == 400
    html = text_of(response)
    assert "The post-mortem was not saved" in html
    assert "Each action item needs an action, an owner and a date." in html
    assert not fresh(incident).has_postmortem


def test_an_action_item_is_removed_with_its_checkbox(officer_client, actors, incident):
    owner = actors["admin"].username
    item = {
        "actions-0-description": "Rotate keys",
        "actions-0-owner": owner,
        "actions-0-due_date": "2030-01-31",
    }
    officer_client.post(url(incident, "postmortem/edit"), pm_body(**item))
    assert incident.actions.count() == 1
    officer_client.post(
        url(incident, "postmortem/edit"),
        pm_body(**item, **{"actions-INITIAL_FORMS": "1", "actions-0-DELETE": "on"}),
    )
    assert incident.actions.count() == 0


# --- who may act ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("action", "body"),
    [
        ("transition", {"to": "contained", "note": "x"}),
        ("notes", {"text": "x"}),
        ("assign", {"assignee": ""}),
        ("contain", {"action": "deactivate_user", "username": "nobody", "confirm": "on"}),
        ("postmortem/edit", {"root_cause": "x", "actions-TOTAL_FORMS": "0"}),
    ],
)
def test_an_auditor_post_is_refused_403(auditor_client, incident, action, body):
    before = incident.timeline.count()
    response = auditor_client.post(url(incident, action), body)
    assert response.status_code == 403
    assert incident.timeline.count() == before
    assert fresh(incident).status == "detected"


@pytest.mark.parametrize("role", ["api_client", "ml_engineer"])
def test_posts_of_people_without_incident_roles_are_refused_403(client, actors, incident, role):
    client.force_login(actors[role])
    response = client.post(url(incident, "notes"), {"text": "x"})
    assert response.status_code == 403


def test_the_forms_need_the_csrf_token(actors, verified_login, incident):
    client = verified_login(Client(enforce_csrf_checks=True), actors["security_officer"])
    refused = client.post(url(incident, "notes"), {"text": "forged"})
    assert refused.status_code == 403
    assert not incident.timeline.filter(kind="note").exists()

    page = client.get(url(incident)).content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    accepted = client.post(url(incident, "notes"), {"text": "real", "csrfmiddlewaretoken": token})
    assert accepted.status_code == 302
    assert incident.timeline.filter(kind="note", text="real").exists()


def test_the_pages_answer_only_their_methods(officer_client, incident):
    assert officer_client.get(url(incident, "transition")).status_code == 405
    assert officer_client.post(url(incident)).status_code == 405
