"""The secrets provider interface and the errors every backend speaks."""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod

from apps.core.env import StartupError


class SecretsError(StartupError):
    """Base for secrets problems; messages name the secret, never its value."""


class SecretMissing(SecretsError):
    def __init__(self, name: str, backend: str) -> None:
        super().__init__(f"The secret {name} is not set in the {backend} secrets backend.")
        self.secret_name = name


class SecretsBackendUnavailable(SecretsError):
    """The backend could not be asked at all (network, credentials)."""


class SecretsProvider(ABC):
    """Where secrets come from. `get` returns None for an absent secret and raises
    `SecretsBackendUnavailable` when the backend cannot answer."""

    label: str = "secrets"

    @abstractmethod
    def get(self, name: str) -> str | None: ...

    def require(self, name: str) -> str:
        value = self.get(name)
        if value is None or value == "":
            raise SecretMissing(name, self.label)
        return value


class CachingSecretsProvider(SecretsProvider):
    """Keeps each answer for `ttl` seconds so a rotated secret is picked up without a restart
    and a remote backend is not asked on every use."""

    def __init__(self, inner: SecretsProvider, *, ttl: float) -> None:
        self.inner = inner
        self.ttl = ttl
        self.label = inner.label
        self._values: dict[str, tuple[float, str | None]] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            cached = self._values.get(name)
        if cached is not None and now - cached[0] < self.ttl:
            return cached[1]
        value = self.inner.get(name)
        with self._lock:
            self._values[name] = (now, value)
        return value

    def forget(self, name: str) -> None:
        """Drop one cached answer: the next `get` asks the backend."""
        with self._lock:
            self._values.pop(name, None)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()
