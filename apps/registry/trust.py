"""Which globals an uploaded pickle may import: the deployment's list (the default of
apps/registry/artifacts/trusted.py plus PICKLE_TRUSTED_GLOBALS_EXTRA) and, for artifacts
signed by a trusted publisher only, the names an admin added to that model's own list."""

from __future__ import annotations

from collections.abc import Iterable
from functools import cache

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from apps.registry.artifacts.trusted import (
    DEFAULT_TRUSTED_GLOBALS,
    global_name_problem,
    never_trusted,
)


@cache
def _deployment(extra: tuple[str, ...]) -> frozenset[str]:
    problems = [problem for name in extra if (problem := global_name_problem(name))]
    if problems:
        raise ImproperlyConfigured("PICKLE_TRUSTED_GLOBALS_EXTRA: " + "; ".join(problems))
    return frozenset(DEFAULT_TRUSTED_GLOBALS) | frozenset(extra)


def deployment_globals() -> frozenset[str]:
    """The deployment's allow-list; ImproperlyConfigured if an extra name is invalid."""
    return _deployment(tuple(settings.PICKLE_TRUSTED_GLOBALS_EXTRA))


def beyond_deployment(names: Iterable[str]) -> list[str]:
    """The names outside the deployment's list, sorted."""
    allowed = deployment_globals()
    return sorted(name for name in names if name not in allowed)


def loadable_globals(recorded: Iterable[str], *, extension: Iterable[str]) -> list[str]:
    """What a version's load may import: the globals recorded at upload that are still on
    the deployment's list or the model's extension, and never a never-trusted one. So a row
    written straight to the database cannot widen what the unpickler imports."""
    allowed = deployment_globals() | frozenset(extension)
    return sorted(name for name in recorded if name in allowed and not never_trusted(name))
