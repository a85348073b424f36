"""Fixed-window counters on the shared cache: one round trip to Redis per hit, exact under
concurrency (INCR is atomic), and failing closed when Redis cannot count.

`hit("login:user:<digest>", limit=5, window=900)` counts one event and says whether the
caller is still within the limit and when the window resets.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

from django.core.cache import cache

from apps.core.redis import shared_client

KEY_PREFIX = "bulwark:rl:"

# INCR, set the expiry only when the key is new, and read the remaining time: one script,
# one round trip, and no window that never expires if a client dies between two commands.
_HIT_SCRIPT = """
local count = redis.call('INCRBY', KEYS[1], ARGV[2])
if count == tonumber(ARGV[2]) then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
local ttl = redis.call('TTL', KEYS[1])
if ttl < 0 then redis.call('EXPIRE', KEYS[1], ARGV[1]); ttl = tonumber(ARGV[1]) end
return {count, ttl}
"""


@dataclass(frozen=True)
class Window:
    count: int
    limit: int
    reset_in: int

    @property
    def allowed(self) -> bool:
        return self.count <= self.limit

    @property
    def remaining(self) -> int:
        return max(0, self.limit - self.count)


def hit(key: str, *, limit: int, window: int, cost: int = 1) -> Window:
    """Count `cost` events for `key` in the current window of `window` seconds."""
    full_key = KEY_PREFIX + key
    client = shared_client()
    if client is not None:
        count, ttl = client.eval(_HIT_SCRIPT, 1, full_key, window, cost)
        return Window(int(count), limit, int(ttl))
    return _hit_local(full_key, limit=limit, window=window, cost=cost)


def peek(key: str, *, limit: int, window: int) -> Window:
    """The current window without counting (a locked-out caller is refused before any work)."""
    full_key = KEY_PREFIX + key
    client = shared_client()
    if client is not None:
        pipe = client.pipeline(transaction=False)
        pipe.get(full_key)
        pipe.ttl(full_key)
        raw, ttl = pipe.execute()
        return Window(int(raw or 0), limit, max(int(ttl), 0))
    stored = cache.get(full_key)
    if stored is None:
        return Window(0, limit, 0)
    count, started = stored
    return Window(count, limit, max(0, math.ceil(started + window - time.time())))


def reset(key: str) -> None:
    client = shared_client()
    if client is None:
        cache.delete(KEY_PREFIX + key)
    else:
        client.delete(KEY_PREFIX + key)


def _hit_local(full_key: str, *, limit: int, window: int, cost: int) -> Window:
    # The in-process cache of the embedded default: one process, so a read-modify-write
    # under the cache's own lock is exact enough there.
    now = time.time()
    stored = cache.get(full_key)
    if stored is None or stored[1] + window <= now:
        stored = (0, now)
    count, started = stored[0] + cost, stored[1]
    cache.set(full_key, (count, started), timeout=window)
    return Window(count, limit, max(1, math.ceil(started + window - now)))
