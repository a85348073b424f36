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
    assert "Only a superuser may give or take superuser status" in response.content.decode()
    target.refresh_from_db()
    assert not target.is_superuser


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
