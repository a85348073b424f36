"""Real services a test starts for itself (its own ports), so it may stop them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, *, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout}s")


@contextmanager
def own_redis() -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """A throwaway redis-server on a free port; yields (port, process)."""
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="bulwark-redis-")
    process = subprocess.Popen(
        [
            shutil.which("redis-server") or "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            workdir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield port, process
    finally:
        process.kill()
        process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


class TcpProxy:
    """Forwards a local port to a real server; `stop()` makes that server vanish for clients
    connected through it, existing connections included, as a crashed server would."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.running = True
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while self.running:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self.running = False
        # shutdown() wakes the thread blocked in accept(); close() alone would not.
        with suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
                sock.close()
            except OSError:
                pass


def database_url_of(settings_dict: dict) -> str:
    """DATABASE_URL for a subprocess that must see this test's database."""
    return "postgres://{USER}@{HOST}:{PORT}/{NAME}".format(**settings_dict)


@contextmanager
def celery_worker(
    redis_url: str, log_file: Path, *, env: dict[str, str] | None = None
) -> Iterator[str]:
    """A real Celery worker process consuming a queue of its own (yielded) through Redis,
    with this process's Celery app sending to the same Redis, not eagerly, meanwhile."""
    import os
    import sys
    import uuid

    from controlplane import celery_app

    queue = f"test-{uuid.uuid4().hex[:8]}"  # nobody else consumes it
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "controlplane", "worker",
            "--pool", "solo", "--queues", queue, "--hostname", f"{queue}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
        ],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, "REDIS_URL": redis_url, **(env or {})},
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    conf = celery_app.conf
    saved = (conf.task_always_eager, conf.broker_url, conf.result_backend)
    conf.update(task_always_eager=False, broker_url=redis_url, result_backend=redis_url)
    try:
        yield queue
    finally:
        conf.update(task_always_eager=saved[0], broker_url=saved[1], result_backend=saved[2])
        worker.terminate()
        worker.wait(timeout=30)


@contextmanager
def redis_for_worker() -> Iterator[str]:
    """The suite's Redis (REDIS_URL), or a throwaway one when the suite runs without it."""
    import os

    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
        return
    with own_redis() as (port, _process):
        yield f"redis://127.0.0.1:{port}/0"


@contextmanager
def web_process(
    env: dict[str, str], log_file: Path, *, workers: int = 1, production_config: bool = False
) -> Iterator[int]:
    """A real gunicorn web server (`workers` sync worker processes) serving this checkout with
    the test settings and `env` on top; yields its port. With `production_config`, through
    controlplane/gunicorn.conf.py and its hooks (the audit writer among them)."""
    import os
    import sys

    port = free_port()
    root = Path(__file__).resolve().parents[1]
    config = ["-c", str(root / "controlplane" / "gunicorn.conf.py")] if production_config else []
    process = subprocess.Popen(
        [
            sys.executable, "-m", "gunicorn", *config, "controlplane.wsgi",
            "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
            "--forwarded-allow-ips", "", "--no-control-socket",
        ],
        cwd=root,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "controlplane.test_settings", **env},
        stdout=log_file.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        wait_for_port(port, timeout=30)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)
