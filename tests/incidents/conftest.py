"""Shared by the incident tests (API, workflow, detectors, containment and the UI's)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.http import HttpResponse

from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending
from apps.incidents.models import Incident
from apps.incidents.services import incident_create, incident_transition
from apps.incidents.workflow import PHASES

INCIDENTS = "/api/v1/incidents"
POSTMORTEM = {
    "root_cause": "A leaked key in a public repository.",
    "impact": "Forty predictions by an unknown caller.",
    "lessons": "Scan repositories for keys before they are pushed.",
    "actions": [],
}


def make_incident(actor: Any, **fields: Any) -> Incident:
    """An incident opened by `actor` through the service (status `detected`)."""
    fields.setdefault("title", "Suspicious predictions")
    fields.setdefault("severity", "sev2")
    return incident_create(actor=actor, **fields)


def move_to(incident: Incident, status: str, *, actor: Any) -> Incident:
    """Walk `incident` forward through the workflow until it is in `status` (the post-mortem
    is filled in on the way to `closed`)."""
    target = PHASES.index(status)
    while PHASES.index(incident.status) < target:
        to = PHASES[PHASES.index(incident.status) + 1]
        incident = incident_transition(
            actor=actor,
            incident=incident,
            to=to,
            note=f"moving to {to}",
            postmortem=POSTMORTEM if to == "closed" else None,
        )
    return incident


@pytest.fixture
def incident(actors: dict[str, Any]) -> Incident:
    """A SEV2 incident opened by the security officer, `detected`."""
    return make_incident(actors["security_officer"])


def audit_events(action: str | None = None) -> list[dict[str, Any]]:
    """Every chained event's body (pending ones chained first), optionally one action's."""
    audit_chain_pending()
    events = [json.loads(body) for body in AuditEvent.objects.values_list("body", flat=True)]
    return [event for event in events if action is None or event["action"] == action]


def assert_error(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    """The response is docs/api.md's envelope with this status and code; returns the error."""
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code, error
    assert error["message"] and error["request_id"] == response["X-Request-ID"]
    return error


# --- The UI's (tests/incidents/test_ui_*.py, test_report*.py) ---------------------------


@pytest.fixture
def officer_client(actors: dict[str, Any], verified_login: Any) -> Any:
    """A browser session of the security officer, signed in with a verified authenticator
    (their role requires one)."""
    from django.test import Client

    return verified_login(Client(), actors["security_officer"])


@pytest.fixture
def auditor_client(actors: dict[str, Any]) -> Any:
    """A browser session of the auditor (no authenticator: the role does not require one)."""
    from django.test import Client

    client = Client()
    client.force_login(actors["auditor"])
    return client
