"""Which exceptions mean "a dependency is down", so they become 503 and never a 500."""

from __future__ import annotations

import logging

import kombu.exceptions
import redis.exceptions
from django.db import InterfaceError as DatabaseInterfaceError
from django.db import OperationalError as DatabaseOperationalError

from apps.core.errors import ServiceUnavailable
from apps.core.secrets import SecretsBackendUnavailable

logger = logging.getLogger("bulwark.dependencies")

_DEPENDENCIES: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((DatabaseOperationalError, DatabaseInterfaceError), "database"),
    ((redis.exceptions.ConnectionError, redis.exceptions.TimeoutError), "cache"),
    ((kombu.exceptions.OperationalError,), "broker"),
    ((SecretsBackendUnavailable,), "secrets backend"),
)

DEPENDENCY_ERRORS: tuple[type[BaseException], ...] = tuple(
    error for errors, _ in _DEPENDENCIES for error in errors
)


def failed_dependency(exc: BaseException) -> str | None:
    """The name of the dependency `exc` says is down, or None when it is something else."""
    for errors, name in _DEPENDENCIES:
        if isinstance(exc, errors):
            return name
    return None


def as_service_unavailable(exc: BaseException, dependency: str) -> ServiceUnavailable:
    # The exception text may carry hosts or SQL: it goes to the log (masked), not to the client.
    logger.warning(
        "dependency unavailable",
        extra={"dependency": dependency, "error": type(exc).__name__, "reason": str(exc)[:300]},
    )
    return ServiceUnavailable(f"The {dependency} is unavailable; retry later.")
