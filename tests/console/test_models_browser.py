"""The console's models pages in a real browser: headless Chromium (Debian's /usr/bin/chromium)
driven by Playwright against pytest-django's live server, with JavaScript turned off (every
action is a plain form).

An ML engineer registers a model, uploads a version (a small fitted scikit-learn model, built
as the registry tests build it), promotes it, uploads another (the form offers the first one's
schema), promotes that, and rolls back; then a security officer archives the older version.
All through the pages; no network. Sessions are made with Django's test client and handed to
the browser as a cookie. Screenshot: var/test-artifacts/model-version.png (and, with
BULWARK_UPDATE_SCREENSHOTS=1, static/screenshots/model-version.png for the README).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from apps.registry.selectors import model_versions_stored, registered_model_get
from tests.browser import ARTIFACTS, README_SHOTS, UPDATE_SHOTS, signed_in_pages
from tests.registry import conftest as registry_fixtures
from tests.registry.conftest import SCHEMA, audit_events, trained_bytes

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

media_root = registry_fixtures.media_root  # the test's own media root (artifacts stored there)


@pytest.fixture
def open_as(browser: Any, live_server: Any, verified_login: Any) -> Iterator[Any]:
    """open_as(user, javascript=False) → a page signed in as `user`; no console error, page
    error or refused request on any (tests/browser.py)."""
    yield from signed_in_pages(browser, live_server, verified_login, javascript=False)


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def stages() -> list[tuple[int, str]]:
    return [(version.number, version.stage) for version in model_versions_stored()]


def upload(page: Any) -> None:
    page.set_input_files(
        "#upload_artifact",
        {
            "name": "model.joblib",
            "mimeType": "application/octet-stream",
            "buffer": trained_bytes(),
        },
    )
    page.get_by_role("button", name="Upload").click()


def confirm(page: Any, action: str) -> None:
    """Follow the version page's `action` link, read its confirmation page, and confirm."""
    page.get_by_role("link", name=action).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{action}?")
    page.get_by_role("button", name=f"Yes, {action.lower()}").click()


def test_an_engineer_takes_a_model_from_registration_to_a_roll_back_in_the_browser(
    open_as, actors, media_root
):
    engineer = actors["ml_engineer"]
    engineer.username = "lena"
    engineer.save(update_fields=["username"])
    page = open_as(engineer)

    # Register.
    page.goto("/models/")
    page.get_by_role("link", name="Register a model").first.click()
    page.fill("#register_name", "pricing")
    page.fill("#register_description", "House prices from rooms and area.")
    page.get_by_role("button", name="Register").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("pricing")
    expect(page.locator(".messages")).to_contain_text("Registered pricing: you are its owner.")

    # The first version: no earlier schema to offer, so it is typed in.
    page.get_by_role("link", name="Upload a version").first.click()
    expect(page.locator("#upload_input_schema")).to_have_value("")
    page.fill("#upload_input_schema", json.dumps(SCHEMA))
    upload(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("pricing v1")
    expect(page.locator(".messages")).to_contain_text("it is in staging")
    confirm(page, "Promote to production")
    expect(page.locator(".messages")).to_contain_text("pricing v1 is now in production.")
    assert stages() == [(1, "production")]

    # The second: the form offers v1's schema; nothing is typed.
    page.goto("/models/pricing")
    page.get_by_role("link", name="Upload a version").first.click()
    expect(page.locator(".prefilled")).to_contain_text("Prefilled from v1")
    shot(page, "model-upload")
    assert json.loads(page.input_value("#upload_input_schema")) == SCHEMA
    upload(page)
    expect(page.get_by_role("heading", level=1)).to_have_text("pricing v2")
    confirm(page, "Promote to production")
    assert stages() == [(1, "staging"), (2, "production")]
    first, second = model_versions_stored()
    assert first.feature_order == second.feature_order == ["rooms", "area"]

    # Roll back from v2 to v1.
    confirm(page, "Roll back to v1")
    expect(page.get_by_role("heading", level=1)).to_have_text("pricing v1")
    expect(page.locator(".messages")).to_contain_text(
        "Rolled back: v1 is in production, v2 is back in staging."
    )
    assert stages() == [(1, "production"), (2, "staging")]
    model = registered_model_get(actor=engineer, name="pricing")
    assert [o.username for o in model.owners.all()] == ["lena"]
    moves = [(e["target"]["id"], e["details"]["to"]) for e in audit_events("model.version.staged")]
    assert moves == [
        ("pricing:1", "production"),
        ("pricing:1", "staging"),
        ("pricing:2", "production"),
        ("pricing:2", "staging"),
        ("pricing:1", "production"),
    ]

    # The model's page lists both, newest first, and says which one serves.
    page.goto("/models/pricing")
    expect(page.locator(".versions tbody tr")).to_have_count(2)
    expect(page.locator(".versions tbody tr").first).to_contain_text("v2")
    expect(page.get_by_role("region", name="Serving")).to_contain_text("answered by v1")
    shot(page, "model-detail")
    page.goto("/models/")
    expect(page.locator("table.models")).to_contain_text("1 · newest v2")
    shot(page, "models-list")

    # The version page: what the screenshot shows.
    page.goto("/models/pricing/versions/1")
    facts = page.get_by_role("region", name="Artifact")
    expect(facts).to_contain_text(model.versions.get(number=1).sha256)
    expect(facts).to_contain_text("unsigned")
    expect(facts).to_contain_text("not quarantined")
    path = shot(page, "model-version")
    if UPDATE_SHOTS:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, README_SHOTS / "model-version.png")


def test_a_security_officer_archives_a_version_from_its_page(open_as, actors, media_root):
    from tests.console.models_helpers import make_model, make_version

    make_model(actors["ml_engineer"])
    make_version(actors["ml_engineer"], stage="production")
    make_version(actors["ml_engineer"])
    page = open_as(actors["security_officer"])
    page.goto("/models/pricing/versions/2")
    expect(page.get_by_role("link", name="Promote to production")).to_have_count(0)
    confirm(page, "Archive")
    expect(page.locator(".messages")).to_contain_text("pricing v2 is now archived.")
    assert stages() == [(1, "production"), (2, "archived")]
