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


def steady_state_cost(
    client: Any, monkeypatch: Any, on_commit: Any, **auth: str
) -> tuple[list[str], int]:
    # Model loaded, version resolved, last-used written, scripts known, pseudonym remembered
    # (after commit, as in production's autocommit; the test's own transaction never commits).
    with on_commit(execute=True):
        for _ in range(3):
            assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
    redis = RedisCommands(monkeypatch)
    with CaptureQueriesContext(connection) as queries:
        assert post(client, {"inputs": [ROW]}, **auth).status_code == 200
    return redis.sent, len(queries.captured_queries)


def test_an_accepted_api_key_predict_costs_one_redis_command_and_one_query(
    client, actors, pricing, settings, monkeypatch, django_capture_on_commit_callbacks
):
    settings.AUDIT_CHAIN_INLINE = False
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="100/m")
    commands, queries = steady_state_cost(
        client, monkeypatch, django_capture_on_commit_callbacks, HTTP_X_API_KEY=key
    )
    # PostgreSQL: the audit event's INSERT. Redis: one script reads the key's record and the
    # address's failure count, counts the call and reads the serving generation.
    assert queries == 1
    assert commands == ["EVALSHA"]


def test_an_accepted_jwt_predict_costs_one_redis_command_and_one_query(
    client, actors, pricing, settings, monkeypatch, django_capture_on_commit_callbacks
):
    from apps.accounts.user_cache import refresh_user

    settings.AUDIT_CHAIN_INLINE = False
    with django_capture_on_commit_callbacks(execute=True):  # the record, as after the commit
        refresh_user(actors["ml_engineer"].pk)
    commands, queries = steady_state_cost(
        client, monkeypatch, django_capture_on_commit_callbacks, **bearer(actors["ml_engineer"])
    )
    # Once the token's signature holds, one script reads the user's record, the token family
    # and the address's failure count, counts the call and reads the serving generation.
    assert queries == 1
    assert commands == ["EVALSHA"]


def test_the_first_call_of_a_key_in_a_process_takes_two_and_teaches_the_rate(
    client, actors, pricing, settings, monkeypatch
):
    from apps.serving import limits

    settings.AUDIT_CHAIN_INLINE = False
    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="100/m")
    limits._key_rates.pop(api_key.public_id, None)
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    limits._key_rates.pop(api_key.public_id, None)
    redis = RedisCommands(monkeypatch)
    assert post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key).status_code == 200
    assert redis.sent == ["MGET", "EVALSHA"]
    assert limits._key_rates[api_key.public_id] == (100, 60)
