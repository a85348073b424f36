"""Every console page, for every role, in headless Chromium (Debian's /usr/bin/chromium):
allowed pages answer 200 with the navigation the role may use, refused ones the 403 page (the
admin: its sign-in page, which says the person may not enter); no page logs a console error,
a script error, a CSP violation or a failed request. And the README's dashboard screenshot,
with a day's worth of data on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone

from apps.audit.services import audit_chain_pending, audit_event_record
from apps.audit.tasks import audit_checkpoint_task, audit_verify_new_task
from apps.compliance.models import ChecklistItem
from apps.compliance.services import compliance_checks_run
from apps.registry.models import ModelVersion, RegisteredModel, VersionStatus
from tests.apikeys.factories import ApiKeyFactory
from tests.browser import ARTIFACTS, README_SHOTS, UPDATE_SHOTS
from tests.compliance.conftest import seed_checklist
from tests.incidents.conftest import make_incident, move_to

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ROLES = ("admin", "security_officer", "auditor", "ml_engineer", "api_client")
EVERYONE = frozenset(ROLES)
INCIDENT_READERS = frozenset({"admin", "security_officer", "auditor"})
KEY_OFFICERS = frozenset({"admin", "security_officer"})
MODEL_READERS = frozenset({"admin", "auditor", "ml_engineer"})


@pytest.fixture
def world(actors: dict[str, Any]) -> dict[str, Any]:
    """A control plane some way into its day: incidents in several phases, keys about to
    expire, a quarantined unsigned version, predict traffic with refusals, chained events."""
    seed_checklist()  # a transactional test's flush empties the data migration's rows
    people = {role: actors[role] for role in ROLES}
    for role, name in (("admin", "sam"), ("security_officer", "amara"), ("auditor", "ines")):
        people[role].username = name
        people[role].save(update_fields=["username"])
    people["admin"].is_staff = people["admin"].is_superuser = True
    people["admin"].save(update_fields=["is_staff", "is_superuser"])
    officer = people["security_officer"]
    leaked = make_incident(officer, severity="sev1", title="API key leaked in a public repo")
    make_incident(officer, severity="sev2", title="Burst of invalid API keys from one network")
    make_incident(officer, severity="sev3", title="Replayed request signature")
    move_to(make_incident(officer, severity="sev2", title="Model drift alert"), "contained",
            actor=officer)  # fmt: skip
    now = timezone.now()
    key = ApiKeyFactory(owner=people["api_client"], name="checkout-service",
                        expires_at=now + timedelta(days=5))  # fmt: skip
    ApiKeyFactory(owner=people["ml_engineer"], name="nightly-eval",
                  expires_at=now + timedelta(days=12))  # fmt: skip
    model = RegisteredModel.objects.create(name="fraud-detector")
    version = ModelVersion.objects.create(
        model=model,
        number=1,
        size=1,
        sha256="ab" * 32,
        input_schema={"type": "object", "properties": {"amount": {"type": "number"}}},
        wrapped_data_key=b"",
        master_key_id="test",
        artifact="test/fraud-detector-1",
        status=VersionStatus.QUARANTINED,
    )
    for _ in range(40):
        audit_event_record("predict.succeeded", actor=None, target=version,
                           details={"model": model.name, "version": 1})  # fmt: skip
    for code, times in (("rate_limited", 6), ("invalid_api_key", 9), ("invalid_signature", 2)):
        for _ in range(times):
            audit_event_record("predict.rejected", actor=None, target=version, outcome="denied",
                               details={"model": model.name, "code": code})  # fmt: skip
    audit_chain_pending(wait=True)
    compliance_checks_run(actor=officer)  # the live checks, as evidence
    ChecklistItem.objects.filter(category="incident_response").update(status="implemented")
    audit_verify_new_task()  # the scheduled jobs: verified to the head, then a checkpoint
    audit_checkpoint_task()
    from apps.audit.models import AuditEvent

    return {
        "people": people,
        "incident": leaked,
        "key": key,
        "model": model,
        "version": version,
        "seq": AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first(),
        "item": ChecklistItem.objects.order_by("key").first(),
    }


def pages(world: dict[str, Any]) -> list[tuple[str, frozenset[str]]]:
    """(path, roles allowed) of every page a person opens by GET."""
    model, number = world["model"].name, world["version"].number
    return [
        ("/", EVERYONE),
        ("/incidents/", INCIDENT_READERS),
        (f"/incidents/{world['incident'].pk}", INCIDENT_READERS),
        ("/incidents/new", KEY_OFFICERS),
        ("/compliance/", INCIDENT_READERS),
        ("/compliance/frameworks/gdpr", INCIDENT_READERS),
        (f"/compliance/items/{world['item'].pk}", INCIDENT_READERS),
        ("/audit/", INCIDENT_READERS),
        (f"/audit/events/{world['seq']}", INCIDENT_READERS),
        ("/audit/chain", INCIDENT_READERS),
        ("/audit/export", INCIDENT_READERS),
        ("/keys/", KEY_OFFICERS),
        ("/keys/new", KEY_OFFICERS),
        (f"/keys/{world['key'].pk}", KEY_OFFICERS),
        ("/models/", MODEL_READERS),
        (f"/models/{model}", MODEL_READERS),
        (f"/models/{model}/versions/{number}", MODEL_READERS | {"security_officer"}),
        ("/admin/", frozenset({"admin"})),
        ("/api/docs", EVERYONE),
        ("/account/mfa/", EVERYONE),
    ]


@pytest.fixture
def context_for(browser: Any, live_server: Any, verified_login: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def make(user: Any) -> Any:
        client = verified_login(Client(), user)
        context = browser.new_context(
            base_url=live_server.url, viewport={"width": 1280, "height": 900}
        )
        context.add_cookies([{
            "name": settings.SESSION_COOKIE_NAME,
            "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
            "url": live_server.url,
        }])  # fmt: skip
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()


def _visit(context: Any, path: str) -> tuple[int, str, list[str]]:
    """(status of the page, its final path, the problems it logged)."""
    page = context.new_page()
    page.set_default_timeout(15_000)
    problems: list[str] = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on(
        "response",
        lambda r: (
            problems.append(f"{r.status} {r.url}")
            if r.status >= 400 and r.request.resource_type != "document"
            else None
        ),
    )
    response = page.goto(path, wait_until="load")
    status = response.status
    final = page.url.split("://", 1)[1].split("/", 1)[1]
    page.close()
    # A refused document is logged by Chromium as a failed resource load: that one is expected.
    problems = [p for p in problems if "Failed to load resource" not in p or status < 400]
    return status, "/" + final, problems


@pytest.mark.parametrize("role", ROLES)
def test_every_page_for_every_role(role: str, world: dict[str, Any], context_for: Any) -> None:
    context = context_for(world["people"][role])
    outcomes = {}
    for path, allowed in pages(world):
        status, final, problems = _visit(context, path)
        assert problems == [], (path, problems)
        if role in allowed:
            outcomes[path] = (status, final.split("?")[0])
            assert status == 200 and final.split("?")[0] == path, (path, status, final)
        elif path == "/admin/":
            # The admin sends a signed-in person it refuses to its sign-in page, which says so.
            assert final.startswith("/admin/login/"), (path, final)
        else:
            assert status == 403, (path, status, final)
    assert outcomes  # every role has a page of its own


def test_the_dashboard_screenshot(world: dict[str, Any], context_for: Any) -> None:
    context = context_for(world["people"]["admin"])
    page = context.new_page()
    page.goto("/")
    assert page.locator("h1").inner_text() == "Dashboard"
    assert "4 open" in page.locator("section[aria-labelledby=p-incidents]").inner_text()
    traffic = page.locator("section[aria-labelledby=p-traffic]").inner_text()
    assert "57 calls: 40 answered, 17 refused" in traffic
    assert "Verified to its head" in page.locator("section[aria-labelledby=p-audit]").inner_text()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    if UPDATE_SHOTS:
        page.screenshot(path=str(README_SHOTS / "dashboard.png"), full_page=True)
    page.close()
