from __future__ import annotations

import json
from typing import Any

import pytest
from django.http import HttpResponse

from apps.apikeys import records
from apps.apikeys.authentication import _last_used_claims
from apps.apikeys.models import ApiKey
from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending

KEYED = "/api/test/keyed"


@pytest.fixture(autouse=True)
def _fresh_process_state() -> None:
    # Per-process memo of last_used_at writes: each test starts as a fresh process would.
    _last_used_claims.clear()


def assert_error(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    """The response is docs/api.md's envelope with this status and code; returns the error."""
    assert response.status_code == status, response.content
    body = json.loads(response.content)
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == {"code", "message", "details", "request_id"}
    assert error["code"] == code
    assert error["message"] and error["request_id"] == response["X-Request-ID"]
    return error


def audit_events(action: str | None = None) -> list[dict[str, Any]]:
    audit_chain_pending()
    events = [json.loads(event.body) for event in AuditEvent.objects.order_by("seq")]
    return [event for event in events if action is None or event["action"] == action]


def audit_text() -> str:
    audit_chain_pending()
    return "\n".join(AuditEvent.objects.order_by("seq").values_list("body", flat=True))


def update_key(api_key: ApiKey, **fields: Any) -> None:
    """Edit a key's row behind the services' back (to move time) and drop its cached record,
    as its expiry would for a record that was never cached."""
    ApiKey.objects.filter(pk=api_key.pk).update(**fields)
    records.forget(api_key.public_id)
