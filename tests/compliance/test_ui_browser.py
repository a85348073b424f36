"""The compliance UI in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven
by Playwright against pytest-django's live server.

An auditor sees the progress bars and downloads the PDF report, then reads a framework's
controls and the items serving them; a security officer, in a browser with JavaScript turned
off, opens an item from its category, adds a link as evidence and marks it implemented, and
runs the checks (a run with failures is a warning).
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
from django.utils import timezone
from playwright.sync_api import expect
from pypdf import PdfReader

from apps.accounts.models import TotpDevice
from apps.compliance.models import ChecklistItem, Evidence
from apps.compliance.selectors import compliance_progress
from apps.compliance.services import compliance_checks_run, evidence_add
from apps.incidents.models import Incident
from tests.browser import ARTIFACTS, README_SHOTS, UPDATE_SHOTS, signed_in_pages
from tests.compliance.conftest import audit_events, item

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def open_as(browser: Any, live_server: Any, verified_login: Any) -> Iterator[Any]:
    """open_as(user, javascript=True) → a page signed in as `user`; no console error, page
    error or refused request on any (tests/browser.py)."""
    yield from signed_in_pages(browser, live_server, verified_login, javascript=True)


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
    progress = compliance_progress(actor=None)[0]
    # 14 marked implemented by hand, more evidenced by the checks that passed.
    assert progress.implemented == 14 and progress.evidenced > 0
    expect(checklist).to_have_attribute("value", str(progress.covered))
    expect(checklist).to_have_attribute("max", "34")
    expect(page.locator("#progress-checklist-text")).to_contain_text(
        f"{progress.percent_with_evidence}% · 14 implemented + {progress.evidenced} evidenced"
    )
    expect(page.locator("#how-progress")).to_contain_text("How progress counts.")
    dashboard = shot(page, "compliance-dashboard", full_page=False)
    # The checklist, collapsed by category: open one to see its rows.
    authentication = page.locator("#category-authentication")
    expect(authentication.locator("#item-auth-mfa")).to_be_hidden()
    authentication.locator("summary").click()
    mfa = page.locator("#item-auth-mfa")
    expect(mfa.locator(".status")).to_have_text("Implemented")
    expect(mfa.locator(".result")).to_have_text("Pass")
    # Read-only for auditors: no edit forms, no run button.
    expect(page.locator("form[method=post]")).to_have_count(1)  # signing out only
    expect(page.get_by_role("button", name="Run checks now")).to_have_count(0)
    shot(page, "compliance-auditor")

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

    page.get_by_role("link", name="Multi-factor authentication (MFA)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Multi-factor authentication (MFA)")
    expect(
        page.get_by_role("link", name="https://wiki.example/security/mfa-enforcement")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Save")).to_have_count(0)

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
    page.goto("/compliance/")
    model = page.locator("#category-model")
    model.locator("summary").click()  # <details> opens without any script
    row = page.locator("#item-model-encryption-at-rest")
    expect(row.locator(".status")).to_have_text("Not started")
    row.get_by_role("link", name="Model encryption at rest").click()

    target = item("model-encryption-at-rest")
    assert page.url.endswith(f"/compliance/items/{target.id}")
    page.get_by_label("Link").fill("https://wiki.example/runbooks/master-key-rotation")
    page.get_by_role("button", name="Add evidence").click()

    expect(page.get_by_role("status")).to_contain_text("Evidence added to")
    assert page.url.endswith(f"/compliance/items/{target.id}#evidence")
    expect(
        page.get_by_role("link", name="https://wiki.example/runbooks/master-key-rotation")
    ).to_be_visible()

    page.get_by_label("Status").select_option("implemented")
    page.get_by_label("Owner").select_option(people["security_officer"].username)
    page.get_by_label("Notes").fill("Rotation rehearsed; every version under mk1.")
    page.get_by_role("button", name="Save").click()

    expect(page.get_by_role("status")).to_contain_text("Saved “Model encryption at rest”.")
    expect(page.locator(".item-head .status")).to_have_text("Implemented")
    expect(page.locator(".item-head")).to_contain_text("Counts in progress: implemented")
    expect(page.locator("main")).to_contain_text("Rotation rehearsed")
    shot(page, "compliance-officer")
    target.refresh_from_db()
    assert target.status == "implemented" and target.owner == people["security_officer"]
    [evidence] = Evidence.objects.filter(item=target)
    assert evidence.url == "https://wiki.example/runbooks/master-key-rotation"
    assert [e["action"] for e in audit_events() if e["action"].startswith("compliance.")] == [
        "compliance.evidence.added",
        "compliance.item.updated",
    ]

    # The checks fail here (not production, no key vault): a warning, not a success.
    page.get_by_role("link", name="Compliance", exact=True).first.click()
    page.get_by_role("button", name="Run checks now").click()
    banner = page.locator(".message-warning")
    expect(banner).to_contain_text("Warning: Automated checks ran:")
    expect(banner).to_contain_text("failed.")
    expect(page.locator(".message-success")).to_have_count(0)
    shot(page, "compliance-checks-warning", full_page=False)


def test_an_auditor_reads_a_framework_s_controls_and_the_items_serving_them(
    open_as, people, history
):
    page = open_as(people["auditor"])
    page.goto("/compliance/")
    page.get_by_role("link", name="Controls of HIPAA").click()

    assert page.url.endswith("/compliance/frameworks/hipaa")
    expect(page.get_by_role("heading", level=1)).to_have_text("HIPAA")
    hipaa = next(p for p in compliance_progress(actor=None) if p.key == "hipaa")
    bar = page.get_by_role("progressbar", name="HIPAA")
    expect(bar).to_have_attribute("value", str(hipaa.covered))
    expect(bar).to_have_attribute("max", str(hipaa.applicable))
    expect(page.locator(".control")).to_have_count(8)
    control = page.locator("#control-164312d")
    expect(control.get_by_role("heading")).to_have_text(
        "164.312(d) Person or entity authentication"
    )
    expect(control.locator("tbody tr")).to_have_count(3)
    expect(control.locator("#control-164312d-auth-mfa .status")).to_have_text("Implemented")
    expect(page.locator("#how-progress")).to_be_visible()
    if hipaa.checks["fail"]:
        expect(page.locator(".checks-summary")).to_contain_text(f"{hipaa.checks['fail']} fail")
    path = shot(page, "compliance-framework", full_page=False)

    # From the index to a control, and from its item to the item's page and back.
    page.get_by_role("link", name="164.308(a)(6)", exact=True).click()
    assert page.url.endswith("#control-164308a6")
    page.locator("#control-164308a6").get_by_role("link", name="Post-mortem").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Post-mortem")
    page.get_by_role("link", name="164.308(a)(6) Security incident procedures").click()
    assert page.url.endswith("/compliance/frameworks/hipaa#control-164308a6")

    if UPDATE_SHOTS:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / "compliance-framework.png")
