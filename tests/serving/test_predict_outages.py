"""Fail closed: with Redis or PostgreSQL down, predict answers 503 service_unavailable with
Retry-After, never a prediction without its rate limit or audit event, never a 500. Each test
stops a real server of its own."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.apikeys.factories import ApiKeyFactory
from tests.core.test_dependency_outages import redis_cache
from tests.services import TcpProxy, own_redis
from tests.serving.conftest import ROW, assert_error, audit_events, bearer, post


@pytest.mark.django_db
@pytest.mark.parametrize("caller", ["api_key", "jwt"])
def test_redis_down_is_503_and_nothing_is_served(client, actors, pricing, settings, caller):
    with own_redis() as (port, process):
        settings.CACHES = redis_cache(port)
        if caller == "api_key":
            _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"])
            auth = {"HTTP_X_API_KEY": key}
        else:
            auth = bearer(actors["ml_engineer"])
        assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
        process.kill()
        process.wait()
        response = post(client, {"inputs": [ROW]}, **auth)
        error = assert_error(response, 503, "service_unavailable")
        assert "cache" in error["message"]
        assert int(response["Retry-After"]) > 0
        assert "predictions" not in response.content.decode()
    # The audit shows the one answered call, and nothing claims the refused one succeeded.
    assert len(audit_events("predict.succeeded")) == 1


@pytest.mark.django_db(transaction=True)
def test_postgresql_down_is_503_even_with_everything_cached(client, actors, pricing):
    auth = bearer(actors["ml_engineer"])
    saved = dict(connection.settings_dict)
    proxy = TcpProxy(int(saved["PORT"] or 5432), saved["HOST"] or "127.0.0.1")
    connection.close()
    connection.settings_dict.update(HOST="127.0.0.1", PORT=str(proxy.port))
    try:
        # Warm: the user record, version, grant and model all cached; only the audit write
        # still needs the database.
        assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
        proxy.stop()
        response = post(client, {"inputs": [ROW]}, **auth)
        assert_error(response, 503, "service_unavailable")
        assert int(response["Retry-After"]) > 0
    finally:
        connection.close()
        connection.settings_dict.update(HOST=saved["HOST"], PORT=saved["PORT"])
    # Every 2xx has its event; the refused call left none claiming success.
    assert len(audit_events("predict.succeeded")) == 1
