"""A whole key lifecycle, every refusal included: no key secret, signing secret or pepper
appears in any log line, audit event, admin page or error body."""

from __future__ import annotations

import json
import re
import time

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
