"""Failed API-key authentication is limited per client address (AUTH_FAILURES_PER_IP_RATE,
default 30/m), counted in Redis so that every web process shares one count."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from django.conf import settings

from apps.apikeys.keys import format_key, new_secret
from apps.core import ratelimit
from apps.core.auth_failures import failure_bucket, failure_limit
from tests.apikeys.conftest import KEYED, assert_error
from tests.apikeys.factories import ApiKeyFactory

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.apikeys.urls")]

ROOT = Path(__file__).resolve().parents[2]
ADDRESS = "198.51.100.7"


def count_for(address: str) -> int:
    from django.test import RequestFactory

    request = RequestFactory().get("/", REMOTE_ADDR=address)
    limit, window = failure_limit()
    return ratelimit.peek(failure_bucket(request), limit=limit, window=window).count


def test_the_default_is_30_a_minute():
    assert settings.AUTH_FAILURES_PER_IP_RATE == "30/m"
    assert failure_limit() == (30, 60)


def test_after_the_limit_every_attempt_is_429_even_with_a_valid_key(client, actors):
    api_key, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    wrong = format_key(api_key.public_id, new_secret())
    for _ in range(30):
        assert_error(
            client.get(KEYED, HTTP_X_API_KEY=wrong, REMOTE_ADDR=ADDRESS), 401, "api_key_invalid"
        )
    response = client.get(KEYED, HTTP_X_API_KEY=key, REMOTE_ADDR=ADDRESS)
    assert_error(response, 429, "rate_limited")
    assert 1 <= int(response["Retry-After"]) <= 60
    assert count_for(ADDRESS) == 30  # a refused attempt is not counted again
    # Another address is not affected.
    assert client.get(KEYED, HTTP_X_API_KEY=key, REMOTE_ADDR="198.51.100.8").status_code == 200


def test_successes_do_not_count(client, actors):
    _, key = ApiKeyFactory.issue(owner=actors["key_owner"])
    for _ in range(40):
        assert client.get(KEYED, HTTP_X_API_KEY=key, REMOTE_ADDR=ADDRESS).status_code == 200
    assert count_for(ADDRESS) == 0


def test_every_kind_of_refusal_counts(client, actors):
    from datetime import timedelta

    from django.utils import timezone

    owner = actors["key_owner"]
    refusals = [
        "garbage",
        ApiKeyFactory.issue(owner=owner, revoked_at=timezone.now())[1],
        ApiKeyFactory.issue(owner=owner, expires_at=timezone.now() - timedelta(seconds=1))[1],
        ApiKeyFactory.issue(owner=owner, allowed_ips=["192.0.2.0/24"])[1],
        ApiKeyFactory.issue_signed(owner=owner)[1],  # unsigned request: signature_required
    ]
    for key in refusals:
        assert client.get(KEYED, HTTP_X_API_KEY=key, REMOTE_ADDR=ADDRESS).status_code in {401, 403}
    assert count_for(ADDRESS) == len(refusals)


def test_ipv6_clients_are_counted_per_64(client):
    for suffix in ("1", "2", "ffff:1"):
        client.get(KEYED, HTTP_X_API_KEY="garbage", REMOTE_ADDR=f"2001:db8:1:2::{suffix}")
    assert count_for("2001:db8:1:2::9") == 3
    assert count_for("2001:db8:1:3::1") == 0


def test_the_limit_is_shared_by_processes(client):
    """A second Python process fails 12 times against the same Redis; this process sees them."""
    child = textwrap.dedent(
        f"""
        import django, json
        django.setup()
        from django.test import RequestFactory
        from rest_framework.request import Request
        from apps.apikeys.authentication import ApiKeyAuthentication
        codes = []
        for _ in range(12):
            django_request = RequestFactory().get(
                "/", HTTP_X_API_KEY="bwk_nope", REMOTE_ADDR="{ADDRESS}"
            )
            request = Request(django_request)
            try:
                ApiKeyAuthentication().authenticate(request)
            except Exception as exc:
                codes.append(exc.get_codes())
        print(json.dumps(codes))
        """
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        # The child needs no database: a malformed key is refused before any lookup, and its
        # audit events (which it cannot write there) must not stop the refusals.
        "DATABASE_URL": f"sqlite:///{ROOT / 'var' / 'no-such-dir' / 'none.sqlite3'}",
        "LOG_LEVEL": "error",
    }
    result = subprocess.run(
        [sys.executable, "-c", child], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == ["api_key_invalid"] * 12
    assert count_for(ADDRESS) == 12
    for _ in range(18):
        assert client.get(KEYED, HTTP_X_API_KEY="bwk_nope", REMOTE_ADDR=ADDRESS).status_code == 401
    assert count_for(ADDRESS) == 30
    assert_error(
        client.get(KEYED, HTTP_X_API_KEY="bwk_nope", REMOTE_ADDR=ADDRESS), 429, "rate_limited"
    )


def test_the_rate_comes_from_settings(client, settings):
    settings.AUTH_FAILURES_PER_IP_RATE = "2/h"
    for _ in range(2):
        client.get(KEYED, HTTP_X_API_KEY="garbage", REMOTE_ADDR=ADDRESS)
    response = client.get(KEYED, HTTP_X_API_KEY="garbage", REMOTE_ADDR=ADDRESS)
    assert_error(response, 429, "rate_limited")
    assert 3500 <= int(response["Retry-After"]) <= 3600
