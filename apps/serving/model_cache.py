"""Loaded models this process serves from: an LRU bounded by count and by bytes, of the
registry's servables (a model in a runner that holds no secret, or in this process in the
embedded default). Evicting one stops its runner.

A cold load is the registry's verified load (unwrap, decrypt, digest, only then load with
the version's allow-list); concurrent first requests for one version wait for a single load
instead of each decrypting it. A servable whose runner died or is near its CPU limit is
replaced on its next use. The byte bound counts the plaintext artifact size, a fair proxy
for the unpickled object (a forest holds about twice its file size in memory, a linear model
about its file size).
A model larger than the whole byte bound is still served, alone in the cache: refusing it
would turn every request into a cold load.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from uuid import UUID

from django.conf import settings

from apps.core import metrics
from apps.registry.servable import Servable

LoadedModel = Servable


class ModelCache:
    def __init__(self, *, max_models: int, max_bytes: int) -> None:
        self.max_models = max_models
        self.max_bytes = max_bytes
        self._models: OrderedDict[UUID, LoadedModel] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[UUID, threading.Lock] = {}
        self.loads = 0  # cold loads done by this process (tests and the admin read it)

    def _cached(self, key: UUID) -> LoadedModel | None:
        # Called with self._lock held. An expired servable is dropped here, so the caller
        # loads a fresh one.
        found = self._models.get(key)
        if found is None:
            return None
        if found.expired:
            self._drop(key)
            metrics.model_runner_restart_count()  # replaced by the caller's load
            return None
        self._models.move_to_end(key)
        return found

    def get(self, key: UUID, load: Callable[[], LoadedModel]) -> LoadedModel:
        with self._lock:
            found = self._cached(key)
            if found is not None:
                metrics.model_cache_count("hit")
                return found
            gate = self._loading.setdefault(key, threading.Lock())
        with gate:  # one loader per version; the others wait here and then find it cached
            with self._lock:
                found = self._cached(key)
                if found is not None:
                    return found
            loaded = None
            try:
                loaded = load()
            finally:
                with self._lock:
                    # Cached before the gate goes: a late arrival finds the model, not a
                    # fresh gate to load it again behind.
                    if loaded is not None:
                        self.loads += 1
                        metrics.model_cache_count("load")
                        self._insert(key, loaded)
                    self._loading.pop(key, None)
            return loaded

    def _insert(self, key: UUID, loaded: LoadedModel) -> None:
        # Called with self._lock held.
        self._models[key] = loaded
        self._bytes += loaded.size
        while len(self._models) > 1 and (
            len(self._models) > self.max_models or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._models)))
            metrics.model_cache_count("eviction")

    def _drop(self, key: UUID) -> None:
        # Called with self._lock held.
        evicted = self._models.pop(key, None)
        if evicted is not None:
            self._bytes -= evicted.size
            evicted.close()

    def keys(self) -> list[UUID]:
        with self._lock:
            return list(self._models)

    def evict(self, keys: Iterable[UUID]) -> None:
        with self._lock:
            for key in list(keys):
                if key in self._models:
                    metrics.model_cache_count("eviction")
                self._drop(key)

    def clear(self) -> None:
        """Forget every model, as a fresh process (the load count starts again too)."""
        with self._lock:
            for key in list(self._models):
                self._drop(key)
            self._bytes = 0
            self.loads = 0


models = ModelCache(
    max_models=settings.SERVING_MODEL_CACHE_SIZE, max_bytes=settings.SERVING_MODEL_CACHE_BYTES
)
