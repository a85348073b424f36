"""`python -m bench.predict --experiments`: the server choices behind
controlplane/gunicorn.conf.py, each against its alternative in the same run (every
configuration gets its own server start; the list is repeated `--rounds` times, interleaved):

- worker model: 2 sync workers (4 connections) against 4 sync workers (8) and 2 gthread
  workers x 4 threads, at 16 connections (2 x workers x threads) and at the same 4; with how
  the bare view's requests spread over the two workers (share of the busier one; 50% is
  even), in several short runs;
- gc.freeze() at worker start, on and off: Bulwark (JWT) and the FastAPI baseline (with
  TCP_NODELAY, see bench.predict.uvicorn_nodelay);
- CONN_MAX_AGE: the settings' default against 0 (a new PostgreSQL connection per request);
- the app's own access log (LOG_LEVEL=info, one JSON line per request) against the bench's
  LOG_LEVEL=warning.
"""

from __future__ import annotations

import argparse
import statistics
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path

from bench.predict import gcstats
from bench.predict.load import Result, Target, run_wrk
from bench.predict.run import FASTAPI_KEY_ENV, PREDICT_PATH, check, print_table, setup
from bench.predict.servers import PROXY_HEADERS, gunicorn, uvicorn

SPREAD_RUNS = 4
SPREAD_SECONDS = 4.0


@dataclass
class Config:
    experiment: str
    label: str
    server: Callable[[Path], AbstractContextManager[int]]
    connections: int
    scenarios: tuple[tuple[str, str, int], ...]  # (label, kind, rows); kind picks the target
    spread: bool = False
    results: dict[str, list[Result]] = field(default_factory=dict)
    shares: list[float] = field(default_factory=list)
    collector: list[dict[str, float]] = field(default_factory=list)


def configs(env: dict[str, str]) -> list[Config]:
    quiet, logged = env, {**env, "LOG_LEVEL": "info"}
    no_persistent = {**env, "DATABASE_CONN_MAX_AGE": "0"}
    jwt1 = ("Bulwark, JWT", "bulwark-jwt", 1)
    jwt100 = ("Bulwark, JWT", "bulwark-jwt", 100)
    key1 = ("Bulwark, API key", "bulwark-key", 1)
    bare1 = ("(b) bare", "bare", 1)
    naive1 = ("(c) naive", "naive", 1)
    fast1 = ("(d) FastAPI", "fastapi", 1)
    fast100 = ("(d) FastAPI", "fastapi", 100)

    def django(**options: object) -> Callable[[Path], AbstractContextManager[int]]:
        server_env = options.pop("env", quiet)
        return lambda log: gunicorn(server_env, log, experiment=True, **options)  # type: ignore[arg-type]

    return [
        Config("worker model", "sync 2x1, c=4", django(), 4, (bare1, jwt1, key1), spread=True),
        Config(
            "worker model",
            "sync 4x1, c=8",
            django(workers=4),
            8,
            (bare1, jwt1, key1),
        ),
        Config(
            "worker model",
            "gthread 2x4, c=16",
            django(worker_class="gthread", threads=4),
            16,
            (bare1, jwt1, key1),
            spread=True,
        ),
        Config(
            "worker model",
            "gthread 2x4, c=4",
            django(worker_class="gthread", threads=4),
            4,
            (bare1, jwt1, key1),
            spread=True,
        ),
        Config("gc.freeze", "gunicorn sync, freeze", django(), 4, (jwt1, jwt100)),
        Config("gc.freeze", "gunicorn sync, no freeze", django(freeze=False), 4, (jwt1, jwt100)),
        Config(
            "gc.freeze",
            "uvicorn x2, freeze",
            lambda log: uvicorn(env, log, nodelay=True),
            4,
            (fast1, fast100),
        ),
        Config(
            "gc.freeze",
            "uvicorn x2, no freeze",
            lambda log: uvicorn(env, log, freeze=False, nodelay=True),
            4,
            (fast1, fast100),
        ),
        Config("CONN_MAX_AGE", "default", django(), 4, (naive1, jwt1)),
        Config(
            "CONN_MAX_AGE", "0 (connect per request)", django(env=no_persistent), 4, (naive1, jwt1)
        ),
        Config("access log", "off (LOG_LEVEL=warning)", django(), 4, (key1,)),
        Config("access log", "on (LOG_LEVEL=info)", django(env=logged), 4, (key1,)),
    ]


def run_experiments(args: argparse.Namespace, workdir: Path) -> None:
    _model, env, fx = setup(workdir, budget_for_calls=1000)
    headers = {
        "bulwark-jwt": (
            PREDICT_PATH,
            {**PROXY_HEADERS, "Authorization": f"Bearer {fx.access_token}"},
        ),
        "bulwark-key": (PREDICT_PATH, {**PROXY_HEADERS, "X-API-Key": fx.api_key}),
        "bare": ("/bench/bare/predict", PROXY_HEADERS),
        "naive": (
            "/bench/naive/predict",
            {**PROXY_HEADERS, "Authorization": f"Bearer {fx.access_token}"},
        ),
        "fastapi": ("/predict", {"X-API-Key": env[FASTAPI_KEY_ENV]}),
    }
    seeds = iter(range(1, 10**9))
    every = [config for config in configs(env) if args.only in {None, config.experiment}]
    for round_number in range(args.rounds):
        for number, config in enumerate(every):
            log = workdir / f"server-{round_number}-{number}.log"
            with config.server(log) as port:
                for label, kind, rows in config.scenarios:
                    path, sent = headers[kind]
                    target = Target(port, path, rows, sent)
                    problem = check(target)
                    if problem:  # the working tree changed under the server, most likely
                        print(f"{config.label} {label} {rows}: skipped, {problem}", flush=True)
                        continue
                    for seconds in (args.warmup, args.seconds):
                        result = run_wrk(
                            target,
                            workdir,
                            connections=config.connections,
                            seconds=seconds,
                            seed=next(seeds),
                        )
                    if result.errors:
                        print(f"{config.label} {label}: {result.errors} errors")
                    config.results.setdefault(f"{label}|{rows}", []).append(result)
                if config.spread:
                    target = Target(port, headers["bare"][0], 1, headers["bare"][1])
                    for _ in range(SPREAD_RUNS):
                        result = run_wrk(
                            target,
                            workdir,
                            connections=config.connections,
                            seconds=SPREAD_SECONDS,
                            seed=next(seeds),
                            count_workers=True,
                        )
                        counts = list(result.workers.values())
                        config.shares.append(max(counts) / sum(counts) if counts else float("nan"))
            config.collector.append(gcstats.read(log.read_text(errors="replace")))
        print(f"round {round_number + 1}/{args.rounds} done", flush=True)
    report(every, args)


def report(every: list[Config], args: argparse.Namespace) -> None:
    rows = [
        (
            "experiment",
            "configuration",
            "scenario",
            "rows",
            "req/s",
            "p50 ms",
            "p99 ms",
            "CPU ms/req",
            "busier worker",
            "full GCs",
            "GC pause ms",
        )
    ]
    for config in every:
        reported = [stats for stats in config.collector if stats["workers"]]
        full = sum(stats["full"] for stats in reported)
        pauses = sum(stats["total_ms"] for stats in reported)
        longest = max((stats["longest_ms"] for stats in reported), default=0.0)
        first = (
            " ".join(f"{share:.0%}" for share in config.shares),
            f"{full:.0f}" if reported else "?",
            f"{pauses:.0f} total, {longest:.0f} max" if reported else "?",
        )
        for key, results in config.results.items():
            label, count = key.split("|")
            rows.append(
                (
                    config.experiment,
                    config.label,
                    label,
                    count,
                    f"{statistics.median(r.rate for r in results):,.0f}",
                    f"{statistics.median(r.p50_ms for r in results):.2f}",
                    f"{statistics.median(r.p99_ms for r in results):.2f}",
                    f"{statistics.median(r.cpu_ms for r in results):.2f}",
                    *first,
                )
            )
            first = ("", "", "")
    print()
    print(
        f"wrk -t1, {args.warmup:g} s warm-up + {args.seconds:g} s, median of {args.rounds} rounds; "
        f"busier worker: its share of the bare view's requests in each {SPREAD_SECONDS:g} s run; "
        "full GCs and their pauses: generation-2 collections in all workers over all rounds "
        "(gunicorn: bench.predict.gunicorn_bench.conf.py; uvicorn: the app's lifespan)"
    )
    print()
    print_table(rows)
