"""A whole key lifecycle, every refusal included: no key secret, signing secret or pepper
appears in any log line, audit event, admin page or error body."""

from __future__ import annotations

import json
import re
import time
from urllib.parse import parse_qs, urlsplit

import pytest
from django.contrib.auth.models import Permission

from apps.apikeys.keys import format_key, new_secret
from apps.apikeys.models import ApiKey
from apps.apikeys.signatures import sign, signing_message
from apps.apikeys.tasks import api_key_expire_due_task, api_key_warn_expiring_task
from apps.core.secrets import get_secret
from tests.accounts.factories import UserFactory
from tests.apikeys.conftest import KEYED, audit_text, update_key

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]


def signed_post(client, key, secret, *, t=None, body=b'{"inputs": []}', header=None):  # type: ignore[no-untyped-def]
    t = int(time.time()) if t is None else t
    if header is None:
        header = f"t={t},v1={sign(secret, signing_message(str(t), 'POST', KEYED, body))}"
    return client.post(
        KEYED, body, content_type="application/json", HTTP_X_API_KEY=key, HTTP_X_SIGNATURE=header
    )


def test_no_secret_appears_anywhere(
    client, api_client, actors, log_output, django_capture_on_commit_callbacks
):
    engineer = actors["ml_engineer"]
    api_client.force_authenticate(engineer)
    secrets: list[str] = [get_secret("API_KEY_PEPPER")]
    shown: list[str] = []  # every body and page a client or operator saw, but the shown-once ones

    created = api_client.post(
        "/api/v1/api-keys",
        {
            "name": "svc",
            "scopes": ["predict:*"],
            "require_signature": True,
            "allowed_ips": ["127.0.0.0/8"],
        },
        format="json",
    ).json()
    key, signing = created["key"], created["signing_secret"]
    secrets += [key.split("_", 2)[2], signing]

    ok = signed_post(client, key, signing)
    assert ok.status_code == 200
    refusals = [
        client.get(KEYED, HTTP_X_API_KEY=format_key(created["prefix"][4:], new_secret())),
        client.get(KEYED, HTTP_X_API_KEY=key + "x"),
        client.get(KEYED, HTTP_X_API_KEY=key, REMOTE_ADDR="192.0.2.1"),
        signed_post(client, key, signing, t=int(time.time()) - 1000),
        signed_post(client, key, "wrong-secret"),
        signed_post(client, key, signing, header=f"t={int(time.time())},v1={signing[:20]}"),
        client.get(KEYED, HTTP_X_API_KEY=key),  # no signature
    ]
    now = str(int(time.time()))
    replayed_header = f"t={now},v1={sign(signing, signing_message(now, 'POST', KEYED, b'{}'))}"
    signed_post(client, key, signing, body=b"{}", header=replayed_header)
    refusals.append(signed_post(client, key, signing, body=b"{}", header=replayed_header))

    with django_capture_on_commit_callbacks(execute=True):
        rotated = api_client.post(
            f"/api/v1/api-keys/{created['id']}/rotate", {}, format="json"
        ).json()
    secrets += [rotated["key"].split("_", 2)[2], rotated["signing_secret"]]
    with django_capture_on_commit_callbacks(execute=True):
        api_client.post(f"/api/v1/api-keys/{rotated['id']}/revoke", {"reason": key}, format="json")
    refusals.append(client.get(KEYED, HTTP_X_API_KEY=rotated["key"]))
    refusals.append(api_client.post(f"/api/v1/api-keys/{rotated['id']}/revoke", {}, format="json"))
    refusals.append(api_client.post(f"/api/v1/api-keys/{rotated['id']}/rotate", {}, format="json"))
    update_key(
        ApiKey.objects.get(pk=created["id"]),
        expires_at=ApiKey.objects.get(pk=created["id"]).created_at,
    )
    refusals.append(signed_post(client, key, signing))
    api_key_expire_due_task()
    api_key_warn_expiring_task()

    assert {response.status_code for response in refusals} >= {401, 403, 409}
    shown += [response.content.decode() for response in refusals]
    shown.append(api_client.get("/api/v1/api-keys").content.decode())

    operator = UserFactory(is_staff=True, roles=["ml_engineer"])
    operator.user_permissions.set(Permission.objects.filter(content_type__app_label="apikeys"))
    client.force_login(operator)
    form = {"name": "admin-made", "scopes": "predict:*",
            "expires_in_days": "5", "rate_limit": "60/m", "require_signature": "on"}  # fmt: skip
    posted = client.post("/admin/apikeys/apikey/add/", form)
    once = client.get(posted["Location"]).content.decode()
    admin_key, admin_signing = re.findall(r'<code class="bulwark-secret">([^<]+)</code>', once)
    admin_made = ApiKey.objects.get(name="admin-made")
    pages = "/admin/apikeys/apikey/"
    for url in (pages, f"{pages}{created['id']}/change/", f"{pages}{admin_made.pk}/change/",
                f"{pages}?q={key}"):  # fmt: skip
        shown.append(client.get(url, follow=True).content.decode())
    secrets += [admin_key.split("_", 2)[2], admin_signing]

    events = audit_text()
    assert "apikey.rejected" in events and "apikey.created" in events
    assert "apikey.rotated" in events and "apikey.revoked" in events and "apikey.expired" in events
    logs = log_output.getvalue()
    assert logs.count("\n") > 10  # the requests were logged
    for secret in secrets:
        assert len(secret) >= 20
        assert secret not in logs, "log"
        assert secret not in events, "audit"
        for text in shown:
            assert secret not in text, text[:200]
    for text in shown:
        if text.startswith("{") and '"error"' in text:
            assert set(json.loads(text)) == {"error"}


def test_no_secret_appears_anywhere_in_the_console(
    actors, verified_login, log_output, django_capture_on_commit_callbacks
):
    """The console's key pages (issue 16): a key issued for a service account and rotated,
    each shown once; then every page, redirect, refusal, log line and audit event."""
    from django.test import Client

    from tests.console.keys_helpers import SHOWN, service_account, session_texts

    account = service_account(actors["admin"])
    officer = verified_login(Client(), actors["security_officer"])
    secrets: list[str] = [get_secret("API_KEY_PEPPER")]
    shown: list[str] = []  # every page and header seen, but the first view of a shown-once page
    locations: list[str] = []

    form_page = officer.get("/keys/new").content.decode()
    once = form_page.split('name="once" value="', 1)[1].split('"', 1)[0]
    form = {"owner": account.username, "name": "svc", "scopes": "predict:pricing",
            "expires_in_days": "5", "rate_limit": "60/m", "require_signature": "on",
            "allowed_ips": "", "once": once}  # fmt: skip
    with django_capture_on_commit_callbacks(execute=True):
        posted = officer.post("/keys/new", form)
    locations.append(posted["Location"])
    key, signing = SHOWN.findall(officer.get(posted["Location"]).content.decode())
    secrets += [key.split("_", 2)[2], signing]
    api_key = ApiKey.objects.get(owner=account)
    replayed = officer.post("/keys/new", form)  # the same form again: refused
    assert replayed.status_code == 409
    shown.append(replayed.content.decode())

    with django_capture_on_commit_callbacks(execute=True):
        rotated = officer.post(f"/keys/{api_key.pk}/rotate", {"grace_seconds": "3600"})
    locations.append(rotated["Location"])
    new_key, new_signing = SHOWN.findall(officer.get(rotated["Location"]).content.decode())
    secrets += [new_key.split("_", 2)[2], new_signing]
    successor = ApiKey.objects.get(owner=account, rotated_to__isnull=True)
    with django_capture_on_commit_callbacks(execute=True):
        revoked = officer.post(f"/keys/{successor.pk}/revoke", {"reason": new_key})
    locations.append(revoked["Location"])

    refusals = [
        officer.get(posted["Location"]),  # reloads: 410
        officer.get(rotated["Location"]),
        officer.post(f"/keys/{api_key.pk}/rotate", {"grace_seconds": "0"}),  # 409: rotating
        officer.post(f"/keys/{successor.pk}/revoke", {}),  # 409: already revoked
        officer.post("/keys/new", {**form, "once": "x"}),
        officer.post("/keys/new", {**form, "scopes": key, "once": form_page}),
    ]
    assert {r.status_code for r in refusals} >= {409, 410}
    shown += [response.content.decode() for response in refusals]
    for url in ("/keys/", f"/keys/?owner={account.username}", "/keys/?state=rotating",
                f"/keys/{api_key.pk}", f"/keys/{successor.pk}", f"/keys/{api_key.pk}/rotate",
                f"/keys/{successor.pk}/revoke", "/keys/new", f"/keys/?owner={key}",
                f"/keys/?key={new_key}"):  # fmt: skip
        response = officer.get(url, follow=True)
        assert response.status_code in {200, 400, 409}, url
        shown.append(response.content.decode())

    events = audit_text()
    assert "apikey.created" in events and "apikey.rotated" in events and "apikey.revoked" in events
    logs = log_output.getvalue()
    assert "/keys/issued/" in logs  # the requests were logged
    stored = session_texts()
    for secret in secrets:
        assert len(secret) >= 20
        assert secret not in logs, "log"
        assert secret not in events, "audit"
        for location in locations:
            assert secret not in location, "URL"
        for text in stored:
            assert secret not in text, "session"
        for text in shown:
            assert secret not in text, text[:200]


def test_the_pasted_key_cut_knows_the_keys_shape():
    # apps.core.pasted_keys writes the key's shape again (the audit admin, below apikeys,
    # may not import it): the two agree, and only a whole key is cut.
    from apps.apikeys.keys import KEY_PREFIX, PUBLIC_ID_LENGTH, new_public_id
    from apps.core import pasted_keys

    assert (pasted_keys.KEY_PREFIX, pasted_keys.PUBLIC_ID_LENGTH) == (KEY_PREFIX, PUBLIC_ID_LENGTH)
    public_id = new_public_id()
    key = format_key(public_id, new_secret())
    prefix = f"{KEY_PREFIX}{public_id}"
    assert pasted_keys.key_cut(key) == prefix
    assert pasted_keys.key_cut(f"apikey:{key}") == f"apikey:{prefix}"
    assert pasted_keys.key_cut(prefix + "_") == prefix  # a secret's first character or none
    for kept in (prefix, "bwk_pricing_model_v2", "p_" + "a" * 20, "", "bwk_"):
        assert pasted_keys.key_cut(kept) is None, kept


def test_a_whole_key_pasted_into_the_audit_filters_is_cut_to_its_prefix(actors, verified_login):
    """The console's /audit/ filters and search, and the admin's audit search (issue 16): a
    whole key is never echoed in a page nor kept in an address; the prefix filters."""
    from django.test import Client

    from apps.audit.services import audit_chain_pending, audit_event_record
    from tests.apikeys.factories import ApiKeyFactory

    officer = actors["security_officer"]
    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"], name="leaky")
    secret = key.split("_", 2)[2]
    audit_event_record("apikey.revoked", actor=officer, target=api_key)
    audit_chain_pending()
    from apps.audit.models import AuditEvent

    seq = AuditEvent.objects.get(action="apikey.revoked").seq
    console = verified_login(Client(), officer)
    pages: list[str] = []

    typed = f"api_key:{api_key.prefix}"
    cases = [
        ({"target": f"api_key:{key}", "action": "apikey.revoked"}, "target", typed),
        ({"target": key}, "target", api_key.prefix),
        ({"actor": key, "outcome": "success"}, "actor", api_key.prefix),
    ]  # fmt: skip
    for query, name, expected in cases:
        response = console.get("/audit/", query)
        assert response.status_code == 302, query
        location = response["Location"]
        assert secret not in location and location.startswith("/audit/?")
        kept = {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}
        assert kept == {**query, name: expected}
        followed = console.get(location)
        assert followed.status_code == 200
        pages.append(followed.content.decode())
    assert f"/audit/events/{seq}" in pages[0]  # the prefix finds the key's event

    admin = verified_login(Client(), UserFactory(is_staff=True, is_superuser=True))
    response = admin.get("/admin/audit/auditevent/", {"q": key})
    assert response.status_code == 302 and secret not in response["Location"]
    assert response["Location"] == f"/admin/audit/auditevent/?q={api_key.prefix}"
    followed = admin.get(response["Location"])
    assert followed.status_code == 200
    pages.append(followed.content.decode())
    for page in pages:
        assert secret not in page and key not in page


def test_a_whole_key_pasted_into_the_audit_search_is_cut_to_its_prefix(actors, verified_login):
    """`POST /audit/search` goes on to the list's address: a whole key typed as the username
    or carried in another filter is cut to its prefix first (issue 16)."""
    from django.test import Client

    from tests.apikeys.factories import ApiKeyFactory

    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    secret = key.split("_", 2)[2]
    console = verified_login(Client(), actors["security_officer"])
    searched = console.post(
        "/audit/search", {"username": key, "target": f"api_key:{key}", "action": "apikey.revoked"}
    )
    assert searched.status_code == 303 and secret not in searched["Location"]
    assert f"actor={api_key.prefix}" in searched["Location"]
    page = console.get(searched["Location"], follow=True).content.decode()
    assert secret not in page
