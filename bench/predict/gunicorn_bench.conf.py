"""controlplane/gunicorn.conf.py for `--experiments`: the same settings, gc.freeze() at worker
start only when BENCH_GC_FREEZE is not "false", and every worker's collector pauses reported
in the log when it exits (bench.predict.gcstats)."""

import os
import runpy
from pathlib import Path
from typing import Any

from bench.predict import gcstats

_PRODUCTION = runpy.run_path(
    str(Path(__file__).resolve().parents[2] / "controlplane" / "gunicorn.conf.py")
)
globals().update({name: value for name, value in _PRODUCTION.items() if name[0] != "_"})


def post_worker_init(worker: Any) -> None:
    if os.environ.get("BENCH_GC_FREEZE", "true") != "false":
        _PRODUCTION["post_worker_init"](worker)
    gcstats.install()


def worker_exit(server: Any, worker: Any) -> None:
    gcstats.report()
