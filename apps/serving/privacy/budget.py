"""Daily differential-privacy budgets: how much epsilon a key or user may spend per UTC day.

`budget_spend("key:<public id>", 0.3, daily_budget=10.0)` spends 0.3 if the day's remaining
budget covers it and nothing otherwise: one round trip to Redis, exact under concurrency, and
failing closed (a Redis error propagates; the middleware answers 503).

Spending is kept in whole micro-epsilon (integers, INCRBY), not as a float (INCRBYFLOAT): ten
spends of 0.1 are exactly 1.0, and 33 spends of 0.3 leave exactly 0.1 of 10.0.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import lru_cache
from typing import Any

from django.core.cache import cache

from apps.core.redis import shared_client

KEY_PREFIX = "bulwark:dp:"
MICRO = 1_000_000
# The day's key outlives its day by this much, so a request that read the date just before
# midnight still finds the day's total (it never sees a fresh zero for a day already spent).
EXPIRY_MARGIN = 3600
# Lua numbers are doubles: integers are exact up to 2^53 micro-epsilon, about 9e9 epsilon.
MAX_EPSILON = 1e9
# `kind:id`, e.g. `key:<public id>` or `user:<uuid>`. No underscore, so a whole API key
# (`bwk_<public id>_<secret>`) can never end up in a Redis key name by mistake.
_HOLDER = re.compile(r"[a-z]+:[A-Za-z0-9-]{1,64}")

# Check, then add: a call the remaining budget cannot cover is refused whole and spends
# nothing. One script, so no other spend can come between the check and the INCRBY.
_SPEND_SCRIPT = """
local spent = tonumber(redis.call('GET', KEYS[1]) or '0')
local cost = tonumber(ARGV[1])
if spent + cost > tonumber(ARGV[2]) then return {0, spent} end
spent = redis.call('INCRBY', KEYS[1], cost)
redis.call('EXPIRE', KEYS[1], ARGV[3])
return {1, spent}
"""

# The embedded default has one process; this lock makes its read-modify-write exact there.
_local_lock = threading.Lock()


@dataclass(frozen=True)
class Spend:
    allowed: bool
    epsilon_spent: float  # this call's epsilon, 0.0 if refused
    epsilon_remaining: float  # for the rest of the day, after this call
    reset_in: int  # seconds until the budget resets (next 00:00 UTC)


@lru_cache(maxsize=1)
def _script(client: Any) -> Any:
    # EVALSHA after the first call: the script text is not resent with every predict.
    return client.register_script(_SPEND_SCRIPT)


def budget_spend(
    holder: str, epsilon: float, *, daily_budget: float, now: datetime | None = None
) -> Spend:
    """Spend `epsilon` from `holder`'s budget for the current UTC day, all or nothing.

    The cost is `epsilon` in whole micro-epsilon rounded up (from its shortest decimal form,
    so 0.3 costs exactly 300000), the budget rounded down: rounding never grants more privacy
    loss than configured. `now` (timezone-aware) is for tests; the default is the clock.

    Raises ValueError for a bad holder, epsilon or budget, and lets every Redis error
    propagate: a spend that cannot be counted is never allowed."""
    cost = _to_micro("epsilon", epsilon, rounding=ROUND_CEILING)
    if cost == 0:
        raise ValueError(f"epsilon must be positive, got {epsilon!r}")
    budget = _to_micro("daily_budget", daily_budget, rounding=ROUND_FLOOR)
    key, reset_in = _day_key(holder, now)
    ttl = reset_in + EXPIRY_MARGIN
    client = shared_client()
    if client is not None:
        allowed, spent = _script(client)(keys=[key], args=[cost, budget, ttl])
        allowed, spent = bool(allowed), int(spent)
    else:
        allowed, spent = _spend_local(key, cost=cost, budget=budget, ttl=ttl)
    return Spend(
        allowed=allowed,
        epsilon_spent=cost / MICRO if allowed else 0.0,
        epsilon_remaining=max(0, budget - spent) / MICRO,
        reset_in=reset_in,
    )


def budget_remaining(holder: str, *, daily_budget: float, now: datetime | None = None) -> float:
    """The epsilon `holder` may still spend today; reads only. Redis errors propagate."""
    budget = _to_micro("daily_budget", daily_budget, rounding=ROUND_FLOOR)
    key, _reset_in = _day_key(holder, now)
    client = shared_client()
    raw = client.get(key) if client is not None else cache.get(key)
    return max(0, budget - int(raw or 0)) / MICRO


def _spend_local(key: str, *, cost: int, budget: int, ttl: int) -> tuple[bool, int]:
    with _local_lock:
        spent = int(cache.get(key) or 0)
        if spent + cost > budget:
            return False, spent
        spent += cost
        cache.set(key, spent, timeout=ttl)
        return True, spent


def _day_key(holder: str, now: datetime | None) -> tuple[str, int]:
    """The Redis key of `holder`'s current UTC day and the seconds until that day ends.

    The day comes from this host's clock. Hosts a few seconds apart around midnight may
    briefly count in different days; that is no weaker than the window itself, which already
    lets a holder spend one budget just before midnight and another just after."""
    if not isinstance(holder, str) or not _HOLDER.fullmatch(holder):
        raise ValueError("holder must look like 'key:<public id>' or 'user:<uuid>'")
    if now is None:
        now = datetime.now(UTC)
    elif now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    today = now.astimezone(UTC)
    midnight = datetime.combine(today.date() + timedelta(days=1), datetime.min.time(), UTC)
    reset_in = max(1, math.ceil((midnight - today).total_seconds()))
    return f"{KEY_PREFIX}{today.date().isoformat()}:{holder}", reset_in


def _to_micro(name: str, value: float, *, rounding: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and 0 <= value <= MAX_EPSILON):
        raise ValueError(f"{name} must be finite and within [0, {MAX_EPSILON:g}], got {value!r}")
    # repr() is the shortest decimal that round-trips: 0.3, not 0.299999999999999988898.
    return int((Decimal(repr(float(value))) * MICRO).to_integral_value(rounding=rounding))
