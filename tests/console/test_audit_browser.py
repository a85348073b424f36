"""The audit pages in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright against pytest-django's live server.

An auditor searches the trail by a person's username (the lookup recorded, naming the
pseudonym, never the username), filters it, downloads a JSONL export and verifies it by upload
(and a tampered copy is caught); a security officer, with JavaScript turned off, searches by
username (a form that POSTs) and sees that person's events under their pseudonym, then looks
the pseudonym up both ways.
Sessions are made with Django's test client and handed to the browser as a cookie. The list
page's screenshot goes to var/test-artifacts/audit.png (and, with
BULWARK_UPDATE_SCREENSHOTS=1, to static/screenshots/ for the README).
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending, audit_event_record
from apps.audit.subjects import Subject, pseudonym_for
from apps.core.request_context import request_facts
from tests.browser import ARTIFACTS, README_SHOTS, UPDATE_SHOTS, signed_in_pages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def open_as(browser: Any, live_server: Any, verified_login: Any) -> Iterator[Any]:
    """open_as(user, javascript=True) → a page signed in as `user`; no console error, page
    error or refused request on any (tests/browser.py)."""
    yield from signed_in_pages(browser, live_server, verified_login, javascript=True)


@pytest.fixture
def people(actors: dict[str, Any]) -> dict[str, Any]:
    """The actors, with names a person would have (they show in the screenshot)."""
    for role, name in (("auditor", "ines"), ("security_officer", "amara"), ("admin", "sam")):
        actors[role].username = name
        actors[role].save(update_fields=["username"])
    return actors


@pytest.fixture
def trail(people: dict[str, Any]) -> None:
    """A morning's events: sign-ins, keys, predictions accepted and refused, an incident."""
    officer, admin = people["security_officer"], people["admin"]
    key = Subject("api_key", "bwk_7Hq2Lx9v")
    rogue = Subject("api_key", "bwk_Zr81mKd0")
    model = Subject("model", "pricing")
    steps: list[tuple[str, Any, Any, str, dict[str, Any]]] = [
        ("auth.session.started", admin, None, "success", {"mfa": True}),
        ("model.version.staged", admin, model, "success", {"version": 3, "stage": "production"}),
        ("auth.session.started", officer, None, "success", {"mfa": True}),
        ("apikey.created", officer, key, "success", {"scopes": ["predict:pricing"]}),
        ("predict.succeeded", key, model, "success", {"version": 3, "rows": 1}),
        ("predict.succeeded", key, model, "success", {"version": 3, "rows": 4}),
        ("predict.rejected", rogue, model, "denied", {"code": "api_key_revoked"}),
        ("predict.rejected", rogue, model, "denied", {"code": "api_key_revoked"}),
        (
            "incident.created",
            "detector",
            Subject("incident", "4f1c9e2a"),
            "success",
            {"severity": "sev2"},
        ),
        ("incident.assigned", officer, Subject("incident", "4f1c9e2a"), "success", {}),
        ("apikey.revoked", officer, rogue, "success", {"reason": "leaked in a public repo"}),
        ("compliance.checks.completed", "compliance", None, "failure", {"passed": 9, "failed": 4}),
    ]
    for index, (action, actor, target, outcome, details) in enumerate(steps):
        with request_facts(request_id=f"req-{index:04d}-a1b2", client_ip="203.0.113.20"):
            audit_event_record(action, actor=actor, target=target, outcome=outcome, details=details)
    audit_chain_pending()


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if UPDATE_SHOTS:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / f"{name}.png")
    return path


def test_an_auditor_searches_exports_and_verifies_the_export_by_upload(
    open_as, people, trail, tmp_path
):
    page = open_as(people["auditor"])
    page.goto("/audit/")
    expect(page.get_by_role("heading", name="Audit trail")).to_be_visible()
    rows = page.locator("table.audit-events tbody tr")
    expect(rows).to_have_count(AuditEvent.objects.count())
    _shot(page, "audit")

    # A username typed in the actor filter (a GET) looks nobody up: the page says to search.
    pseudonym = pseudonym_for(people["security_officer"])
    page.get_by_label("Actor").fill("amara")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".messages")).to_contain_text("use “Search by username” below")
    expect(rows).to_have_count(1)  # the empty row
    audit_chain_pending()
    assert not AuditEvent.objects.filter(action="audit.pseudonym_lookup").exists()
    # Search by username (a POST): the officer's events, under their pseudonym.
    expect(page.get_by_label("Events of a person, by username")).to_have_value("amara")
    page.get_by_role("button", name="Search by username").click()
    expect(page.locator(".messages")).to_contain_text(
        f"amara is {pseudonym}: showing their events."
    )
    assert f"actor={pseudonym}" in page.url and "amara" not in page.url
    expect(rows).to_have_count(4)
    expect(rows.first).to_contain_text("apikey.revoked")
    expect(rows.last).to_contain_text("auth.session.started")
    audit_chain_pending()
    (lookup,) = [
        json.loads(body)
        for body in AuditEvent.objects.filter(action="audit.pseudonym_lookup").values_list(
            "body", flat=True
        )
    ]
    assert lookup["actor"]["ref"] == pseudonym_for(people["auditor"])
    assert lookup["target"] == {"type": "user", "id": pseudonym}
    assert lookup["details"] == {
        "direction": "username_to_pseudonym",
        "found": True,
        "via": "filter",
    }

    # Search: the refused predictions.
    page.get_by_label("Actor").fill("")
    page.get_by_label("Outcome").select_option("denied")
    page.get_by_role("button", name="Filter").click()
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("predict.rejected")
    expect(rows.first).to_contain_text("bwk_Zr81mKd0")
    # An event's page, and its link to the one before.
    rows.first.get_by_role("link").nth(0).click()
    expect(page.get_by_role("heading", name=re.compile(r"Event #\d+"))).to_be_visible()
    expect(page.get_by_role("rowheader", name="Previous hash")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "audit-event.png"), full_page=True)

    # Export JSONL and verify it by upload.
    page.get_by_role("link", name="Export & verify").click()
    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download").click()
    download = download_info.value
    assert re.match(r"bulwark-audit-\d{8}T\d{6}Z\.jsonl$", download.suggested_filename)
    export = tmp_path / download.suggested_filename
    download.save_as(export)
    lines = export.read_bytes().splitlines(keepends=True)
    assert "manifest" in json.loads(lines[-1])
    # The export holds the auditor's lookup, by pseudonym: never the username.
    exported = [json.loads(line) for line in lines[:-1]]
    assert any(
        e["action"] == "audit.pseudonym_lookup" and e["target"]["id"] == pseudonym for e in exported
    )
    assert b"amara" not in export.read_bytes()
    page.get_by_label("Export file (.jsonl)").set_input_files(str(export))
    page.get_by_role("button", name="Verify").click()
    result = page.locator("#verify-result")
    expect(result).to_contain_text(f"Verified: {export.name} holds {len(lines) - 1} events")
    page.screenshot(path=str(ARTIFACTS / "audit-export-verified.png"), full_page=True)

    # A tampered copy (one refusal turned into a success) is caught.
    tampered = tmp_path / "tampered.jsonl"
    tampered.write_bytes(b"".join(lines).replace(b'"outcome":"denied"', b'"outcome":"success"', 1))
    page.get_by_label("Export file (.jsonl)").set_input_files(str(tampered))
    page.get_by_role("button", name="Verify").click()
    expect(result).to_contain_text("Not verified")
    expect(result).to_contain_text("the manifest's sha256 does not match the lines")
    # Nothing but the trail changed: the one lookup and the export's events.
    audit_chain_pending()
    assert AuditEvent.objects.filter(action="audit.pseudonym_lookup").count() == 1


def test_a_security_officer_searches_by_username_without_javascript(open_as, people, trail):
    officer, admin = people["security_officer"], people["admin"]
    page = open_as(officer, javascript=False)
    page.goto("/audit/")
    page.get_by_label("Events of a person, by username").fill("sam")
    page.get_by_role("button", name="Search by username").click()
    pseudonym = pseudonym_for(admin)
    expect(page.locator(".messages")).to_contain_text(f"sam is {pseudonym}: showing their events.")
    assert f"actor={pseudonym}" in page.url and "sam" not in page.url
    rows = page.locator("table.audit-events tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("model.version.staged")
    # And back: who is behind the pseudonym, from the list's small lookup form...
    page.get_by_label("Who is this pseudonym?").fill(pseudonym)
    page.get_by_role("button", name="Look up", exact=True).click()
    expect(page.locator("#lookup-result")).to_contain_text(f"sam is {pseudonym}")
    # ...and the lookup page's, by username.
    page.get_by_label("Username or pseudonym").fill("sam")
    page.get_by_role("button", name="Look up (recorded)").click()
    expect(page.locator("#lookup-result")).to_contain_text(f"sam is {pseudonym}")
    audit_chain_pending()
    lookups = [
        json.loads(body)
        for body in AuditEvent.objects.filter(action="audit.pseudonym_lookup").values_list(
            "body", flat=True
        )
    ]
    assert [e["details"]["direction"] for e in lookups] == [
        "username_to_pseudonym",
        "pseudonym_to_username",
        "username_to_pseudonym",
    ]
    assert [e["details"]["via"] for e in lookups] == ["filter", "lookup", "lookup"]
    assert all(e["target"]["id"] == pseudonym for e in lookups)
    assert "sam" not in json.dumps(lookups)
