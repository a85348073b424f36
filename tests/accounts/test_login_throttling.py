"""docs/api.md: after 5 failed attempts for one username within 15 minutes (from any address),
further attempts get 429 with Retry-After for the rest of the window, even with the right
password; failures per client IP are limited too; the counts are shared by every process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from tests.accounts.factories import UserFactory
from tests.services import database_url_of

PASSWORD = "correct horse battery staple"
ROOT = Path(__file__).resolve().parents[2]


def attempt(client, username: str, password: str, ip: str = "198.51.100.1"):  # type: ignore[no-untyped-def]
    return client.post(
        "/api/v1/auth/token",
        {"username": username, "password": password},
        format="json",
        REMOTE_ADDR=ip,
    )


@pytest.mark.django_db
def test_five_failures_lock_the_username_even_for_the_right_password(api_client):
    UserFactory(username="target")
    for number in range(5):
        response = attempt(api_client, "target", "wrong", ip=f"203.0.113.{number}")  # any address
        assert response.status_code == 401
    locked = attempt(api_client, "target", PASSWORD, ip="192.0.2.200")
    assert locked.status_code == 429
    assert locked.json()["error"]["code"] == "rate_limited"
    assert 0 < int(locked["Retry-After"]) <= 900
    assert attempt(api_client, "TARGET", PASSWORD).status_code == 429  # usernames fold case


@pytest.mark.django_db
def test_other_usernames_are_not_locked(api_client):
    UserFactory(username="target")
    UserFactory(username="bystander")
    for _ in range(5):
        attempt(api_client, "target", "wrong", ip="203.0.113.9")
    assert attempt(api_client, "bystander", PASSWORD, ip="203.0.113.10").status_code == 200


@pytest.mark.django_db
def test_unknown_usernames_lock_too_so_existence_does_not_leak(api_client):
    for _ in range(5):
        attempt(api_client, "ghost", "wrong")
    assert attempt(api_client, "ghost", "wrong").status_code == 429


@pytest.mark.django_db
def test_failures_from_one_address_are_limited_across_usernames(api_client, settings):
    settings.LOGIN_FAILURES_PER_IP = 8
    UserFactory(username="victim")
    for number in range(8):
        assert attempt(api_client, f"user{number}", "wrong", ip="198.51.100.66").status_code == 401
    assert attempt(api_client, "victim", PASSWORD, ip="198.51.100.66").status_code == 429
    assert attempt(api_client, "victim", PASSWORD, ip="198.51.100.67").status_code == 200


@pytest.mark.django_db
def test_a_success_clears_the_username_count(api_client):
    UserFactory(username="typo")
    for _ in range(4):
        attempt(api_client, "typo", "wrong")
    assert attempt(api_client, "typo", PASSWORD).status_code == 200
    for _ in range(4):
        assert attempt(api_client, "typo", "wrong").status_code == 401
    assert attempt(api_client, "typo", PASSWORD).status_code == 200


OTHER_WORKER = """
import django
django.setup()
from django.test.utils import setup_test_environment
setup_test_environment()
from rest_framework.test import APIClient
client = APIClient()
for _ in range(3):
    response = client.post(
        "/api/v1/auth/token", {"username": "shared", "password": "wrong"}, format="json"
    )
    assert response.status_code == 401, response.content
"""


@pytest.mark.django_db(transaction=True)
def test_the_count_is_shared_between_processes(api_client):
    assert connection.vendor == "postgresql"
    UserFactory(username="shared")
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        "DATABASE_URL": database_url_of(connection.settings_dict),
    }
    other = subprocess.run(
        [sys.executable, "-c", OTHER_WORKER],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert other.returncode == 0, other.stderr[-2000:]
    for _ in range(2):
        assert attempt(api_client, "shared", "wrong").status_code == 401
    assert attempt(api_client, "shared", PASSWORD).status_code == 429


@pytest.mark.django_db(transaction=True)
def test_parallel_attempts_reach_the_password_check_at_most_five_times():
    import threading

    from django.contrib.auth import signals
    from rest_framework.test import APIClient

    UserFactory(username="raced")
    checked: list[str] = []

    def count_check(sender, credentials, **kwargs):  # type: ignore[no-untyped-def]
        checked.append(credentials.get("username"))

    signals.user_login_failed.connect(count_check)
    barrier = threading.Barrier(20)
    statuses: list[int] = []

    def one() -> None:
        client = APIClient()
        barrier.wait()
        statuses.append(attempt(client, "raced", "wrong").status_code)
        connection.close()

    try:
        threads = [threading.Thread(target=one) for _ in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    finally:
        signals.user_login_failed.disconnect(count_check)
    assert sorted(statuses) == [401] * 5 + [429] * 15
    assert len(checked) == 5  # the password was checked five times, not twenty
