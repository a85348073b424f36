"""The compliance UI in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven
by Playwright against pytest-django's live server.

An auditor sees the progress bars and downloads the PDF report; a security officer, in a
browser with JavaScript turned off, adds a link as evidence and marks the item implemented.
Sessions are made with Django's test client and handed to the browser as a cookie (the
sign-in page is tested elsewhere). Screenshots go to var/test-artifacts/ (and, with
BULWARK_UPDATE_SCREENSHOTS=1, to static/screenshots/ for the README, the report's first page
rendered with pdftoppm).
"""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django.utils import timezone
from playwright.sync_api import expect
from pypdf import PdfReader

from apps.accounts.models import TotpDevice
from apps.compliance.models import ChecklistItem, Evidence
from apps.compliance.services import compliance_checks_run, evidence_add
from apps.incidents.models import Incident
from tests.browser import (
    ARTIFACTS,
    README_SHOTS,
    UPDATE_SHOTS,
)
from tests.compliance.conftest import audit_events, item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def open_as(browser: Any, live_server: Any, verified_login: Any) -> Iterator[Any]:
    """open_as(user, javascript=True) → a page signed in as `user` (a session made by the
    test client, its cookie given to the browser)."""
    contexts: list[Any] = []
    errors: list[str] = []

    def open_page(user: Any, *, javascript: bool = True) -> Any:
        client = verified_login(Client(), user)
        context = browser.new_context(
            base_url=live_server.url,
            viewport={"width": 1280, "height": 900},
            java_script_enabled=javascript,
            accept_downloads=True,
        )
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": live_server.url,
                }
            ]
        )
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.on(
            "console",
            lambda message: errors.append(message.text) if message.type == "error" else None,
        )
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on(
            "response",
            lambda response: (
                errors.append(f"{response.status} {response.url}")
                if response.status >= 400
                else None
            ),
        )
        return page

    yield open_page
    for context in contexts:
        context.close()
    # No CSP violation, no script error, no missing static file, no refused request.
    assert errors == []


def shot(page: Any, name: str, *, full_page: bool = True) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


@pytest.fixture
def people(actors: dict[str, Any]) -> dict[str, Any]:
    """The actors, with names a person would have (they show in the screenshots)."""
    for role, name in (("auditor", "ines"), ("security_officer", "amara"), ("admin", "sam")):
        actors[role].username = name
        actors[role].save(update_fields=["username"])
    return actors


@pytest.fixture
def history(people: dict[str, Any]) -> None:
    """A checklist some way along: statuses, owners, evidence, check results, incidents."""
    officer = people["security_officer"]
    for role in ("admin", "security_officer"):
        TotpDevice.objects.create(user=people[role], name="phone", confirmed=True)
    ChecklistItem.objects.filter(category="incident_response").update(owner=officer)
    ChecklistItem.objects.filter(
        key__in=[
            "auth-api-keys",
            "auth-rbac",
            "auth-token-expiry",
            "auth-mfa",
            "input-schema-validation",
            "input-rate-limiting",
            "input-size-limits",
            "model-encryption-at-rest",
            "privacy-pii",
            "monitoring-audit-trail",
            "monitoring-logging",
            "secrets-rotation",
            "ir-detection",
            "ir-containment",
        ]
    ).update(status="implemented", owner=officer, last_reviewed_at=timezone.now())
    ChecklistItem.objects.filter(
        key__in=["input-xss", "model-watermarking", "privacy-review", "infra-https"]
    ).update(status="in_progress", owner=officer)
    ChecklistItem.objects.filter(key="privacy-differential").update(status="not_applicable")
    evidence_add(
        actor=officer,
        item=item("auth-mfa"),
        url="https://wiki.example/security/mfa-enforcement",
    )
    evidence_add(
        actor=officer,
        item=item("auth-rbac"),
        text="Role matrix reviewed with the CISO on 2026-11-02; no change needed.",
    )
    Incident.objects.create(
        title="Leaked API key",
        severity="sev2",
        status="contained",
        detected_at=timezone.now() - timedelta(hours=2),
        contained_at=timezone.now() - timedelta(hours=1, minutes=35),
    )
    compliance_checks_run(actor=officer)


def test_an_auditor_sees_the_progress_bars_and_downloads_the_pdf(open_as, people, history):
    page = open_as(people["auditor"])

    page.goto("/compliance/")

    expect(page.get_by_role("heading", name="Compliance", exact=True)).to_be_visible()
    bars = page.get_by_role("progressbar")
    expect(bars).to_have_count(4)
    for name in ("Security checklist", "GDPR", "HIPAA", "SOC 2"):
        expect(page.get_by_role("progressbar", name=name)).to_be_visible()
    checklist = page.get_by_role("progressbar", name="Security checklist")
    expect(checklist).to_have_attribute("value", "14")
    expect(checklist).to_have_attribute("max", "34")
    expect(page.locator("#progress-checklist-text")).to_contain_text("41%")
    mfa = page.locator("#item-auth-mfa")
    expect(mfa.locator(".status")).to_have_text("Implemented")
    expect(mfa.locator(".result")).to_have_text("Pass")
    expect(
        mfa.get_by_role("link", name="https://wiki.example/security/mfa-enforcement")
    ).to_be_visible()
    # Read-only for auditors: no edit forms, no run button.
    expect(page.locator("details.edit")).to_have_count(0)
    expect(page.get_by_role("button", name="Run checks now")).to_have_count(0)
    shot(page, "compliance-auditor")
    dashboard = shot(page, "compliance-dashboard", full_page=False)

    with page.expect_download() as download_info:
        page.get_by_role("button", name="Download report").click()
    download = download_info.value

    assert download.suggested_filename.startswith("bulwark-compliance-checklist-")
    assert download.suggested_filename.endswith(".pdf")
    report = ARTIFACTS / "compliance-report.pdf"
    download.save_as(report)
    content = report.read_bytes()
    assert content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(content))
    assert "Bulwark compliance report" in reader.pages[0].extract_text()
    text = "\n".join(p.extract_text() for p in reader.pages)
    assert "Multi-factor authentication (MFA)" in text and "Time to contain" in text
    [event] = audit_events("compliance.report.generated")
    assert event["details"]["format"] == "pdf"

    if UPDATE_SHOTS:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(dashboard, README_SHOTS / "compliance.png")
        pdftoppm = shutil.which("pdftoppm")
        assert pdftoppm, "BULWARK_UPDATE_SCREENSHOTS=1 needs pdftoppm (poppler-utils)"
        prefix = ARTIFACTS / "compliance-report-page"
        subprocess.run(  # fixed arguments, our own file
            [pdftoppm, "-png", "-r", "80", "-f", "1", "-l", "1", "-singlefile", report, prefix],
            check=True,
        )
        shutil.copyfile(f"{prefix}.png", README_SHOTS / "compliance-report.png")


def test_a_security_officer_marks_an_item_implemented_with_a_link_without_javascript(
    open_as, people
):
    page = open_as(people["security_officer"], javascript=False)
    page.goto("/compliance/?category=model")
    article = page.locator("#item-model-encryption-at-rest")
    expect(article.locator(".status")).to_have_text("Not started")

    article.locator("summary").click()  # <details> opens without any script
    article.get_by_label("Link").fill("https://wiki.example/runbooks/master-key-rotation")
    article.get_by_role("button", name="Add evidence").click()

    expect(page.get_by_role("status")).to_contain_text("Evidence added to")
    assert page.url.endswith("/compliance/?category=model#item-model-encryption-at-rest")
    article = page.locator("#item-model-encryption-at-rest")
    expect(
        article.get_by_role("link", name="https://wiki.example/runbooks/master-key-rotation")
    ).to_be_visible()

    article.locator("summary").click()
    article.get_by_label("Status").select_option("implemented")
    article.get_by_label("Owner").select_option(people["security_officer"].username)
    article.get_by_label("Notes").fill("Rotation rehearsed; every version under mk1.")
    article.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Saved “Model encryption at rest”.")
    article = page.locator("#item-model-encryption-at-rest")
    expect(article.locator(".status")).to_have_text("Implemented")
    expect(article).to_contain_text("Rotation rehearsed")
    shot(page, "compliance-officer")
    target = item("model-encryption-at-rest")
    assert target.status == "implemented" and target.owner == people["security_officer"]
    [evidence] = Evidence.objects.filter(item=target)
    assert evidence.url == "https://wiki.example/runbooks/master-key-rotation"
    assert [e["action"] for e in audit_events() if e["action"].startswith("compliance.")] == [
        "compliance.evidence.added",
        "compliance.item.updated",
    ]
