"""The daily epsilon budget: exact under concurrency, all or nothing, reset each UTC day,
the same on the embedded cache, and failing closed when Redis is gone."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta, timezone

import pytest
import redis
from django.conf import settings as django_settings
from django.core.cache import cache

from apps.core.redis import shared_client
from apps.serving.privacy.budget import KEY_PREFIX, Spend, budget_remaining, budget_spend
from tests.services import own_redis

HOLDER = "key:abc123def456"
NOON = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["redis", "embedded"])
def backend(request, settings):  # type: ignore[no-untyped-def]
    """Each test runs on the suite's Redis and on the embedded default (locmem, no Redis)."""
    if request.param == "embedded":
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                "LOCATION": "dp-budget-tests",
            }
        }
        assert shared_client() is None
        cache.clear()  # locmem caches of one LOCATION share their data across tests
    else:
        assert shared_client() is not None, "the suite runs with REDIS_URL"
    return request.param


def spend_concurrently(count: int, epsilon: float, daily_budget: float) -> list[Spend]:
    start = threading.Barrier(count)

    def one(_index: int) -> Spend:
        start.wait()
        return budget_spend(HOLDER, epsilon, daily_budget=daily_budget, now=NOON)

    with ThreadPoolExecutor(max_workers=count) as pool:
        return list(pool.map(one, range(count)))


def test_spending_reports_this_call_and_what_is_left(backend):
    first = budget_spend(HOLDER, 0.3, daily_budget=10.0, now=NOON)
    assert first == Spend(
        allowed=True, epsilon_spent=0.3, epsilon_remaining=9.7, reset_in=12 * 3600
    )
    assert budget_spend(HOLDER, 2.5, daily_budget=10.0, now=NOON).epsilon_remaining == 7.2
    assert budget_remaining(HOLDER, daily_budget=10.0, now=NOON) == 7.2
    # Holders and days are separate budgets.
    assert budget_remaining("user:0b6e1c2a-55f4-4a43-9a57-2f3c1c2f1b11", daily_budget=10.0) == 10.0
    assert budget_remaining(HOLDER, daily_budget=10.0, now=NOON + timedelta(days=1)) == 10.0


def test_budget_is_exact_under_concurrency(backend):
    spends = spend_concurrently(50, 0.3, daily_budget=10.0)
    allowed = [spend for spend in spends if spend.allowed]
    assert len(allowed) == 33
    assert sum(spend.epsilon_spent for spend in spends) == pytest.approx(9.9)
    assert all(spend.epsilon_spent == 0.0 for spend in spends if not spend.allowed)
    assert sorted(spend.epsilon_remaining for spend in allowed)[0] == 0.1
    assert budget_remaining(HOLDER, daily_budget=10.0, now=NOON) == 0.1


def test_micro_epsilon_units_do_not_drift(backend):
    spends = [budget_spend(HOLDER, 0.1, daily_budget=10.0, now=NOON) for _ in range(101)]
    assert all(spend.allowed for spend in spends[:100])
    assert spends[99].epsilon_remaining == 0.0  # 100 times 0.1 is exactly 10, not 9.99999…
    assert not spends[100].allowed


def test_a_refused_call_spends_nothing(backend):
    assert budget_spend(HOLDER, 0.7, daily_budget=1.0, now=NOON).allowed
    refused = budget_spend(HOLDER, 0.5, daily_budget=1.0, now=NOON)
    assert refused == Spend(
        allowed=False, epsilon_spent=0.0, epsilon_remaining=0.3, reset_in=12 * 3600
    )
    assert budget_remaining(HOLDER, daily_budget=1.0, now=NOON) == 0.3
    exact = budget_spend(HOLDER, 0.3, daily_budget=1.0, now=NOON)
    assert exact.allowed and exact.epsilon_remaining == 0.0
    assert not budget_spend(HOLDER, 1e-9, daily_budget=1.0, now=NOON).allowed


def test_the_budget_resets_at_midnight_utc(backend):
    late = datetime(2025, 3, 1, 23, 59, 50, tzinfo=UTC)
    assert budget_spend(HOLDER, 10.0, daily_budget=10.0, now=late).reset_in == 10
    refused = budget_spend(HOLDER, 0.1, daily_budget=10.0, now=late + timedelta(seconds=9))
    assert not refused.allowed and refused.reset_in == 1
    # The same instant seen from another time zone is the same UTC day.
    paris = late.astimezone(timezone(timedelta(hours=1)))  # already 2 March there
    assert not budget_spend(HOLDER, 0.1, daily_budget=10.0, now=paris).allowed
    next_day = budget_spend(HOLDER, 0.1, daily_budget=10.0, now=late + timedelta(seconds=10))
    assert next_day.allowed and next_day.epsilon_remaining == 9.9
    assert next_day.reset_in == 24 * 3600


def test_the_day_key_is_namespaced_integer_and_expires():
    late = datetime(2025, 3, 1, 23, 0, tzinfo=UTC)
    budget_spend(HOLDER, 0.3, daily_budget=10.0, now=late)
    client = shared_client()
    key = f"{KEY_PREFIX}2025-03-01:{HOLDER}"
    assert client.get(key) == b"300000"
    assert 3600 < client.ttl(key) <= 3600 + 3600  # the hour left of the day, plus the margin


@pytest.mark.parametrize(
    ("holder", "epsilon", "daily_budget"),
    [
        ("", 0.1, 10.0),
        ("bwk_abc123def456_s3cr3t", 0.1, 10.0),
        ("key:bwk_abc123def456_s3cr3t", 0.1, 10.0),
        ("key:abc def", 0.1, 10.0),
        (HOLDER, 0.0, 10.0),
        (HOLDER, -0.1, 10.0),
        (HOLDER, float("nan"), 10.0),
        (HOLDER, float("inf"), 10.0),
        (HOLDER, True, 10.0),
        (HOLDER, 0.1, -1.0),
        (HOLDER, 0.1, float("inf")),
    ],
)
def test_bad_arguments_are_refused(holder, epsilon, daily_budget):
    with pytest.raises(ValueError):
        budget_spend(holder, epsilon, daily_budget=daily_budget)


def test_a_naive_now_is_refused():
    naive = datetime(2025, 3, 1, 12)  # noqa: DTZ001  # the naive value under test
    with pytest.raises(ValueError):
        budget_spend(HOLDER, 0.1, daily_budget=10.0, now=naive)


def test_a_tiny_epsilon_still_costs_one_micro_epsilon():
    spend = budget_spend(HOLDER, 1e-12, daily_budget=1.0, now=NOON)
    assert spend.allowed and spend.epsilon_spent == 1e-6


def test_redis_going_down_propagates_and_never_allows_a_spend(settings):
    with own_redis() as (port, process):
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": f"redis://127.0.0.1:{port}/0",
                "OPTIONS": django_settings.CACHES["default"].get("OPTIONS")
                or {"socket_connect_timeout": 1.0, "socket_timeout": 1.0},
            }
        }
        assert budget_spend(HOLDER, 0.3, daily_budget=10.0).allowed
        process.kill()
        process.wait()
        with pytest.raises(redis.exceptions.ConnectionError):
            budget_spend(HOLDER, 0.3, daily_budget=10.0)
        with pytest.raises(redis.exceptions.ConnectionError):
            budget_remaining(HOLDER, daily_budget=10.0)
