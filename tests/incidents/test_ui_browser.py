"""The incidents UI in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright against pytest-django's live server.

A security officer signs in with a TOTP code, opens an incident (by keyboard alone), walks it
through every phase with notes, is refused closing without a post-mortem, writes it, closes
and reopens; an auditor sees the same incident without a single form; revoking an API key
from the page (with its confirmation) makes that key fail on predict at once. Screenshots of
the list and the detail page go to var/test-artifacts/ (and, with
BULWARK_UPDATE_SCREENSHOTS=1, to static/screenshots/ for the README).
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.incidents.models import Incident
from tests.accounts.factories import UserFactory
from tests.accounts.test_mfa import PASSWORD, confirmed_device, fresh_code
from tests.apikeys.factories import ApiKeyFactory
from tests.browser import (
    ARTIFACTS,
    README_SHOTS,
)
from tests.serving.conftest import (  # noqa: F401  # fixtures, used by name below
    ROW,
    _fresh_process_state,
    media_root,
    pricing,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def page(request: Any, browser: Any, live_server: Any) -> Iterator[Any]:
    """A fresh tab (own cookies); `@pytest.mark.parametrize("page", [{"js": False}],
    indirect=True)` gives one with JavaScript off."""
    options = getattr(request, "param", {})
    context = browser.new_context(
        base_url=live_server.url,
        viewport={"width": 1280, "height": 900},
        java_script_enabled=options.get("js", True),
    )
    tab = context.new_page()
    tab.set_default_timeout(10_000)
    errors: list[str] = []

    def on_console(message: Any) -> None:
        # A page answered 4xx on purpose (a refused form) is logged as "Failed to load
        # resource"; failed subresources are caught by the response check below instead.
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            errors.append(message.text)

    def on_response(response: Any) -> None:
        if response.request.resource_type != "document" and response.status >= 400:
            errors.append(f"{response.status} {response.url}")

    tab.on("console", on_console)
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("response", on_response)
    yield tab
    context.close()
    # No CSP violation, no script error, no missing static file on any page visited.
    assert errors == []


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def sign_in(page: Any, user: Any, device: Any = None) -> None:
    page.goto("/account/login?next=/incidents/")
    if not ARTIFACTS.joinpath("login.png").exists():
        shot(page, "login")
    page.get_by_label("Username").fill(user.username)
    page.get_by_label("Password").fill(PASSWORD)
    if device is not None:
        page.get_by_label("Authenticator code").fill(fresh_code(device))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/incidents/")


def tab_to(page: Any, selector: str, limit: int = 40) -> None:
    """Press Tab until the focused element matches `selector` (keyboard only)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate("s => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"Tab never reached {selector}")


def status_of(page: Any) -> str:
    return page.locator(".incident-head .status").inner_text()


def move(page: Any, button: str, note: str) -> None:
    form = page.locator("#next-step form")
    form.get_by_label("Note").fill(note)
    form.get_by_role("button", name=button).click()
    page.wait_for_load_state()


@pytest.fixture
def officer() -> tuple[Any, Any]:
    user = UserFactory(username="amira", roles=["security_officer"])
    return user, confirmed_device(user)


def test_an_officer_runs_an_incident_from_detection_to_post_mortem_and_reopens_it(
    page, officer, actors
):
    user, device = officer
    sign_in(page, user, device)

    # Keyboard only: the skip link comes first, then the header, then "New incident".
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    tab_to(page, "a.button.primary")
    page.keyboard.press("Enter")
    page.wait_for_url("**/incidents/new")
    tab_to(page, "#id_title")
    page.keyboard.type("Model extraction suspected on pricing")
    page.keyboard.press("Tab")  # severity, SEV3 preselected
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Tab")
    page.keyboard.type("One key sends systematic grids of inputs.")
    tab_to(page, "button[type=submit].primary")
    page.keyboard.press("Enter")
    page.wait_for_url("**/incidents/*-*")

    incident = Incident.objects.get()
    assert (incident.title, incident.severity) == ("Model extraction suspected on pricing", "sev1")
    assert page.locator("[aria-current=step] .step-label").inner_text() == "Detected"
    assert status_of(page) == "Detected"

    for button, expected in [
        ("Move to Contained", "Contained"),
        ("Move to Investigating", "Investigating"),
        ("Move to Remediated", "Remediated"),
        ("Move to Recovered", "Recovered"),
    ]:
        move(page, button, f"Now {expected.lower()}.")
        assert status_of(page) == expected
        assert page.locator("[aria-current=step] .step-label").inner_text() == expected
        assert page.locator(".timeline").get_by_text(f"Now {expected.lower()}.").is_visible()

    # Closing without a post-mortem: refused, with the message, the note kept.
    move(page, "Move to Closed", "Done.")
    alert = page.get_by_role("alert")
    assert "Closing needs a post-mortem" in alert.inner_text()
    assert status_of(page) == "Recovered"

    postmortem = page.locator("#postmortem form")
    postmortem.get_by_label("Root cause").fill("A scraper used a leaked partner key.")
    postmortem.get_by_label("Impact").fill("About 40,000 predictions; no personal data.")
    postmortem.get_by_label("Lessons learned").fill("Alert on input-grid patterns per key.")
    page.get_by_role("button", name="Add another action item").click()  # the enhancement
    expect(page.locator("#id_actions-2-description")).to_be_focused()
    page.fill("#id_actions-0-description", "Per-key anomaly detector on input grids")
    page.select_option("#id_actions-0-owner", user.username)
    page.fill("#id_actions-0-due_date", (timezone.now() + timedelta(days=14)).date().isoformat())
    postmortem.get_by_role("button", name="Save post-mortem").click()
    page.wait_for_load_state()
    assert "Post-mortem saved." in page.get_by_role("status").inner_text()

    move(page, "Move to Closed", "Post-mortem written; closing.")
    assert status_of(page) == "Closed"
    assert page.locator("[aria-current=step] .step-label").inner_text() == "Closed"

    move(page, "Reopen incident", "Same pattern seen again from a new key.")
    assert status_of(page) == "Investigating"
    incident.refresh_from_db()
    assert (incident.status, incident.reopened_count) == ("investigating", 1)
    assert incident.actions.get().owner == user
    shot(page, "officer-detail-after-reopen")


def test_an_auditor_reads_the_incident_without_any_form(page, actors):
    from apps.incidents.services import incident_create, incident_note_add

    incident = incident_create(
        actor=actors["security_officer"], title="Leaked key in a gist", severity="sev2"
    )
    incident_note_add(actor=actors["security_officer"], incident=incident, text="Rotated.")
    sign_in(page, actors["auditor"])
    assert page.get_by_role("link", name="Leaked key in a gist").is_visible()
    shot(page, "auditor-list")
    assert page.get_by_role("link", name="New incident").count() == 0
    page.get_by_role("link", name="Leaked key in a gist").click()
    page.wait_for_load_state()
    assert page.get_by_text("Rotated.").is_visible()
    assert page.locator("main form").count() == 0
    assert page.locator("main textarea, main select, main input").count() == 0
    assert page.get_by_role("link", name="Report PDF").is_visible()


def predict(live_server: Any, key: str) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(
        f"{live_server.url}/api/v1/models/pricing/predict",
        data=json.dumps({"inputs": [ROW]}).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


@pytest.mark.parametrize("page", [{"js": False}], indirect=True)  # works without JavaScript
def test_revoking_a_key_from_the_page_makes_it_fail_on_predict(
    page,
    officer,
    actors,
    live_server,
    pricing,  # noqa: F811  # the fixture imported above
):
    from apps.incidents.services import incident_detector_hit

    api_key, key = ApiKeyFactory.issue(
        owner=actors["ml_engineer"], name="partner feed", scopes=["predict:pricing"]
    )
    assert predict(live_server, key)[0] == 200
    incident, _ = incident_detector_hit(
        detector="input_grid_scan",
        subject=api_key.prefix,
        severity="sev1",
        title="Systematic input grid from one key",
        evidence={"calls": 4200, "distinct_rows": 4100},
        links=[("api_key", api_key.prefix, api_key.name)],
    )
    user, device = officer
    sign_in(page, user, device)
    page.goto(f"/incidents/{incident.id}")
    page.get_by_role("button", name="Revoke API key…").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="Revoke API key?").is_visible()
    assert page.get_by_text(api_key.prefix).is_visible()
    assert predict(live_server, key)[0] == 200  # nothing happens before the confirmation
    # The confirm button has focus: Enter confirms (keyboard again).
    expect(page.get_by_role("button", name="Yes, revoke api key")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/incidents/{incident.id}")
    assert f"Revoked API key {api_key.prefix}" in page.locator(".timeline").inner_text()

    status, body = predict(live_server, key)
    assert status == 401 and body["error"]["code"] == "api_key_revoked"


def backdate(incident: Incident, minutes_ago: list[int]) -> None:
    """Spread an incident's history over the past, for the pictures: its timeline entries,
    oldest first, at these many minutes ago (the last value repeats for the rest), and the
    phase times to match. Test data only: nothing in Bulwark rewrites history."""
    from apps.incidents.models import TimelineEntry

    now = timezone.now()
    phases: dict[str, Any] = {}
    for index, entry in enumerate(incident.timeline.order_by("created_at")):
        moment = now - timedelta(minutes=minutes_ago[min(index, len(minutes_ago) - 1)])
        TimelineEntry.objects.filter(pk=entry.pk).update(created_at=moment, updated_at=moment)
        if entry.kind == "created":
            phases["detected_at"] = moment
        elif entry.kind == "transition":
            phases[f"{entry.data['to']}_at"] = moment
    Incident.objects.filter(pk=incident.pk).update(created_at=phases["detected_at"], **phases)
    Incident.objects.filter(pk=incident.pk).update(updated_at=moment)


def test_screenshots_of_the_list_and_the_detail_page(page, officer, actors):
    """Realistic data for the README's pictures."""
    from apps.incidents.services import (
        incident_assign,
        incident_contain,
        incident_create,
        incident_detector_hit,
        incident_note_add,
        incident_transition,
    )
    from tests.incidents.conftest import move_to

    user, device = officer
    jonas = UserFactory(username="jonas", roles=["security_officer"])
    li = UserFactory(username="li.wei", roles=["admin"])
    partner = UserFactory(username="partner-acme", roles=["api_client"])
    leaked, _ = ApiKeyFactory.issue(owner=partner, name="acme nightly batch")

    showcase = incident_create(
        actor=user,
        title="Model extraction suspected on pricing",
        severity="sev1",
        description="One partner key sends systematic grids of inputs to pricing v3: "
        "4,200 calls in 20 minutes, nearly every row distinct.",
    )
    incident_assign(actor=user, incident=showcase, assignee=user)
    incident_note_add(
        actor=jonas,
        incident=showcase,
        text="The grid steps are 0.5 on price and 0.01 on demand: a scraper, not a customer.",
    )
    incident_contain(actor=user, incident=showcase, action="revoke_api_key", target=str(leaked.id))
    showcase = incident_transition(
        actor=user, incident=showcase, to="contained", note="Key revoked; calls stopped at once."
    )
    showcase = incident_transition(
        actor=user,
        incident=showcase,
        to="investigating",
        note="Pulling the partner's call history from the audit trail.",
    )
    backdate(showcase, [47, 45, 38, 31, 30, 22])
    auth, _ = incident_detector_hit(
        detector="auth_failures",
        subject="203.0.113.0/24",
        severity="sev2",
        title="Burst of failed sign-ins from 203.0.113.0/24",
        evidence={"failures": 57, "window": "5m", "usernames": 9},
        links=[("ip", "203.0.113.0/24", "")],
    )
    backdate(auth, [12])
    replays, _ = incident_detector_hit(
        detector="signature_replays",
        subject="bwk_q7c2m9x4k1ta",
        severity="sev2",
        title="Replayed request signatures on bwk_q7c2m9x4k1ta",
        evidence={"replays": 12},
    )
    flood, _ = incident_detector_hit(
        detector="rate_limit_flood",
        subject="bwk_h3k8v0p2n6ds",
        severity="sev3",
        title="Rate-limit flood on predict",
        evidence={"refused": 1800, "window": "1m"},
    )
    backdate(replays, [95])
    incident_assign(actor=li, incident=flood, assignee=jonas)
    move_to(flood, "remediated", actor=jonas)
    backdate(flood, [185, 185, 170, 160, 120, 64])
    cert = incident_create(
        actor=li, title="Staging TLS certificate expires in 5 days", severity="sev4"
    )
    move_to(cert, "closed", actor=li)
    backdate(cert, [3 * 1440, 3 * 1440 - 30, 2 * 1440, 1440, 700, 400, 300])
    watermark = incident_create(
        actor=jonas, title="Watermark check failed on churn v2 upload", severity="sev2"
    )
    incident_assign(actor=jonas, incident=watermark, assignee=jonas)
    move_to(watermark, "recovered", actor=jonas)
    backdate(watermark, [26 * 60, 26 * 60 - 5, 25 * 60, 20 * 60, 9 * 60, 5 * 60])

    sign_in(page, user, device)
    list_path = shot(page, "incidents-list")
    page.goto(f"/incidents/{showcase.id}")
    detail_path = shot(page, "incident-detail")
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: everything still reachable
    shot(page, "incident-detail-narrow")
    assert page.get_by_role("button", name="Move to Remediated").is_visible()
    if os.environ.get("BULWARK_UPDATE_SCREENSHOTS") == "1":
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(list_path, README_SHOTS / "incidents-list.png")
        shutil.copyfile(detail_path, README_SHOTS / "incident-detail.png")


@pytest.mark.parametrize("page", [{"js": False}], indirect=True)  # works without JavaScript
def test_a_false_positive_is_closed_from_detected_through_the_page(page, officer):
    from apps.incidents.services import incident_detector_hit

    incident, _ = incident_detector_hit(
        detector="auth_failures",
        subject="198.51.100.0/24",
        severity="sev2",
        title="Burst of failed sign-ins from 198.51.100.0/24",
        evidence={"failures": 31, "window": "5m"},
        links=[("ip", "198.51.100.0/24", "")],
    )
    user, device = officer
    sign_in(page, user, device)
    page.goto(f"/incidents/{incident.id}")
    assert status_of(page) == "Detected"

    # The form is folded away (a <details>, no script needed to open it).
    form = page.locator("#close form")
    assert not form.is_visible()
    page.get_by_text("Close as false positive / duplicate…").click()
    form.get_by_label("False positive").check()
    form.get_by_label("Note").fill("Our own load test from the staging network.")
    page.locator("#close").screenshot(path=str(ARTIFACTS / "incident-close-form.png"))
    form.get_by_role("button", name="Close incident…").click()
    page.wait_for_load_state()

    assert page.get_by_role("heading", name="Close as false positive?").is_visible()
    assert page.get_by_text("Our own load test from the staging network.").is_visible()
    incident.refresh_from_db()
    assert incident.status == "detected"  # nothing happens before the confirmation
    shot(page, "incident-close-confirm")
    expect(page.get_by_role("button", name="Yes, close as false positive")).to_be_focused()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/incidents/{incident.id}")

    assert status_of(page) == "Closed"
    assert "Closed as false positive." in page.get_by_role("status").inner_text()
    assert page.locator(".incident-head .resolution").inner_text() == "False positive"
    assert page.locator(".phasebar .step-skipped").count() == 4
    timeline = page.locator(".timeline").inner_text()
    assert "Detected → Closed as false positive" in timeline
    assert "Our own load test from the staging network." in timeline
    assert page.get_by_role("button", name="Reopen incident").is_visible()
    incident.refresh_from_db()
    assert (incident.status, incident.resolution) == ("closed", "false_positive")
    assert not incident.has_postmortem
    shot(page, "incident-closed-false-positive")


def test_the_close_form_shows_duplicate_of_only_for_a_duplicate(page, officer, actors):
    """The enhancement (JavaScript on): the field appears when "Duplicate" is chosen."""
    from apps.incidents.services import incident_create

    original = incident_create(actor=actors["admin"], title="First report", severity="sev3")
    incident = incident_create(actor=actors["admin"], title="Second report", severity="sev3")
    user, device = officer
    sign_in(page, user, device)
    page.goto(f"/incidents/{incident.id}")
    page.get_by_text("Close as false positive / duplicate…").click()
    form = page.locator("#close form")
    duplicate_of = form.get_by_label("Duplicate of")
    expect(duplicate_of).to_be_hidden()
    form.get_by_label("Duplicate", exact=True).check()
    expect(duplicate_of).to_be_visible()
    duplicate_of.fill(f"{page.url.rsplit('/', 1)[0]}/{original.id}")
    form.get_by_label("Note").fill("Same report twice.")
    form.get_by_role("button", name="Close incident…").click()
    page.wait_for_load_state()
    assert page.get_by_role("heading", name="Close as duplicate?").is_visible()
    page.get_by_role("button", name="Yes, close as duplicate").click()
    page.wait_for_url(f"**/incidents/{incident.id}")
    page.get_by_role("link", name="First report").first.click()
    page.wait_for_url(f"**/incidents/{original.id}")
    assert page.get_by_role("link", name="Second report").is_visible()
    incident.refresh_from_db()
    assert incident.duplicate_of_id == original.id
