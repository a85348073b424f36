"""Where a request's time goes, in-process: the WSGI application (`controlplane.wsgi`, the
bench settings, every middleware) called directly with a prepared environ, so no HTTP server
and no network, N calls per scenario after a warm-up.

Stages are timed by wrapping the functions the predict path calls (patched in this process
only, at run time; the code is not changed) with perf_counter_ns; each stage's time is its own
(exclusive: a wrapped stage inside another is subtracted from the outer one). "other" is the
rest of the request: middleware, routing, DRF's dispatch, response headers. Every stage that
the code no longer has is skipped, so the breakdown follows the endpoint as it changes.
"""

from __future__ import annotations

import functools
import importlib
import io
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from bench.predict.model import body

OTHER = "other (middleware, DRF, routing)"
TOTAL = "total"
# (stage, module, attribute path): the attribute is replaced by a timing wrapper.
STAGES: tuple[tuple[str, str, str], ...] = (
    ("authenticate (API key)", "apps.serving.views", "api_key_authenticate"),
    ("verify signature", "apps.apikeys.authentication", "signature_refusal"),
    ("authenticate (JWT)", "apps.accounts.authentication", "JwtAuthentication.authenticate"),
    (
        "authenticate (stock simplejwt)",
        "rest_framework_simplejwt.authentication",
        "JWTAuthentication.authenticate",
    ),
    ("django_ratelimit", "django_ratelimit.decorators", "is_ratelimited"),
    ("parse JSON (strict)", "apps.core.parsers", "StrictJSONParser.parse"),
    ("rate limit", "apps.serving.views", "predict_rate_limit"),
    ("grant / scope", "apps.serving.views", "predict_authorize"),
    ("resolve version", "apps.serving.catalog", "Catalog.resolve"),
    ("validate rows", "apps.serving.services", "validate_body"),
    ("validate rows", "apps.serving.services", "validate_rows"),
    ("privacy budget", "apps.serving.services", "budget_spend"),
    ("model cache", "apps.serving.model_cache", "ModelCache.get"),
    ("feature values", "apps.serving.services", "feature_values"),
    ("model in its runner (round trip)", "apps.registry.servable", "IsolatedModel.predict"),
    ("model in-process", "apps.registry.servable", "InProcessModel.predict"),
    ("model.predict()", "sklearn.ensemble._gb", "GradientBoostingRegressor.predict"),
    ("Laplace noise", "apps.serving.services", "privatise"),
    ("audit event (INSERT + commit)", "apps.serving.services", "audit_event_commit"),
    ("ORM audit insert (naive)", "django.db.models.query", "QuerySet.create"),
    ("render JSON", "rest_framework.renderers", "JSONRenderer.render"),
    ("render JSON", "apps.core.renderers", "FastJSONRenderer.render"),
)


class StageClock:
    def __init__(self) -> None:
        self.totals: dict[str, int] = defaultdict(int)
        self._children: list[int] = []
        self.enabled = False

    def wrap(self, stage: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if not self.enabled:
                return function(*args, **kwargs)
            started = time.perf_counter_ns()
            self._children.append(0)
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter_ns() - started
                self.totals[stage] += elapsed - self._children.pop()
                if self._children:
                    self._children[-1] += elapsed

        return timed


def instrument(clock: StageClock) -> list[str]:
    """Wrap every stage that exists; returns the ones that do not (skipped)."""
    missing = []
    for stage, module_name, path in STAGES:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            original = owner.__dict__[name] if isinstance(owner, type) else getattr(owner, name)
        except (ImportError, AttributeError, KeyError):
            missing.append(f"{stage} ({module_name}.{path})")
            continue
        setattr(owner, name, clock.wrap(stage, original))
    return missing


def environ(path: str, payload: bytes, headers: dict[str, str]) -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": path,
        "RAW_URI": path,
        "QUERY_STRING": "",
        "SCRIPT_NAME": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_HOST": "127.0.0.1",
        "CONTENT_TYPE": "application/json",
        "CONTENT_LENGTH": str(len(payload)),
        "wsgi.input": io.BytesIO(payload),
        "wsgi.url_scheme": "http",
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": False,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
    }
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def call(app: Callable[..., Any], env: dict[str, Any]) -> str:
    status: list[str] = []

    def start_response(line: str, headers: Any, exc_info: Any = None) -> None:
        status.append(line)

    result = app(env, start_response)
    try:
        b"".join(result)
    finally:
        result.close()  # request_finished: what a server does after each response
    return status[0]


def breakdown(
    scenarios: list[tuple[str, str, int, dict[str, str], str | None]], *, calls: int
) -> tuple[list[str], dict[str, dict[str, float]], list[str]]:
    """For each (label, path, rows, headers, signing secret): the median µs per call of each
    stage, of "other" and of the total (medians: the shared machine's outliers, a slow fsync
    or another process taking the core, would dominate means). Medians do not add up: the
    stages' sum can differ from the total's median. Returns (labels, {stage: {label: µs}},
    stages skipped)."""
    from django.core.wsgi import get_wsgi_application

    from bench.predict.load import signature

    app = get_wsgi_application()
    clock = StageClock()
    missing = instrument(clock)
    table: dict[str, dict[str, float]] = defaultdict(dict)
    labels = []
    for label, path, rows, headers, secret in scenarios:
        labels.append(label)
        payloads = [body(rows, seed=f"profile-{index}") for index in range(64)]
        samples: dict[str, list[float]] = defaultdict(list)
        for index in range(calls + 50):
            sent = dict(headers)
            if secret is None:
                payload = payloads[index % len(payloads)]
            else:  # a body of its own per call: the same (t, v1) twice is a replay
                payload = body(rows, seed=f"profile-{index}")
                sent["X-Signature"] = signature(secret, path, payload, int(time.time()))
            env = environ(path, payload, sent)
            clock.totals.clear()
            clock.enabled = index >= 50  # the first calls warm caches (model load)
            started = time.perf_counter_ns()
            status = call(app, env)
            elapsed = time.perf_counter_ns() - started
            clock.enabled = False
            if not status.startswith("200"):
                raise RuntimeError(f"{label}: {status}")
            if index < 50:
                continue
            for stage, nanoseconds in clock.totals.items():
                samples[stage].append(nanoseconds / 1000)
            samples[OTHER].append((elapsed - sum(clock.totals.values())) / 1000)
            samples[TOTAL].append(elapsed / 1000)
        for stage, values in samples.items():
            table[stage][label] = statistics.median(values + [0.0] * (calls - len(values)))
    return labels, table, missing
