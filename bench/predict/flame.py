"""Flame graphs of the predict path under load: the production server (gunicorn, sync workers,
models in runners, PostgreSQL, Redis) set up as `python -m bench.predict` does, wrk driving one
scenario while py-spy samples every worker, one SVG per scenario:

    .venv/bin/python -m bench.predict.flame [--seconds 15] [--label after] [--revision REV]

writes bench/flamegraphs/<label>-<scenario>.svg (API key one row and 100 rows; JWT one row),
of the working tree or, with --revision, of that git revision (the same database and model).
py-spy samples the running workers from outside (no code is changed, 100 samples a second);
the widths are where the workers' time goes, the model runners' and PostgreSQL's not included.
"""

from __future__ import annotations

import argparse
import itertools
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

from bench.predict.load import Target, run_wrk
from bench.predict.run import PREDICT_PATH, checkout, setup
from bench.predict.servers import BIN, PROXY_HEADERS, ROOT, _masters, gunicorn

OUT = Path(__file__).resolve().parents[1] / "flamegraphs"


def workers_of(port: int) -> list[int]:
    """The gunicorn workers (children of the master) serving `port`."""
    master = _masters[port]
    found = subprocess.run(
        ["pgrep", "-P", str(master)], capture_output=True, text=True, check=False
    ).stdout.split()
    return [int(pid) for pid in found]


def record(pid: int, seconds: float, out: Path) -> None:
    subprocess.run(
        [
            str(BIN / "py-spy"),
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "100",
            "--format",
            "flamegraph",
            "--output",
            str(out),
            "--nonblocking",
        ],
        check=True,
        capture_output=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.predict.flame", description=__doc__)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--label", default="after")
    parser.add_argument("--revision", help="serve this git revision instead of the working tree")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="bulwark-bench-flame-"))
    seeds = itertools.count(1)
    try:
        _model, env, fx = setup(workdir, budget_for_calls=200_000)
        key = {**PROXY_HEADERS, "X-API-Key": fx.api_key}
        jwt = {**PROXY_HEADERS, "Authorization": f"Bearer {fx.access_token}"}
        root = checkout(args.revision, workdir / "served") if args.revision else ROOT
        with gunicorn(env, workdir / "gunicorn.log", root=root) as port:
            scenarios = {
                "key-1row": Target(port, PREDICT_PATH, 1, key),
                "key-100rows": Target(port, PREDICT_PATH, 100, key),
                "jwt-1row": Target(port, PREDICT_PATH, 1, jwt),
            }
            for name, target in scenarios.items():
                run_wrk(target, workdir, connections=4, seconds=3, seed=next(seeds))  # warm
                # One worker is recorded (the other serves half the load the same way).
                pid = workers_of(port)[0]
                out = OUT / f"{args.label}-{name}.svg"
                sampler = threading.Thread(target=record, args=(pid, args.seconds, out))
                sampler.start()
                result = run_wrk(
                    target, workdir, connections=4, seconds=args.seconds + 1, seed=next(seeds)
                )
                sampler.join()
                print(f"{out.relative_to(OUT.parent.parent)}: {result.rate:,.0f} req/s")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
