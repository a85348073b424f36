"""Incidents in the admin: visible with their timeline, resources and action items; never
added, changed or deleted there (every change goes through the services, audited)."""

from __future__ import annotations

import pytest

from apps.audit.subjects import pseudonym_for
from apps.incidents.models import Incident
from apps.incidents.services import incident_contain, incident_note_add, incident_transition
from tests.accounts.factories import UserFactory
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import POSTMORTEM, make_incident, move_to

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/incidents/incident/"


@pytest.fixture
def superuser_client(client, verified_login):  # type: ignore[no-untyped-def]
    return verified_login(client, UserFactory(is_staff=True, is_superuser=True))


@pytest.fixture
def worked(actors):  # type: ignore[no-untyped-def]
    officer = actors["security_officer"]
    incident = make_incident(officer, title="Leaked pricing key", severity="sev1")
    incident_note_add(actor=officer, incident=incident, text="Found in a gist.")
    api_key = ApiKeyFactory()
    incident_contain(
        actor=officer, incident=incident, action="revoke_api_key", target=str(api_key.id)
    )
    postmortem = {
        **POSTMORTEM,
        "actions": [{"description": "Scan pushes for keys", "due_date": "2030-03-01"}],
    }
    incident = move_to(incident, "recovered", actor=officer)
    return incident_transition(
        actor=officer, incident=incident, to="closed", note="done", postmortem=postmortem
    )


def test_the_list_shows_incidents(superuser_client, worked):
    response = superuser_client.get(CHANGELIST)
    assert response.status_code == 200
    assert b"Leaked pricing key" in response.content
    assert f"{CHANGELIST}{worked.pk}/change/".encode() in response.content
    assert f"{CHANGELIST}add/".encode() not in response.content


def test_an_incident_is_shown_read_only_with_its_timeline(superuser_client, worked, actors):
    response = superuser_client.get(f"{CHANGELIST}{worked.pk}/change/")
    assert response.status_code == 200
    content = response.content.decode()
    assert "Found in a gist." in content and "containment" in content
    assert POSTMORTEM["root_cause"] in content and "Scan pushes for keys" in content
    # People as the audit trail names them.
    assert pseudonym_for(actors["security_officer"]) in content
    for button in ('name="_save"', 'name="_continue"', 'name="_addanother"', "deletelink"):
        assert button not in content


def test_nothing_can_be_added_changed_or_deleted(superuser_client, worked):
    assert superuser_client.get(f"{CHANGELIST}add/").status_code == 403
    response = superuser_client.post(f"{CHANGELIST}add/", {"title": "forged", "severity": "sev1"})
    assert response.status_code == 403
    response = superuser_client.post(
        f"{CHANGELIST}{worked.pk}/change/", {"title": "renamed", "status": "detected"}
    )
    assert response.status_code == 403
    assert superuser_client.post(f"{CHANGELIST}{worked.pk}/delete/").status_code == 403
    incident = Incident.objects.get(pk=worked.pk)
    assert incident.title == "Leaked pricing key" and incident.status == "closed"
    assert Incident.objects.count() == 1
