"""`bootstrap_demo`: the admin, the promoted demo model and the demo keys, secrets printed
once; the printed key predicts, the signed key needs its signature; running again adds nothing."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
from django.core.management import call_command

from apps.accounts.models import User
from apps.apikeys.models import ApiKey
from apps.registry.models import ModelVersion
from tests.serving.conftest import PREDICT, ROW, assert_error, post

pytestmark = pytest.mark.django_db


def printed(out: str, name: str) -> str:
    return next(line.split(name, 1)[1] for line in out.splitlines() if name in line).strip()


def test_bootstrap_demo_makes_a_servable_model_and_prints_secrets_once(client, capsys, media_root):
    call_command("bootstrap_demo")
    first = capsys.readouterr().out
    password = printed(first, "password: ")
    admin = User.objects.get(username="admin")
    assert admin.check_password(password)
    assert admin.is_superuser and admin.is_staff and admin.role_names() == {"admin"}
    version = ModelVersion.objects.get(model__name="pricing")
    assert version.stage == "production" and version.number == 1
    key = printed(first, "BULWARK_KEY=")
    signed_key = printed(first, "BULWARK_SIGNED_KEY=")
    signing_secret = printed(first, "BULWARK_SIGNING_SECRET=")

    response = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)
    assert response.status_code == 200, response.content
    assert response["RateLimit-Limit"] == "10"

    assert_error(
        post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=signed_key), 401, "signature_required"
    )
    body = json.dumps({"inputs": [ROW]}).encode()
    t = str(int(time.time()))
    message = f"{t}.POST.{PREDICT}.{hashlib.sha256(body).hexdigest()}".encode()
    v1 = hmac.new(signing_secret.encode(), message, hashlib.sha256).hexdigest()
    signed = post(client, body, HTTP_X_API_KEY=signed_key, HTTP_X_SIGNATURE=f"t={t},v1={v1}")
    assert signed.status_code == 200, signed.content

    call_command("bootstrap_demo")
    second = capsys.readouterr().out
    for secret in (password, key, signed_key, signing_secret):
        assert secret not in second
    assert "already exists" in second
    assert User.objects.filter(username="admin").count() == 1
    assert ApiKey.objects.count() == 2 and ModelVersion.objects.count() == 1
