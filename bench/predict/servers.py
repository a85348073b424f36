"""The servers under load, each started by the bench as its own process group and stopped by
its own pid: gunicorn (controlplane/gunicorn.conf.py, controlplane.wsgi, bench settings) and
uvicorn (the FastAPI baseline)."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
BENCH_CONF = Path(__file__).with_name("gunicorn_bench.conf.py")
# What a TLS-terminating proxy on 127.0.0.1 (a TRUSTED_PROXIES entry) tells the app.
PROXY_HEADERS = {"X-Forwarded-Proto": "https"}
_TICK = os.sysconf("SC_CLK_TCK")
_masters: dict[int, int] = {}  # port -> pid of the server started on it


def _stat(pid: str) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rindex(")") + 2 :].split()  # the fields after "(comm)", from `state`


def cpu_seconds(port: int) -> float:
    """CPU time (user + system) used so far by the server on `port`: its master and every
    descendant (workers). Busy neighbours on the machine lengthen wall-clock times, much less
    this: the server's own work per request."""
    root = _masters[port]
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat(entry)
        if fields is None:
            continue
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / _TICK
    total = 0.0
    for pid, seconds in times.items():
        ancestor = pid
        while ancestor not in {root, 0, 1} and ancestor in parents:
            ancestor = parents[ancestor]
        if ancestor == root:
            total += seconds
    return total


BACKING = ("postgres", "redis-server")  # PostgreSQL's processes (backends too) and Redis's


def backing_cpu_seconds() -> float:
    """CPU time used so far by every PostgreSQL and Redis process on this machine: the
    database and cache work a request causes (the bench runs alone against them)."""
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        if name in BACKING or name.startswith("postgres:"):
            fields = raw[raw.rindex(")") + 2 :].split()
            total += (int(fields[11]) + int(fields[12])) / _TICK
    return total


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def post(
    port: int, path: str, payload: bytes, headers: dict[str, str]
) -> tuple[int, dict[str, object] | str]:
    """One request, for the checks before a scenario: (status, JSON body or text)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST", path, body=payload, headers={"Content-Type": "application/json", **headers}
        )
        response = conn.getresponse()
        raw = response.read().decode("utf-8", "replace")
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw[:300]


def _get_status(port: int, path: str) -> int | None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", path)
        return conn.getresponse().status
    except OSError:
        return None
    finally:
        conn.close()


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # the master: it stops its own workers
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # the group this bench created for it
        process.wait()


@contextmanager
def _serve(
    command: Sequence[str],
    env: dict[str, str],
    log: Path,
    ready_path: str,
    port: int,
    root: Path = ROOT,
) -> Iterator[int]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            command, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 60
        while _get_status(port, ready_path) is None:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{command[0]} did not start:\n{tail}")
            time.sleep(0.2)
        _masters[port] = process.pid
        yield port
    finally:
        _masters.pop(port, None)
        _stop(process)


@contextmanager
def gunicorn(
    env: dict[str, str],
    log: Path,
    *,
    workers: int = 2,
    worker_class: str = "sync",
    threads: int = 1,
    experiment: bool = False,
    freeze: bool = True,
    root: Path = ROOT,
) -> Iterator[int]:
    """`gunicorn -c controlplane/gunicorn.conf.py controlplane.wsgi` on a free port. With
    `experiment`, through bench.predict's gunicorn_bench.conf.py (collector pauses reported;
    `freeze` False leaves gc.freeze() out) and the worker options given on the command line,
    which overrides the file. `root`: the checkout it serves (another revision for a
    before-and-after run)."""
    port = free_port()
    conf = BENCH_CONF if experiment else root / "controlplane" / "gunicorn.conf.py"
    command = [str(BIN / "gunicorn"), "-c", str(conf)]
    command.append("controlplane.wsgi")
    if experiment:
        command += ["--worker-class", worker_class, "--threads", str(threads)]
    server_env = {
        **env,
        "BULWARK_BIND": f"127.0.0.1:{port}",
        "WEB_CONCURRENCY": str(workers),
        "BENCH_GC_FREEZE": "true" if freeze else "false",
    }
    if root != ROOT:
        server_env["PYTHONPATH"] = str(root)
    with _serve(command, server_env, log, "/healthz", port, root):
        yield port


@contextmanager
def uvicorn(
    env: dict[str, str], log: Path, *, workers: int = 2, freeze: bool = True, nodelay: bool = False
) -> Iterator[int]:
    """`uvicorn bench.predict.fastapi_app:app --workers 2`; with `nodelay`, through
    bench.predict.uvicorn_nodelay (TCP_NODELAY on every connection)."""
    port = free_port()
    if nodelay:
        launcher = [str(BIN / "python"), "-m", "bench.predict.uvicorn_nodelay"]
    else:
        launcher = [str(BIN / "uvicorn")]
    command = [
        *launcher,
        "bench.predict.fastapi_app:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    server_env = {**env, "BENCH_GC_FREEZE": "true" if freeze else "false"}
    with _serve(command, server_env, log, "/docs", port):
        yield port
