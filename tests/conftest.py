from __future__ import annotations

import io
import logging

import pytest
from django.core.cache import cache
from rest_framework.test import APIClient

from tests.browser import browser  # noqa: F401  # the browser tests' shared fixture
from tests.preflight import service_problems


def pytest_configure(config: pytest.Config) -> None:
    problems = service_problems()
    if problems:
        pytest.exit("\n".join(problems), returncode=3)


@pytest.fixture(autouse=True)
def _fresh_cache() -> None:
    # Each test starts with an empty cache (on Redis: the test database, flushed).
    cache.clear()


@pytest.fixture
def api_client() -> APIClient:
    return APIClient()


@pytest.fixture
def actors(db):  # type: ignore[no-untyped-def]
    """One user per role, plus `key_owner` and `outsider` (docs/contributing.md)."""
    from apps.accounts.roles import RoleName
    from tests.accounts.factories import UserFactory

    people = {role.value: UserFactory(roles=[role.value]) for role in RoleName}
    people["key_owner"] = UserFactory(roles=[RoleName.API_CLIENT])
    people["outsider"] = UserFactory(roles=[RoleName.API_CLIENT])
    return people


@pytest.fixture
def log_output():  # type: ignore[no-untyped-def]
    """The configured console handler, writing into a buffer for the test's duration."""
    from apps.core.logging import JsonFormatter

    handler = next(
        h for h in logging.getLogger().handlers if isinstance(h.formatter, JsonFormatter)
    )
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)


@pytest.fixture
def verified_login():  # type: ignore[no-untyped-def]
    """Sign a user in to a test client with a confirmed TOTP device that this session has
    verified, as the admin requires of superusers and privileged roles."""
    from django_otp import DEVICE_ID_SESSION_KEY

    from apps.accounts.models import TotpDevice

    def sign_in(client, user):  # type: ignore[no-untyped-def]
        device = TotpDevice.objects.create(user=user, name="test", confirmed=True)
        client.force_login(user)
        session = client.session
        session[DEVICE_ID_SESSION_KEY] = device.persistent_id
        session.save()
        return client

    return sign_in
