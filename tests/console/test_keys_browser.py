"""The key pages in a real browser: headless Chromium (Debian's /usr/bin/chromium) driven by
Playwright against pytest-django's live server.

A security officer, with JavaScript turned off (every action is a plain form), issues a key
for the service account `demo-client` in the console, reloads the page that showed it (410
"Already shown": one key in the database, its secret gone), then rotates it and revokes the
new key from the key's page, each through its confirmation page. The same issue-and-reload
check runs in the admin, with JavaScript on. Sessions are made with Django's test client and
handed to the browser as a cookie. Screenshot: var/test-artifacts/keys.png, the key list
(and, with BULWARK_UPDATE_SCREENSHOTS=1, static/screenshots/keys.png for the README).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.apikeys.models import ApiKey
from tests.accounts.factories import UserFactory
from tests.apikeys.conftest import audit_events
from tests.apikeys.factories import ApiKeyFactory
from tests.browser import ARTIFACTS, README_SHOTS, UPDATE_SHOTS, signed_in_pages
from tests.console.keys_helpers import KEY, keys_of, secret_of, service_account

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def open_as(browser: Any, live_server: Any, verified_login: Any) -> Iterator[Any]:
    """open_as(user, javascript=False) → (page, expect_gone): a page signed in as `user`; no
    console error, page error or refused request on any, but for the 410 of a page the test
    names with expect_gone(url) before reloading it (tests/browser.py)."""
    for pages in signed_in_pages(browser, live_server, verified_login, javascript=False):
        yield pages, pages.expect_gone


def shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


@pytest.fixture
def people(actors: dict[str, Any]) -> dict[str, Any]:
    """The actors, with names a person would have (they show in the screenshot), and the
    demo's service account granted predict on `pricing`."""
    for role, name in (("security_officer", "amara"), ("admin", "sam"), ("ml_engineer", "lee")):
        actors[role].username = name
        actors[role].save(update_fields=["username"])
    actors["demo-client"] = service_account(actors["admin"])
    return actors


def shown_secrets(page: Any) -> list[str]:
    return [text.strip() for text in page.locator("code.secret").all_inner_texts()]


def test_issue_reload_rotate_and_revoke_in_the_console(open_as, people):
    opener, expect_gone = open_as
    page = opener(people["security_officer"])  # JavaScript off
    client_account = people["demo-client"]

    page.goto("/keys/")
    page.get_by_role("link", name="Issue a key").click()
    page.get_by_label("Owner").fill("demo-client")
    page.get_by_label("Name").fill("checkout service")
    page.get_by_label("Scopes").fill("predict:pricing")
    page.get_by_label("Expires in (days)").fill("60")
    page.get_by_label("IP allow-list").fill("203.0.113.0/24")
    page.get_by_label("Require signed requests").check()
    page.get_by_role("button", name="Issue the key").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Copy this key now")
    shot(page, "key-issued")
    key, signing = shown_secrets(page)
    assert KEY.fullmatch(key) and len(signing) >= 40
    assert "bwk_" not in page.url
    [api_key] = keys_of(client_account)
    assert key.startswith(api_key.prefix + "_") and api_key.require_signature
    issued_url = page.url

    # A reload shows nothing and issues nothing.
    expect_gone(issued_url)
    response = page.reload()
    assert response is not None and response.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("Already shown")
    html = page.content()
    assert secret_of(key) not in html and signing not in html
    assert len(keys_of(client_account)) == 1 and len(audit_events("apikey.created")) == 1

    # Rotate from the key's page, through its confirmation.
    page.goto("/keys/")
    page.get_by_role("link", name=api_key.prefix).click()
    expect(page.get_by_role("heading", level=1)).to_contain_text(api_key.prefix)
    assert secret_of(key) not in page.content()
    shot(page, "key-detail")
    page.get_by_role("link", name="Rotate…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Rotate {api_key.prefix}?")
    shot(page, "key-rotate-confirm")
    api_key.refresh_from_db()
    assert api_key.rotated_to is None  # the confirmation page changed nothing
    page.get_by_label("The old key keeps working for").select_option("3600")
    page.get_by_role("button", name=f"Yes, rotate {api_key.prefix}").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Copy this key now")
    new_key, new_signing = shown_secrets(page)
    assert new_key != key and new_signing != signing
    api_key.refresh_from_db()
    successor = api_key.rotated_to
    assert api_key.status == "rotating" and new_key.startswith(successor.prefix + "_")
    expect_gone(page.url)
    assert page.reload().status == 410
    assert secret_of(new_key) not in page.content()

    # Revoke the new key from its page, through its confirmation.
    page.goto(f"/keys/{successor.pk}")
    page.get_by_role("link", name="Revoke…").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Revoke {successor.prefix}?")
    page.get_by_label("Reason (kept in the audit trail)").fill("service retired")
    page.get_by_role("button", name=f"Yes, revoke {successor.prefix}").click()

    expect(page.get_by_role("status")).to_contain_text(f"Revoked {successor.prefix}")
    expect(page.locator(".key-state").first).to_have_text("Revoked")
    expect(page.get_by_role("link", name="Revoke…")).to_have_count(0)
    successor.refresh_from_db()
    assert successor.status == "revoked"
    [revoked] = audit_events("apikey.revoked")
    assert revoked["details"]["reason"] == "service retired"
    assert ApiKey.objects.count() == 2

    # The list, with keys in every state, for the README.
    _more_keys(people)
    page.goto("/keys/")
    expect(page.get_by_role("heading", name="API keys")).to_be_visible()
    html = page.content()
    for secret in (secret_of(key), signing, secret_of(new_key), new_signing):
        assert secret not in html
    listed = shot(page, "keys")
    if UPDATE_SHOTS:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(listed, README_SHOTS / "keys.png")


def _more_keys(people: dict[str, Any]) -> None:
    """A few more keys, in every state, for the screenshot."""
    now = timezone.now()
    batch = UserFactory(username="batch-scorer", roles=["api_client"])
    ApiKeyFactory.issue(owner=people["ml_engineer"], name="notebook", scopes=["predict:*"])
    ApiKeyFactory.issue(
        owner=batch, name="nightly batch", scopes=["predict:pricing", "predict:churn"],
        expires_at=now + timedelta(days=5), last_used_at=now - timedelta(minutes=12),
    )  # fmt: skip
    ApiKeyFactory.issue(
        owner=batch, name="old batch", expires_at=now - timedelta(days=2),
        last_used_at=now - timedelta(days=3),
    )  # fmt: skip


def test_issue_and_reload_in_the_admin(open_as, people):
    from django.contrib.auth.models import Permission

    opener, expect_gone = open_as
    officer = people["security_officer"]
    officer.is_staff = True
    officer.save(update_fields=["is_staff"])
    officer.user_permissions.set(Permission.objects.filter(content_type__app_label="apikeys"))
    page = opener(officer, javascript=True)

    page.goto("/admin/apikeys/apikey/add/")
    help_text = page.locator(".help, .helptext").filter(has_text="predict:<model name>")
    expect(help_text).to_have_count(1)  # shown as text, not swallowed as a tag
    page.locator("#id_owner").fill("demo-client")
    page.locator("#id_name").fill("checkout service")
    page.locator("#id_scopes").fill("predict:pricing")
    page.locator("input[name=_save]").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Copy this key now")
    [key] = [text.strip() for text in page.locator("code.bulwark-secret").all_inner_texts()]
    assert KEY.fullmatch(key) and "bwk_" not in page.url
    [api_key] = keys_of(people["demo-client"])
    assert key.startswith(api_key.prefix + "_")

    expect_gone(page.url)
    response = page.reload()
    assert response is not None and response.status == 410
    expect(page.get_by_role("heading", level=1)).to_have_text("Already shown")
    assert secret_of(key) not in page.content()
    assert ApiKey.objects.count() == 1 and len(audit_events("apikey.created")) == 1
    # Its page in the admin has the buttons, and shows no secret.
    page.goto(f"/admin/apikeys/apikey/{api_key.pk}/change/")
    expect(page.get_by_role("link", name="Rotate")).to_be_visible()
    expect(page.get_by_role("link", name="Revoke")).to_be_visible()
    assert secret_of(key) not in page.content()
    assert re.search(r"bwk_[a-z0-9]{12}_", page.content()) is None
