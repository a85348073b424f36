from __future__ import annotations

import re

import pytest

from apps.apikeys.keys import hash_secret
from apps.apikeys.models import ApiKey
from apps.apikeys.signatures import SIGNING_PURPOSE
from apps.core.sealing import unseal
from tests.accounts.factories import UserFactory
from tests.apikeys.conftest import audit_events
from tests.apikeys.factories import ApiKeyFactory

pytestmark = pytest.mark.django_db

LIST = "/admin/apikeys/apikey/"
ADD = f"{LIST}add/"
KEY = re.compile(r"bwk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def operator():  # type: ignore[no-untyped-def]
    """Staff with the key permissions only (no role that requires MFA for the admin)."""
    from django.contrib.auth.models import Permission

    user = UserFactory(username="key-operator", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="apikeys",
            codename__in=["add_apikey", "view_apikey", "change_apikey"],
        )
    )
    return user


@pytest.fixture
def admin_client(client, operator):  # type: ignore[no-untyped-def]
    client.force_login(operator)
    return client


def html(response) -> str:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    return response.content.decode()


def add_form(**fields):  # type: ignore[no-untyped-def]
    return {
        "name": "batch scorer",
        "scopes": "predict:pricing, predict:churn",
        "expires_in_days": "30",
        "rate_limit": "10/s",
        "allowed_ips": "203.0.113.0/24",
        **fields,
    }


def test_the_list_shows_prefix_name_owner_status_and_times(admin_client, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"], name="nightly batch")
    page = html(admin_client.get(LIST))
    for shown in (api_key.prefix, "nightly batch", actors["key_owner"].username, "active"):
        assert shown in page
    for column in ("prefix", "name", "owner", "status", "expires at", "last used at"):
        assert column in page.lower()


def test_search_by_prefix_whole_key_name_or_owner(admin_client, actors):
    wanted, key = ApiKeyFactory.issue(owner=actors["key_owner"], name="alpha")
    other, _ = ApiKeyFactory.issue(owner=actors["outsider"], name="beta")
    for term in (wanted.prefix, key, "alpha", actors["key_owner"].username):
        page = html(admin_client.get(LIST, {"q": term}, follow=True))
        assert wanted.prefix in page and other.prefix not in page, term


def test_a_whole_key_pasted_into_search_is_never_echoed(admin_client, actors):
    wanted, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = admin_client.get(LIST, {"q": key})
    assert response.status_code == 302 and key[17:] not in response["Location"]
    page = html(admin_client.get(response["Location"]))
    assert wanted.prefix in page and key[17:] not in page


def grant_predict(user) -> None:  # type: ignore[no-untyped-def]
    from apps.accounts.models import Role

    user.roles.add(Role.objects.get(name="ml_engineer"))


def test_creating_a_key_in_the_admin_shows_it_once_and_audits_it(admin_client, operator):
    grant_predict(operator)
    owner = operator  # a key made in the admin is its maker's: its secret is shown to them
    form = html(admin_client.get(ADD))
    for field in ("name", "scopes", "expires_in_days", "rate_limit", "allowed_ips"):
        assert f'name="{field}"' in form
    assert 'name="owner"' not in form
    assert 'name="secret_hash"' not in form and 'name="public_id"' not in form
    posted = admin_client.post(ADD, add_form(require_signature="on"))
    # POST/redirect/GET: the POST answers with a redirect that carries no secret.
    assert posted.status_code == 303 and "bwk_" not in posted["Location"]
    response = admin_client.get(posted["Location"])
    page = html(response)
    assert "no-store" in response["Cache-Control"]
    [key] = KEY.findall(page)
    api_key = ApiKey.objects.get(public_id=key[4:16])
    assert api_key.owner == owner and api_key.scopes == ["predict:pricing", "predict:churn"]
    assert api_key.rate_limit == "10/s" and api_key.allowed_ips == ["203.0.113.0/24"]
    assert api_key.secret_hash == hash_secret(key[17:])
    signing_secret = unseal(api_key.signing_secret_sealed, purpose=SIGNING_PURPOSE)
    assert signing_secret in page
    [event] = audit_events("apikey.created")
    assert event["target"]["id"] == api_key.prefix and event["actor"]["type"] == "user"
    # Never again: not on a reload of that page (which issues nothing), nor in the list, the
    # key's page, or any message carried to the next page.
    reloaded = admin_client.get(posted["Location"])
    again = reloaded.content.decode()
    assert reloaded.status_code == 410 and "Already shown" in again
    assert key[17:] not in again and signing_secret not in again
    assert ApiKey.objects.filter(owner=owner).count() == 1
    for url in (LIST, f"{LIST}{api_key.pk}/change/", LIST):
        later = html(admin_client.get(url))
        assert key[17:] not in later and signing_secret not in later
    # While it waited for the page, the session held it sealed, never in the clear.
    from django.contrib.sessions.models import Session

    for session in Session.objects.all():
        stored = str(session.get_decoded()) + session.session_data
        assert key[17:] not in stored and signing_secret not in stored


def test_a_scope_beyond_the_owners_grants_is_a_form_error(admin_client, operator):
    page = html(admin_client.post(ADD, add_form()))
    assert "Beyond the owner&#x27;s grants" in page or "Beyond the owner's grants" in page
    assert not ApiKey.objects.exists()
    assert audit_events("apikey.created") == []


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("scopes", "models:x"),
        ("allowed_ips", "10.0.0.1/8"),
        ("rate_limit", "5/d"),
        ("expires_in_days", "400"),
    ],
)
def test_invalid_add_forms_create_nothing(admin_client, operator, field, value):
    grant_predict(operator)
    page = html(admin_client.post(ADD, add_form(**{field: value})))
    assert "errorlist" in page
    assert not ApiKey.objects.exists()


def test_a_keys_page_is_read_only_and_never_shows_its_hash_or_sealed_secret(admin_client, actors):
    api_key, key, signing_secret = ApiKeyFactory.issue_signed(owner=actors["key_owner"])
    page = html(admin_client.get(f"{LIST}{api_key.pk}/change/"))
    assert api_key.prefix in page
    for secret in (api_key.secret_hash, api_key.signing_secret_sealed, key[17:], signing_secret):
        assert secret not in page
    assert 'name="_save"' not in page and "secret_hash" not in page
    list_page = html(admin_client.get(LIST))
    assert api_key.secret_hash not in list_page and api_key.signing_secret_sealed not in list_page


def test_keys_cannot_be_edited_or_deleted_in_place(admin_client, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"], name="before")
    url = f"{LIST}{api_key.pk}/"
    assert (
        admin_client.post(f"{url}change/", {"name": "after", "revoked_at": ""}).status_code == 403
    )
    assert admin_client.post(f"{url}delete/", {"post": "yes"}).status_code == 403
    api_key.refresh_from_db()
    assert api_key.name == "before" and api_key.revoked_at is None


def test_the_revoke_action_goes_through_the_service(admin_client, actors):
    first, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    second, _ = ApiKeyFactory.issue(owner=actors["outsider"])
    response = admin_client.post(
        LIST,
        {"action": "revoke_keys", "_selected_action": [str(first.pk), str(second.pk)]},
        follow=True,
    )
    assert "Revoked 2 key(s)." in html(response)
    assert ApiKey.objects.filter(revoked_at__isnull=False).count() == 2
    events = audit_events("apikey.revoked")
    assert {event["target"]["id"] for event in events} == {first.prefix, second.prefix}
    assert all(event["details"]["reason"] == "admin" for event in events)
    # Revoking again is refused by the service and said so.
    again = admin_client.post(
        LIST, {"action": "revoke_keys", "_selected_action": [str(first.pk)]}, follow=True
    )
    assert "already revoked" in html(again)
    assert len(audit_events("apikey.revoked")) == 2


def test_the_rotate_action_refuses_someone_elses_key(admin_client, actors):
    old, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    response = admin_client.post(
        LIST, {"action": "rotate_keys", "_selected_action": [str(old.pk)]}, follow=True
    )
    page = html(response)
    assert "Only the key" in page and not KEY.findall(page)
    old.refresh_from_db()
    assert old.status == "active" and old.rotated_to is None


def test_the_rotate_action_shows_the_new_keys_once(admin_client, operator):
    grant_predict(operator)
    old, old_key = ApiKeyFactory.issue(owner=operator)
    posted = admin_client.post(LIST, {"action": "rotate_keys", "_selected_action": [str(old.pk)]})
    assert posted.status_code == 303
    response = admin_client.get(posted["Location"])
    page = html(response)
    [new_key] = KEY.findall(page)
    assert new_key != old_key and "no-store" in response["Cache-Control"]
    old.refresh_from_db()
    assert old.status == "rotating" and old.rotated_to.public_id == new_key[4:16]
    assert len(audit_events("apikey.rotated")) == 1
    assert new_key[17:] not in html(admin_client.get(LIST))
    reloaded = admin_client.get(posted["Location"])  # shown once
    assert reloaded.status_code == 410 and new_key[17:] not in reloaded.content.decode()


def test_staff_without_the_change_permission_get_no_actions(client, actors):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client.force_login(viewer)
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    page = html(client.get(LIST))
    assert api_key.prefix in page and "revoke_keys" not in page
    response = client.post(LIST, {"action": "revoke_keys", "_selected_action": [str(api_key.pk)]})
    assert response.status_code in {200, 302}
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    assert client.get(ADD).status_code == 403


def test_a_made_up_or_someone_elses_reveal_page_shows_nothing(admin_client, operator):
    from django.test import Client

    grant_predict(operator)
    posted = admin_client.post(ADD, add_form())
    assert posted.status_code == 303
    # Another staff member with the same permissions and the link: their session holds
    # nothing under that id.
    other = UserFactory(username="other-operator", is_staff=True)
    other.user_permissions.set(operator.user_permissions.all())
    client = Client()
    client.force_login(other)
    for url in (posted["Location"], posted["Location"].replace("issued/", "issued/x"),
                "/admin/apikeys/apikey/issued/" + "A" * 300 + "/"):  # fmt: skip
        answer = client.get(url)
        assert answer.status_code == 410, url
        assert not KEY.findall(answer.content.decode())
    # The issuer still sees the key once: the other visit took nothing.
    assert len(KEY.findall(html(admin_client.get(posted["Location"])))) == 1


# --- the owner, help texts, and rotate and revoke from a key's page (issue 16) -------------


@pytest.fixture
def manager(actors, verified_login, client):  # type: ignore[no-untyped-def]
    """A security officer with the admin's key permissions, signed in with a verified
    authenticator (their role requires one): they manage every key."""
    from django.contrib.auth.models import Permission

    officer = actors["security_officer"]
    officer.is_staff = True
    officer.save(update_fields=["is_staff"])
    officer.user_permissions.set(Permission.objects.filter(content_type__app_label="apikeys"))
    return verified_login(client, officer)


@pytest.fixture
def demo_client(actors):  # type: ignore[no-untyped-def]
    from tests.console.keys_helpers import service_account

    return service_account(actors["admin"])


def test_the_help_texts_are_shown_escaped(admin_client, manager):
    for client in (admin_client, manager):
        page = html(client.get(ADD))
        assert "predict:&lt;model name&gt; or predict:*" in page
        assert "<model name>" not in page and "predict: or predict:*" not in page


def test_those_who_manage_every_key_choose_its_owner(manager, actors, demo_client):
    page = html(manager.get(ADD))
    assert 'name="owner"' in page
    assert f'value="{actors["security_officer"].username}"' in page  # themselves, at first
    suggestions = page.split('-suggestions">', 1)[1].split("</datalist>")[0]
    assert '"demo-client"' in suggestions and f'"{actors["auditor"].username}"' not in suggestions
    posted = manager.post(ADD, add_form(owner="demo-client", scopes="predict:pricing"))
    assert posted.status_code == 303
    shown = html(manager.get(posted["Location"]))
    [key] = KEY.findall(shown)
    [api_key] = ApiKey.objects.all()
    assert api_key.owner == demo_client and key.startswith(api_key.prefix + "_")
    assert "demo-client" in shown
    [event] = audit_events("apikey.created")
    assert event["actor"]["type"] == "user" and event["details"]["owner"] != event["actor"]["ref"]
    reloaded = manager.get(posted["Location"])
    assert reloaded.status_code == 410 and ApiKey.objects.count() == 1


@pytest.mark.parametrize(
    ("owner", "message"),
    [
        ("nobody-at-all", "No user named nobody-at-all."),
        ("gone-client", "gone-client is deactivated: a deactivated account holds no key."),
        ("{auditor}", "is a person with the auditor role: whoever issues a key sees its secret"),
        ("demo-client", "Beyond the owner&#x27;s grants: predict:churn."),
    ],
)
def test_an_owner_who_may_not_hold_the_key_is_refused(manager, actors, demo_client, owner, message):
    UserFactory(username="gone-client", roles=["api_client"], is_active=False)
    owner = owner.format(auditor=actors["auditor"].username)
    page = html(manager.post(ADD, add_form(owner=owner, scopes="predict:pricing, predict:churn")))
    assert message in page and "errorlist" in page
    assert not ApiKey.objects.exists() and audit_events("apikey.created") == []


def test_others_issue_keys_for_themselves_whatever_they_send(admin_client, operator, actors):
    grant_predict(operator)
    posted = admin_client.post(ADD, add_form(owner=actors["key_owner"].username))
    assert posted.status_code == 303
    assert ApiKey.objects.get().owner == operator


def change_url(api_key) -> str:  # type: ignore[no-untyped-def]
    return f"{LIST}{api_key.pk}/change/"


def test_a_keys_page_has_rotate_and_revoke_buttons_for_managers(manager, admin_client, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    page = html(manager.get(change_url(api_key)))
    assert (
        f'href="{LIST}{api_key.pk}/rotate/"' in page
        and f'href="{LIST}{api_key.pk}/revoke/"' in page
    )
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=api_key.created_at)
    page = html(manager.get(change_url(api_key)))
    assert "/rotate/" not in page and "/revoke/" not in page


def test_staff_without_the_change_permission_get_no_buttons_and_no_confirmations(client, actors):
    from django.contrib.auth.models import Permission

    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_apikey"))
    client.force_login(viewer)
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert "/revoke/" not in html(client.get(change_url(api_key)))
    for action in ("rotate", "revoke"):
        assert client.get(f"{LIST}{api_key.pk}/{action}/").status_code == 403
        assert (
            client.post(f"{LIST}{api_key.pk}/{action}/", {"grace_seconds": "0"}).status_code == 403
        )
    api_key.refresh_from_db()
    assert api_key.status == "active"


def test_revoke_from_a_keys_page_through_its_confirmation(manager, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    url = f"{LIST}{api_key.pk}/revoke/"
    confirm = html(manager.get(url))
    assert f"Revoke {api_key.prefix}?" in confirm and 'name="reason"' in confirm
    assert "401 api_key_revoked" in confirm
    api_key.refresh_from_db()
    assert api_key.revoked_at is None
    done = manager.post(url, {"reason": "found in a log"})
    assert done.status_code == 303 and done["Location"] == change_url(api_key)
    assert f"Revoked {api_key.prefix}." in html(manager.get(done["Location"]))
    api_key.refresh_from_db()
    assert api_key.status == "revoked"
    [event] = audit_events("apikey.revoked")
    assert event["details"]["reason"] == "found in a log"
    replayed = manager.post(url, {"reason": "again"})
    assert replayed.status_code == 409
    assert f"{api_key.prefix} is already revoked." in replayed.content.decode()
    assert len(audit_events("apikey.revoked")) == 1
    again = manager.get(url)
    assert again.status_code == 409 and "Yes, revoke" not in again.content.decode()


def test_rotate_from_a_keys_page_through_its_confirmation(manager, demo_client):
    old, _ = ApiKeyFactory.issue(owner=demo_client, scopes=["predict:pricing"])
    url = f"{LIST}{old.pk}/rotate/"
    confirm = html(manager.get(url))
    assert f"Rotate {old.prefix}?" in confirm and 'name="grace_seconds"' in confirm
    old.refresh_from_db()
    assert old.rotated_to is None
    done = manager.post(url, {"grace_seconds": "0"})
    assert done.status_code == 303 and "bwk_" not in done["Location"]
    [new_key] = KEY.findall(html(manager.get(done["Location"])))
    old.refresh_from_db()
    assert old.rotated_to.public_id == new_key[4:16] and old.rotated_to.owner == demo_client
    assert old.status == "expired"  # no grace: the old key stopped at once
    [event] = audit_events("apikey.rotated")
    assert event["details"]["grace_seconds"] == 0
    reloaded = manager.get(done["Location"])
    assert reloaded.status_code == 410 and new_key[17:] not in reloaded.content.decode()
    replayed = manager.post(url, {"grace_seconds": "0"})
    assert replayed.status_code == 409 and "only an active key can be rotated" in (
        replayed.content.decode()
    )
    assert ApiKey.objects.count() == 2
    bad = manager.post(f"{LIST}{old.rotated_to.pk}/rotate/", {"grace_seconds": "5"})
    assert bad.status_code == 400 and ApiKey.objects.count() == 2


def test_an_unknown_key_has_no_confirmation_pages(manager):
    import uuid

    for action in ("rotate", "revoke"):
        for key_id in (uuid.uuid4(), "not-a-uuid"):
            assert manager.get(f"{LIST}{key_id}/{action}/").status_code == 404
            assert manager.post(f"{LIST}{key_id}/{action}/", {}).status_code == 404


def test_a_confirmation_without_the_csrf_token_is_refused(actors, verified_login):
    from django.contrib.auth.models import Permission
    from django.test import Client

    officer = actors["security_officer"]
    officer.is_staff = True
    officer.save(update_fields=["is_staff"])
    officer.user_permissions.set(Permission.objects.filter(content_type__app_label="apikeys"))
    client = verified_login(Client(enforce_csrf_checks=True), officer)
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert client.post(f"{LIST}{api_key.pk}/revoke/", {"reason": "x"}).status_code == 403
    api_key.refresh_from_db()
    assert api_key.revoked_at is None and audit_events("apikey.revoked") == []


# --- no one sees the secret of a person's key (they issue and rotate their own) ------------


@pytest.fixture
def admin_manager(actors, verified_login):  # type: ignore[no-untyped-def]
    """An admin (staff, every key permission, a verified authenticator) on a client of their
    own."""
    from django.contrib.auth.models import Permission
    from django.test import Client

    admin = actors["admin"]
    admin.is_staff = True
    admin.save(update_fields=["is_staff"])
    admin.user_permissions.set(Permission.objects.filter(content_type__app_label="apikeys"))
    return verified_login(Client(), admin)


PEOPLE = [("admin", "admin"), ("ml_engineer", "ML engineer")]


@pytest.mark.parametrize("who", ["manager", "admin_manager"])
@pytest.mark.parametrize(("owner_role", "label"), PEOPLE)
def test_no_one_issues_a_key_for_a_person_in_the_admin(request, who, owner_role, label):
    client = request.getfixturevalue(who)
    person = UserFactory(roles=[owner_role])
    page = html(client.post(ADD, add_form(owner=person.username, scopes="predict:*")))
    assert (
        "errorlist" in page
        and (
            f"{person.username} is a person with the {label} role: whoever issues a key sees its "
            "secret, so they issue their own keys."
        )
        in page
    )
    assert not KEY.findall(page)
    assert not ApiKey.objects.exists() and audit_events("apikey.created") == []


@pytest.mark.parametrize("who", ["manager", "admin_manager"])
@pytest.mark.parametrize(("owner_role", "label"), PEOPLE)
def test_no_one_rotates_a_persons_key_in_the_admin(request, who, owner_role, label):
    client = request.getfixturevalue(who)
    person = UserFactory(roles=[owner_role])
    old, _ = ApiKeyFactory.issue(owner=person, scopes=["predict:*"])
    url = f"{LIST}{old.pk}/rotate/"
    confirm = client.get(url)
    assert confirm.status_code == 403
    assert f"a person with the {label} role" in confirm.content.decode()
    refused = client.post(url, {"grace_seconds": "0"})
    page = refused.content.decode()
    assert refused.status_code == 403 and not KEY.findall(page)
    assert (
        f"This key belongs to {person.username}, a person with the {label} role: whoever rotates"
        in page
    )
    # The list's action alike: a warning, no secret.
    acted = client.post(
        LIST, {"action": "rotate_keys", "_selected_action": [str(old.pk)]}, follow=True
    )
    page = html(acted)
    assert f"a person with the {label} role" in page and not KEY.findall(page)
    old.refresh_from_db()
    assert old.status == "active" and old.rotated_to is None and ApiKey.objects.count() == 1
    assert audit_events("apikey.rotated") == []


def test_an_officer_still_revokes_a_persons_key_in_the_admin(manager, actors):
    old, _ = ApiKeyFactory.issue(owner=actors["admin"], scopes=["predict:*"])
    done = manager.post(f"{LIST}{old.pk}/revoke/", {"reason": "leaked"})
    assert done.status_code == 303
    old.refresh_from_db()
    assert old.status == "revoked" and len(audit_events("apikey.revoked")) == 1
