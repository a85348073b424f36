"""The admin site and MFA: who may sign in with a password alone, who must give a code, who is
sent to enrol; the user list's MFA column and reset action; no secret anywhere in the admin."""

from __future__ import annotations

from base64 import b32encode
from typing import Any

import pytest
from django.contrib import admin
from django.test import Client

from apps.accounts.models import RecoveryCode, RecoveryCodeDevice, TotpDevice
from tests.accounts.factories import UserFactory
from tests.accounts.test_mfa import (
    PASSWORD,
    audit_events,
    confirmed_device,
    current_code,
    enrol,
    fresh_code,
    recovery_codes_for,
    wrong_code,
)

pytestmark = pytest.mark.django_db


def admin_login(client: Client, user: Any, otp: str = "") -> Any:
    return client.post(
        "/admin/login/",
        {"username": user.username, "password": PASSWORD, "otp_token": otp, "next": "/admin/"},
    )


def signed_in(client: Client) -> bool:
    return "_auth_user_id" in client.session


def admin_opens(client: Client) -> bool:
    response = client.get("/admin/")
    assert response.status_code in (200, 302)
    return response.status_code == 200


def test_staff_without_a_device_or_a_required_role_use_the_admin_with_a_password(client):
    auditor = UserFactory(roles=["auditor"], is_staff=True)
    response = admin_login(client, auditor)
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert admin_opens(client)


def test_people_who_are_not_staff_still_cannot_sign_in_to_the_admin(client):
    engineer = UserFactory(roles=["ml_engineer"])
    response = admin_login(client, engineer)
    assert response.status_code == 200 and not signed_in(client)


@pytest.mark.parametrize("role", ["admin", "security_officer"])
def test_a_required_role_without_a_device_is_sent_to_enrol(client, role):
    person = UserFactory(roles=[role], is_staff=True)
    admin_login(client, person)
    assert signed_in(client)  # the password session is what lets them enrol
    refused = client.get("/admin/")
    assert refused.status_code == 302 and refused["Location"].startswith("/admin/login/")
    page = client.get("/admin/login/").content.decode()
    assert 'href="/account/mfa/"' in page
    assert "your role requires two-factor authentication" in page

    enrol(client, person)  # verifies this session with the new device
    assert admin_opens(client)


def test_the_required_roles_are_a_setting(client, settings):
    settings.MFA_REQUIRED_ROLES = ["auditor"]
    admin_person = UserFactory(roles=["admin"], is_staff=True)
    admin_login(client, admin_person)
    assert admin_opens(client)

    auditor = UserFactory(roles=["auditor"], is_staff=True)
    other = Client()
    admin_login(other, auditor)
    assert not admin_opens(other)


def test_a_user_with_a_device_must_give_its_code(client):
    staff = UserFactory(roles=["ml_engineer"], is_staff=True)
    device = confirmed_device(staff)

    without = admin_login(client, staff)
    assert without.status_code == 200 and not signed_in(client)
    assert "enter the code from your authenticator app" in without.content.decode()
    assert not admin_opens(client)

    wrong = admin_login(client, staff, otp=wrong_code(device))
    assert wrong.status_code == 200 and not signed_in(client)
    assert "That code is wrong" in wrong.content.decode()

    TotpDevice.objects.filter(pk=device.pk).update(  # the wrong code's 1-second backoff
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    right = admin_login(client, staff, otp=current_code(device))
    assert right.status_code == 302
    assert client.session["otp_device_id"] == device.persistent_id
    assert admin_opens(client)


def test_a_recovery_code_opens_the_admin_once(client):
    staff = UserFactory(roles=["admin"], is_staff=True)
    confirmed_device(staff)
    [code, _other] = recovery_codes_for(staff, count=2)

    assert admin_login(client, staff, otp=code).status_code == 302
    assert admin_opens(client)
    assert [e["details"] for e in audit_events("auth.mfa.recovery_code_used")] == [{"remaining": 1}]

    again = Client()
    assert admin_login(again, staff, otp=code).status_code == 200
    assert not signed_in(again)


def test_a_session_that_never_checked_the_device_is_refused(client):
    """E.g. a session opened before the user enrolled elsewhere."""
    staff = UserFactory(roles=["auditor"], is_staff=True)
    confirmed_device(staff)
    client.force_login(staff)
    assert not admin_opens(client)
    page = client.get("/admin/login/").content.decode()
    assert "this session has not checked your authenticator" in page


# --- the admin's view of MFA ------------------------------------------------------------


@pytest.fixture
def superuser_client(client: Client) -> Client:
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    device = confirmed_device(boss)
    assert admin_login(client, boss, otp=current_code(device)).status_code == 302
    client.boss = boss  # type: ignore[attr-defined]
    return client


def test_the_user_list_shows_and_filters_by_mfa(superuser_client):
    with_mfa = UserFactory(username="with-mfa")
    confirmed_device(with_mfa)
    without = UserFactory(username="without-mfa")
    TotpDevice.objects.create(user=without, name="half-made", confirmed=False)

    listing = superuser_client.get("/admin/accounts/user/")
    assert listing.status_code == 200
    rows = {user.username: user.mfa_on for user in listing.context["cl"].result_list}
    assert rows["with-mfa"] is True and rows["without-mfa"] is False
    assert "column-mfa_enabled" in listing.content.decode()

    enabled = superuser_client.get("/admin/accounts/user/?mfa=yes")
    assert {u.username for u in enabled.context["cl"].result_list} == {"with-mfa", "boss"}
    disabled = superuser_client.get("/admin/accounts/user/?mfa=no")
    assert {u.username for u in disabled.context["cl"].result_list} == {"without-mfa"}
    # The add form (its own fieldsets) still works with the MFA field on the change form.
    assert superuser_client.get("/admin/accounts/user/add/").status_code == 200


def test_no_admin_page_shows_a_totp_secret_or_a_recovery_code(superuser_client):
    person = UserFactory()
    device = confirmed_device(person)
    codes = recovery_codes_for(person)

    for model in (TotpDevice, RecoveryCodeDevice, RecoveryCode):
        assert not admin.site.is_registered(model)
    for path in (
        "accounts/totpdevice",
        "accounts/recoverycodedevice",
        "accounts/recoverycode",
        "otp_totp/totpdevice",
        "otp_static/staticdevice",
    ):
        assert superuser_client.get(f"/admin/{path}/").status_code == 404

    change = superuser_client.get(f"/admin/accounts/user/{person.pk}/change/")
    assert change.status_code == 200
    page = change.content.decode()
    assert "Enabled (authenticator app); 3 recovery codes left" in page
    assert device.bin_key.hex() not in page and device.key_sealed not in page
    assert b32encode(device.bin_key).decode()[:16] not in page
    assert not any(code in page for code in codes)
    index = superuser_client.get("/admin/").content.decode()
    assert "otp_totp" not in index and "otp_static" not in index
    assert "totpdevice" not in index and "recoverycode" not in index


def test_an_admin_resets_a_users_mfa_and_it_is_audited(superuser_client):
    person = UserFactory(roles=["admin"], is_staff=True)
    device = confirmed_device(person)
    recovery_codes_for(person)
    untouched = UserFactory()
    untouched_device = confirmed_device(untouched)

    response = superuser_client.post(
        "/admin/accounts/user/",
        {"action": "reset_mfa", "_selected_action": [str(person.pk)]},
        follow=True,
    )
    assert response.status_code == 200
    assert "MFA reset for 1 user(s)." in response.content.decode()
    assert not TotpDevice.objects.filter(user=person).exists()
    assert not RecoveryCodeDevice.objects.filter(user=person).exists()
    assert TotpDevice.objects.filter(pk=untouched_device.pk).exists()
    [event] = audit_events("auth.mfa.removed")
    assert event["details"] == {"reason": "admin_reset"}
    assert event["actor"]["ref"] != event["target"]["id"]  # the admin did it, to the user
    assert device.bin_key.hex() not in str(event)

    # The reset user signs in with the password alone, and (an admin) is sent to enrol.
    other = Client()
    assert admin_login(other, person).status_code == 302
    assert not admin_opens(other)


def test_an_admin_cannot_reset_their_own_mfa_from_the_list(superuser_client):
    boss = superuser_client.boss
    response = superuser_client.post(
        "/admin/accounts/user/",
        {"action": "reset_mfa", "_selected_action": [str(boss.pk)]},
        follow=True,
    )
    assert "cannot reset your own MFA" in response.content.decode()
    assert TotpDevice.objects.filter(user=boss, confirmed=True).exists()
    assert audit_events("auth.mfa.removed") == []
    # Still verified: the next code opens a fresh sign-in too.
    device = TotpDevice.objects.get(user=boss)
    assert admin_login(Client(), boss, otp=fresh_code(device)).status_code == 302
