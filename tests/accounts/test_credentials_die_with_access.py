"""Credentials die with access (docs/api.md "Credential lifecycle"): deactivation, a password
change or reset, losing a role and an MFA reset each end every token family, access token,
session and API key of the user at once, audited with the cause; reactivation revives none
of them. A token family ends at its absolute lifetime and its idle timeout."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
import time_machine
from django.db import transaction
from django.test import Client
from django.utils import timezone

from apps.accounts.credentials import Cause, credentials_revoke
from apps.accounts.models import TokenFamily, TotpDevice, User
from apps.apikeys.models import ApiKey
from apps.core.permissions import roles_of
from tests.accounts.access_changes import admin_client, change_form, contain, post_change
from tests.accounts.factories import UserFactory
from tests.apikeys.conftest import KEYED
from tests.apikeys.factories import ApiKeyFactory
from tests.registry.conftest import assert_error, audit_events

PASSWORD = "correct horse battery staple"
NEW_PASSWORD = "a new and longer passphrase 7"
pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]


class Credentials:
    """Everything a user can hold: a token pair, an API key, a signed-in browser session."""

    def __init__(self, user: User) -> None:
        self.user = user
        self.api = Client()
        response = self.api.post(
            "/api/v1/auth/token",
            {"username": user.username, "password": PASSWORD},
            content_type="application/json",
        )
        assert response.status_code == 200, response.content
        self.access, self.refresh = response.json()["access"], response.json()["refresh"]
        self.api_key, self.key = ApiKeyFactory.issue(owner=user, scopes=["predict:*"])
        self.browser = Client()
        self.browser.force_login(user)

    def me(self) -> Any:
        return self.api.get("/api/v1/auth/me", HTTP_AUTHORIZATION=f"Bearer {self.access}")

    def rotate(self) -> Any:
        return self.api.post(
            "/api/v1/auth/token/refresh", {"refresh": self.refresh}, content_type="application/json"
        )

    def keyed(self) -> Any:
        return self.api.get(KEYED, HTTP_X_API_KEY=self.key)

    def page(self) -> Any:
        return self.browser.get("/account/mfa/")

    def all_work(self) -> None:
        assert self.me().status_code == 200
        assert self.keyed().status_code == 200
        assert self.page().status_code == 200

    def all_refused(self) -> None:
        assert_error(self.me(), 401, "token_invalid")
        assert_error(self.rotate(), 401, "token_invalid")
        assert_error(self.keyed(), 401, "api_key_revoked")
        page = self.page()
        assert page.status_code == 302 and page["Location"].startswith("/account/login")


def revoked_for(user: User, cause: str) -> dict[str, Any]:
    [event] = [
        event
        for event in audit_events("user.credentials_revoked")
        if event["details"]["cause"] == cause
    ]
    assert event["outcome"] == "success"
    return event


def reactivate(client: Client, root: User, user: User) -> None:
    user.refresh_from_db()
    response = post_change(client, user, is_active="on")
    assert response.status_code == 302, response.content.decode()[:2000]
    user.refresh_from_db()
    assert user.is_active


def test_after_containment_and_reactivation_no_old_credential_works(
    client, api_client, actors, verified_login
):
    victim = UserFactory(roles=["ml_engineer"])
    held = Credentials(victim)
    held.all_work()

    assert contain(api_client, actors["security_officer"], victim.username).status_code == 200
    held.all_refused()
    event = revoked_for(victim, "deactivated")
    assert event["details"] == {
        "cause": "deactivated",
        "sign_in_families": 1,
        "keys_revoked": 1,
        "sessions": "ended",
    }
    [key_event] = audit_events("apikey.revoked")
    assert key_event["details"]["reason"] == "deactivated"
    assert key_event["target"]["id"] == held.api_key.prefix

    root = UserFactory(roles=["admin"])
    admin_client(client, root, verified_login, superuser=True)
    reactivate(client, root, victim)
    held.all_refused()  # the access token, the refresh token, the key and the session
    assert ApiKey.objects.get(pk=held.api_key.pk).status == "revoked"

    fresh = Credentials(User.objects.get(pk=victim.pk))  # what a reactivated user does
    fresh.all_work()


def test_a_password_reset_in_the_admin_ends_every_credential(client, actors, verified_login):
    victim = UserFactory(roles=["security_officer"])
    held = Credentials(victim)
    root = UserFactory(roles=["admin"])
    admin_client(client, root, verified_login, superuser=True)
    response = client.post(
        f"/admin/accounts/user/{victim.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "set_usable_password": "true"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    held.all_refused()
    assert revoked_for(victim, "password_changed")["details"]["keys_revoked"] == 1
    assert client.get("/admin/").status_code == 200  # the administrator's own session lives on


def test_changing_ones_own_password_in_the_admin_keeps_only_that_session(
    client, actors, verified_login
):
    root = UserFactory(roles=["admin"])
    admin_client(client, root, verified_login, superuser=True)
    other_browser = Client()
    other_browser.force_login(root)
    assert other_browser.get("/account/mfa/").status_code == 200
    response = client.post(
        f"/admin/accounts/user/{root.pk}/password/",
        {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "set_usable_password": "true"},
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert other_browser.get("/account/mfa/").status_code == 302  # a stolen session ends
    revoked_for(root, "password_changed")


@pytest.mark.parametrize(
    ("overrides", "cause"),
    [
        ({"roles": []}, "role_lost"),
        ({"is_staff": ""}, "role_lost"),
        ({"is_active": ""}, "deactivated"),
    ],
)
def test_taking_access_away_in_the_admin_ends_every_credential(
    client, actors, verified_login, overrides, cause
):
    victim = UserFactory(roles=["ml_engineer"])
    victim.is_staff = True
    victim.save()
    held = Credentials(victim)
    root = UserFactory(roles=["admin"])
    admin_client(client, root, verified_login, superuser=True)
    victim.refresh_from_db()
    response = post_change(client, victim, **overrides)
    assert response.status_code == 302, response.content.decode()[:2000]
    held.all_refused()
    revoked_for(victim, cause)


def test_giving_a_role_or_editing_a_name_ends_nothing(client, actors, verified_login):
    victim = UserFactory(roles=["ml_engineer"])
    held = Credentials(victim)
    root = UserFactory(roles=["admin"])
    admin_client(client, root, verified_login, superuser=True)
    roles = [*victim.roles.values_list("pk", flat=True), "auditor"]
    response = client.post(
        f"/admin/accounts/user/{victim.pk}/change/",
        change_form(victim, roles=roles, first_name="Ada"),
    )
    assert response.status_code == 302
    held.all_work()
    assert audit_events("user.credentials_revoked") == []


def test_an_mfa_reset_ends_every_credential(client, actors, verified_login):
    victim = UserFactory(roles=["auditor"])
    held = Credentials(victim)
    TotpDevice.objects.create(user=victim, name="phone", confirmed=True)
    root = UserFactory(roles=["admin"])
    admin_client(client, root, verified_login, superuser=True)
    response = client.post(
        "/admin/accounts/user/",
        {"action": "reset_mfa", "_selected_action": [str(victim.pk)]},
    )
    assert response.status_code == 302
    held.all_refused()
    assert revoked_for(victim, "mfa_reset")["details"]["sign_in_families"] == 1


def test_a_revocation_ends_families_a_sign_in_made_meanwhile(api_client):
    # Credentials revoked while another request signs in: that family carries the old epoch
    # and is refused even though the revoking UPDATE never saw it.
    victim = UserFactory(roles=["auditor"])
    held = Credentials(victim)
    family = TokenFamily.objects.get(user=victim)
    with transaction.atomic():
        credentials_revoke(user=victim, cause=Cause.ROLE_LOST, actor=None)
    TokenFamily.objects.filter(pk=family.pk).update(revoked_at=None, revoked_reason="")
    assert_error(held.me(), 401, "token_invalid")  # the epoch in the token is old
    assert_error(held.rotate(), 401, "token_invalid")  # so is the family's
    family.refresh_from_db()
    assert family.revoked_reason == "access_changed"


@pytest.mark.django_db(transaction=True)
def test_credentials_revoke_refuses_to_run_outside_a_transaction():
    victim = UserFactory(roles=["auditor"])
    with pytest.raises(RuntimeError, match="inside the change's transaction"):
        credentials_revoke(user=victim, cause=Cause.ROLE_LOST, actor=None)


# --- Token family lifetimes, on a clock the test moves -----------------------------------------


def test_a_family_ends_at_its_absolute_lifetime_however_often_it_is_refreshed(settings):
    settings.JWT_FAMILY_MAX_AGE = timedelta(days=7)
    settings.JWT_FAMILY_IDLE_TIMEOUT = timedelta(hours=24)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        victim = UserFactory(roles=["auditor"])
        held = Credentials(victim)
        for _ in range(13):  # every 12 hours: never idle, 6.5 days in all
            clock.shift(timedelta(hours=12))
            rotated = held.rotate()
            assert rotated.status_code == 200, rotated.content
            held.access, held.refresh = rotated.json()["access"], rotated.json()["refresh"]
        # 6.5 days in. Ten minutes before the family's end, a refresh gets an access token
        # that ends with the family, not 15 minutes later.
        clock.shift(timedelta(hours=11, minutes=50))
        rotated = held.rotate()
        assert rotated.status_code == 200
        claims = jwt.decode(rotated.json()["access"], options={"verify_signature": False})
        assert claims["exp"] == int(time.time()) + 600  # the moved clock
        held.access, held.refresh = rotated.json()["access"], rotated.json()["refresh"]
        assert held.me().status_code == 200
        clock.shift(timedelta(minutes=10))
        assert_error(held.me(), 401, "token_invalid")
        assert_error(held.rotate(), 401, "token_invalid")
    family = TokenFamily.objects.get(user=victim)
    assert family.created_at == start  # the clock really was fixed


def test_a_family_past_its_absolute_lifetime_is_revoked_with_that_reason(settings):
    settings.JWT_FAMILY_MAX_AGE = timedelta(days=7)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        victim = UserFactory(roles=["auditor"])
        held = Credentials(victim)
        clock.shift(timedelta(hours=23))
        # An operator shortens the lifetime: live families end by the new rule at once.
        settings.JWT_FAMILY_MAX_AGE = timedelta(hours=12)
        assert_error(held.rotate(), 401, "token_invalid")
    family = TokenFamily.objects.get(user=victim)
    assert family.revoked_reason == "max_age"
    [event] = [
        event
        for event in audit_events("auth.token.revoked")
        if event["details"]["reason"] == "max_age"
    ]
    assert event["outcome"] == "denied"


def test_a_family_left_idle_ends(settings):
    settings.JWT_FAMILY_IDLE_TIMEOUT = timedelta(hours=8)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        victim = UserFactory(roles=["auditor"])
        held = Credentials(victim)
        clock.shift(timedelta(hours=7, minutes=59))
        rotated = held.rotate()
        assert rotated.status_code == 200  # used within the timeout: the count starts again
        held.refresh = rotated.json()["refresh"]
        clock.shift(timedelta(hours=7, minutes=59))
        rotated = held.rotate()
        assert rotated.status_code == 200
        held.refresh = rotated.json()["refresh"]
        clock.shift(timedelta(hours=8))
        assert_error(held.rotate(), 401, "token_invalid")  # the refresh token's exp says so


def test_an_idle_timeout_shortened_by_the_operator_applies_to_live_families(settings):
    settings.JWT_FAMILY_IDLE_TIMEOUT = timedelta(hours=24)
    start = timezone.now()
    with time_machine.travel(start, tick=False) as clock:
        victim = UserFactory(roles=["auditor"])
        held = Credentials(victim)
        clock.shift(timedelta(hours=2))
        settings.JWT_FAMILY_IDLE_TIMEOUT = timedelta(hours=1)
        assert_error(held.rotate(), 401, "token_invalid")
    assert TokenFamily.objects.get(user=victim).revoked_reason == "idle_timeout"


def test_a_password_set_by_any_other_path_still_ends_sessions_and_tokens():
    # `manage.py changepassword`, a shell: set_password and save, no service in between.
    victim = UserFactory(roles=["auditor"])
    held = Credentials(victim)
    user = User.objects.get(pk=victim.pk)
    user.set_password(NEW_PASSWORD)
    user.save()
    assert_error(held.me(), 401, "token_invalid")
    assert_error(held.rotate(), 401, "token_invalid")
    page = held.page()
    assert page.status_code == 302 and page["Location"].startswith("/account/login")


def test_manage_py_changepassword_ends_every_credential_and_records_the_cause(monkeypatch):
    import getpass
    import io

    from django.core.management import call_command

    victim = UserFactory(roles=["ml_engineer"])
    held = Credentials(victim)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="Password: ": NEW_PASSWORD)
    out = io.StringIO()
    call_command("changepassword", victim.username, stdout=out)
    assert "Ended 1 sign-in(s) and 1 API key(s)" in out.getvalue()
    held.all_refused()
    event = revoked_for(victim, "password_changed")
    assert event["actor"] == {"type": "system", "ref": "manage.py changepassword"}
    assert event["details"]["keys_revoked"] == 1
    assert NEW_PASSWORD not in str(audit_events())


def test_manage_py_changepassword_that_gives_up_changes_nothing(monkeypatch):
    import getpass

    from django.core.management import CommandError, call_command

    victim = UserFactory(roles=["ml_engineer"])
    held = Credentials(victim)
    answers = iter(["one passphrase that is long", "another passphrase that is long"] * 3)
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    with pytest.raises(CommandError, match="after 3 attempts"):
        call_command("changepassword", victim.username)
    held.all_work()
    assert audit_events("user.credentials_revoked") == []


def test_a_password_hash_upgraded_at_sign_in_ends_nothing(settings):
    victim = UserFactory(roles=["auditor"])  # hashed with the test settings' MD5
    assert victim.password.startswith("md5$")
    earlier = Credentials(victim)
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
        "django.contrib.auth.hashers.MD5PasswordHasher",
    ]
    held = Credentials(victim)  # signs in: the hash is upgraded to PBKDF2
    assert User.objects.get(pk=victim.pk).password.startswith("pbkdf2_sha256$")
    again = Credentials(User.objects.get(pk=victim.pk))
    for credentials in (earlier, held, again):
        assert credentials.me().status_code == 200
        assert credentials.rotate().status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_key_issued_while_its_owner_is_contained_is_refused_or_revoked():
    # A request that authenticated before the containment asks for a key while it runs: it
    # waits for the containment's transaction and is refused; no key survives to work again
    # after a reactivation.
    import threading

    from django.db import connection

    from apps.accounts.services import user_deactivate
    from apps.apikeys.services import api_key_issue
    from apps.core.errors import PermissionDenied

    victim = UserFactory(roles=["ml_engineer"])
    officer = UserFactory(roles=["security_officer"])
    UserFactory(roles=["admin"])
    authenticated = User.objects.get(pk=victim.pk)  # as the request saw its user
    deactivated, release = threading.Event(), threading.Event()
    outcome: dict[str, str] = {}

    def contain() -> None:
        try:
            with transaction.atomic():
                user_deactivate(actor=officer, user=victim, reason="stolen token")
                deactivated.set()
                release.wait(10)
        finally:
            connection.close()

    def issue() -> None:
        try:
            api_key_issue(actor=authenticated, owner=authenticated, name="k", scopes=["predict:*"])
            outcome["issue"] = "issued"
        except PermissionDenied as exc:
            outcome["issue"] = exc.message
        finally:
            connection.close()

    containment = threading.Thread(target=contain)
    containment.start()
    assert deactivated.wait(10)
    issuing = threading.Thread(target=issue)
    issuing.start()
    issuing.join(0.5)
    assert issuing.is_alive()  # waits on the owner's row
    release.set()
    containment.join(10)
    issuing.join(10)
    assert "lost their access" in outcome["issue"]
    assert not ApiKey.objects.filter(owner=victim).exists()


def test_a_fallback_secret_key_does_not_revive_a_session_of_an_earlier_epoch(settings):
    from django.utils.crypto import salted_hmac

    settings.SECRET_KEY_FALLBACKS = ["an earlier secret key, still accepted " * 2]
    victim = UserFactory(roles=["auditor"])
    earlier = salted_hmac(  # a session signed at epoch 0 under the earlier key
        "django.contrib.auth.models.AbstractBaseUser.get_session_auth_hash",
        victim.password,
        secret=settings.SECRET_KEY_FALLBACKS[0],
        algorithm="sha256",
    ).hexdigest()
    assert earlier in list(victim.get_session_auth_fallback_hash())  # epoch 0: Django's value
    with transaction.atomic():
        credentials_revoke(user=victim, cause=Cause.DEACTIVATED, actor=None)
    assert earlier not in list(victim.get_session_auth_fallback_hash())


def test_a_save_of_an_instance_read_before_a_revocation_keeps_the_new_epoch():
    victim = UserFactory(roles=["auditor"])
    stale = User.objects.get(pk=victim.pk)
    with transaction.atomic():
        credentials_revoke(user=victim, cause=Cause.ROLE_LOST, actor=None)
    stale.first_name = "Grace"
    stale.save()  # a full save of what was read before
    fresh = User.objects.get(pk=victim.pk)
    assert fresh.access_epoch == victim.access_epoch == 1 and fresh.first_name == "Grace"


def test_deleting_a_group_in_the_admin_withdraws_its_grants_and_ends_its_members_access(
    client, verified_login
):
    from django.contrib.auth.models import Group

    from apps.registry.models import PredictGrant
    from tests.registry.conftest import make_model

    root = UserFactory(roles=["admin"])
    admin_client(client, root, verified_login, superuser=True)
    team = Group.objects.create(name="pricing team")
    member = UserFactory(roles=["api_client"])
    member.groups.add(team)
    PredictGrant.objects.create(model=make_model(root), group=team, granted_by=root)
    held = Credentials(member)
    response = client.post(f"/admin/auth/group/{team.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not PredictGrant.objects.exists()
    [withdrawn] = audit_events("model.grant.deleted")
    assert withdrawn["target"]["id"] == "pricing"
    held.all_refused()
    assert revoked_for(member, "role_lost")["details"]["keys_revoked"] == 1
    [deleted] = audit_events("admin.delete")
    assert deleted["details"]["model"] == "auth.group"


@pytest.mark.django_db(transaction=True)
def test_a_role_given_in_a_change_that_rolls_back_is_never_honoured(django_assert_num_queries):
    # The cache is told to read the database while a change commits, never handed state that
    # was not committed: a role added, then rolled back, grants nothing from the cache.
    from apps.accounts.models import Role
    from apps.accounts.user_cache import lookup

    person = UserFactory(roles=["auditor"])
    family = TokenFamily.objects.create(user=person)

    class RolledBack(Exception):
        pass

    with pytest.raises(RolledBack), transaction.atomic():
        person.roles.add(Role.objects.get_or_create(name="admin")[0])
        raise RolledBack
    cached, _revoked, _failures = lookup(person.pk, family.pk, "authfail:ip:test")
    with django_assert_num_queries(0):  # the roles read with the user, not read again
        assert roles_of(cached) == {"auditor"}
