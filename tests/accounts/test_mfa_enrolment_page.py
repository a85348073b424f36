"""The MFA enrolment page's QR code (inline SVG made on the server, decoded here from the served
markup with zxing-cpp) and what a refused code leaves in the forms: everything typed except the
code, and the password only when it was right."""

from __future__ import annotations

import html
import re
from base64 import b32encode
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
import zxingcpp
from django.test import Client
from PIL import Image

from apps.accounts.models import TotpDevice
from tests.accounts.factories import UserFactory
from tests.accounts.test_mfa import (
    MFA_URL,
    PASSWORD,
    confirmed_device,
    current_code,
    recovery_codes_for,
    wrong_code,
)
from tests.accounts.test_mfa_admin import admin_login
from tests.accounts.test_web_login import sign_in

pytestmark = pytest.mark.django_db


@pytest.fixture
def person(client: Client) -> Any:
    user = UserFactory(roles=["ml_engineer"])
    client.force_login(user)
    return user


def qr_svg(page: str) -> str:
    [svg] = re.findall(r"<svg\b.*?</svg>", page, flags=re.DOTALL)
    return svg


def svg_to_image(svg: str, *, pixels_per_module: int = 6) -> Image.Image:
    """Rasterise segno's SVG from its markup alone: the dark path is runs of `h` strokes, one
    module high, centred on y + 0.5, in module units (the scale is a transform around it)."""
    [size] = re.findall(r'<path fill="#fff" d="M0 0h(\d+)v', svg)
    [path] = re.findall(r'<path stroke="#000" d="([^"]+)"', svg)
    modules = int(size)
    image = Image.new("L", (modules, modules), 255)
    x = y = 0.0
    for command, args in re.findall(r"([MmHh])([^MmHh]*)", path):
        numbers = [float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", args)]
        if command == "M":
            x, y = numbers
        elif command == "m":
            x, y = x + numbers[0], y + numbers[1]
        else:
            end = numbers[0] if command == "H" else x + numbers[0]
            for column in range(int(min(x, end)), int(max(x, end))):
                image.putpixel((column, int(y)), 0)
            x = end
    side = modules * pixels_per_module
    return image.resize((side, side), Image.Resampling.NEAREST)


def decoded(svg: str) -> str:
    [result] = zxingcpp.read_barcodes(svg_to_image(svg))
    return result.text


def input_tag(page: str, name: str) -> str:
    [tag] = re.findall(rf'<input[^>]*name="{name}"[^>]*>', page)
    return tag


# --- the QR code ------------------------------------------------------------------------


def test_the_qr_code_decodes_to_the_uri_of_the_secret_shown_beside_it(client, person):
    response = client.get(MFA_URL)
    assert response.status_code == 200
    page = response.content.decode()
    device = TotpDevice.objects.get(user=person, confirmed=False)
    uri = decoded(qr_svg(page))
    assert uri == device.config_url
    assert uri.startswith("otpauth://totp/")
    [secret] = parse_qs(urlparse(uri).query)["secret"]
    assert secret == b32encode(device.bin_key).decode().rstrip("=")
    # The same key, grouped by four for typing.
    [shown] = re.findall(r'<code class="totp-secret"[^>]*>([^<]+)</code>', page)
    assert shown.replace(" ", "") == secret
    assert all(len(group) == 4 for group in shown.split(" "))


def test_the_qr_code_has_a_text_alternative(client, person):
    svg = qr_svg(client.get(MFA_URL).content.decode())
    assert 'role="img"' in svg
    assert 'aria-labelledby="mfa-qr-title"' in svg
    assert re.search(r'<title id="mfa-qr-title">[^<]*authenticator app[^<]*</title>', svg)
    assert "<desc>" in svg


def test_the_secret_is_only_in_the_no_store_page_itself(client, person):
    response = client.get(MFA_URL)
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    secret = b32encode(TotpDevice.objects.get(user=person).bin_key).decode().rstrip("=")
    # No image, script or other resource whose address could carry it to a log or cache.
    assert "<img" not in page and "<script" not in page and "<object" not in page
    for address in re.findall(r'(?:src|href|data)="([^"]*)"', page):
        if secret in address:
            assert address.startswith("otpauth://")  # the link an authenticator app opens


def test_the_qr_code_stays_the_same_across_visits_until_confirmed(client, person):
    first = qr_svg(client.get(MFA_URL).content.decode())
    assert qr_svg(client.get(MFA_URL).content.decode()) == first


def test_enrolled_users_see_no_qr_code(client, person):
    device = TotpDevice.objects.create(user=person, name="phone", confirmed=True)
    page = client.get(MFA_URL).content.decode()
    assert "<svg" not in page
    assert b32encode(device.bin_key).decode().rstrip("=")[:8] not in page


# --- refusals keep what was typed, except the code ------------------------------------------


def test_a_refused_enrolment_code_is_not_written_back_and_the_same_qr_stays(client, person):
    before = qr_svg(client.get(MFA_URL).content.decode())
    device = TotpDevice.objects.get(user=person)
    typed = wrong_code(device)
    response = client.post(MFA_URL, {"code": typed})
    assert response.status_code == 400
    page = response.content.decode()
    assert "That code is wrong" in page
    assert "value=" not in input_tag(page, "code")
    assert qr_svg(page) == before


def test_a_refused_code_keeps_the_username_and_the_right_password(client):
    officer = UserFactory(roles=["security_officer"])
    device = confirmed_device(officer)
    typed = wrong_code(device)
    response = sign_in(client, officer, otp=typed)
    assert response.status_code == 400
    page = response.content.decode()
    assert "That code is wrong or was already used." in page
    assert f'value="{html.escape(officer.username)}"' in input_tag(page, "username")
    assert f'value="{html.escape(PASSWORD)}"' in input_tag(page, "password")
    assert 'type="password"' in input_tag(page, "password")
    assert "value=" not in input_tag(page, "otp_token") and typed not in page
    assert "no-store" in response["Cache-Control"]


def test_a_missing_code_keeps_the_right_password(client):
    officer = UserFactory(roles=["security_officer"])
    confirmed_device(officer)
    page = sign_in(client, officer).content.decode()
    assert "enter the code from your authenticator app" in page
    assert f'value="{html.escape(PASSWORD)}"' in input_tag(page, "password")


def test_a_wrong_password_is_cleared_and_the_username_kept(client):
    officer = UserFactory(roles=["security_officer"])
    device = confirmed_device(officer)
    typed = current_code(device)
    response = sign_in(client, officer, password="not the password at all", otp=typed)
    assert response.status_code == 400
    page = response.content.decode()
    assert "The username or password is wrong." in page
    assert "value=" not in input_tag(page, "password")
    assert "not the password at all" not in page
    assert f'value="{html.escape(officer.username)}"' in input_tag(page, "username")
    assert "value=" not in input_tag(page, "otp_token")


def test_a_refused_recovery_code_is_not_echoed(client):
    officer = UserFactory(roles=["security_officer"])
    confirmed_device(officer)
    recovery_codes_for(officer)
    page = sign_in(client, officer, otp="abcd-efgh-ijkl").content.decode()
    assert "value=" not in input_tag(page, "otp_token") and "abcd-efgh-ijkl" not in page


def test_a_locked_out_sign_in_keeps_no_password(client, settings):
    officer = UserFactory(roles=["security_officer"])
    device = confirmed_device(officer)
    for _ in range(settings.LOGIN_FAILURES_PER_USERNAME):
        sign_in(client, officer, password="wrong password entirely")
    response = sign_in(client, officer, otp=current_code(device))
    assert response.status_code == 429
    assert "value=" not in input_tag(response.content.decode(), "password")


def test_the_admin_sign_in_keeps_the_right_password_after_a_refused_code(client):
    staff = UserFactory(roles=["admin"], is_staff=True)
    device = confirmed_device(staff)
    page = admin_login(client, staff, otp=wrong_code(device)).content.decode()
    assert f'value="{html.escape(PASSWORD)}"' in input_tag(page, "password")
    assert "value=" not in input_tag(page, "otp_token")
    wrong = admin_login(Client(), staff, otp="")  # no code: the password was right
    assert f'value="{html.escape(PASSWORD)}"' in input_tag(wrong.content.decode(), "password")
