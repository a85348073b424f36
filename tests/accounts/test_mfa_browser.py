"""MFA enrolment by QR code in a real browser (Debian's Chromium driven by Playwright), as a new
security officer does it: sign in with the password, get sent to /account/mfa/, point the
"phone" at the QR code (here: a screenshot of the SVG element decoded by zxing-cpp), type the
app's code, sign out, and sign in again with password and code, after one refused code that
leaves the password in the form. The screenshot of the enrolment page is mfa-enrolment.png.
"""

from __future__ import annotations

import io
import shutil
from base64 import b32decode
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import pytest
import zxingcpp
from django_otp.oath import TOTP
from PIL import Image

from apps.accounts.models import TotpDevice
from tests.accounts.factories import UserFactory
from tests.accounts.test_mfa import PASSWORD, audit_events
from tests.browser import ARTIFACTS, README_SHOTS, UPDATE_SHOTS

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def app_code(secret: str, *, steps_ahead: int = 0) -> str:
    """What an authenticator app holding `secret` shows now (or `steps_ahead` periods on)."""
    key = b32decode(secret + "=" * (-len(secret) % 8))
    generator = TOTP(key, step=30, digits=6)
    generator.drift = steps_ahead
    return f"{generator.token():06d}"


def wrong_app_code(secret: str) -> str:
    """Six digits that match none of the steps the server would accept now."""
    near = {app_code(secret, steps_ahead=offset) for offset in range(-2, 3)}
    return next(code for code in ("000000", "111111", "222222", "333333") if code not in near)


def test_an_officer_enrols_by_qr_code_and_signs_in_with_the_app(browser: Any, live_server: Any):
    officer = UserFactory(username="amara", roles=["security_officer"])
    errors: list[str] = []
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1100, "height": 900})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    refusals: list[str] = []  # (the refused code is expected to answer 400, and only it)
    page.on(
        "response",
        lambda r: (
            refusals.append(f"{r.status} {urlparse(r.url).path}") if r.status >= 400 else None
        ),
    )

    # Password first: the role requires MFA, so the sign-in sends the officer to enrol.
    page.goto("/account/login")
    page.get_by_label("Username").fill("amara")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/account/mfa/")
    assert page.get_by_role("heading", name="Two-factor authentication").is_visible()

    # The phone's camera: the QR code as pixels, decoded.
    qr = page.get_by_role("img", name="QR code that adds Bulwark to your authenticator app")
    assert qr.evaluate("node => node.tagName") == "svg"  # inline, not an image URL
    scanned = zxingcpp.read_barcodes(Image.open(io.BytesIO(qr.screenshot())))
    assert len(scanned) == 1
    uri = scanned[0].text
    parts = urlparse(uri)
    assert (parts.scheme, parts.netloc) == ("otpauth", "totp")
    assert unquote(parts.path) == "/Bulwark:amara"
    [secret] = parse_qs(parts.query)["secret"]
    # The key for typing by hand is the same one.
    assert page.locator("#totp-secret").inner_text().replace(" ", "") == secret

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / "mfa-enrolment.png"
    page.screenshot(path=str(shot), full_page=True)
    if UPDATE_SHOTS:
        README_SHOTS.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, README_SHOTS / "mfa-enrolment.png")

    page.get_by_label("Code from your authenticator app").fill(app_code(secret))
    page.get_by_role("button", name="Confirm").click()
    assert page.get_by_role("heading", name="Two-factor authentication is on").is_visible()
    assert page.locator("ol.recovery-codes li").count() == 10
    device = TotpDevice.objects.get(user=officer)
    assert device.confirmed
    assert [event["details"] for event in audit_events("auth.mfa.enrolled")] == [{"device": "totp"}]

    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url("**/account/login")

    # A wrong code: refused, the password stays in the form, the code does not.
    page.get_by_label("Username").fill("amara")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_label("Authenticator code").fill(wrong_app_code(secret))
    page.get_by_role("button", name="Sign in").click()
    assert page.get_by_text("That code is wrong or was already used.").is_visible()
    assert page.get_by_label("Username").input_value() == "amara"
    assert page.get_by_label("Password").input_value() == PASSWORD
    assert page.get_by_label("Authenticator code").input_value() == ""
    assert refusals == ["400 /account/login"]

    # django-otp waits a second after a wrong code; then only the code is typed. The code of
    # the step enrolment used is spent, so the app's next one (within the allowed drift).
    page.wait_for_timeout(1100)
    page.get_by_label("Authenticator code").fill(app_code(secret, steps_ahead=1))
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url("**/incidents/")
    assert page.locator(".session .who").inner_text() == "amara"
    methods = [event["details"]["method"] for event in audit_events("auth.session.started")]
    assert methods == ["password", "password+otp"]

    context.close()
    # Chromium logs the expected 400 as a failed resource; nothing else may be there.
    assert errors in (
        [],
        ["Failed to load resource: the server responded with a status of 400 (Bad Request)"],
    )
    assert refusals == ["400 /account/login"]
