"""The web or worker side of the model runners: one zygote per process, started on first
need, and one runner per loaded model version (apps.registry.isolation.child).

The zygote starts with an empty environment: no secret, no DJANGO_SETTINGS_MODULE, no
DATABASE_URL or REDIS_URL, only the variables that keep numerical libraries to one thread. Its
working directory is a fresh directory holding links to the packages runners may import
(MODEL_RUNNER_PACKAGES), and Landlock lets runners read only that, the Python installation
and those packages.

A runner that dies, answers after its deadline or answers something that is not the protocol
is killed (through a pidfd: never another process that reused its pid) and RunnerFailed is
raised; the caller drops it, and the next call starts a new one.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from django.conf import settings

from apps.registry.artifacts.errors import ArtifactRejected, Reason
from apps.registry.artifacts.loading import ModelFacts, numeric_array, numeric_array_header
from apps.registry.isolation import protocol
from apps.registry.trust import deployment_globals

logger = logging.getLogger("bulwark.registry.isolation")

MAX_REPLY_HEADER = 64 * 1024 * 1024
MAX_REPLY_PAYLOAD = 256 * 1024 * 1024
# Everything a runner's environment holds. Numerical libraries run one thread per runner,
# and joblib runs a model's n_jobs=-1 sequentially (its pools need named semaphores in
# /dev/shm, which a runner may not touch).
RUNNER_ENVIRONMENT = {
    "PATH": "/usr/bin:/bin",
    "LANG": "C.UTF-8",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "JOBLIB_MULTIPROCESSING": "0",
    "PYTHONHASHSEED": "random",
}
START_TIMEOUT = 60.0
# Read-only system paths runners need: shared libraries an extension module may still load
# lazily, and the CPU count and quota that joblib and OpenMP read (joblib opens the cgroup's
# cpu.max even for n_jobs=-1 in predict). Never /proc: other processes' environments.
SYSTEM_READ_PATHS = (
    "/usr/lib",
    "/usr/lib64",
    "/lib",
    "/lib64",
    "/sys/fs/cgroup",
    "/sys/devices/system/cpu",
)


class RunnerFailed(Exception):
    """A runner could not start, died, timed out or broke the protocol; `reason` says which
    in words for the audit and the logs."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


def _python_paths() -> list[str]:
    """The directories the interpreter imports from that belong to the Python installation
    (standard library, compiled modules, site-packages): never the project itself."""
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    paths = set()
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry).resolve()
        if path.exists() and any(path.is_relative_to(prefix) for prefix in prefixes):
            paths.add(str(path))
    for prefix in prefixes:
        for lib in ("lib", "lib64"):
            if (prefix / lib).is_dir():
                paths.add(str(prefix / lib))
    paths.update(p for p in SYSTEM_READ_PATHS if os.path.isdir(p))
    return sorted(paths)


def _preload_modules() -> list[str]:
    modules = {name.rpartition(".")[0] for name in deployment_globals()}
    modules.add("apps.registry.artifacts.loading")
    modules.add("skops.io")
    modules.add("pandas")
    return sorted(modules)


def _release(channel: protocol.Channel, pidfd: int) -> None:
    # A runner whose handle was dropped without close(): closing the channel makes it exit.
    channel.close()
    with contextlib.suppress(OSError):
        os.close(pidfd)


@dataclass
class Runner:
    """One runner process and its channel; not thread-safe (callers hold their own lock)."""

    channel: protocol.Channel
    pid: int
    pidfd: int
    alive: bool = True
    cpu: float = 0.0  # the runner's CPU seconds so far, as it last reported them
    work_us: int = 0  # how long the runner itself took over the last call (for benchmarks)

    def __post_init__(self) -> None:
        self._finalizer = weakref.finalize(self, _release, self.channel, self.pidfd)

    def _call(self, kind: bytes, header: Any, payload: Any = b"", *, timeout: float) -> Any:
        return self._exchange(kind, header, payload, timeout=timeout)[0]

    def _exchange(
        self, kind: bytes, header: Any, payload: Any = b"", *, timeout: float
    ) -> tuple[Any, bytearray]:
        if not self.alive:
            raise RunnerFailed("the runner was stopped")
        deadline = time.monotonic() + timeout
        try:
            self.channel.set_timeout(timeout)
            self.channel.send(kind, header, payload)
            answer_kind, reply, body = self.channel.receive(
                max_header=MAX_REPLY_HEADER, max_payload=MAX_REPLY_PAYLOAD, deadline=deadline
            )
        except TimeoutError:
            self.kill()
            raise RunnerFailed(f"no answer within {timeout:g} s") from None
        except (protocol.ChannelClosed, ConnectionError, BrokenPipeError):
            self.kill()
            raise RunnerFailed("the runner died") from None
        except (protocol.BadFrame, OSError) as exc:
            self.kill()
            raise RunnerFailed(f"the runner broke the protocol ({type(exc).__name__})") from None
        if answer_kind != protocol.REPLY or not isinstance(reply, dict):
            self.kill()
            raise RunnerFailed("the runner broke the protocol (not a reply)")
        return reply, body

    def load(
        self,
        plaintext: Any,
        *,
        format: str,
        allowed_globals: list[str],
        skops_trusted: list[str],
        limit: int,
        timeout: float,
    ) -> ModelFacts:
        header = {
            "format": format,
            "allowed_globals": allowed_globals,
            "skops_trusted": skops_trusted,
            "limit": limit,
        }
        reply = self._call(protocol.LOAD, header, memoryview(plaintext), timeout=timeout)
        if reply.get("ok") is not True:
            reason = reply.get("reason")
            self.kill()
            if reason in {r.value for r in Reason}:
                raise ArtifactRejected(Reason(reason), detail=str(reply.get("detail", ""))[:500])
            raise RunnerFailed("the runner broke the protocol (a load reply)")
        names, classifier = reply.get("feature_names"), reply.get("classifier")
        named_input = reply.get("named_input")
        if (
            not isinstance(classifier, bool)
            or not isinstance(named_input, bool)
            or not (
                names is None
                or (isinstance(names, list) and all(isinstance(n, str) for n in names))
            )
        ):
            self.kill()
            raise RunnerFailed("the runner broke the protocol (a load reply)")
        return ModelFacts(
            feature_names=None if names is None else tuple(names),
            classifier=classifier,
            named_input=named_input,
        )

    def predict(self, values: Any, *, timeout: float) -> dict[str, Any]:
        """The runner's reply to rows given as JSON values or as a numeric array (sent as raw
        bytes): {"ok": True, "outputs": [...]} (a numeric answer is read back from raw
        bytes), {"ok": False, "refused": kind} (the model refused the values) or
        {"ok": False, "error": kind}."""
        described = numeric_array_header(values)
        if described is not None:
            rows = len(values)
            reply, payload = self._exchange(
                protocol.PREDICT, described, values.tobytes(), timeout=timeout
            )
        else:
            rows = len(values)
            reply, payload = self._exchange(protocol.PREDICT, values, timeout=timeout)
        cpu, work = reply.get("cpu"), reply.get("us")
        if isinstance(cpu, int | float) and not isinstance(cpu, bool):
            self.cpu = float(cpu)
        if isinstance(work, int) and not isinstance(work, bool):
            self.work_us = work
        if reply.get("ok") is True:
            try:
                if "dtype" in reply:
                    reply["outputs"] = numeric_array(reply, payload).tolist()
                outputs = reply["outputs"]
            except (KeyError, TypeError, ValueError):
                outputs = None
            if not isinstance(outputs, list) or len(outputs) != rows:
                self.kill()
                raise RunnerFailed("the runner broke the protocol (outputs for other rows)")
        elif not isinstance(reply.get("refused", reply.get("error")), str):
            self.kill()
            raise RunnerFailed("the runner broke the protocol (a predict reply)")
        return reply

    def kill(self) -> None:
        """Stop the runner now (SIGKILL through its pidfd) and close the channel."""
        if not self.alive:
            return
        self.alive = False
        try:
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        except ProcessLookupError:
            pass  # already gone
        finally:
            self._finalizer()  # closes the channel and the pidfd, once

    def close(self) -> None:
        """Ask the runner to quit, then make sure it has."""
        if self.alive:
            try:
                self.channel.set_timeout(0.5)
                self.channel.send(protocol.QUIT, {})
            except OSError:
                pass
            self.kill()


class Zygote:
    """The process that forks runners, for this process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._process: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None
        self._directory: str | None = None
        self.report: dict[str, Any] = {}

    def _start(self) -> None:
        directory = tempfile.mkdtemp(prefix="bulwark-runner-")
        # Links only, nothing to hide; a runner that gave up root must still list it.
        os.chmod(directory, 0o755)  # noqa: S103
        for package in settings.MODEL_RUNNER_PACKAGES:
            os.symlink(package, os.path.join(directory, os.path.basename(package)))
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        config = {
            "control_fd": child_end.fileno(),
            "directory": directory,
            "preload": _preload_modules(),
            "user": settings.MODEL_RUNNER_USER,
            "sandbox": settings.MODEL_RUNNER_SANDBOX,
            "read_paths": [*_python_paths(), directory, *map(str, settings.MODEL_RUNNER_PACKAGES)],
        }
        boot = (
            f"import sys; sys.path.insert(0, {directory!r}); "
            "from apps.registry.isolation.child import zygote_main; zygote_main()"
        )
        process = subprocess.Popen(  # noqa: S603  # our interpreter, our code, no shell
            [sys.executable, "-I", "-c", boot, json.dumps(config)],
            env=RUNNER_ENVIRONMENT,
            cwd=directory,
            pass_fds=[child_end.fileno()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        child_end.close()
        control = protocol.Channel(parent_end)
        control.set_timeout(START_TIMEOUT)
        try:
            kind, hello, _ = control.receive(max_header=64 * 1024)
        except (protocol.ChannelClosed, protocol.BadFrame, OSError) as exc:
            parent_end.close()
            process.kill()
            errors = process.stderr.read(64 * 1024) if process.stderr else b""
            process.wait()
            shutil.rmtree(directory, ignore_errors=True)
            logger.error(
                "model runner zygote did not start",
                extra={"error": type(exc).__name__, "stderr": errors.decode(errors="replace")},
            )
            raise RunnerFailed("the model runner could not start") from None
        finally:
            if process.stderr:
                process.stderr.close()
        if kind != protocol.HELLO or not isinstance(hello, dict) or hello.get("ready") is not True:
            parent_end.close()
            process.kill()
            process.wait()
            shutil.rmtree(directory, ignore_errors=True)
            error = hello.get("error") if isinstance(hello, dict) else None
            raise RunnerFailed(f"the model runner could not start: {error}")
        parent_end.settimeout(START_TIMEOUT)
        self._process, self._control, self._directory = process, parent_end, directory
        self.report = hello
        logger.info("model runner zygote started", extra={"sandbox": hello})

    def spawn(self) -> Runner:
        with self._lock:
            if self._process is not None and self._process.poll() is not None:
                self._forget()
            if self._process is None:
                self._start()
            control = self._control
            if control is None:
                raise RunnerFailed("the model runner zygote stopped")
            runner_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            request = {
                "memory": settings.MODEL_RUNNER_MEMORY_MB * 1024 * 1024,
                "cpu_seconds": settings.MODEL_RUNNER_CPU_SECONDS,
                "open_files": 64,
            }
            try:
                socket.send_fds(control, [protocol.encode(request)], [child_end.fileno()])
                message, fds, _flags, _address = socket.recv_fds(control, 4096, 1)
            except OSError:
                runner_end.close()
                self._forget()
                raise RunnerFailed("the model runner zygote stopped") from None
            finally:
                child_end.close()
            if not message or len(fds) != 1:
                runner_end.close()
                for fd in fds:
                    os.close(fd)
                self._forget()
                raise RunnerFailed("the model runner zygote stopped")
            channel = protocol.Channel(runner_end)
            runner = Runner(channel=channel, pid=json.loads(message)["pid"], pidfd=fds[0])
        channel.set_timeout(START_TIMEOUT)
        try:
            kind, hello, _ = channel.receive(max_header=64 * 1024)
        except (protocol.ChannelClosed, protocol.BadFrame, OSError):
            runner.kill()
            raise RunnerFailed("a model runner could not start") from None
        if kind != protocol.HELLO or not isinstance(hello, dict) or hello.get("ready") is not True:
            runner.kill()
            error = hello.get("error") if isinstance(hello, dict) else None
            raise RunnerFailed(f"a model runner could not lock itself in: {error}")
        return runner

    def _forget(self) -> None:
        if self._control is not None:
            self._control.close()
        if self._process is not None:
            self._process.kill()
            self._process.wait()
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
        self._process = self._control = self._directory = None

    def warm(self) -> None:
        """Start the zygote in the background (a web or worker process at start), so the
        first load does not wait for it; a failure is left for that load to report."""

        def start() -> None:
            with self._lock:
                if self._process is None:
                    try:
                        self._start()
                    except RunnerFailed:
                        logger.warning("model runner zygote did not start in advance")

        threading.Thread(target=start, name="bulwark-zygote-warm", daemon=True).start()

    def stop(self) -> None:
        with self._lock:
            self._forget()

    def reset_after_fork(self) -> None:
        """In a forked child: the zygote belongs to the parent; start our own when needed."""
        self._lock = threading.Lock()
        if self._control is not None:
            self._control.close()
        self._process = self._control = self._directory = None


zygote = Zygote()
os.register_at_fork(after_in_child=zygote.reset_after_fork)
