"""Predict throughput and latency: Bulwark's full path against baselines measured in the same
run. One command (from the project folder; PostgreSQL and Redis on 127.0.0.1):

    .venv/bin/python -m bench.predict [--before REV] [--seconds 8] [--warmup 2] [--rounds 3]
                                      [--fastapi] [--experiments]

It drops and recreates the database `bulwark_bench_predict`, empties Redis database 7, trains
the model, makes users, models, keys and a token through the project's services, starts
gunicorn (controlplane/gunicorn.conf.py, controlplane.wsgi, BULWARK_ENV=production, so models
run in their runners; fresh strong secrets, DEBUG off, PostgreSQL with the settings'
persistent connections, Redis) and drives each scenario with wrk from a second process. Rows:

- (a) floor: `model.predict` in a loop in this process (no server);
- (b) bare DRF view: no checks, same gunicorn workers (bench.predict.views);
- (c) naive: stock simplejwt + django_ratelimit + an ORM audit insert, same workers;
- with --fastapi, (d) FastAPI tutorial: X-API-Key against a constant + in-memory per-IP
  limit, uvicorn, 2 workers; (d') the same with TCP_NODELAY on its connections;
- Bulwark `POST /api/v1/models/pricing/predict`: JWT; API key; API key with a fresh request
  signature each time; DP on (`pricing-dp`, API key);
- with --before REV, the same four served by a second gunicorn from that git revision (same
  database, Redis and model), each run right after its current counterpart.

Each scenario: `--warmup` seconds of load (discarded), then `--seconds` measured; the
scenarios are interleaved and the whole list repeated `--rounds` times. req/s, latencies and
CPU are medians over rounds; every ratio ("req/s vs (b)": the row's rate over the bare view's)
is the median of the ratios taken within each round, so the shared machine's drift between
rounds cancels. CPU per request counts the server (master, workers, model runners) and every
PostgreSQL and Redis process. wrk: one thread, CONNECTIONS keep-alive connections (2 x
workers), closed loop; gunicorn's sync workers answer `Connection: close`, so wrk reconnects
per request.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from bench.predict import fixtures
from bench.predict.load import Result, Target, run_wrk, signature
from bench.predict.model import MODEL_ENV, body, dumped, feature_array, train
from bench.predict.servers import PROXY_HEADERS, ROOT, gunicorn, post, uvicorn

PREDICT_PATH = f"/api/v1/models/{fixtures.MODEL}/predict"
DP_PATH = f"/api/v1/models/{fixtures.DP_MODEL}/predict"
ROW_COUNTS = (1, 100)
WORKERS = 2
CONNECTIONS = 2 * WORKERS  # sync workers: one request at a time each
DAILY_EPSILON = "1000000000"
FASTAPI_KEY_ENV = "BENCH_FASTAPI_KEY"


@dataclass
class Scenario:
    label: str
    rows: int
    target: Target | None  # None: the in-process floor
    group: str  # "floor", "baseline", "bulwark"
    results: list[Result] = field(default_factory=list)
    skipped: str = ""


def checkout(revision: str, where: Path) -> Path:
    """The files of `revision` of this repository in `where` (git archive: no worktree)."""
    where.mkdir()
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive.stdout, check=True)
    return where


def server_env(workdir: Path, model_path: Path) -> dict[str, str]:
    """The production environment of the servers (and of this process, for the setup)."""
    import secrets

    from apps.core.secrets.required import REQUIRED_SECRETS

    (workdir / "media").mkdir()
    (workdir / "static").mkdir()
    env = dict(os.environ)
    env.update({spec.name: spec.generate() for spec in REQUIRED_SECRETS})
    env.update(
        {
            "BULWARK_ENV": "production",
            "DJANGO_SETTINGS_MODULE": "bench.predict.settings",
            "BULWARK_DOTENV": os.devnull,
            "SECRETS_BACKEND": "env",
            "DATABASE_URL": fixtures.DATABASE_URL,
            "REDIS_URL": fixtures.REDIS_URL,
            "ALLOWED_HOSTS": "127.0.0.1",
            "TRUSTED_PROXIES": "127.0.0.1/32",
            "PREDICT_USER_RATE_LIMIT": "1000000/s",
            "PRIVACY_DAILY_EPSILON": DAILY_EPSILON,
            "JWT_ACCESS_MINUTES": "120",  # the token must outlive the run
            "MEDIA_ROOT": str(workdir / "media"),
            "STATIC_ROOT": str(workdir / "static"),
            "LOG_LEVEL": "warning",  # no access-log line per request in the bench
            MODEL_ENV: str(model_path),
            FASTAPI_KEY_ENV: secrets.token_urlsafe(32),
        }
    )
    for name in ("DJANGO_DEBUG", "DATABASE_CONN_MAX_AGE"):
        env.pop(name, None)  # DEBUG is off in production anyway; CONN_MAX_AGE: the default
    return env


def measure_floor(model: object, rows: int, seconds: float) -> Result:
    """(a): `predict` on the same rows in a loop, each call timed; CPU per call from
    process_time."""
    import json

    features = feature_array(json.loads(body(rows, seed=1))["inputs"])
    for _ in range(50):
        model.predict(features)  # type: ignore[attr-defined]
    times: list[float] = []
    cpu = time.process_time()
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        before = time.perf_counter()
        model.predict(features)  # type: ignore[attr-defined]
        times.append(time.perf_counter() - before)
    total = time.perf_counter() - started
    cpu_ms = (time.process_time() - cpu) * 1000 / len(times)
    cuts = statistics.quantiles(times, n=100)
    return Result(
        len(times), total, cuts[49] * 1e3, cuts[98] * 1e3, max(times) * 1e3, 0, {}, cpu_ms
    )


def check(target: Target, *, expect_privacy: bool = False) -> str:
    """'' if one request of this scenario answers 200 with `rows` predictions, else why not."""
    payload = body(target.rows, seed=f"check-{target.port}")
    headers = dict(target.headers)
    if target.signing_secret is not None:
        headers["X-Signature"] = signature(
            target.signing_secret, target.path, payload, int(time.time())
        )
    status, answer = post(target.port, target.path, payload, headers)
    if status != 200 or not isinstance(answer, dict):
        return f"HTTP {status}: {str(answer)[:200]}"
    predictions = answer.get("predictions")
    if not isinstance(predictions, list) or len(predictions) != target.rows:
        return f"200 without {target.rows} predictions: {str(answer)[:200]}"
    if expect_privacy and "privacy" not in answer:
        return f"200 without privacy: {str(answer)[:200]}"
    return ""


def bulwark_scenarios(
    port: int, fx: fixtures.Fixtures, name: str = "Bulwark", group: str = "bulwark"
) -> Iterator[Scenario]:
    jwt = {**PROXY_HEADERS, "Authorization": f"Bearer {fx.access_token}"}
    key = {**PROXY_HEADERS, "X-API-Key": fx.api_key}
    signed = {**PROXY_HEADERS, "X-API-Key": fx.signed_key}
    for rows in ROW_COUNTS:
        yield Scenario(f"{name}, JWT", rows, Target(port, PREDICT_PATH, rows, jwt), group)
        yield Scenario(f"{name}, API key", rows, Target(port, PREDICT_PATH, rows, key), group)
        yield Scenario(
            f"{name}, API key + signature",
            rows,
            Target(port, PREDICT_PATH, rows, signed, fx.signing_secret),
            group,
        )
        yield Scenario(f"{name}, DP on (API key)", rows, Target(port, DP_PATH, rows, key), group)


def baseline_scenarios(
    django_port: int,
    fastapi_ports: tuple[int, int] | None,
    fx: fixtures.Fixtures,
    env: dict[str, str],
) -> Iterator[Scenario]:
    jwt = {**PROXY_HEADERS, "Authorization": f"Bearer {fx.access_token}"}
    for rows in ROW_COUNTS:
        yield Scenario(
            "(b) bare DRF view",
            rows,
            Target(django_port, "/bench/bare/predict", rows, PROXY_HEADERS),
            "baseline",
        )
        yield Scenario(
            "(c) naive: simplejwt+ratelimit+ORM audit",
            rows,
            Target(django_port, "/bench/naive/predict", rows, jwt),
            "baseline",
        )
        if fastapi_ports is None:
            continue
        fastapi_key = {"X-API-Key": env[FASTAPI_KEY_ENV]}
        yield Scenario(
            "(d) FastAPI tutorial, uvicorn --workers 2",
            rows,
            Target(fastapi_ports[0], "/predict", rows, fastapi_key),
            "baseline",
        )
        yield Scenario(
            "(d') the same with TCP_NODELAY",
            rows,
            Target(fastapi_ports[1], "/predict", rows, fastapi_key),
            "baseline",
        )


def signed_budget(scenarios: list[Scenario], rows: int, seconds: float) -> int:
    """How many signed requests to prepare for `seconds` of load: twice what the unsigned key
    managed in this run (a repeated signature would be refused as a replay)."""
    rates = [
        result.rate
        for scenario in scenarios
        if scenario.label == "Bulwark, API key" and scenario.rows == rows
        for result in scenario.results
    ]
    rate = max(rates) if rates else 3000.0
    return int(rate * seconds * 2) + 2000


def load(
    scenario: Scenario,
    scenarios: list[Scenario],
    args: argparse.Namespace,
    workdir: Path,
    seeds: Iterator[int],
) -> Result:
    """A warm-up run (discarded), then the measured one."""
    target = scenario.target
    assert target is not None
    result = None
    for seconds in (args.warmup, args.seconds):
        signed = signed_budget(scenarios, target.rows, seconds) if target.signing_secret else 0
        result = run_wrk(
            target,
            workdir,
            connections=args.connections,
            seconds=seconds,
            seed=next(seeds),
            signed_requests=signed,
        )
    assert result is not None
    return result


def median(results: list[Result], pick: Callable[[Result], float]) -> float:
    return statistics.median(pick(result) for result in results)


def find(scenarios: list[Scenario], label: str, rows: int) -> Scenario | None:
    for scenario in scenarios:
        if scenario.label == label and scenario.rows == rows and scenario.results:
            return scenario
    return None


def round_ratio(
    top: Scenario | None, bottom: Scenario | None, pick: Callable[[Result], float]
) -> float | None:
    """The median over rounds of top's value over bottom's in the same round: each round's
    ratio is of two runs a few seconds apart, so the machine's drift cancels in it."""
    if top is None or bottom is None:
        return None
    ratios = [
        pick(a) / pick(b) for a, b in zip(top.results, bottom.results, strict=False) if pick(b) > 0
    ]
    return statistics.median(ratios) if ratios else None


def shown(value: float | None) -> str:
    return f"{value:.2f}x" if value is not None else "-"


BARE, NAIVE = "(b) bare DRF view", "(c) naive: simplejwt+ratelimit+ORM audit"


def table(scenarios: list[Scenario]) -> list[tuple[str, ...]]:
    def cpu_all(result: Result) -> float:
        return result.cpu_ms + result.backing_cpu_ms

    rows_out = [
        (
            "scenario",
            "rows",
            "req/s",
            "p50 ms",
            "p99 ms",
            "p99/p50",
            "CPU ms/req (server + PG + Redis)",
            "req/s vs (b)",
            "req/s vs (c)",
            "CPU vs (b)",
            "errors",
        )
    ]
    for scenario in scenarios:
        if scenario.skipped or not scenario.results:
            why = scenario.skipped or "not run"
            rows_out.append((scenario.label, str(scenario.rows), *["-"] * 8, why))
            continue
        bare = find(scenarios, BARE, scenario.rows)
        naive = find(scenarios, NAIVE, scenario.rows)
        rows_out.append(
            (
                scenario.label,
                str(scenario.rows),
                f"{median(scenario.results, lambda r: r.rate):,.0f}",
                f"{median(scenario.results, lambda r: r.p50_ms):.2f}",
                f"{median(scenario.results, lambda r: r.p99_ms):.2f}",
                f"{median(scenario.results, lambda r: r.p99_ms / r.p50_ms):.1f}",
                f"{median(scenario.results, cpu_all):.2f}",
                shown(round_ratio(scenario, bare, lambda r: r.rate)),
                shown(round_ratio(scenario, naive, lambda r: r.rate)),
                shown(round_ratio(scenario, bare, cpu_all)),
                str(sum(result.errors for result in scenario.results)),
            )
        )
    return rows_out


def comparisons(scenarios: list[Scenario], names: list[str]) -> list[str]:
    """The issue's other aims, as medians of per-round ratios: JWT against API key, 100 rows
    against one, and each variant after against before when both were run."""
    lines = []
    for name in names:
        key = find(scenarios, f"{name}, API key", 1)
        jwt = find(scenarios, f"{name}, JWT", 1)
        lines.append(
            f"{name}: JWT ÷ API key req/s (1 row) {shown(round_ratio(jwt, key, lambda r: r.rate))}"
        )
        for variant in ("JWT", "API key", "API key + signature", "DP on (API key)"):
            one = find(scenarios, f"{name}, {variant}", 1)
            hundred = find(scenarios, f"{name}, {variant}", 100)
            lines.append(
                f"{name}, {variant}: 100-row ÷ 1-row request rate "
                f"{shown(round_ratio(hundred, one, lambda r: r.rate))}"
            )
    for other in names[1:]:
        for variant in ("JWT", "API key", "API key + signature", "DP on (API key)"):
            for rows in ROW_COUNTS:
                after = find(scenarios, f"{names[0]}, {variant}", rows)
                before = find(scenarios, f"{other}, {variant}", rows)
                rate = round_ratio(after, before, lambda r: r.rate)
                cpu = round_ratio(after, before, lambda r: r.cpu_ms + r.backing_cpu_ms)
                lines.append(
                    f"{variant}, {rows} row(s): {names[0]} ÷ {other}: req/s {shown(rate)}, "
                    f"CPU per request {shown(cpu)}"
                )
    return lines


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    print("| " + " | ".join(cell.ljust(w) for cell, w in zip(rows[0], widths, strict=True)) + " |")
    print("| " + " | ".join("-" * w for w in widths) + " |")
    for row in rows[1:]:
        print("| " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) + " |")


def machine() -> str:
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        version = cursor.fetchone()[0]
    database = settings.DATABASES["default"]
    wrk = subprocess.run(["wrk", "--version"], capture_output=True, text=True, check=False)
    return (
        f"{os.cpu_count()} cores; PostgreSQL {version} (CONN_MAX_AGE={database['CONN_MAX_AGE']}, "
        f"CONN_HEALTH_CHECKS={database['CONN_HEALTH_CHECKS']}); Redis db 7; "
        f"{(wrk.stdout or wrk.stderr).split(' Copyright')[0].strip()}"
    )


def setup(
    workdir: Path, *, budget_for_calls: int
) -> tuple[object, dict[str, str], fixtures.Fixtures]:
    """Train, configure this process like the servers, make the data. Returns the model,
    the servers' environment and the fixtures."""
    model = train()
    artifact = dumped(model)
    model_path = workdir / "model.joblib"
    model_path.write_bytes(artifact)  # the baselines' copy; Bulwark's is encrypted
    env = server_env(workdir, model_path)
    os.environ.update(env)
    import django

    django.setup()
    fixtures.recreate_database()
    fixtures.flush_redis()
    return model, env, fixtures.create(artifact, budget_for_calls=budget_for_calls)


GROUPS = ["floor", "baseline", "bulwark", "writer", "no-metrics", "before"]  # the table's order


def main_run(args: argparse.Namespace, workdir: Path) -> None:
    started = time.monotonic()
    model, env, fx = setup(workdir, budget_for_calls=200_000)
    floors = [
        Scenario("(a) floor: predict() in-process", rows, None, "floor") for rows in ROW_COUNTS
    ]
    seeds = iter(range(1, 10**9))
    names = ["Bulwark"]
    with ExitStack() as stack:
        django_port = stack.enter_context(gunicorn(env, workdir / "gunicorn.log"))
        fastapi_ports = None
        if args.fastapi:
            fastapi_ports = (
                stack.enter_context(uvicorn(env, workdir / "uvicorn.log")),
                stack.enter_context(uvicorn(env, workdir / "uvicorn-nodelay.log", nodelay=True)),
            )
        loaded = list(baseline_scenarios(django_port, fastapi_ports, fx, env))
        servers = [list(bulwark_scenarios(django_port, fx))]
        if args.writer:
            writer_env = {**env, "AUDIT_WRITER": "process"}
            port = stack.enter_context(gunicorn(writer_env, workdir / "writer.log"))
            names.append("Bulwark + audit writer")
            servers.append(list(bulwark_scenarios(port, fx, names[-1], "writer")))
        if args.metrics_off:
            quiet_env = {**env, "METRICS_ENABLED": "false"}
            port = stack.enter_context(gunicorn(quiet_env, workdir / "no-metrics.log"))
            names.append("Bulwark without metrics")
            servers.append(list(bulwark_scenarios(port, fx, names[-1], "no-metrics")))
        if args.before:
            root = checkout(args.before, workdir / "before")
            port = stack.enter_context(gunicorn(env, workdir / "before.log", root=root))
            names.append(f"Bulwark at {args.before}")
            servers.append(list(bulwark_scenarios(port, fx, names[-1], "before")))
        # Interleaved: each variant on every server in turn, a few seconds apart.
        after = [s for same_variant in zip(*servers, strict=True) for s in same_variant]
        loaded += after
        for scenario in loaded:
            assert scenario.target is not None
            scenario.skipped = check(scenario.target, expect_privacy="DP" in scenario.label)
        for round_number in range(args.rounds):
            for scenario in floors:
                scenario.results.append(measure_floor(model, scenario.rows, args.floor_seconds))
            for scenario in loaded:
                if not scenario.skipped:
                    scenario.results.append(load(scenario, loaded, args, workdir, seeds))
            print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    scenarios = sorted(
        floors + loaded,
        key=lambda s: (s.rows, GROUPS.index(s.group)),
    )
    print()
    print(machine())
    print(
        f"gunicorn -c controlplane/gunicorn.conf.py controlplane.wsgi: {WORKERS} sync workers, "
        f"gc.freeze() at worker start; BULWARK_ENV=production, DEBUG off, LOG_LEVEL=warning; "
        f"wrk -t1 -c{args.connections}, {args.warmup:g} s warm-up + {args.seconds:g} s, "
        f"median of {args.rounds} rounds; DP: epsilon {fx.dp_epsilon:g} a call, daily budget "
        + (
            f"{fx.daily_epsilon:g} (PRIVACY_DAILY_EPSILON)"
            if fx.daily_epsilon
            else "10.0 (default; no PRIVACY_DAILY_EPSILON setting)"
        )
    )
    print()
    print_table(table(scenarios))
    print()
    for line in comparisons(scenarios, names):
        print(line)
    if args.profile_calls:
        print_breakdown(fx, args.profile_calls)
    print(f"\n(total {time.monotonic() - started:.0f} s)")


def print_breakdown(fx: fixtures.Fixtures, calls: int) -> None:
    """The in-process breakdown (bench.predict.inprocess), stages as rows, scenarios as columns."""
    from bench.predict.inprocess import OTHER, STAGES, TOTAL, breakdown

    jwt = {**PROXY_HEADERS, "Authorization": f"Bearer {fx.access_token}"}
    key = {**PROXY_HEADERS, "X-API-Key": fx.api_key}
    signed = {**PROXY_HEADERS, "X-API-Key": fx.signed_key}
    scenarios = [
        ("(b) bare", "/bench/bare/predict", 1, PROXY_HEADERS, None),
        ("(c) naive", "/bench/naive/predict", 1, jwt, None),
        ("JWT", PREDICT_PATH, 1, jwt, None),
        ("key", PREDICT_PATH, 1, key, None),
        ("key+sig", PREDICT_PATH, 1, signed, fx.signing_secret),
        ("DP (key)", DP_PATH, 1, key, None),
        ("(b) bare, 100", "/bench/bare/predict", 100, PROXY_HEADERS, None),
        ("key, 100", PREDICT_PATH, 100, key, None),
    ]
    labels, stages, missing = breakdown(scenarios, calls=calls)
    named = list(dict.fromkeys(stage for stage, _module, _path in STAGES))
    order = [stage for stage in [*named, OTHER, TOTAL] if any(stages[stage].values())]
    rows = [("µs per request (median)", *labels)]
    for stage in order:
        rows.append((stage, *(f"{stages[stage].get(label, 0.0):,.0f}" for label in labels)))
    print()
    print(
        f"In-process breakdown: the WSGI app called directly, {calls} calls per column after 50 "
        "warm-up calls; 1 row unless marked 100"
    )
    print()
    print_table(rows)
    if missing:
        print("stages not found in the code (skipped): " + "; ".join(missing))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.predict",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per scenario")
    parser.add_argument("--warmup", type=float, default=2.0, help="warm-up seconds per scenario")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--floor-seconds", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=CONNECTIONS)
    parser.add_argument(
        "--profile-calls",
        type=int,
        default=1000,
        help="calls per column of the in-process breakdown (0: none)",
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also serve this git revision (another gunicorn, same database and Redis) and "
        "measure it interleaved with the working tree: before and after in one run",
    )
    parser.add_argument(
        "--writer",
        action="store_true",
        help="also the working tree with AUDIT_WRITER=process (group commit), interleaved",
    )
    parser.add_argument(
        "--metrics-off",
        action="store_true",
        help="also the working tree with METRICS_ENABLED=false, interleaved: what /metrics costs",
    )
    parser.add_argument(
        "--fastapi", action="store_true", help="also the FastAPI baselines (d) and (d')"
    )
    parser.add_argument(
        "--experiments",
        action="store_true",
        help="sync vs gthread, gc.freeze, CONN_MAX_AGE instead of the table",
    )
    parser.add_argument(
        "--only", help='with --experiments: one experiment ("worker model", "gc.freeze", ...)'
    )
    return parser.parse_args()


def _stop(signum: int, frame: object) -> None:
    # As for Ctrl-C: unwind, so that every server started is stopped and the files removed.
    raise SystemExit(128 + signum)


def main() -> None:
    args = parse_args()
    signal.signal(signal.SIGTERM, _stop)
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-bench-predict-"))
    try:
        if args.experiments:
            from bench.predict.experiments import run_experiments

            run_experiments(args, workdir)
        else:
            main_run(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
