"""Checks that a higher layer adds to version registration. The registry stores a version's
differential-privacy pair, but the mechanism that must be able to serve it belongs to serving
(docs/architecture.md, "When a lower layer must react to a higher one"): serving registers
its check here when it starts, and registration refuses a pair it could not serve."""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ImproperlyConfigured

# (epsilon, sensitivity, max_batch) -> why the pair cannot be served, or None.
DpCheck = Callable[[float, float, int], "str | None"]

_dp_check: DpCheck | None = None


def dp_check_register(check: DpCheck) -> None:
    global _dp_check
    _dp_check = check


def dp_pair_refusal(*, epsilon: float, sensitivity: float, max_batch: int) -> str | None:
    if _dp_check is None:  # never accept a pair nothing has checked
        raise ImproperlyConfigured("No differential-privacy check is registered (apps.serving).")
    return _dp_check(epsilon, sensitivity, max_batch)
