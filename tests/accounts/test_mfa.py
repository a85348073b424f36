"""TOTP MFA: enrolment on /account/mfa/, recovery codes, removal, and the token endpoint's
`mfa_required` (docs/api.md "JWT"). Codes are real: computed from the device's key with
django_otp.oath, as an authenticator app would."""

from __future__ import annotations

import html
import json
from base64 import b32encode
from typing import Any

import pytest
from django.test import Client
from django_otp.oath import TOTP, totp

from apps.accounts.devices import new_recovery_code
from apps.accounts.mfa import mfa_code_verify, mfa_status_get
from apps.accounts.models import RecoveryCode, RecoveryCodeDevice, TotpDevice
from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending
from tests.accounts.factories import UserFactory

PASSWORD = "correct horse battery staple"
MFA_URL = "/account/mfa/"
pytestmark = pytest.mark.django_db


# --- helpers (test_mfa_admin.py uses them too) ------------------------------------------


def current_code(device: TotpDevice) -> str:
    """What the app shows now."""
    return f"{totp(device.bin_key, step=device.step, digits=device.digits):0{device.digits}d}"


def fresh_code(device: TotpDevice) -> str:
    """A code the device will accept: the current one, or, if that step was already used
    (each step's code is accepted once), the next step's, which the one-step tolerance
    accepts too."""
    device.refresh_from_db()
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    if generator.t() <= device.last_t:
        generator.drift += device.last_t + 1 - generator.t()
    return f"{generator.token():0{device.digits}d}"


def wrong_code(device: TotpDevice) -> str:
    """Six digits that match none of the steps the device would accept now."""
    generator = TOTP(device.bin_key, device.step, device.t0, device.digits, device.drift)
    near = set()
    for offset in range(-2, 3):
        generator.drift = device.drift + offset
        near.add(f"{generator.token():06d}")
    return next(c for c in ("000000", "111111", "222222", "333333") if c not in near)


def confirmed_device(user: Any) -> TotpDevice:
    return TotpDevice.objects.create(user=user, name="Authenticator app", confirmed=True)


def recovery_codes_for(user: Any, count: int = 3) -> list[str]:
    device = RecoveryCodeDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [new_recovery_code() for _ in range(count)]
    for code in codes:
        device.codes.create(code_hash=device.code_hash(code))
    return codes


def stored_codes_are(user: Any, codes: list[str]) -> bool:
    """Whether the user's unspent recovery codes are exactly `codes` (as their keyed hashes:
    the codes themselves are stored nowhere)."""
    [device] = RecoveryCodeDevice.objects.filter(user=user)
    stored = sorted(device.codes.values_list("code_hash", flat=True))
    return stored == sorted(device.code_hash(code) for code in codes)


def enrol(client: Client, user: Any) -> tuple[TotpDevice, list[str]]:
    """Drive the enrolment pages as a person would; the device and the codes shown once."""
    assert client.get(MFA_URL).status_code == 200
    device = TotpDevice.objects.get(user=user, confirmed=False)
    response = client.post(MFA_URL, {"code": current_code(device)})
    assert response.status_code == 200, response.content
    return TotpDevice.objects.get(pk=device.pk), list(response.context["codes"])


def audit_events(action: str) -> list[dict[str, Any]]:
    audit_chain_pending()
    return [
        json.loads(body)
        for body in AuditEvent.objects.filter(action=action).values_list("body", flat=True)
    ]


def all_audit_bodies() -> str:
    audit_chain_pending()
    return "\n".join(AuditEvent.objects.values_list("body", flat=True))


def obtain(client: Client, username: str, otp: str | None = None) -> Any:
    body: dict[str, str] = {"username": username, "password": PASSWORD}
    if otp is not None:
        body["otp"] = otp
    # Works for Django's Client and DRF's APIClient alike.
    return client.post("/api/v1/auth/token", json.dumps(body), content_type="application/json")


def error_code(response: Any) -> str:
    return response.json()["error"]["code"]


@pytest.fixture
def person(client: Client) -> Any:
    user = UserFactory(roles=["ml_engineer"])
    client.force_login(user)
    return user


# --- enrolment --------------------------------------------------------------------------


def test_the_mfa_page_sends_a_visitor_who_is_not_signed_in_to_the_sign_in_page(client):
    response = client.get(MFA_URL)
    assert response.status_code == 302
    assert response["Location"] == "/account/login?next=/account/mfa/"
    assert not TotpDevice.objects.exists()


def test_the_page_shows_the_otpauth_uri_and_secret_and_keeps_them_across_visits(client, person):
    first = client.get(MFA_URL)
    assert first.status_code == 200
    device = TotpDevice.objects.get(user=person)
    assert not device.confirmed
    assert device.config_url.startswith("otpauth://totp/")
    page = first.content.decode()
    assert html.escape(device.config_url) in page
    secret = b32encode(device.bin_key).decode().rstrip("=")
    assert " ".join(secret[i : i + 4] for i in range(0, len(secret), 4)) in page
    assert "no-store" in first["Cache-Control"]  # a secret: never cached
    assert 'for="id_code"' in page and 'name="csrfmiddlewaretoken"' in page
    assert "<script" not in page

    client.get(MFA_URL)
    assert list(TotpDevice.objects.filter(user=person).values_list("pk", "key_sealed")) == [
        (device.pk, device.key_sealed)
    ]
    assert not mfa_status_get(user=person).enabled


def test_a_wrong_code_is_refused_and_the_device_stays_unconfirmed(client, person):
    client.get(MFA_URL)
    device = TotpDevice.objects.get(user=person)
    response = client.post(MFA_URL, {"code": wrong_code(device)})
    assert response.status_code == 400
    assert "That code is wrong" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    assert not RecoveryCodeDevice.objects.filter(user=person).exists()
    assert "otp_device_id" not in client.session
    assert audit_events("auth.mfa.enrolled") == []


def test_the_right_code_confirms_and_shows_ten_recovery_codes_once(client, person):
    client.get(MFA_URL)
    pending = TotpDevice.objects.get(user=person)
    session_key = client.session.session_key
    response = client.post(MFA_URL, {"code": current_code(pending)})

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    codes = response.context["codes"]
    assert len(codes) == len(set(codes)) == 10
    page = response.content.decode()
    assert all(f"<code>{code}</code>" in page for code in codes)
    assert stored_codes_are(person, codes)
    pending.refresh_from_db()
    assert pending.confirmed
    # The session is verified by the new device, under a new session key.
    assert client.session["otp_device_id"] == pending.persistent_id
    assert client.session.session_key != session_key

    later = client.get(MFA_URL)
    later_page = later.content.decode()
    assert later.status_code == 200
    assert "Recovery codes left: <strong>10</strong>" in later_page
    assert not any(code in later_page for code in codes)
    assert b32encode(pending.bin_key).decode()[:8] not in later_page
    assert pending.bin_key.hex() not in later_page and pending.key_sealed not in later_page
    # Posting the enrolment form again shows nothing new.
    again = client.post(MFA_URL, {"code": fresh_code(pending)})
    assert again.status_code == 302 and again["Location"] == MFA_URL
    assert RecoveryCode.objects.filter(device__user=person).count() == 10


def test_enrolment_is_audited_without_the_secret_or_the_codes(client, person):
    device, codes = enrol(client, person)
    enrolled = audit_events("auth.mfa.enrolled")
    issued = audit_events("auth.mfa.recovery_codes_issued")
    assert [event["details"] for event in enrolled] == [{"device": "totp"}]
    assert [event["details"] for event in issued] == [{"count": 10}]
    assert enrolled[0]["outcome"] == "success" and enrolled[0]["target"]["type"] == "user"
    bodies = all_audit_bodies()
    secret = b32encode(device.bin_key).decode()
    assert device.bin_key.hex() not in bodies and secret[:16] not in bodies
    assert not any(code in bodies for code in codes)
    assert person.username not in bodies


def test_the_forms_refuse_a_post_without_the_csrf_token(person):
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(person)
    browser.get(MFA_URL)
    device = TotpDevice.objects.get(user=person)
    response = browser.post(MFA_URL, {"code": current_code(device)})
    assert response.status_code == 403
    device.refresh_from_db()
    assert not device.confirmed


def test_new_recovery_codes_need_an_app_code_and_replace_the_old_set(client, person):
    device, old_codes = enrol(client, person)
    url = "/account/mfa/recovery-codes"

    refused = client.post(url, {"code": wrong_code(device)})
    assert refused.status_code == 400 and "codes" not in (refused.context or {})
    # A recovery code is not enough to mint new ones: that needs the app.
    with_recovery_code = client.post(url, {"code": old_codes[0]})
    assert with_recovery_code.status_code == 400
    assert stored_codes_are(person, old_codes)

    TotpDevice.objects.filter(pk=device.pk).update(  # the wrong code's 1-second backoff
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    response = client.post(url, {"code": fresh_code(device)})
    assert response.status_code == 200
    new_codes = response.context["codes"]
    assert len(new_codes) == 10 and not set(new_codes) & set(old_codes)
    assert stored_codes_are(person, new_codes)
    assert RecoveryCodeDevice.objects.filter(user=person).count() == 1
    assert len(audit_events("auth.mfa.recovery_codes_issued")) == 2

    assert obtain(client, person.username, otp=old_codes[1]).status_code == 401
    RecoveryCodeDevice.objects.filter(user=person).update(  # that failure's 1-second backoff
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    assert obtain(client, person.username, otp=new_codes[0]).status_code == 200
    assert "Recovery codes left: <strong>9</strong>" in client.get(MFA_URL).content.decode()


def test_removing_mfa_needs_a_current_code_and_is_audited(client, person):
    device, codes = enrol(client, person)
    url = "/account/mfa/remove"

    refused = client.post(url, {"code": "not-a-code"})
    assert refused.status_code == 400
    assert mfa_status_get(user=person).enabled
    assert RecoveryCode.objects.filter(device__user=person).count() == 10

    RecoveryCodeDevice.objects.filter(user=person).update(  # the wrong code's 1-second backoff
        throttling_failure_count=0, throttling_failure_timestamp=None
    )

    # A recovery code will do (the phone may be what was lost), typed in capitals.
    response = client.post(url, {"code": codes[0].upper()}, follow=True)
    assert response.status_code == 200
    assert "Two-factor authentication is off" in response.content.decode()
    assert not TotpDevice.objects.filter(user=person, confirmed=True).exists()
    assert not RecoveryCodeDevice.objects.filter(user=person).exists()
    assert [e["details"] for e in audit_events("auth.mfa.removed")] == [{"reason": "self"}]
    # The page offers enrolment again, with a new secret.
    fresh = TotpDevice.objects.get(user=person)
    assert not fresh.confirmed and fresh.bin_key != device.bin_key
    assert obtain(client, person.username).status_code == 200


def test_without_mfa_the_code_forms_change_nothing(client, person):
    for url in ("/account/mfa/recovery-codes", "/account/mfa/remove"):
        assert client.get(url).status_code == 405
        response = client.post(url, {"code": "123456"})
        assert response.status_code == 302 and response["Location"] == MFA_URL
    assert not TotpDevice.objects.filter(user=person).exists()
    assert not RecoveryCodeDevice.objects.filter(user=person).exists()
    assert audit_events("auth.mfa.recovery_codes_issued") == []
    assert audit_events("auth.mfa.removed") == []


# --- the token endpoint (docs/api.md "JWT") ---------------------------------------------------


def test_a_user_with_totp_and_no_otp_gets_mfa_required(api_client):
    user = UserFactory()
    confirmed_device(user)
    response = obtain(api_client, user.username)
    assert response.status_code == 401
    assert error_code(response) == "mfa_required"
    assert "access" not in response.json()


def test_a_wrong_otp_gets_mfa_required(api_client):
    user = UserFactory()
    device = confirmed_device(user)
    response = obtain(api_client, user.username, otp=wrong_code(device))
    assert response.status_code == 401
    assert error_code(response) == "mfa_required"


def test_the_right_totp_gets_a_pair_and_me_says_mfa_is_enabled(api_client):
    user = UserFactory()
    device = confirmed_device(user)
    response = obtain(api_client, user.username, otp=current_code(device))
    assert response.status_code == 200, response.content
    pair = response.json()
    assert pair["access"] and pair["refresh"]
    me = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {pair['access']}")
    assert me.status_code == 200 and me.json()["mfa_enabled"] is True


def test_a_totp_code_signs_in_once(api_client):
    user = UserFactory()
    device = confirmed_device(user)
    code = current_code(device)
    assert obtain(api_client, user.username, otp=code).status_code == 200
    replay = obtain(api_client, user.username, otp=code)
    assert replay.status_code == 401 and error_code(replay) == "mfa_required"


def test_an_unconfirmed_device_alone_does_not_ask_for_otp(api_client):
    user = UserFactory()
    TotpDevice.objects.create(user=user, name="half-made", confirmed=False)
    response = obtain(api_client, user.username)
    assert response.status_code == 200, response.content
    me = api_client.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {response.json()['access']}")
    assert me.json()["mfa_enabled"] is False


def test_a_recovery_code_from_enrolment_signs_in_once(client, person, api_client):
    _device, codes = enrol(client, person)
    first = obtain(api_client, person.username, otp=codes[0])
    assert first.status_code == 200, first.content
    second = obtain(api_client, person.username, otp=codes[0])
    assert second.status_code == 401 and error_code(second) == "mfa_required"
    assert RecoveryCode.objects.filter(device__user=person).count() == 9


# --- the shared code check ----------------------------------------------------------------


def test_a_recovery_code_does_not_count_against_the_app(client, person):
    """django_otp.match_token tries every device, so a recovery code would count as a failed
    attempt on the app and throttle its next, correct code; mfa_code_verify does not."""
    device, codes = enrol(client, person)
    assert isinstance(mfa_code_verify(user=person, code=codes[0]), RecoveryCodeDevice)
    device.refresh_from_db()
    assert device.throttling_failure_count == 0
    assert mfa_code_verify(user=person, code=fresh_code(device)) == device
    [used] = audit_events("auth.mfa.recovery_code_used")
    assert used["details"] == {"remaining": 9}
