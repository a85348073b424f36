"""Models that misbehave on purpose (importable, so their pickles load in tests)."""

from __future__ import annotations

from typing import Any

import numpy as np


class NanModel:
    def predict(self, matrix: Any) -> np.ndarray:
        return np.full(len(matrix), np.nan)


class RefusingModel:
    def predict(self, matrix: Any) -> np.ndarray:
        raise ValueError("Input contains values this model cannot take: /srv/models/secret.py")


class NamedFeatureModel:
    """Fitted (as scikit-learn would record it) on a feature the schema leaves optional."""

    feature_names_in_ = np.array(["price", "demand", "inventory", "season"])

    def predict(self, matrix: Any) -> np.ndarray:
        return np.zeros(len(matrix))


class SecretsHunter:
    """What an attacker's model would do in predict: look for the platform's secrets
    everywhere it can reach, and answer what it found (one JSON report per row)."""

    def predict(self, matrix: Any) -> np.ndarray:
        import json

        report = {"found": _hunt()}
        return np.array([json.dumps(report)] * len(matrix), dtype=object)


def _attempt(name: str, action: Any, found: dict[str, Any]) -> None:
    try:
        found[name] = action()
    except BaseException as exc:  # every refusal is a result here
        found[name] = f"refused: {type(exc).__name__}"


def _read(path: str) -> str:
    with open(path, "rb") as handle:
        return handle.read(1 << 20).decode(errors="replace")


def _walk(root: str) -> dict[str, str]:
    import contextlib
    import os

    seen: dict[str, str] = {}
    for directory, _dirs, files in os.walk(root, onerror=lambda exc: None):
        for name in files:
            path = os.path.join(directory, name)
            with contextlib.suppress(OSError):
                seen[path] = _read(path)
            if len(seen) > 400:
                return seen
    return seen


def _hunt() -> dict[str, Any]:
    import os
    import socket
    import sys
    from pathlib import Path

    project = str(Path(__file__).resolve().parents[2])
    found: dict[str, Any] = {
        "environ": dict(os.environ),
        "cwd": os.getcwd(),
        "uid": os.getuid(),
        "modules": sorted(m for m in sys.modules if m.split(".")[0] in {"django", "controlplane"}),
    }
    _attempt("proc_self_environ", lambda: _read("/proc/self/environ"), found)
    _attempt("proc_parent_environ", lambda: _read(f"/proc/{os.getppid()}/environ"), found)
    _attempt("proc_grandparent_status", lambda: _read(f"/proc/{os.getppid()}/status"), found)
    _attempt("project_files", lambda: _walk(project), found)
    _attempt("dotenv", lambda: _read(os.path.join(project, ".env")), found)
    _attempt("canary", lambda: _read(os.path.join(project, "var", "runner-canary.txt")), found)
    _attempt(
        "settings_file", lambda: _read(os.path.join(project, "controlplane", "settings.py")), found
    )

    def django_settings() -> dict[str, str]:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")
        import django
        from django.conf import settings

        django.setup()
        return {name: str(getattr(settings, name, "")) for name in dir(settings) if name.isupper()}

    _attempt("django_settings", django_settings, found)

    def connect(port: int) -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return "connected"

    _attempt("postgres_tcp", lambda: connect(5432), found)
    _attempt("redis_tcp", lambda: connect(6379), found)

    def unix_socket() -> str:
        client = socket.socket(socket.AF_UNIX)
        client.connect("/var/run/postgresql/.s.PGSQL.5432")
        return "connected"

    _attempt("postgres_unix", unix_socket, found)
    _attempt("system", lambda: os.system("true"), found)  # noqa: S605  # the attack

    def fork() -> str:
        if os.fork() == 0:
            os._exit(0)
        return "forked"

    _attempt("fork", fork, found)

    def write() -> str:
        with open(os.path.join(os.getcwd(), "dropped.txt"), "w") as handle:
            handle.write("x")
        return "written"

    _attempt("write", write, found)
    _attempt("kill_parent", lambda: os.kill(os.getppid(), 0) or "signalled", found)
    return found


class SlowModel:
    """Answers after a thousandth of its third feature in seconds (a hang, for the tests)."""

    def predict(self, matrix: Any) -> np.ndarray:
        import time

        time.sleep(float(np.asarray(matrix)[0][2]) / 1000)
        return np.zeros(len(matrix))


class WrongLengthModel:
    """Answers one output more than it was given rows: a runner that breaks the protocol."""

    def predict(self, matrix: Any) -> np.ndarray:
        return np.zeros(len(matrix) + 1)


class MemoryHog:
    """Allocates far past the runner's address-space limit."""

    def predict(self, matrix: Any) -> np.ndarray:
        return np.ones((1 << 40,), dtype=np.uint8)[: len(matrix)]
