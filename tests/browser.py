"""Shared pieces of the browser tests: Debian's Chromium driven by Playwright, never skipped."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(settings.BASE_DIR) / "var" / "test-artifacts"
README_SHOTS = Path(settings.BASE_DIR) / "static" / "screenshots"
UPDATE_SHOTS = os.environ.get("BULWARK_UPDATE_SCREENSHOTS") == "1"


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not os.path.exists(CHROMIUM):
        pytest.fail(
            f"The browser tests need Chromium at {CHROMIUM} (Debian: apt-get install chromium); "
            "they are part of the suite and are never skipped.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    # Playwright's sync API keeps an event loop running in this thread; Django would refuse
    # the ORM calls the tests make between browser steps. Allowed here, then restored.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            yield chromium
            chromium.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


class SignedInPages:
    """`pages(user, javascript=...)` → a Chromium page signed in as `user` (a session made by
    Django's test client, its cookie handed to the browser). Console errors, page errors and
    4xx/5xx responses are collected; `check()` fails the test if there were any (no CSP
    violation, no script error, no missing static file, no refused request), except a 410
    the test announced with `expect_gone(url)` (a shown-once page reloaded on purpose)."""

    def __init__(
        self,
        browser: Any,
        live_server: Any,
        verified_login: Any,
        *,
        javascript: bool,
        timeout_ms: int = 15_000,
    ) -> None:
        self.browser, self.live_server, self.verified_login = browser, live_server, verified_login
        self.javascript, self.timeout_ms = javascript, timeout_ms
        self.contexts: list[Any] = []
        self.problems: list[str] = []
        self.gone: set[str] = set()

    def expect_gone(self, url: str) -> None:
        self.gone.add(url)

    def _console(self, message: Any) -> None:
        if message.type != "error":
            return
        if "status of 410" in message.text and message.location.get("url") in self.gone:
            return
        self.problems.append(message.text)

    def _response(self, response: Any) -> None:
        if response.status >= 400 and not (response.status == 410 and response.url in self.gone):
            self.problems.append(f"{response.status} {response.url}")

    def __call__(self, user: Any, *, javascript: bool | None = None) -> Any:
        from django.test import Client

        client = self.verified_login(Client(), user)
        context = self.browser.new_context(
            base_url=self.live_server.url,
            viewport={"width": 1280, "height": 900},
            java_script_enabled=self.javascript if javascript is None else javascript,
            accept_downloads=True,
        )
        context.add_cookies(
            [
                {
                    "name": settings.SESSION_COOKIE_NAME,
                    "value": client.cookies[settings.SESSION_COOKIE_NAME].value,
                    "url": self.live_server.url,
                }
            ]
        )
        self.contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(self.timeout_ms)
        page.on("console", self._console)
        page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        page.on("response", self._response)
        return page

    def check(self) -> None:
        for context in self.contexts:
            context.close()
        assert self.problems == []


def signed_in_pages(
    browser: Any, live_server: Any, verified_login: Any, *, javascript: bool
) -> Iterator[SignedInPages]:
    """The body of a test module's `open_as` fixture: yields the pages, then checks them."""
    pages = SignedInPages(browser, live_server, verified_login, javascript=javascript)
    yield pages
    pages.check()
