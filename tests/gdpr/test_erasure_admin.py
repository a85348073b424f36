"""Erasure from the Django admin: an action and a button lead to a confirmation page that wants
the username typed; the same service erases, audited the same way."""

from __future__ import annotations

import pytest
from django.test import Client

from apps.accounts.models import User
from tests.accounts.factories import UserFactory
from tests.gdpr.conftest import audit_events

pytestmark = pytest.mark.django_db


def erase_url(user: User) -> str:
    return f"/admin/accounts/user/{user.pk}/erase/"


@pytest.fixture
def boss_client(client: Client, verified_login) -> Client:  # type: ignore[no-untyped-def]
    boss = UserFactory(username="boss", is_staff=True, is_superuser=True)
    return verified_login(client, boss)


def test_a_wrong_username_erases_nothing_and_the_right_one_erases(
    boss_client, django_capture_on_commit_callbacks
):
    person = UserFactory(username="frank", email="frank@example.test")
    page = boss_client.get(erase_url(person))
    assert page.status_code == 200
    assert "Type the username to confirm" in page.content.decode()

    for typed in ("", "Frank", "frank ", "boss"):
        refused = boss_client.post(erase_url(person), {"username": typed})
        assert refused.status_code == 200
        assert User.objects.filter(pk=person.pk).exists()
    assert "This is not the username" in refused.content.decode()
    assert audit_events("privacy.erasure") == []

    with django_capture_on_commit_callbacks(execute=True):
        done = boss_client.post(erase_url(person), {"username": "frank"}, follow=True)
    assert done.redirect_chain[-1][0] == "/admin/accounts/user/"
    assert "The user was erased. Reference er_" in done.content.decode()
    assert not User.objects.filter(pk=person.pk).exists()
    [event] = audit_events("privacy.erasure")
    assert "frank" not in str(event)


def test_free_text_that_still_names_them_is_listed_after_the_erasure(
    boss_client, django_capture_on_commit_callbacks
):
    from apps.incidents.models import Incident, TimelineEntry

    person = UserFactory(username="gina")
    incident = Incident.objects.create(title="x", severity="sev4", detected_at="2030-01-01T00:00Z")
    note = TimelineEntry.objects.create(
        incident=incident, kind="note", actor_type="system", actor_ref="bulwark", text="ask gina"
    )
    with django_capture_on_commit_callbacks(execute=True):
        done = boss_client.post(erase_url(person), {"username": "gina"}, follow=True)
    page = done.content.decode()
    assert "still mentions them" in page and f"incidents.timelineentry {note.pk} (text)" in page


def test_the_action_leads_to_the_confirmation_for_one_user_only(boss_client):
    first, second = UserFactory(), UserFactory()
    one = boss_client.post(
        "/admin/accounts/user/", {"action": "erase_gdpr", "_selected_action": [str(first.pk)]}
    )
    assert one.status_code == 302 and one["Location"] == erase_url(first)
    assert User.objects.filter(pk=first.pk).exists()  # nothing erased before confirming

    both = boss_client.post(
        "/admin/accounts/user/",
        {"action": "erase_gdpr", "_selected_action": [str(first.pk), str(second.pk)]},
        follow=True,
    )
    assert "Select exactly one user to erase." in both.content.decode()
    assert User.objects.filter(pk__in=[first.pk, second.pk]).count() == 2


def test_the_user_page_has_the_erase_button_and_no_plain_delete(boss_client):
    person = UserFactory()
    page = boss_client.get(f"/admin/accounts/user/{person.pk}/change/").content.decode()
    assert erase_url(person) in page and "Erase (GDPR)" in page
    assert f"/admin/accounts/user/{person.pk}/delete/" not in page
    assert boss_client.get(f"/admin/accounts/user/{person.pk}/delete/").status_code == 403
    listing = boss_client.get("/admin/accounts/user/").content.decode()
    assert "delete_selected" not in listing and "erase_gdpr" in listing


def test_an_admin_cannot_erase_themselves_here_either(boss_client):
    boss = User.objects.get(username="boss")
    response = boss_client.post(erase_url(boss), {"username": "boss"})
    assert response.status_code == 200
    assert "cannot erase your own account" in response.content.decode()
    assert User.objects.filter(pk=boss.pk).exists()


def test_staff_without_privacy_manage_may_not_erase(client, verified_login):
    auditor = UserFactory(is_staff=True, roles=["auditor"])
    auditor.user_permissions.set([])
    verified_login(client, auditor)
    person = UserFactory()
    assert client.get(erase_url(person)).status_code == 403
    assert client.post(erase_url(person), {"username": person.username}).status_code == 403
    assert User.objects.filter(pk=person.pk).exists()


def test_a_security_officer_on_staff_may_erase(
    client, verified_login, django_capture_on_commit_callbacks
):
    officer = UserFactory(is_staff=True, roles=["security_officer"])
    verified_login(client, officer)
    person = UserFactory()
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(erase_url(person), {"username": person.username})
    assert response.status_code == 302
    assert not User.objects.filter(pk=person.pk).exists()
