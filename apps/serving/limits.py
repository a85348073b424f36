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

from apps.core import ratelimit
from apps.core.redis import shared_client
from apps.serving import generation
from controlplane.env import parse_rate

_HIT_AND_GENERATION = """
local count = redis.call('INCRBY', KEYS[1], 1)
if count == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl, redis.call('GET', KEYS[2])}
"""


@dataclass(frozen=True)
class Verdict:
    window: ratelimit.Window
    generation: object  # compared for equality only; None when Redis has no counter yet

    def headers(self) -> dict[str, str]:
        """API.md's RateLimit-* headers, on every predict response."""
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


def bucket_of(*, user: Any, api_key: Any) -> str:
    if api_key is not None:
        return f"predict:key:{api_key.public_id}"
    return f"predict:user:{user.pk}"


def predict_hit(*, user: Any, api_key: Any) -> Verdict:
    """Count one predict call for its caller and read the serving generation."""
    limit, window = rate_of(api_key=api_key)
    bucket = bucket_of(user=user, api_key=api_key)
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
