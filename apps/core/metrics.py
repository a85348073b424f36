"""Prometheus metrics (docs/metrics.md): one registry for the whole project, recorded through the
functions below by every app, served at /metrics (apps.core.views.metrics).

Multiprocess mode when PROMETHEUS_MULTIPROC_DIR is set (gunicorn's on_starting sets it before
the workers fork, controlplane/gunicorn.conf.py): each process writes its counters to files
there and a scrape sums them. Otherwise (tests, `make run`) one in-process registry.

Label sets are bounded: a model name and version only once the registry resolved them (else
"unknown"), an outcome code of docs/api.md (or "ok"), a task name, a severity. Never a user,
a key, an address.

Figures that are the database's rather than a process's (the audit backlog, open incidents)
are computed at scrape time by collectors that the owning apps register here
(`register_scrape_collector`): core imports no app above it (docs/architecture.md).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

logger = logging.getLogger("bulwark.metrics")

__all__ = ["CONTENT_TYPE_LATEST", "exposition", "register_scrape_collector"]

UNKNOWN = "unknown"
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))

# Where the metrics below are registered. In multiprocess mode their values live in files and
# this registry is never scraped: the scrape registry's MultiProcessCollector reads the files.
_own = CollectorRegistry()

PREDICT_SECONDS = Histogram(
    "bulwark_predict_seconds",
    "Predict latency in the view (authentication to response), by outcome.",
    ("model", "version", "code"),
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=_own,
)
PREDICT_TOTAL = Counter(
    "bulwark_predict",
    "Predict calls by model, version and outcome code (ok or a docs/api.md error code).",
    ("model", "version", "code"),
    registry=_own,
)
REFUSALS_TOTAL = Counter(
    "bulwark_refusals",
    "API refusals (the error envelope) by docs/api.md code; rate_limited and "
    "privacy_budget_exhausted are the rate-limit and privacy-budget refusals.",
    ("code",),
    registry=_own,
)
MODEL_CACHE_TOTAL = Counter(
    "bulwark_model_cache",
    "Model cache lookups and changes: event is hit, load (a cold load) or eviction.",
    ("event",),
    registry=_own,
)
MODEL_RUNNER_RESTARTS_TOTAL = Counter(
    "bulwark_model_runner_restarts",
    "Servables replaced because their runner died or neared its CPU limit.",
    registry=_own,
)
CELERY_TASK_RUNS_TOTAL = Counter(
    "bulwark_celery_task_runs",
    "Celery task runs (finished, whatever the outcome) by task name.",
    ("task",),
    registry=_own,
)
CELERY_TASK_FAILURES_TOTAL = Counter(
    "bulwark_celery_task_failures",
    "Celery task runs that raised, by task name.",
    ("task",),
    registry=_own,
)


# --- recording (cheap: a cached label child, one observe or inc) ------------------------------

_predict_children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
_refusal_children: dict[str, Any] = {}
_cache_children: dict[str, Any] = {}


def predict_observe(model: str | None, version: int | None, code: str, seconds: float) -> None:
    """One predict: `model` and `version` as the registry resolved them, None if it did not.
    Nothing when METRICS_ENABLED is false (the benchmark's "metrics off")."""
    if not settings.METRICS_ENABLED:
        return
    key = (model or UNKNOWN, UNKNOWN if version is None else str(version), code)
    children = _predict_children.get(key)
    if children is None:
        children = _predict_children[key] = (
            PREDICT_SECONDS.labels(*key),
            PREDICT_TOTAL.labels(*key),
        )
    children[0].observe(seconds)
    children[1].inc()


def refusal_count(code: str) -> None:
    if not settings.METRICS_ENABLED:
        return
    child = _refusal_children.get(code)
    if child is None:
        child = _refusal_children[code] = REFUSALS_TOTAL.labels(code)
    child.inc()


def model_cache_count(event: str) -> None:
    """`hit`, `load` or `eviction`."""
    if not settings.METRICS_ENABLED:
        return
    child = _cache_children.get(event)
    if child is None:
        child = _cache_children[event] = MODEL_CACHE_TOTAL.labels(event)
    child.inc()


def model_runner_restart_count() -> None:
    if not settings.METRICS_ENABLED:
        return
    MODEL_RUNNER_RESTARTS_TOTAL.inc()


def _task_name(sender: Any) -> str:
    name = getattr(sender, "name", None)
    return name if isinstance(name, str) and name else UNKNOWN


def _task_postrun(sender: Any = None, **_: Any) -> None:
    if not settings.METRICS_ENABLED:
        return
    CELERY_TASK_RUNS_TOTAL.labels(_task_name(sender)).inc()


def _task_failure(sender: Any = None, **_: Any) -> None:
    if not settings.METRICS_ENABLED:
        return
    CELERY_TASK_FAILURES_TOTAL.labels(_task_name(sender)).inc()


def connect_celery_signals() -> None:
    """Count every task run and failure, in workers and eager runs alike (AppConfig.ready)."""
    from celery.signals import task_failure, task_postrun

    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="bulwark.metrics.postrun")
    task_failure.connect(_task_failure, weak=False, dispatch_uid="bulwark.metrics.failure")


# --- scrape-time collectors and the scrape --------------------------------------------------


class _ScrapeCollector(Collector):
    """Runs `collect` at scrape time; a failure (the database away) costs its figures only."""

    def __init__(self, name: str, collect: Callable[[], Iterable[Metric]]) -> None:
        self.name = name
        self._collect = collect

    def describe(self) -> Iterable[Metric]:
        return []  # nothing is collected when registered

    def collect(self) -> Iterable[Metric]:
        try:
            return list(self._collect())
        except Exception:
            logger.warning("metrics collector failed", extra={"collector": self.name})
            return []


_scrape_collectors: dict[str, _ScrapeCollector] = {}
_scrape_registry: dict[str, CollectorRegistry] = {}


def register_scrape_collector(name: str, collect: Callable[[], Iterable[Metric]]) -> None:
    """A collector computed at scrape time (once per name, whatever the number of calls)."""
    if name in _scrape_collectors:
        return
    collector = _scrape_collectors[name] = _ScrapeCollector(name, collect)
    if "registry" in _scrape_registry:
        _scrape_registry["registry"].register(collector)


def _registry() -> CollectorRegistry:
    registry = _scrape_registry.get("registry")
    if registry is None:
        if MULTIPROCESS:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        else:
            registry = _own
        for collector in _scrape_collectors.values():
            registry.register(collector)
        registry = _scrape_registry.setdefault("registry", registry)
    return registry


def exposition() -> bytes:
    """The text exposition format of every metric of every process."""
    return generate_latest(_registry())
