"""The console's key pages (/keys/): who may use them, the list and its filters, issuing with
the secret shown once (POST/redirect/GET), a key's page, rotate and revoke through their
confirmations, and every refusal with its status and message."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.apikeys.models import ApiKey
from apps.apikeys.signatures import SIGNING_PURPOSE
from apps.core.sealing import unseal
from tests.accounts.factories import UserFactory
from tests.apikeys.conftest import audit_events
from tests.apikeys.factories import ApiKeyFactory
from tests.console.keys_helpers import (
    KEY,
    SHOWN,
    keys_of,
    secret_of,
    service_account,
    session_texts,
    text_of,
)

pytestmark = pytest.mark.django_db

LIST = "/keys/"
NEW = "/keys/new"


@pytest.fixture
def officer(actors: dict[str, Any]) -> Any:
    return actors["security_officer"]


@pytest.fixture
def officer_client(officer: Any, verified_login: Any) -> Client:
    return verified_login(Client(), officer)


@pytest.fixture
def demo_client(actors: dict[str, Any]) -> Any:
    return service_account(actors["admin"])


def once_of(client: Client) -> str:
    """The one-time id of a freshly shown issue form."""
    page = client.get(NEW).content.decode()
    return page.split('name="once" value="', 1)[1].split('"', 1)[0]


def issue_form(client: Client, **fields: Any) -> dict[str, Any]:
    return {
        "owner": "demo-client",
        "name": "checkout service",
        "scopes": "predict:pricing",
        "expires_in_days": "30",
        "rate_limit": "10/s",
        "allowed_ips": "203.0.113.0/24, 198.51.100.7",
        "once": once_of(client),
        **fields,
    }


def key_url(api_key: ApiKey, action: str = "") -> str:
    return f"{LIST}{api_key.pk}" + (f"/{action}" if action else "")


# --- who may use the pages ------------------------------------------------------------------


def test_a_visitor_who_is_not_signed_in_is_sent_to_sign_in_and_changes_nothing(client, actors):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    for path in (LIST, NEW, key_url(api_key), key_url(api_key, "rotate"), "/keys/issued/x"):
        response = client.get(path)
        assert response.status_code == 302, path
        assert response["Location"].startswith("/account/login?next=")
    for path in (key_url(api_key, "revoke"), key_url(api_key, "rotate")):
        assert client.post(path, {"grace_seconds": "0"}).status_code == 302
    api_key.refresh_from_db()
    assert api_key.status == "active" and ApiKey.objects.count() == 1


@pytest.mark.parametrize("role", ["ml_engineer", "auditor", "api_client", "key_owner"])
def test_people_who_do_not_manage_every_key_get_the_403_page(client, actors, role):
    api_key, _ = ApiKeyFactory.issue(owner=actors["key_owner"], name="not for them")
    client.force_login(actors[role])
    for path in (LIST, NEW, key_url(api_key), key_url(api_key, "rotate"), "/keys/issued/x"):
        response = client.get(path)
        assert response.status_code == 403, path
        assert "text/html" in response["Content-Type"]
        assert "not for them" not in response.content.decode()
    # Not even the key's own owner, through these pages (the API is theirs).
    assert client.post(key_url(api_key, "revoke"), {}).status_code == 403
    assert client.post(key_url(api_key, "rotate"), {"grace_seconds": "0"}).status_code == 403
    api_key.refresh_from_db()
    assert api_key.status == "active" and ApiKey.objects.count() == 1


def test_an_officer_without_a_verified_authenticator_is_sent_to_sign_in(client, officer):
    from apps.accounts.models import TotpDevice

    TotpDevice.objects.create(user=officer, name="app", confirmed=True)
    client.force_login(officer)  # a password-only session
    response = client.get(LIST)
    assert response.status_code == 302 and response["Location"].startswith("/account/login")


def test_admins_use_the_pages_too(actors, verified_login):
    client = verified_login(Client(), actors["admin"])
    assert client.get(LIST).status_code == 200 and client.get(NEW).status_code == 200


def test_the_nav_shows_keys_to_those_who_manage_them(officer_client):
    assert (
        '<a href="/keys/" aria-current="page">Keys</a>' in officer_client.get(LIST).content.decode()
    )


# --- the list -------------------------------------------------------------------------------


def test_the_list_shows_each_keys_facts_and_never_a_secret(officer_client, actors):
    used = timezone.now() - timedelta(hours=2)
    api_key, key, signing = ApiKeyFactory.issue_signed(
        owner=actors["key_owner"], name="nightly batch", scopes=["predict:a", "predict:b"],
        last_used_at=used,
    )  # fmt: skip
    response = officer_client.get(LIST)
    page = text_of(response)
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    facts = (
        api_key.prefix, "nightly batch", actors["key_owner"].username, "predict:a", "predict:b",
        "Active", api_key.created_at.strftime("%Y-%m-%d"), used.strftime("%Y-%m-%d %H:%M"),
        api_key.expires_at.strftime("%Y-%m-%d"),
    )  # fmt: skip
    for shown in facts:
        assert shown in page, shown
    for column in ("Key", "Owner", "Scopes", "State", "Created", "Last used", "Expires"):
        assert f'<th scope="col">{column}</th>' in page
    for secret in (secret_of(key), signing, api_key.secret_hash, api_key.signing_secret_sealed):
        assert secret not in page
    assert f'href="{key_url(api_key)}"' in page


def test_many_scopes_are_cut_short_in_the_list(officer_client, actors):
    ApiKeyFactory.issue(owner=actors["key_owner"], scopes=[f"predict:m{n}" for n in range(40)])
    page = text_of(officer_client.get(LIST))
    assert "predict:m2" in page and "predict:m3<" not in page and "+37 more" in page


def _states(actors: dict[str, Any]) -> dict[str, ApiKey]:
    now = timezone.now()
    owner = actors["key_owner"]
    keys = {
        "active": ApiKeyFactory.issue(owner=owner, name="k-active")[0],
        "expiring": ApiKeyFactory.issue(
            owner=owner, name="k-expiring", expires_at=now + timedelta(days=3)
        )[0],
        "revoked": ApiKeyFactory.issue(owner=owner, name="k-revoked", revoked_at=now)[0],
        "expired": ApiKeyFactory.issue(
            owner=owner, name="k-expired", expires_at=now - timedelta(days=1)
        )[0],
    }
    successor = ApiKeyFactory.issue(owner=owner, name="k-successor")[0]
    keys["rotating"] = ApiKeyFactory.issue(
        owner=owner, name="k-rotating", rotated_to=successor, grace_ends_at=now + timedelta(hours=1)
    )[0]
    return keys


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("active", {"k-active", "k-expiring", "k-successor"}),
        ("expiring", {"k-expiring"}),
        ("rotating", {"k-rotating"}),
        ("revoked", {"k-revoked"}),
        ("expired", {"k-expired"}),
        ("", {"k-active", "k-expiring", "k-successor", "k-rotating", "k-revoked", "k-expired"}),
    ],
)
def test_the_list_filters_by_state(officer_client, actors, state, expected):
    _states(actors)
    page = text_of(officer_client.get(LIST, {"state": state}))
    shown = {name for name in ("k-active", "k-expiring", "k-successor", "k-rotating",
                               "k-revoked", "k-expired") if f">{name}<" in page}  # fmt: skip
    assert shown == expected


def test_the_expiring_filter_is_the_dashboards_14_days(officer_client, actors):
    now = timezone.now()
    ApiKeyFactory.issue(
        owner=actors["key_owner"], name="in-13", expires_at=now + timedelta(days=13)
    )
    ApiKeyFactory.issue(
        owner=actors["key_owner"], name="in-15", expires_at=now + timedelta(days=15)
    )
    page = text_of(officer_client.get(LIST, {"state": "expiring"}))
    assert ">in-13<" in page and ">in-15<" not in page and "Expiring within 14 days" in page
    assert "expiring soon" in text_of(officer_client.get(LIST))


def test_the_list_filters_by_owner(officer_client, actors):
    ApiKeyFactory.issue(owner=actors["key_owner"], name="theirs")
    ApiKeyFactory.issue(owner=actors["outsider"], name="someone else's")
    page = text_of(officer_client.get(LIST, {"owner": actors["key_owner"].username}))
    assert ">theirs<" in page and "someone else" not in page
    assert "1 key matching the filters" in page
    nobody = text_of(officer_client.get(LIST, {"owner": "nobody-at-all"}))
    assert "No keys match these filters." in nobody


def test_the_list_finds_a_key_by_its_prefix(officer_client, actors):
    wanted, _ = ApiKeyFactory.issue(owner=actors["key_owner"], name="wanted")
    ApiKeyFactory.issue(owner=actors["key_owner"], name="other")
    for term in (wanted.prefix, wanted.prefix[:8], wanted.public_id):
        page = text_of(officer_client.get(LIST, {"key": term}))
        assert ">wanted<" in page and ">other<" not in page, term


@pytest.mark.parametrize("field", ["key", "owner"])
def test_a_whole_key_pasted_into_a_filter_is_never_echoed(officer_client, actors, field):
    wanted, key = ApiKeyFactory.issue(owner=actors["key_owner"], name="wanted")
    response = officer_client.get(LIST, {field: key, "state": "active"})
    assert response.status_code == 302 and secret_of(key) not in response["Location"]
    assert f"key={wanted.prefix}" in response["Location"] and "state=active" in response["Location"]
    page = officer_client.get(response["Location"]).content.decode()
    assert ">wanted<" in page and secret_of(key) not in page


def test_an_unknown_state_is_a_400_with_the_message(officer_client, actors):
    ApiKeyFactory.issue(owner=actors["key_owner"], name="still listed")
    response = officer_client.get(LIST, {"state": "lost"})
    page = text_of(response)
    assert response.status_code == 400
    assert "State: must be one of active, expiring, rotating, revoked, expired." in page
    assert "still listed" in page


def test_the_list_is_paginated_with_its_filters_kept(officer_client, actors, monkeypatch):
    from apps.console.views import keys as views

    monkeypatch.setattr(views, "PAGE_SIZE", 3)
    for n in range(7):
        ApiKeyFactory.issue(owner=actors["key_owner"], name=f"p{n}")
    owner = actors["key_owner"].username
    first = text_of(officer_client.get(LIST, {"owner": owner}))
    assert "page 1 of 3" in first and ">p6<" in first and ">p3<" not in first
    assert f"?owner={owner}&amp;page=2" in first
    last = text_of(officer_client.get(LIST, {"owner": owner, "page": "3"}))
    assert ">p0<" in last and ">p1<" not in last
    assert "page 3 of 3" in text_of(officer_client.get(LIST, {"owner": owner, "page": "99"}))


def test_the_list_makes_as_many_queries_for_fifty_keys_as_for_one(officer_client, actors):
    ApiKeyFactory.issue(owner=actors["key_owner"])
    officer_client.get(LIST)  # warm
    with CaptureQueriesContext(connection) as one:
        officer_client.get(LIST)
    for n in range(49):
        ApiKeyFactory.issue(owner=actors["outsider"] if n % 2 else actors["key_owner"])
    with CaptureQueriesContext(connection) as fifty:
        response = officer_client.get(LIST)
    assert response.content.decode().count('class="key-cell"') == 50
    assert len(fifty) == len(one)


# --- issuing --------------------------------------------------------------------------------


def test_the_issue_form_offers_oneself_and_service_accounts(officer_client, actors, demo_client):
    UserFactory(username="gone-client", roles=["api_client"], is_active=False)
    page = officer_client.get(NEW).content.decode()
    for field in ("owner", "name", "scopes", "expires_in_days", "rate_limit",
                  "require_signature", "allowed_ips", "once"):  # fmt: skip
        assert f'name="{field}"' in page, field
    suggestions = page.split('<datalist id="id_owner-suggestions">', 1)[1].split("</datalist>")[0]
    assert '<option value="demo-client">' in suggestions
    # Oneself first; people with any other role issue their own keys: not offered.
    assert suggestions.startswith(f'<option value="{actors["security_officer"].username}">')
    for absent in ("gone-client", actors["auditor"].username,
                   actors["ml_engineer"].username, actors["admin"].username):  # fmt: skip
        assert f'"{absent}"' not in suggestions
    # Help texts are escaped: `<model name>` is shown, not swallowed as a tag.
    assert "predict:&lt;model name&gt; or predict:*" in page
    assert "<model name>" not in page


def test_issuing_for_a_service_account_shows_the_key_once(officer_client, officer, demo_client):
    posted = officer_client.post(NEW, issue_form(officer_client, require_signature="on"))
    # POST/redirect/GET: the answer to the POST is a redirect carrying no secret.
    assert posted.status_code == 303, text_of(posted)
    assert posted["Location"].startswith("/keys/issued/") and "bwk_" not in posted["Location"]
    response = officer_client.get(posted["Location"])
    page = response.content.decode()
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    key, signing = SHOWN.findall(page)
    [api_key] = keys_of(demo_client)
    assert key.startswith(api_key.prefix + "_") and KEY.fullmatch(key)
    assert signing == unseal(api_key.signing_secret_sealed, purpose=SIGNING_PURPOSE)
    assert "demo-client" in page and "Shown once." in page
    assert api_key.scopes == ["predict:pricing"] and api_key.rate_limit == "10/s"
    assert api_key.allowed_ips == ["203.0.113.0/24", "198.51.100.7/32"]
    assert (
        timedelta(days=29, hours=23) < api_key.expires_at - api_key.created_at <= timedelta(days=30)
    )
    [event] = audit_events("apikey.created")
    assert event["target"]["id"] == api_key.prefix
    assert event["actor"]["type"] == "user" and event["actor"]["ref"] != event["details"]["owner"]
    # Reloading the page shows nothing and issues nothing.
    again = officer_client.get(posted["Location"])
    assert again.status_code == 410 and "Already shown" in again.content.decode()
    assert secret_of(key) not in again.content.decode() and signing not in again.content.decode()
    assert len(keys_of(demo_client)) == 1 and len(audit_events("apikey.created")) == 1
    # Never again on any page, nor in the session.
    for url in (LIST, key_url(api_key), key_url(api_key, "rotate"), key_url(api_key, "revoke"),
                f"{LIST}?owner=demo-client"):  # fmt: skip
        later = officer_client.get(url).content.decode()
        assert secret_of(key) not in later and signing not in later, url
    for stored in session_texts():
        assert secret_of(key) not in stored and signing not in stored


def test_an_officer_issues_for_themselves_only_within_their_grants(officer_client, officer):
    # A security officer holds no predict grant: a key of their own has nothing to hold.
    response = officer_client.post(NEW, issue_form(officer_client, owner=officer.username))
    assert response.status_code == 400
    assert "holds no role that can use an API key" in text_of(response) or (
        "Beyond the grants" in text_of(response)
    )
    assert not ApiKey.objects.exists()


def test_the_same_issue_form_sent_twice_issues_one_key(officer_client, demo_client):
    form = issue_form(officer_client)
    first = officer_client.post(NEW, form)
    assert first.status_code == 303
    replayed = officer_client.post(NEW, form)
    assert replayed.status_code == 409
    assert "This form was already sent" in text_of(replayed)
    assert len(keys_of(demo_client)) == 1 and len(audit_events("apikey.created")) == 1


def test_a_double_click_issues_one_key(officer_client, demo_client):
    # Two requests sent at once both read the session before either saves it: the second
    # still finds the form's id there. The claim in the shared cache refuses it.
    form = issue_form(officer_client)
    kept = dict(officer_client.session.items())
    assert officer_client.post(NEW, form).status_code == 303
    session = officer_client.session
    session.update({k: v for k, v in kept.items() if k.startswith("bulwark:key-form:")})
    session.save()
    second = officer_client.post(NEW, form)
    assert second.status_code == 409 and "This form was already sent" in text_of(second)
    assert len(keys_of(demo_client)) == 1


def test_a_form_the_service_refused_may_be_sent_again(officer_client, demo_client, monkeypatch):
    from apps.console.views import keys as views
    from apps.core.errors import PermissionDenied

    real = views.api_key_issue_for
    monkeypatch.setattr(
        views, "api_key_issue_for", lambda **kw: (_ for _ in ()).throw(PermissionDenied("No."))
    )
    form = issue_form(officer_client)
    refused = officer_client.post(NEW, form)
    assert refused.status_code == 400 and "<strong>Not issued.</strong> No." in text_of(refused)
    monkeypatch.setattr(views, "api_key_issue_for", real)
    assert officer_client.post(NEW, form).status_code == 303
    assert len(keys_of(demo_client)) == 1


def test_a_form_this_session_never_showed_issues_nothing(officer_client, demo_client):
    form = issue_form(officer_client, once="made-up")
    assert officer_client.post(NEW, form).status_code == 409
    form.pop("once")
    assert officer_client.post(NEW, form).status_code == 409
    assert not ApiKey.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"scopes": "models:x"}, "models:x: must be predict:&lt;model name&gt; or predict:*"),
        ({"scopes": " , "}, "Give at least one scope."),
        ({"scopes": "predict:churn"}, "Beyond the grants of demo-client: predict:churn."),
        ({"scopes": "predict:*"}, "Beyond the grants of demo-client: predict:*."),
        ({"owner": "nobody-at-all"}, "No user named nobody-at-all."),
        ({"owner": "gone-client"}, "gone-client is deactivated: a deactivated account holds no"),
        ({"owner": "{auditor}"}, "is a person with the auditor role: whoever issues a key sees"),
        ({"owner": ""}, "This field is required."),
        ({"expires_in_days": "0"}, "Ensure this value is greater than or equal to 1."),
        ({"expires_in_days": "400"}, "Ensure this value is less than or equal to 365."),
        ({"expires_in_days": "soon"}, "Enter a whole number."),
        ({"rate_limit": "5/d"}, "5/d"),
        ({"allowed_ips": "10.0.0.1/8"}, "&#x27;10.0.0.1/8&#x27; is not a network such as 203."),
        ({"name": ""}, "This field is required."),
    ],
)  # fmt: skip
def test_bad_issue_forms_say_what_is_wrong_and_issue_nothing(
    officer_client, actors, demo_client, fields, message
):
    UserFactory(username="gone-client", roles=["api_client"], is_active=False)
    fields = {k: v.format(auditor=actors["auditor"].username) for k, v in fields.items()}
    form = issue_form(officer_client, **fields)
    response = officer_client.post(NEW, form)
    page = text_of(response)
    assert response.status_code == 400
    assert "Not issued." in page and message in page, page[page.find("errorlist") - 300 :][:900]
    assert not ApiKey.objects.exists() and audit_events("apikey.created") == []
    # What was typed stays; the form's one-time id still works once corrected.
    assert 'value="checkout service"' in page or fields.get("name") == ""
    corrected = officer_client.post(NEW, issue_form(officer_client) | {"once": form["once"]})
    assert corrected.status_code == 303
    assert len(keys_of(demo_client)) == 1


def test_a_post_without_the_csrf_token_is_refused(officer, verified_login, demo_client):
    client = verified_login(Client(enforce_csrf_checks=True), officer)
    api_key, _ = ApiKeyFactory.issue(owner=demo_client)
    form = issue_form(client)
    form.pop("csrfmiddlewaretoken", None)
    assert client.post(NEW, form).status_code == 403
    assert client.post(key_url(api_key, "revoke"), {"reason": "x"}).status_code == 403
    assert client.post(key_url(api_key, "rotate"), {"grace_seconds": "0"}).status_code == 403
    api_key.refresh_from_db()
    assert ApiKey.objects.count() == 1 and api_key.status == "active"


def test_a_made_up_or_someone_elses_reveal_shows_nothing(
    officer_client, actors, verified_login, demo_client
):
    posted = officer_client.post(NEW, issue_form(officer_client))
    other = verified_login(Client(), actors["admin"])
    for url in (posted["Location"], "/keys/issued/" + "A" * 22, "/keys/issued/" + "x" * 300):
        answer = other.get(url)
        assert answer.status_code == 410 and not KEY.findall(answer.content.decode()), url
    assert len(SHOWN.findall(officer_client.get(posted["Location"]).content.decode())) == 1


# --- one key: its page, rotate and revoke ---------------------------------------------------


def test_a_keys_page_shows_its_facts_and_its_buttons(officer_client, demo_client):
    api_key, key, signing = ApiKeyFactory.issue_signed(
        owner=demo_client, name="checkout", scopes=["predict:pricing"], allowed_ips=["10.0.0.0/8"]
    )
    page = text_of(officer_client.get(key_url(api_key)))
    for shown in (api_key.prefix, "checkout", "demo-client", "predict:pricing", "10.0.0.0/8",
                  "required", "never", "Active"):  # fmt: skip
        assert shown in page, shown
    assert f'href="{key_url(api_key, "rotate")}"' in page
    assert f'href="{key_url(api_key, "revoke")}"' in page
    for secret in (secret_of(key), signing, api_key.secret_hash, api_key.signing_secret_sealed):
        assert secret not in page


@pytest.mark.parametrize("suffix", ["", "/rotate", "/revoke"])
def test_an_unknown_key_is_the_404_page(officer_client, suffix):
    import uuid

    for key_id in (uuid.uuid4(), "not-a-uuid"):
        response = officer_client.get(f"{LIST}{key_id}{suffix}")
        assert response.status_code == 404
        assert "No API key with this id." in text_of(response)
    if suffix:
        assert officer_client.post(f"{LIST}{uuid.uuid4()}{suffix}", {}).status_code == 404


def test_revoke_is_confirmed_on_its_page_then_done(officer_client, demo_client):
    api_key, _ = ApiKeyFactory.issue(owner=demo_client)
    confirm = officer_client.get(key_url(api_key, "revoke"))
    page = text_of(confirm)
    assert confirm.status_code == 200
    assert f"Revoke <code>{api_key.prefix}</code>?" in page
    assert "refused from its next request on (401 api_key_revoked)" in page
    assert 'name="reason"' in page and f"Yes, revoke {api_key.prefix}" in page
    api_key.refresh_from_db()
    assert api_key.revoked_at is None  # showing the confirmation changes nothing
    done = officer_client.post(key_url(api_key, "revoke"), {"reason": "leaked in a ticket"})
    assert done.status_code == 303 and done["Location"] == key_url(api_key)
    after = text_of(officer_client.get(done["Location"]))
    assert f"Revoked {api_key.prefix}" in after and "Revoked" in after
    assert f'href="{key_url(api_key, "revoke")}"' not in after
    api_key.refresh_from_db()
    assert api_key.status == "revoked"
    [event] = audit_events("apikey.revoked")
    assert event["details"]["reason"] == "leaked in a ticket" and event["actor"]["type"] == "user"
    # The confirmation sent again: refused, said plainly, nothing recorded twice.
    replayed = officer_client.post(key_url(api_key, "revoke"), {"reason": "again"})
    assert replayed.status_code == 409
    assert f"{api_key.prefix} is already revoked." in text_of(replayed)
    assert len(audit_events("apikey.revoked")) == 1
    # And the confirmation page of a revoked key says so, with no button.
    again = officer_client.get(key_url(api_key, "revoke"))
    assert again.status_code == 409 and "Yes, revoke" not in text_of(again)
    assert "is already revoked" in text_of(again)
    offer = text_of(officer_client.get(key_url(api_key)))
    assert f'href="/keys/new?owner={demo_client.username}"' in offer
    prefilled = officer_client.get(f"/keys/new?owner={demo_client.username}").content.decode()
    assert f'value="{demo_client.username}"' in prefilled


def test_a_blank_reason_is_recorded_as_the_console(officer_client, demo_client):
    api_key, _ = ApiKeyFactory.issue(owner=demo_client)
    assert officer_client.post(key_url(api_key, "revoke"), {"reason": " "}).status_code == 303
    assert audit_events("apikey.revoked")[0]["details"]["reason"] == "console"
    long = officer_client.post(key_url(ApiKeyFactory.issue(owner=demo_client)[0], "revoke"),
                               {"reason": "x" * 501})  # fmt: skip
    assert long.status_code == 400 and "at most 500 characters" in text_of(long)


def test_rotate_is_confirmed_then_shows_the_new_key_once(officer_client, demo_client):
    old, old_key = ApiKeyFactory.issue(
        owner=demo_client, name="checkout", scopes=["predict:pricing"], rate_limit="5/s"
    )
    confirm = officer_client.get(key_url(old, "rotate"))
    page = text_of(confirm)
    assert confirm.status_code == 200 and f"Rotate <code>{old.prefix}</code>?" in page
    assert 'name="grace_seconds"' in page and "to hand over to demo-client" in page
    old.refresh_from_db()
    assert old.rotated_to is None
    done = officer_client.post(key_url(old, "rotate"), {"grace_seconds": "3600"})
    assert done.status_code == 303 and done["Location"].startswith("/keys/issued/")
    shown = officer_client.get(done["Location"]).content.decode()
    [new_key] = SHOWN.findall(shown)
    old.refresh_from_db()
    assert old.status == "rotating" and old.rotated_to.public_id == new_key[4:16]
    assert timedelta(minutes=59) < old.grace_ends_at - timezone.now() <= timedelta(hours=1)
    successor = old.rotated_to
    assert successor.owner == demo_client and successor.rate_limit == "5/s"
    assert successor.scopes == ["predict:pricing"] and new_key != old_key
    [rotated] = audit_events("apikey.rotated")
    assert rotated["details"]["successor"] == successor.prefix
    assert rotated["details"]["grace_seconds"] == 3600
    reloaded = officer_client.get(done["Location"])
    assert reloaded.status_code == 410 and secret_of(new_key) not in reloaded.content.decode()
    # The key's pages say what happened, and link old and new.
    old_page = text_of(officer_client.get(key_url(old)))
    assert "Rotating (grace period)" in old_page and successor.prefix in old_page
    assert f'href="{key_url(old, "rotate")}"' not in old_page
    assert old.prefix in text_of(officer_client.get(key_url(successor)))
    # The confirmation sent again: refused (the key is rotating), nothing issued twice.
    replayed = officer_client.post(key_url(old, "rotate"), {"grace_seconds": "3600"})
    assert replayed.status_code == 409
    assert f"{old.prefix} is rotating; only an active key can be rotated." in text_of(replayed)
    assert ApiKey.objects.count() == 2 and len(audit_events("apikey.rotated")) == 1


@pytest.mark.parametrize("grace", ["", "12", "-1", "forever"])
def test_a_grace_period_not_offered_is_refused(officer_client, demo_client, grace):
    api_key, _ = ApiKeyFactory.issue(owner=demo_client)
    response = officer_client.post(key_url(api_key, "rotate"), {"grace_seconds": grace})
    assert response.status_code == 400
    assert "Choose how long the old key keeps working." in text_of(response)
    assert ApiKey.objects.count() == 1


def test_a_revoked_or_expired_key_cannot_be_rotated(officer_client, demo_client):
    now = timezone.now()
    revoked, _ = ApiKeyFactory.issue(owner=demo_client, revoked_at=now)
    expired, _ = ApiKeyFactory.issue(owner=demo_client, expires_at=now - timedelta(seconds=1))
    for api_key, status in ((revoked, "revoked"), (expired, "expired")):
        page = officer_client.get(key_url(api_key, "rotate"))
        assert page.status_code == 409 and "Yes, rotate" not in text_of(page)
        response = officer_client.post(key_url(api_key, "rotate"), {"grace_seconds": "0"})
        assert response.status_code == 409
        assert f"{api_key.prefix} is {status}; only an active key can be rotated." in text_of(
            response
        )
    assert ApiKey.objects.count() == 2


def test_a_rotation_the_owners_grants_no_longer_cover_is_refused(officer_client, demo_client):
    from apps.registry.models import PredictGrant

    api_key, _ = ApiKeyFactory.issue(owner=demo_client, scopes=["predict:pricing"])
    PredictGrant.objects.filter(user=demo_client).delete()
    response = officer_client.post(key_url(api_key, "rotate"), {"grace_seconds": "0"})
    assert response.status_code == 403
    assert "is no longer within the owner" in text_of(response)
    assert ApiKey.objects.count() == 1


def test_a_key_not_collected_within_ten_minutes_is_gone(officer_client, demo_client, monkeypatch):
    import time as clock

    from apps.apikeys import reveal

    posted = officer_client.post(NEW, issue_form(officer_client))
    later = clock.time() + reveal.REVEAL_SECONDS + 1
    monkeypatch.setattr(reveal.time, "time", lambda: later)
    response = officer_client.get(posted["Location"])
    assert response.status_code == 410 and not KEY.findall(response.content.decode())
    assert len(keys_of(demo_client)) == 1  # issued, and to be rotated or revoked if lost


# --- no one sees the secret of a person's key (they issue and rotate their own) ------------


@pytest.fixture
def admin_client(actors: dict[str, Any], verified_login: Any) -> Client:
    return verified_login(Client(), actors["admin"])


@pytest.mark.parametrize("who", ["officer_client", "admin_client"])
@pytest.mark.parametrize(
    ("owner_role", "label"), [("admin", "admin"), ("ml_engineer", "ML engineer")]
)
def test_no_one_issues_a_key_for_a_person_on_the_console(request, actors, who, owner_role, label):
    client = request.getfixturevalue(who)
    person = UserFactory(roles=[owner_role])
    form = issue_form(client, owner=person.username, scopes="predict:*")
    response = client.post(NEW, form)
    page = text_of(response)
    assert response.status_code == 400 and "Not issued." in page
    assert (
        f"{person.username} is a person with the {label} role: whoever issues a key sees its "
        "secret, so they issue their own keys."
    ) in page
    assert not ApiKey.objects.exists() and audit_events("apikey.created") == []


@pytest.mark.parametrize("who", ["officer_client", "admin_client"])
@pytest.mark.parametrize(
    ("owner_role", "label"), [("admin", "admin"), ("ml_engineer", "ML engineer")]
)
def test_no_one_rotates_a_persons_key_on_the_console(request, actors, who, owner_role, label):
    client = request.getfixturevalue(who)
    person = UserFactory(roles=[owner_role])
    api_key, _ = ApiKeyFactory.issue(owner=person, scopes=["predict:*"])
    detail = text_of(client.get(key_url(api_key)))
    assert f'href="{key_url(api_key, "rotate")}"' not in detail
    assert f"a person with the {label} role" in detail
    confirm = client.get(key_url(api_key, "rotate"))
    assert confirm.status_code == 403 and "Yes, rotate" not in text_of(confirm)
    response = client.post(key_url(api_key, "rotate"), {"grace_seconds": "0"})
    page = text_of(response)
    assert response.status_code == 403
    assert (
        f"This key belongs to {person.username}, a person with the {label} role: whoever rotates"
        in page
    )
    assert "revoke it instead" in page and "/keys/issued/" not in page
    api_key.refresh_from_db()
    assert api_key.rotated_to is None and ApiKey.objects.count() == 1
    assert audit_events("apikey.rotated") == []


def test_an_officer_still_revokes_a_persons_key_on_the_console(officer_client, actors):
    person = actors["ml_engineer"]
    api_key, _ = ApiKeyFactory.issue(owner=person, scopes=["predict:*"])
    assert officer_client.get(key_url(api_key, "revoke")).status_code == 200
    done = officer_client.post(key_url(api_key, "revoke"), {"reason": "leaked"})
    assert done.status_code == 303
    api_key.refresh_from_db()
    assert api_key.status == "revoked" and len(audit_events("apikey.revoked")) == 1


def test_a_revoked_keys_page_offers_a_new_key_only_to_whom_may_issue_it(
    officer_client, actors, demo_client
):
    now = timezone.now()
    service = ApiKeyFactory(owner=demo_client, revoked_at=now)
    person = ApiKeyFactory(owner=actors["ml_engineer"], revoked_at=now)
    page = officer_client.get(key_url(service)).content.decode()
    assert f"{NEW}?owner=demo-client" in page
    page = officer_client.get(key_url(person)).content.decode()
    assert f"{NEW}?owner=" not in page
    assert f"{actors['ml_engineer'].get_username()} issues their own keys." in page
