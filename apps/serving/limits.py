"""The predict rate limit: the key's own `rate_limit`, or PREDICT_USER_RATE_LIMIT per user for
JWT callers, as a fixed window counted in Redis.

One Lua call per request counts the hit, reads the window's remaining time and the serving
generation (apps.serving.generation): one round trip where django-ratelimit's counting on
Django's Redis cache makes three (ADD, then EXISTS and INCRBY for `incr`), measured at a
quarter of the throughput. django-ratelimit stays the naive baseline of bench/predict; its
refusal, a PermissionDenied subclass, is mapped to 429 by the exception handler anyway.

Exact under concurrency (INCRBY is atomic in one script) and failing closed: a Redis error
propagates and becomes 503 `service_unavailable`; no request is served uncounted.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings
from redis.commands.core import Script

from apps.apikeys import records
from apps.core import ratelimit
from apps.core.env import parse_rate
from apps.core.redis import shared_client
from apps.serving import generation


def _count_in(window: str) -> str:
    """Lua that counts a call in the fixed window KEYS[window] (ARGV[1] seconds long) and
    leaves `count` and `ttl` (the window's seconds left) set, for every script below."""
    return f"""
local count = redis.call('INCRBY', KEYS[{window}], 1)
if count == 1 then redis.call('EXPIRE', KEYS[{window}], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[{window}])
if ttl < 0 then redis.call('EXPIRE', KEYS[{window}], ARGV[1]); ttl = tonumber(ARGV[1]) end
"""


_HIT_AND_GENERATION = (
    _count_in("1")
    + """
return {count, ttl, redis.call('GET', KEYS[2])}
"""
)


@dataclass(frozen=True)
class Verdict:
    window: ratelimit.Window
    generation: object  # compared for equality only; None when Redis has no counter yet

    def headers(self) -> dict[str, str]:
        """docs/api.md's RateLimit-* headers, on every predict response."""
        return {
            "RateLimit-Limit": str(self.window.limit),
            "RateLimit-Remaining": str(self.window.remaining),
            "RateLimit-Reset": str(self.window.reset_in),
        }


@lru_cache(maxsize=1)
def _script(client: Any) -> Script:
    # EVALSHA after the first call: the script text is not resent on every request.
    return client.register_script(_HIT_AND_GENERATION)


def rate_of(*, api_key: Any) -> tuple[int, int]:
    """(limit, window seconds) for this caller."""
    return parse_rate(
        api_key.rate_limit if api_key is not None else settings.PREDICT_USER_RATE_LIMIT
    )


def bucket_of(*, user: Any, api_key: Any, limit: int, window: int) -> str:
    # The rate is part of the name: a changed rate starts a window of its own.
    if api_key is not None:
        return f"predict:key:{api_key.public_id}:{limit}/{window}"
    return f"predict:user:{user.pk}:{limit}/{window}"


def predict_hit(*, user: Any, api_key: Any) -> Verdict:
    """Count one predict call for its caller and read the serving generation."""
    limit, window = rate_of(api_key=api_key)
    bucket = bucket_of(user=user, api_key=api_key, limit=limit, window=window)
    client = shared_client()
    if client is None:
        state = ratelimit.hit(bucket, limit=limit, window=window)
        return Verdict(state, generation.current_local())
    reply = _script(client)(
        keys=[ratelimit.KEY_PREFIX + bucket, generation.GENERATION_KEY], args=[window]
    )
    count, ttl = int(reply[0]), int(reply[1])
    current = reply[2] if len(reply) > 2 else None  # Lua's nil ends the reply early
    return Verdict(ratelimit.Window(count, limit, ttl), current)


# --- The API-key gate: one round trip for authentication's reads and the rate limit ---------
#
# An API key's rate is fixed when the key is made, so once this process has served a key it
# knows the key's window before authenticating it. The gate then reads the client address's
# failure count and the key's cached record (what authentication would read) and counts the
# call, in one script. A call that authentication then refuses gives its count back (one
# more round trip, on refusals only), so only the key's own accepted calls use its window.

_GATE = (
    """
local failures = redis.call('GET', KEYS[1])
local record = redis.call('GET', KEYS[2])
"""
    + _count_in("3")
    + """
return {failures or false, record or false, count, ttl, redis.call('GET', KEYS[4]) or false,
        redis.call('PEXPIRETIME', KEYS[3])}
"""
)
# Give a count back only to the window it was taken from (its expiry time names it): a window
# that expired meanwhile, or was started afresh by someone else's call, is left alone.
_GIVE_BACK = """
if redis.call('PEXPIRETIME', KEYS[1]) == tonumber(ARGV[1]) then
  return redis.call('DECR', KEYS[1])
end
return false
"""
_key_rates: dict[str, tuple[int, int]] = {}
_MAX_KEY_RATES = 10_000


@dataclass
class GateResult:
    bucket: str  # the window counted in: names the caller and its rate
    limit: int
    window: int
    verdict: Verdict
    expires_at: int  # the counted window's expiry (unix ms): which window to give back to
    reading: records.GateReading | None = None  # an API key's: authentication reads nothing
    used: bool = False


@lru_cache(maxsize=1)
def _gate(client: Any) -> Script:
    return client.register_script(_GATE)


def gate_for_key(*, public_id: str, failure_bucket: str) -> GateResult | None:
    """Read and count in one round trip, or None when this process does not know the key's
    rate yet (its first call here takes the two-trip path and teaches it)."""
    rate = _key_rates.get(public_id)
    client = shared_client()
    if rate is None or client is None:
        return None
    limit, window = rate
    bucket = f"predict:key:{public_id}:{limit}/{window}"
    failures, record, count, ttl, current, expires_at = _gate(client)(
        keys=[
            ratelimit.KEY_PREFIX + failure_bucket,
            records.record_key(public_id),
            ratelimit.KEY_PREFIX + bucket,
            generation.GENERATION_KEY,
        ],
        args=[window],
    )
    return GateResult(
        bucket=bucket,
        limit=limit,
        window=window,
        verdict=Verdict(ratelimit.Window(int(count), limit, int(ttl)), current),
        reading=records.GateReading(public_id, failure_bucket, failures, record),
        expires_at=int(expires_at),
    )


# The same for a bearer token whose signature has been checked: the user's record, the token
# family's state and the address's failure count (what JWT authentication reads, in its
# order), with the user's predict window counted, in one round trip.
_USER_GATE = (
    """
local user = redis.call('GET', KEYS[1])
local family = redis.call('GET', KEYS[2])
local failures = redis.call('GET', KEYS[3])
"""
    + _count_in("4")
    + """
return {user or false, family or false, failures or false, count, ttl,
        redis.call('GET', KEYS[5]) or false, redis.call('PEXPIRETIME', KEYS[4])}
"""
)


@lru_cache(maxsize=1)
def _user_gate(client: Any) -> Script:
    return client.register_script(_USER_GATE)


def gate_for_user(user_id: Any, record_keys: list[str]) -> tuple[GateResult, list[Any]] | None:
    """The user's window counted and `record_keys` (user record, family state, failure
    counter) read in one script: (the count, the three values); None without Redis."""
    client = shared_client()
    if client is None:
        return None
    limit, window = rate_of(api_key=None)
    bucket = f"predict:user:{user_id}:{limit}/{window}"
    user, family, failures, count, ttl, current, expires_at = _user_gate(client)(
        keys=[*record_keys, ratelimit.KEY_PREFIX + bucket, generation.GENERATION_KEY],
        args=[window],
    )
    gate = GateResult(
        bucket=bucket,
        limit=limit,
        window=window,
        verdict=Verdict(ratelimit.Window(int(count), limit, int(ttl)), current),
        expires_at=int(expires_at),
    )
    return gate, [user, family, failures]


def remember_rate(public_id: str, limit: int, window: int) -> None:
    if len(_key_rates) >= _MAX_KEY_RATES:
        _key_rates.clear()
    _key_rates[public_id] = (limit, window)


@lru_cache(maxsize=1)
def _give_back(client: Any) -> Script:
    return client.register_script(_GIVE_BACK)


def give_back(gate: GateResult) -> None:
    """Return a counted call that turned out not to be the key's (refused before it was), to
    the window it was counted in and no other."""
    gate.used = True  # first: an error after Redis acted must not lead to a second give-back
    client = shared_client()
    if client is not None:
        _give_back(client)(keys=[ratelimit.KEY_PREFIX + gate.bucket], args=[gate.expires_at])


def predict_count(*, user: Any, api_key: Any, gate: GateResult | None) -> Verdict:
    """The call's verdict: the gate's count when it was taken for this caller at its rate,
    else a count now (giving the gate's back, and teaching this process a key's rate)."""
    limit, window = rate_of(api_key=api_key)
    bucket = bucket_of(user=user, api_key=api_key, limit=limit, window=window)
    if gate is not None and not gate.used and gate.bucket == bucket:
        gate.used = True
        return gate.verdict
    if gate is not None and not gate.used:
        give_back(gate)  # counted under a rate the key no longer has, or for another caller
    verdict = predict_hit(user=user, api_key=api_key)
    if api_key is not None:
        remember_rate(api_key.public_id, limit, window)
    return verdict
