"""No one deactivates, demotes or erases themself or the last active administrator, and only a
superuser may do any of it to a superuser: through a containment action, the erasure API or
the admin. Each refusal is 403 `permission_denied` with a sentence and `user.change_refused`
in the audit trail; nothing changes."""

from __future__ import annotations

from typing import Any

import pytest

from apps.accounts.models import User
from tests.accounts.access_changes import admin_client, contain, post_change
from tests.accounts.factories import UserFactory
from tests.registry.conftest import assert_error, audit_events


def refused(actor: Any, user: Any, change: str, reason: str) -> None:
    [event] = audit_events("user.change_refused")
    assert event["outcome"] == "denied"
    assert event["details"] == {"change": change, "reason": reason}
    assert User.objects.get(pk=user.pk).is_active


@pytest.mark.django_db
def test_an_officer_cannot_deactivate_themself(api_client, actors):
    officer = actors["security_officer"]
    error = assert_error(contain(api_client, officer, officer.username), 403, "permission_denied")
    assert "your own account" in error["message"]
    refused(officer, officer, "deactivate", "self")
    assert audit_events("user.deactivated") == []


@pytest.mark.django_db
def test_only_a_superuser_contains_a_superuser(api_client, actors):
    root = UserFactory(roles=["admin"])
    root.is_superuser = True
    root.save()
    error = assert_error(
        contain(api_client, actors["security_officer"], root.username), 403, "permission_denied"
    )
    assert "Only a superuser" in error["message"]
    refused(actors["security_officer"], root, "deactivate", "superuser")
    other_root = UserFactory(roles=["admin"])
    other_root.is_superuser = True
    other_root.save()
    assert contain(api_client, other_root, root.username).status_code == 200
    assert not User.objects.get(pk=root.pk).is_active


@pytest.mark.django_db
def test_the_last_active_administrator_cannot_be_contained(api_client, actors):
    admin = actors["admin"]  # the only administrator there is
    error = assert_error(
        contain(api_client, actors["security_officer"], admin.username), 403, "permission_denied"
    )
    assert "last active administrator" in error["message"]
    refused(actors["security_officer"], admin, "deactivate", "last_administrator")
    UserFactory(roles=["admin"])  # now there are two
    assert contain(api_client, actors["security_officer"], admin.username).status_code == 200


@pytest.mark.django_db
def test_erasure_holds_the_same_rails(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])
    for user in (actors["security_officer"], actors["admin"]):
        response = api_client.post(
            "/api/v1/privacy/erasure", {"username": user.username}, format="json"
        )
        assert_error(response, 403, "permission_denied")
        assert User.objects.filter(pk=user.pk).exists()
    reasons = [event["details"]["reason"] for event in audit_events("user.change_refused")]
    assert reasons == ["self", "last_administrator"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("overrides", "words", "reason"),
    [
        ({"is_active": ""}, "your own account", "self"),
        ({"roles": []}, "your own account", "self"),
    ],
)
def test_in_the_admin_no_one_deactivates_or_demotes_themself(
    client, actors, verified_login, overrides, words, reason
):
    admin = actors["admin"]
    UserFactory(roles=["admin"])  # not the last one: the refusal is about oneself
    admin_client(client, admin, verified_login, superuser=True)
    admin.refresh_from_db()
    response = post_change(client, admin, **overrides)
    assert response.status_code == 200 and words in response.content.decode()
    admin.refresh_from_db()
    assert admin.is_active and admin.roles.filter(name="admin").exists()
    [event] = audit_events("user.change_refused")
    assert event["details"]["reason"] == reason


@pytest.mark.django_db
def test_in_the_admin_only_a_superuser_gives_superuser_status(client, actors, verified_login):
    admin = actors["admin"]
    admin_client(client, admin, verified_login)  # an administrator, not a superuser
    target = actors["ml_engineer"]
    response = post_change(client, target, is_superuser="on")
    assert response.status_code == 200
    assert "Only a superuser may give superuser status" in response.content.decode()
    target.refresh_from_db()
    assert not target.is_superuser
    [event] = audit_events("user.change_refused")
    assert event["details"] == {"change": "make_superuser", "reason": "superuser"}


@pytest.mark.django_db
def test_in_the_admin_only_a_superuser_touches_a_superusers_access(client, actors, verified_login):
    admin = actors["admin"]
    admin_client(client, admin, verified_login)  # an administrator, not a superuser
    root = UserFactory(roles=["admin"])
    root.is_superuser = True
    root.save()
    response = post_change(client, root, is_active="")
    assert response.status_code == 200
    assert "Only a superuser may deactivate a superuser" in response.content.decode()
    root.refresh_from_db()
    assert root.is_active
    [event] = audit_events("user.change_refused")
    assert event["details"] == {"change": "deactivate", "reason": "superuser"}


@pytest.mark.django_db
def test_in_the_admin_the_last_administrator_is_not_demoted(client, actors, verified_login):
    # Staff given the user pages but no administrator: the admin-role holder is the last one.
    admin_client(client, UserFactory(), verified_login)
    admin = actors["admin"]
    response = post_change(client, admin, roles=[])
    assert response.status_code == 200
    assert "last active administrator" in response.content.decode()
    assert admin.roles.filter(name="admin").exists()
    [event] = audit_events("user.change_refused")
    assert event["details"] == {"change": "demote", "reason": "last_administrator"}


@pytest.mark.django_db
def test_in_the_admin_another_administrator_may_be_demoted_when_one_remains(
    client, actors, verified_login
):
    admin = actors["admin"]
    admin_client(client, admin, verified_login, superuser=True)
    other = UserFactory(roles=["admin"])
    response = post_change(client, other, roles=[])
    assert response.status_code == 302, response.content.decode()[:3000]
    assert not other.roles.filter(name="admin").exists()
    assert audit_events("user.change_refused") == []


def _root() -> Any:
    root = UserFactory(roles=["admin"])
    root.is_superuser = True
    root.save()
    return root


@pytest.mark.django_db
def test_in_the_admin_only_a_superuser_sets_a_superusers_password(client, actors, verified_login):
    admin_client(client, UserFactory(), verified_login)  # staff given the user pages
    root = _root()
    before = User.objects.get(pk=root.pk).password
    url = f"/admin/accounts/user/{root.pk}/password/"
    assert client.get(url).status_code == 302  # not even the form
    response = client.post(
        url, {"password1": "a takeover passphrase 1", "password2": "a takeover passphrase 1"}
    )
    assert response.status_code == 302
    assert User.objects.get(pk=root.pk).password == before
    [event] = audit_events("user.change_refused")
    assert event["details"] == {"change": "set_password", "reason": "superuser"}


@pytest.mark.django_db
def test_in_the_admin_only_a_superuser_resets_a_superusers_mfa(client, actors, verified_login):
    from apps.accounts.models import TotpDevice

    admin_client(client, UserFactory(), verified_login)
    root = _root()
    TotpDevice.objects.create(user=root, name="phone", confirmed=True)
    response = client.post(
        "/admin/accounts/user/", {"action": "reset_mfa", "_selected_action": [str(root.pk)]}
    )
    assert response.status_code == 302
    assert TotpDevice.objects.filter(user=root).exists()
    assert audit_events("user.credentials_revoked") == []
    [event] = audit_events("user.change_refused")
    assert event["details"] == {"change": "reset_mfa", "reason": "superuser"}


@pytest.mark.django_db
def test_in_the_admin_only_an_administrator_makes_an_administrator(client, actors, verified_login):
    staff = UserFactory(roles=["ml_engineer"])
    admin_client(client, staff, verified_login)  # given the user pages, but no administrator
    response = post_change(client, staff, roles=["admin", "ml_engineer"])  # themself
    assert response.status_code == 200
    assert "Only an administrator may make an administrator" in response.content.decode()
    assert not staff.roles.filter(name="admin").exists()
    [event] = audit_events("user.change_refused")
    assert event["details"] == {"change": "promote", "reason": "not_administrator"}


@pytest.mark.django_db
def test_in_the_admin_an_administrator_does_not_remove_their_own_staff_status(
    client, actors, verified_login
):
    admin = actors["admin"]
    UserFactory(roles=["admin"])
    admin_client(client, admin, verified_login, superuser=True)
    response = post_change(client, admin, is_staff="")
    assert response.status_code == 200 and "your own account" in response.content.decode()
    assert User.objects.get(pk=admin.pk).is_staff


@pytest.mark.django_db
def test_a_form_opened_before_a_containment_cannot_put_access_back(
    client, api_client, actors, verified_login
):
    from tests.accounts.access_changes import change_form

    victim = UserFactory(roles=["ml_engineer"])
    admin_client(client, _root(), verified_login, superuser=True)
    opened = change_form(victim, first_name="Ada")  # what the page held when it was opened
    assert contain(api_client, actors["security_officer"], victim.username).status_code == 200
    response = client.post(f"/admin/accounts/user/{victim.pk}/change/", opened)
    assert response.status_code == 200
    assert "access changed while the page was open" in response.content.decode()
    victim.refresh_from_db()
    assert not victim.is_active and victim.first_name != "Ada"


@pytest.mark.django_db(transaction=True)
def test_two_containments_at_once_cannot_remove_both_last_administrators(actors):
    import threading

    from django.db import connection, transaction

    from apps.accounts.services import user_deactivate
    from apps.core.errors import PermissionDenied

    first, second = actors["admin"], UserFactory(roles=["admin"])
    officer = actors["security_officer"]
    first_done, release = threading.Event(), threading.Event()
    outcome: dict[str, Any] = {}

    def contain_first() -> None:
        try:
            with transaction.atomic():
                user_deactivate(actor=officer, user=first, reason="stolen")
                first_done.set()
                release.wait(10)  # holds its transaction open while the other one runs
        finally:
            connection.close()

    def contain_second() -> None:
        try:
            user_deactivate(actor=officer, user=second, reason="stolen")
            outcome["second"] = "deactivated"
        except PermissionDenied as exc:
            outcome["second"] = exc.message
        finally:
            connection.close()

    one = threading.Thread(target=contain_first)
    one.start()
    assert first_done.wait(10)
    two = threading.Thread(target=contain_second)
    two.start()
    two.join(0.5)
    assert two.is_alive()  # waiting for the first containment to commit
    release.set()
    one.join(10)
    two.join(10)
    assert "last active administrator" in outcome["second"]
    assert not User.objects.get(pk=first.pk).is_active
    assert User.objects.get(pk=second.pk).is_active
