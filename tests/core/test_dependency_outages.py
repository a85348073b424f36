"""A dependency that is down is 503 service_unavailable with Retry-After, never a 500.
Each test starts the dependency itself (own port), so it can really stop it."""

from __future__ import annotations

import time

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.core.urls import DeadDatabaseApi
from tests.services import TcpProxy, own_redis

pytestmark = [pytest.mark.urls("tests.core.urls"), pytest.mark.django_db]


def redis_cache(port: int) -> dict:
    return {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
            "OPTIONS": django_settings.CACHES["default"].get("OPTIONS")
            or {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
        }
    }


def assert_unavailable(response, dependency: str) -> None:
    assert response.status_code == 503, response.content
    error = response.json()["error"]
    assert error["code"] == "service_unavailable"
    assert dependency in error["message"]
    assert int(response["Retry-After"]) > 0
    text = response.content.decode()
    for leak in ("Traceback", "ConnectionError", "127.0.0.1", "redis://", "psycopg"):
        assert leak not in text


def test_redis_going_down_turns_into_503_and_back(client, settings):
    with own_redis() as (port, process):
        settings.CACHES = redis_cache(port)
        assert client.get("/api/test/cache").json() == {"cached": "1"}
        process.kill()
        process.wait()
        started = time.monotonic()
        assert_unavailable(client.get("/api/test/cache"), "cache")
        # Refused promptly, not after a client's retries with backoff (seconds each).
        assert time.monotonic() - started < 3
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {
            "status": "unavailable",
            "checks": {"database": "ok", "cache": "unavailable", "broker": "ok"},
        }
        assert ready["Retry-After"]


def test_broker_going_down_is_named_by_readyz(client, settings):
    with own_redis() as (port, process):
        settings.CELERY_TASK_ALWAYS_EAGER = False
        settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
        assert client.get("/readyz").json()["checks"]["broker"] == "ok"
        process.kill()
        process.wait()
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"] == {"database": "ok", "cache": "ok", "broker": "unavailable"}


def test_postgresql_going_down_turns_into_503(client, monkeypatch):
    assert connection.vendor == "postgresql", "the suite runs on PostgreSQL (DATABASE_URL)"
    proxy = TcpProxy(
        int(connection.settings_dict["PORT"] or 5432), connection.settings_dict["HOST"]
    )
    monkeypatch.setattr(DeadDatabaseApi, "port", proxy.port)
    assert client.get("/api/test/dead-database").json() == {"reached": True}
    proxy.stop()
    assert_unavailable(client.get("/api/test/dead-database"), "database")
