"""This process's Redis client for the default cache, for the few hot paths that talk to
Redis directly (rate limits, authentication records) in one round trip."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache


def shared_client() -> Any:
    """The client, or None when no Redis is configured (the embedded default).

    Django's `get_client()` builds a new client object per call (~60 µs); the connection pool
    behind it is shared and thread-safe, so one client per cache backend is kept."""
    backend = getattr(cache, "_cache", None)
    get_client = getattr(backend, "get_client", None)
    if get_client is None:
        return None
    client = getattr(backend, "_bulwark_client", None)
    if client is None:
        client = get_client(write=True)
        backend._bulwark_client = client  # type: ignore[union-attr]  # not None: it has get_client
    return client
