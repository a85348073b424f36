"""The serving generation: one counter in Redis that every change affecting what predict may
serve (a stage change, an archive, a new version, a grant, a group membership) increments.

Each web process keeps what it resolved (versions, compiled schemas, grants, loaded models)
for one generation and drops it when the counter moves. The counter is read in the same
Lua call that counts the caller's rate limit, so noticing a change costs no extra round trip
(see apps.serving.limits). We chose a counter over pub/sub: a process cannot miss a counter
the way it misses a message published while it was reconnecting, and it needs no listener
thread in every worker.

A change bumps twice: inside its transaction (so a change cannot commit while Redis is
unreachable: it fails with 503 instead) and again after commit (a process that re-read the
old rows between the first bump and the commit would otherwise keep them). A Redis restart
loses the key, which also reads as a change.
"""

from __future__ import annotations

import itertools

from django.core.cache import cache
from django.db import transaction

from apps.core.redis import shared_client

GENERATION_KEY = "bulwark:serving:generation"
_FALLBACK_KEY = "serving:generation"
_local = itertools.count(1)


def bump() -> None:
    """Move the generation now and once more when the current transaction commits."""
    _bump_now()
    transaction.on_commit(_bump_now)


def _bump_now() -> None:
    client = shared_client()
    if client is None:
        # The embedded default serves from one process: its own cache is the whole truth.
        cache.set(_FALLBACK_KEY, next(_local), timeout=None)
    else:
        client.incr(GENERATION_KEY)


def current_local() -> object:
    """The generation in the embedded mode (no Redis); with Redis, limits reads it."""
    return cache.get(_FALLBACK_KEY)
