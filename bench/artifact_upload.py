"""Peak memory of the server while a ~100 MB artifact is uploaded THROUGH THE API, per format,
against the artifact's size; and, for comparison, the verified load of the stored version in
a fresh process. Run with:

    .venv/bin/python -m bench.artifact_upload

Each case starts its own gunicorn (one sync worker, as `make run` but without threads) on a
free loopback port, with the test settings on a dedicated database `bulwark_bench_upload`
(created if missing, migrated; its registry and audit tables are emptied at every run, so
never point this at a database that matters) and a temporary MEDIA_ROOT (removed afterwards).
A small upload of the same format warms the worker; then the worker's peak resident set is
reset (`/proc/<pid>/clear_refs`, 5) and a 100 MB multipart POST to
/api/v1/models/{name}/versions is streamed from this process with http.client, 1 MiB at a
time, so the client's own memory does not matter. Peak RSS growth = the worker's VmHWM after
the response minus its VmRSS at the reset.

Cases: a random forest (many small arrays: the realistic case) as joblib and as skops, and a
single dense 100 MB array as skops (the worst case for skops's upload inspection, which reads
every array member into memory while it builds its node tree).
"""

from __future__ import annotations

import http.client
import importlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH_DB = "bulwark_bench_upload"
SERVER_URL = "postgres://postgres@127.0.0.1:5432"
MODEL = "bench-upload"
SCHEMA = {
    "type": "object",
    "properties": {f"x{index}": {"type": "number"} for index in range(8)},
}
AIM = 2.5
PIECE = 1 << 20


# --- artifacts --------------------------------------------------------------------------------


def random_forest() -> object:
    import numpy as np
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(10_000, 8))
    # Noise targets grow every tree to full depth: ~0.87 MiB per tree (as bench.artifact_load).
    return RandomForestRegressor(n_estimators=115, n_jobs=-1, random_state=0).fit(
        inputs, rng.normal(size=10_000)
    )


def dense_array() -> object:
    import numpy as np
    from sklearn.linear_model import LinearRegression

    model = LinearRegression()
    model.coef_ = np.random.default_rng(0).normal(size=12_500_000)
    model.intercept_ = 0.0
    model.n_features_in_ = 12_500_000
    return model


def joblib_bytes(model: object) -> bytes:
    import joblib

    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def skops_bytes(model: object) -> bytes:
    import skops.io

    return skops.io.dumps(model)


CASES: list[tuple[str, str, Callable[[], object]]] = [
    ("random forest", "joblib", random_forest),
    ("random forest", "skops", random_forest),
    ("dense array", "skops", dense_array),
]


# --- setup ------------------------------------------------------------------------------------


def setup() -> str:
    """The environment shared with the servers and children; Django set up here too."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{SERVER_URL}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [BENCH_DB]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(BENCH_DB)))
    from apps.core.secrets.required import REQUIRED_SECRETS

    media = tempfile.mkdtemp(prefix="bulwark-bench-upload-")
    os.environ.update(
        DATABASE_URL=f"{SERVER_URL}/{BENCH_DB}",
        DJANGO_SETTINGS_MODULE="controlplane.test_settings",
        BULWARK_DOTENV=os.devnull,
        MEDIA_ROOT=media,
        LOG_LEVEL=os.environ.get("LOG_LEVEL", "warning"),
        MAX_ARTIFACT_MB="512",
    )
    # No Redis: the in-process cache and eager tasks are enough for an upload.
    os.environ.pop("REDIS_URL", None)
    # Secrets of this run, inherited by the servers and children (the test settings would
    # otherwise draw different ones per process, and tokens would not verify).
    for spec in REQUIRED_SECRETS:
        os.environ.setdefault(spec.name, spec.generate())
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)
    return media


def empty_tables() -> None:
    from django.db import connection

    from bench._db import AUDIT_TABLES

    tables = ["registry_modelversion", "registry_registeredmodel", *AUDIT_TABLES]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")


def access_token() -> str:
    """A JWT of an ML engineer (models.write), registering the bench model too."""
    from apps.accounts.models import Role, User
    from apps.accounts.tokens import token_pair_issue
    from apps.registry.models import RegisteredModel

    user, _ = User.objects.get_or_create(username="bench-uploader")
    user.roles.set([Role.objects.get_or_create(name="ml_engineer")[0]])
    RegisteredModel.objects.get_or_create(name=MODEL, defaults={"owner": user})
    return token_pair_issue(user=user)["access"]


# --- the server -------------------------------------------------------------------------------


def status_kib(pid: int | str, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Server:
    """gunicorn with one sync worker; `worker` is the pid that handles requests."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [
                str(Path(sys.executable).with_name("gunicorn")),
                "controlplane.wsgi",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                "1",
                "--timeout",
                "300",
                "--forwarded-allow-ips",
                "",
                "--no-control-socket",
                "--log-level",
                "warning",
            ],
            env=os.environ.copy(),
        )
        self.worker = self._wait_for_worker()

    def _wait_for_worker(self) -> int:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError("gunicorn exited during startup")
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            pids = children.read_text().split() if children.exists() else []
            if pids and self._answers():
                return int(pids[0])
            time.sleep(0.2)
        raise RuntimeError("gunicorn did not answer /healthz within 60 s")

    def _answers(self) -> bool:
        try:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        except OSError:
            return False

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)


def upload(port: int, token: str, content: bytes, artifact_format: str) -> dict[str, Any]:
    """POST a version as multipart, the body streamed in 1 MiB pieces."""
    boundary = uuid.uuid4().hex

    def field(name: str, value: str) -> bytes:
        return (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()

    head = (
        field("format", artifact_format)
        + field("input_schema", json.dumps(SCHEMA))
        + (
            f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; '
            f'filename="model.{artifact_format}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
    )
    tail = f"\r\n--{boundary}--\r\n".encode()

    def body() -> Iterator[bytes | memoryview]:
        yield head
        view = memoryview(content)
        for offset in range(0, len(content), PIECE):
            yield view[offset : offset + PIECE]
        yield tail

    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    connection.request(
        "POST",
        f"/api/v1/models/{MODEL}/versions",
        body=body(),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": f"multipart/form-data; boundary={boundary}",
            "Content-Length": str(len(head) + len(content) + len(tail)),
        },
    )
    response = connection.getresponse()
    answer = json.loads(response.read())
    if response.status != 201:
        raise RuntimeError(f"upload answered {response.status}: {answer}")
    return answer


def upload_peak(token: str, content: bytes, artifact_format: str, warm: bytes) -> tuple[int, int]:
    """(peak RSS growth of the worker in bytes, version number) for one upload."""
    server = Server()
    try:
        upload(server.port, token, warm, artifact_format)
        Path(f"/proc/{server.worker}/clear_refs").write_text("5")  # VmHWM := VmRSS
        baseline = status_kib(server.worker, "VmRSS")
        answer = upload(server.port, token, content, artifact_format)
        peak = status_kib(server.worker, "VmHWM")
    finally:
        server.stop()
    assert answer["size"] == len(content), answer
    return (peak - baseline) * 1024, int(answer["version"])


# --- the verified load, in a fresh process ------------------------------------------------


def child_load(number: str) -> None:
    """Prints the peak RSS growth (bytes) of `model_version_load` of version `number`."""
    import django

    django.setup()
    for module in ("joblib", "skops.io", "sklearn.ensemble"):
        importlib.import_module(module)  # imported first: imports are not the load's memory

    from apps.registry.models import ModelVersion
    from apps.registry.version_loading import model_version_load

    version = ModelVersion.objects.select_related("model").get(
        model__name=MODEL, number=int(number)
    )
    Path("/proc/self/clear_refs").write_text("5")
    baseline = status_kib("self", "VmRSS")
    model = model_version_load(version=version)
    assert model is not None
    print((status_kib("self", "VmHWM") - baseline) * 1024)


def load_peak(number: int) -> int:
    result = subprocess.run(
        [sys.executable, "-m", "bench.artifact_upload", "--child-load", str(number)],
        capture_output=True,
        check=True,
        text=True,
    )
    return int(result.stdout.strip().splitlines()[-1])


# --- the run ----------------------------------------------------------------------------------


def main() -> None:
    media = setup()
    try:
        empty_tables()
        token = access_token()
        from sklearn.linear_model import LinearRegression

        tiny = LinearRegression().fit([[0.0] * 8, [1.0] * 8], [0.0, 1.0])
        built: dict[str, object] = {}
        rows = []
        for name, artifact_format, build in CASES:
            if name not in built:
                built[name] = build()
            dump = skops_bytes if artifact_format == "skops" else joblib_bytes
            content = dump(built[name])
            warm = dump(tiny)
            growth, number = upload_peak(token, content, artifact_format, warm)
            loaded = load_peak(number)
            rows.append((name, artifact_format, len(content), growth, loaded))
            del content
    finally:
        shutil.rmtree(media, ignore_errors=True)

    print(f"Artifact upload through the API — {os.cpu_count()} cores, gunicorn 1 sync worker")
    print()
    print(
        "| artifact | format | size | upload: peak RSS growth | ratio | aim | "
        "verified load (fresh process): peak RSS growth | ratio |"
    )
    print("| --- | --- | ---: | ---: | ---: | --- | ---: | ---: |")
    for name, artifact_format, size, growth, loaded in rows:
        verdict = "met" if growth / size < AIM else "MISSED"
        print(
            f"| {name} | {artifact_format} | {size / 1e6:.1f} MB | {growth / 1e6:.1f} MB "
            f"| {growth / size:.2f}x | < {AIM}x: {verdict} | {loaded / 1e6:.1f} MB "
            f"| {loaded / size:.2f}x |"
        )
    print()
    print(
        "(peak RSS growth = VmHWM after minus VmRSS before, the peak reset with clear_refs; "
        "upload: the gunicorn worker; load: decrypt + verify + format loader, fresh process)"
    )


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--child-load":
        child_load(sys.argv[2])
    else:
        main()
