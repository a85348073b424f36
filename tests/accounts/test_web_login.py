"""The UI's sign-in page /account/login (username, password, TOTP) and sign-out: the same
throttling and audited failures as the token endpoint and the admin, a verified session for
users with an authenticator, enrolment for MFA roles without one, session rotation."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY

from tests.accounts.factories import UserFactory
from tests.accounts.test_mfa import (
    PASSWORD,
    audit_events,
    confirmed_device,
    current_code,
    recovery_codes_for,
    wrong_code,
)

pytestmark = pytest.mark.django_db
LOGIN = "/account/login"


def sign_in(client: Client, user: Any, *, password: str = PASSWORD, otp: str = "", **extra: str):
    return client.post(
        LOGIN, {"username": user.username, "password": password, "otp_token": otp, **extra}
    )


def signed_in_as(client: Client) -> str | None:
    return client.session.get("_auth_user_id")


@pytest.fixture
def officer() -> Any:
    return UserFactory(roles=["security_officer"])


def test_login_url_is_the_ui_sign_in_page():
    assert settings.LOGIN_URL == LOGIN


def test_the_page_has_labelled_username_password_and_code_fields(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    html = response.content.decode()
    for name in ("username", "password", "otp_token"):
        assert f'for="id_{name}"' in html and f'name="{name}"' in html
    assert 'autocomplete="one-time-code"' in html
    assert "csrfmiddlewaretoken" in html


def test_a_good_sign_in_with_a_totp_code_verifies_the_session_and_rotates_it(client, officer):
    device = confirmed_device(officer)
    client.get(LOGIN)
    before = client.session.session_key
    response = sign_in(client, officer, otp=current_code(device), next="/incidents/")
    assert response.status_code == 302 and response["Location"] == "/incidents/"
    assert signed_in_as(client) == str(officer.pk)
    assert client.session[DEVICE_ID_SESSION_KEY] == device.persistent_id
    assert client.session.session_key != before
    assert client.get("/incidents/").status_code == 200  # the MFA-verified pages open
    [event] = audit_events("auth.session.started")
    assert event["details"] == {"method": "password+otp"}
    assert event["outcome"] == "success"


def test_a_recovery_code_signs_in_too(client, officer):
    confirmed_device(officer)
    [code, *_] = recovery_codes_for(officer)
    response = sign_in(client, officer, otp=code)
    assert response.status_code == 302
    assert client.session[DEVICE_ID_SESSION_KEY].startswith("accounts.recoverycodedevice/")


def test_a_wrong_password_is_refused_and_audited(client, officer):
    confirmed_device(officer)
    response = sign_in(client, officer, password="wrong password entirely")
    assert response.status_code == 400
    assert "The username or password is wrong." in response.content.decode()
    assert signed_in_as(client) is None
    [event] = audit_events("auth.session.failed")
    assert event["details"] == {"reason": "bad_credentials"}


def test_an_unknown_user_gets_the_same_answer(client):
    response = client.post(LOGIN, {"username": "ghost", "password": "x" * 20})
    assert response.status_code == 400
    assert "The username or password is wrong." in response.content.decode()


def test_a_wrong_code_is_refused_and_audited(client, officer):
    device = confirmed_device(officer)
    response = sign_in(client, officer, otp=wrong_code(device))
    assert response.status_code == 400
    assert "That code is wrong or was already used." in response.content.decode()
    assert signed_in_as(client) is None
    [event] = audit_events("auth.session.failed")
    assert event["details"] == {"reason": "bad_otp"}


def test_a_user_with_an_authenticator_must_give_its_code(client, officer):
    confirmed_device(officer)
    response = sign_in(client, officer)
    assert response.status_code == 400
    assert "enter the code from your authenticator app" in response.content.decode()
    assert signed_in_as(client) is None


def test_five_failures_lock_the_account_even_for_the_right_password_and_code(client, officer):
    device = confirmed_device(officer)
    for _ in range(settings.LOGIN_FAILURES_PER_USERNAME):
        assert sign_in(client, officer, password="wrong password entirely").status_code == 400
    response = sign_in(client, officer, otp=current_code(device))
    assert response.status_code == 429
    assert "Too many failed sign-ins" in response.content.decode()
    assert signed_in_as(client) is None


def test_the_api_and_the_page_share_one_count(client, api_client, officer):
    for _ in range(settings.LOGIN_FAILURES_PER_USERNAME):
        api_client.post(
            "/api/v1/auth/token",
            {"username": officer.username, "password": "wrong password entirely"},
            format="json",
        )
    assert sign_in(client, officer).status_code == 429


def test_a_required_role_without_an_authenticator_is_sent_to_enrol(client, officer):
    response = sign_in(client, officer)
    assert response.status_code == 302 and response["Location"] == "/account/mfa/"
    assert signed_in_as(client) == str(officer.pk)  # enrolling needs this session
    assert client.get("/incidents/").status_code == 302  # but nothing else opens yet
    page = client.get("/account/mfa/").content.decode()
    assert "Your role requires two-factor authentication" in page
    [event] = audit_events("auth.session.started")
    assert event["details"] == {"method": "password"}


def test_a_role_that_needs_no_authenticator_signs_in_with_the_password(client):
    auditor = UserFactory(roles=["auditor"])
    response = sign_in(client, auditor)
    assert response.status_code == 302 and response["Location"] == "/incidents/"
    assert client.get("/incidents/").status_code == 200


def test_non_staff_users_may_sign_in_here(client):
    engineer = UserFactory(roles=["ml_engineer"], is_staff=False)
    response = sign_in(client, engineer)
    assert response.status_code == 302 and response["Location"] == "/"


def test_a_deactivated_user_cannot_sign_in(client):
    person = UserFactory(roles=["auditor"], is_active=False)
    assert sign_in(client, person).status_code == 400
    assert signed_in_as(client) is None


def test_next_must_stay_on_this_site(client):
    auditor = UserFactory(roles=["auditor"])
    response = sign_in(client, auditor, next="https://evil.example/phish")
    assert response["Location"] == "/incidents/"


def test_a_session_that_must_verify_is_asked_for_the_code_again(client, officer):
    confirmed_device(officer)
    client.force_login(officer)  # a password-only session
    page = client.get(LOGIN)
    assert page.status_code == 200
    text = " ".join(page.content.decode().split())
    assert "this session has not checked your authenticator" in text


def test_a_signed_in_verified_user_is_sent_on(client, officer, verified_login):
    verified_login(client, officer)
    response = client.get(f"{LOGIN}?next=/incidents/")
    assert response.status_code == 302 and response["Location"] == "/incidents/"


def test_sign_in_needs_the_csrf_token(officer):
    client = Client(enforce_csrf_checks=True)
    response = sign_in(client, officer)
    assert response.status_code == 403
    assert signed_in_as(client) is None


def test_logout_is_post_only_and_ends_the_session(client, officer, verified_login):
    verified_login(client, officer)
    assert client.get("/account/logout").status_code == 405
    assert signed_in_as(client) == str(officer.pk)
    response = client.post("/account/logout")
    assert response.status_code == 302 and response["Location"] == LOGIN
    assert signed_in_as(client) is None
    assert "You are signed out." in client.get(LOGIN).content.decode()
    assert len(audit_events("auth.session.ended")) == 1


def test_the_header_offers_sign_out_as_a_form(client, officer, verified_login):
    verified_login(client, officer)
    html = client.get("/incidents/").content.decode()
    assert '<form method="post" action="/account/logout">' in html
