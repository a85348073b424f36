from __future__ import annotations

import importlib
import json
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.http import HttpResponse

from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending
from apps.compliance.models import ChecklistItem
from apps.core.secrets import _runtime_provider

_seed_migration = importlib.import_module("apps.compliance.migrations.0002_seed_checklist")


def seed_checklist(*, force: bool = False) -> None:
    """The data migration's rows (a transactional test's flush empties them)."""
    if force or not ChecklistItem.objects.exists():
        _seed_migration.seed(django_apps)


@pytest.fixture(autouse=True)
def _checklist(request: pytest.FixtureRequest) -> None:
    """Every database test starts with the seeded checklist."""
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    transactional = marker.kwargs.get("transaction") or (marker.args and marker.args[0])
    request.getfixturevalue("transactional_db" if transactional else "db")
    seed_checklist()


@pytest.fixture
def fresh_secrets():  # type: ignore[no-untyped-def]
    """Secrets are read through a TTL cache: empty it around a test that changes one."""
    _runtime_provider().clear()
    yield
    _runtime_provider().clear()


def item(key: str) -> ChecklistItem:
    return ChecklistItem.objects.get(key=key)


def audit_events(action: str | None = None) -> list[dict[str, Any]]:
    audit_chain_pending()
    events = [json.loads(event.body) for event in AuditEvent.objects.order_by("seq")]
    return [event for event in events if action is None or event["action"] == action]


def assert_error(response: HttpResponse, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    body = json.loads(response.content)
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    return body["error"]
