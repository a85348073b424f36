"""What one accepted predict costs in round trips, counted with real counters: Redis commands
sent by the shared client and SQL queries on the connection. Production chains audit events
later (a broker is configured), so inline chaining is off here as it is there."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.core.redis import shared_client
from tests.apikeys.factories import ApiKeyFactory
from tests.serving.conftest import ROW, bearer, post

pytestmark = pytest.mark.django_db


class RedisCommands:
    """Counts the commands the shared client sends (a script call is one command)."""

    def __init__(self, monkeypatch: Any) -> None:
        client = shared_client()
        assert client is not None, "the suite runs on Redis (REDIS_URL)"
        self.sent: list[str] = []
        original = client.execute_command

        def counted(*args: Any, **options: Any) -> Any:
            self.sent.append(str(args[0]))
            return original(*args, **options)

        monkeypatch.setattr(client, "execute_command", counted)


def steady_state_cost(client: Any, monkeypatch: Any, **auth: str) -> tuple[list[str], int]:
    for _ in range(3):  # model loaded, version resolved, last-used written, scripts known
        assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
    redis = RedisCommands(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
    return redis.sent, len(queries.captured_queries)


@pytest.mark.parametrize("caller", ["api_key", "jwt"])
def test_an_accepted_predict_costs_two_redis_commands_and_one_query(
    client, actors, pricing, settings, monkeypatch, caller
):
    settings.AUDIT_CHAIN_INLINE = False
    if caller == "api_key":
        _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="100/m")
        auth = {"HTTP_X_API_KEY": key}
    else:
        auth = bearer(actors["ml_engineer"])
    commands, queries = steady_state_cost(client, monkeypatch, **auth)
    # PostgreSQL: the audit event's INSERT only (the aim: one). Redis: the credential's
    # record with the address's failure count (one MGET), then the rate limit with the
    # serving generation (one script). The aim is one; two is what this design costs.
    assert queries == 1
    assert commands == ["MGET", "EVALSHA"]
