"""Production gunicorn settings for Bulwark:

    gunicorn -c controlplane/gunicorn.conf.py controlplane.wsgi

Environment: BULWARK_BIND (default 127.0.0.1:8000; the image binds 0.0.0.0:8000) and
WEB_CONCURRENCY (worker processes, default 2: one per core of the 2-core target; not
os.cpu_count(), which counts the host's cores, not a container's CPU limit). Options on the
command line override this file (`make run` serves the embedded default with one process).
The choices were measured with `python -m bench.predict --experiments`.
"""

from __future__ import annotations

import gc
import os
from typing import Any

bind = [os.environ.get("BULWARK_BIND", "127.0.0.1:8000")]
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Sync workers, one request at a time per process. A predict request is CPU-bound Python (one
# GIL per process), and with gthread a keep-alive connection stays with the worker that
# accepted it: in the bench one worker served every request while the other idled in most
# runs, with a longer tail. Sync workers close each connection, so every request is a new
# accept and the two workers share the load evenly (50-56% in every run).
worker_class = "sync"
timeout = 60
graceful_timeout = 30
# Heartbeat files in memory: a disk-backed /tmp can stall a worker's heartbeat under I/O load.
_SHM = "/dev/shm"  # noqa: S108  # gunicorn makes each heartbeat file with mkstemp (unique, 0600)
worker_tmp_dir = _SHM if os.path.isdir(_SHM) else None
# Gunicorn believes no X-Forwarded-* header: TRUSTED_PROXIES (the app's TrustedProxyMiddleware)
# is the one place that decides whom to believe.
forwarded_allow_ips = ""
# No management socket (gunicornc) in $HOME or $XDG_RUNTIME_DIR.
control_socket_disable = True
# No gunicorn access log: the app writes its own line per request (bulwark.access, JSON, no
# query string) at LOG_LEVEL=info. Errors go to stderr.
accesslog = None
errorlog = "-"


def post_worker_init(worker: Any) -> None:
    """Move everything loaded at start (Django, DRF, numpy, scikit-learn, the app) into the
    permanent generation, so that a full collection no longer walks it: without this a
    worker's full collections paused it for 100-500 ms in the bench, with it for 10-30 ms
    (the issue: p99 ~50 ms before, ~11 ms after, on the FastAPI baseline).

    With models in runners, the worker's zygote starts now, in the background, so the first
    predict does not wait about a second for it to import numpy and scikit-learn."""
    gc.freeze()
    # Here, not at the top: gunicorn reads this file before the application (and Django's
    # settings) are loaded.
    from django.conf import settings

    if settings.MODEL_ISOLATION == "process":
        from apps.registry.isolation.client import zygote

        zygote.warm()

    if _scheduler_mode() == "inprocess":
        from apps.core.scheduler import BackgroundScheduler

        _scheduler["worker"] = BackgroundScheduler()
        _scheduler["worker"].start()


# The periodic jobs of the embedded default (apps.core.scheduler). SCHEDULER=inprocess (set by
# `make run`): a thread of the worker runs CELERY_BEAT_SCHEDULE, sharing the worker's
# in-process cache; with several workers one runs it and the others wait as standbys (a file
# lock per database). Unset or "beat": nothing here (production runs `celery beat`).
_scheduler: dict[str, Any] = {}


def _scheduler_mode() -> str:
    mode = os.environ.get("SCHEDULER", "beat") or "beat"
    if mode not in {"beat", "inprocess"}:
        raise RuntimeError(f"SCHEDULER must be 'beat' or 'inprocess', not {mode!r}")
    return mode


def worker_exit(server: Any, worker: Any) -> None:
    """Let the scheduler's job in progress finish (at most 10 s), then release its lock."""
    if "worker" in _scheduler:
        _scheduler.pop("worker").stop(timeout=10)


# Group commit of predict's audit events (apps.audit.writer). With AUDIT_WRITER=process the
# master starts the host's writer before any worker, in a directory only this user can enter,
# tells the workers its socket (AUDIT_WRITER_SOCKET, read by their settings), starts it again
# if it dies (predict answers 503 meanwhile: fail closed) and stops it on exit.
_writer: dict[str, Any] = {}


def _writer_start(path: str) -> Any:
    import subprocess
    import sys
    import time
    from pathlib import Path

    manage = Path(__file__).resolve().parents[1] / "manage.py"
    command = [sys.executable, str(manage), "audit_writer", "--socket", path]
    process = subprocess.Popen(command)  # noqa: S603  # our own command, no shell
    deadline = time.monotonic() + 30
    while not os.path.exists(path) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    return process


def _writer_watch(server: Any) -> None:
    import time

    while not _writer["stopping"]:
        code = _writer["process"].wait()
        if _writer["stopping"]:
            return
        server.log.error("audit writer exited with %s; starting it again", code)
        time.sleep(0.2)
        _writer["process"] = _writer_start(_writer["path"])


# Prometheus multiprocess mode (apps.core.metrics, docs/metrics.md): with METRICS_ENABLED (the
# default) the master makes an empty directory only this user can enter and names it in
# PROMETHEUS_MULTIPROC_DIR before any worker forks; each worker writes its metrics there and a
# scrape adds them up. A directory the operator named (shared with a Celery worker) is used as
# it is. A dead worker's files are marked (its live gauges dropped); ours goes on exit.
_metrics: dict[str, str] = {}


def _metrics_start() -> None:
    if os.environ.get("METRICS_ENABLED", "true").strip().lower() == "false":
        return
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    import tempfile

    path = tempfile.mkdtemp(prefix="bulwark-metrics-")  # mode 0700, empty
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = path
    _metrics["path"] = path


def child_exit(server: Any, worker: Any) -> None:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def on_starting(server: Any) -> None:
    _scheduler_mode()  # a wrong SCHEDULER stops the start, before any worker
    _metrics_start()
    mode = os.environ.get("AUDIT_WRITER", "direct")
    if mode not in {"direct", "process"}:
        raise RuntimeError(f"AUDIT_WRITER must be 'direct' or 'process', not {mode!r}")
    if mode != "process":
        return
    import tempfile
    import threading

    path = os.path.join(tempfile.mkdtemp(prefix="bulwark-audit-writer-"), "writer.sock")
    os.environ["AUDIT_WRITER_SOCKET"] = path
    _writer.update(path=path, stopping=False, process=_writer_start(path))
    threading.Thread(target=_writer_watch, args=(server,), daemon=True).start()


def on_exit(server: Any) -> None:
    if "path" in _metrics:
        import shutil

        shutil.rmtree(_metrics.pop("path"), ignore_errors=True)
    if not _writer:
        return
    _writer["stopping"] = True
    process = _writer["process"]
    process.terminate()
    try:
        process.wait(timeout=10)
    except Exception:
        process.kill()
