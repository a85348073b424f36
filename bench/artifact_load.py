"""Cost of envelope-encrypted model artifacts against the same bytes unprotected, in one run:
verified load (unwrap + decrypt + SHA-256 + joblib.load) against plain `joblib.load` from memory,
envelope decrypt throughput against `cryptography`'s AES-GCM on one buffer, and peak memory
while encrypting and loading, each in a fresh child process. No database. Run with:

    .venv/bin/python -m bench.artifact_load

Two ~100 MB artifacts: a random forest (many small arrays, the realistic case) and a single
dense array (joblib.load is then little more than a memcpy: the worst case for the ratio).
"""

from __future__ import annotations

import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression

from apps.registry import envelope

MODEL = "pricing"
VERSION = 1
REPEATS = 7


def random_forest() -> object:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(10_000, 8))
    # Noise targets grow every tree to full depth: ~0.87 MiB per tree.
    return RandomForestRegressor(n_estimators=115, n_jobs=-1, random_state=0).fit(
        inputs, rng.normal(size=10_000)
    )


def dense_array() -> object:
    model = LinearRegression()
    model.coef_ = np.random.default_rng(0).normal(size=12_500_000)
    model.intercept_ = 0.0
    return model


CASES: dict[str, Callable[[], object]] = {
    "random forest": random_forest,
    "dense array": dense_array,
}


def dumped(model: object) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def median_seconds(function: Callable[[], object]) -> float:
    function()  # warm-up: page faults of the first large allocation are not the steady state
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


# --- children: one measurement each, in a fresh interpreter --------------------------------


def child(mode: str, spec: dict[str, str]) -> None:
    """Prints (peak RSS - RSS before the work) in bytes."""
    keys = [("mk1", base64.b64decode(spec["key"]))]
    baseline = status_kib("VmRSS")
    if mode.startswith("encrypt"):
        # Like Django's in-memory upload handler: the body arrives in pieces into a BytesIO.
        upload = io.BytesIO()
        while piece := sys.stdin.buffer.read(1 << 20):
            upload.write(piece)
        upload.seek(0)
        source = upload if mode == "encrypt-file" else iter(lambda: upload.read(1 << 16), b"")
        artifact = envelope.encrypt_artifact(source, model=MODEL, version=VERSION, master_keys=keys)
        with open(spec["ciphertext"], "wb") as sink:
            for part in artifact.ciphertext:
                sink.write(part)
    elif mode == "load":
        with open(spec["ciphertext"], "rb") as stored:
            loaded = envelope.load_artifact(
                stored,
                wrapped_key=base64.b64decode(spec["wrapped_key"]),
                master_key_id="mk1",
                model=MODEL,
                version=VERSION,
                sha256=spec["sha256"],
                master_keys=keys,
            )
        assert loaded is not None
    elif mode == "plain-load":
        upload = io.BytesIO()
        while piece := sys.stdin.buffer.read(1 << 20):
            upload.write(piece)
        upload.seek(0)
        assert joblib.load(upload) is not None
    print((status_kib("VmHWM") - baseline) * 1024)


def peak_bytes(mode: str, spec: dict[str, str], stdin: bytes = b"") -> int:
    result = subprocess.run(
        [sys.executable, "-m", "bench.artifact_load", "--child", mode, json.dumps(spec)],
        input=stdin,
        capture_output=True,
        check=True,
    )
    return int(result.stdout)


# --- the run ------------------------------------------------------------------------------


def verdict(value: float, aim: float, *, below: bool) -> str:
    met = value <= aim if below else value >= aim
    return "met" if met else "MISSED"


def run_case(name: str, build: Callable[[], object], workdir: Path) -> list[tuple[str, ...]]:
    raw = dumped(build())
    size = len(raw)
    keys = [("mk1", os.urandom(32))]
    artifact = envelope.encrypt_artifact(
        io.BytesIO(raw), model=MODEL, version=VERSION, master_keys=keys
    )
    ciphertext = b"".join(artifact.ciphertext)
    metadata = {
        "wrapped_key": artifact.wrapped_key,
        "master_key_id": "mk1",
        "model": MODEL,
        "version": VERSION,
        "sha256": artifact.sha256,
        "master_keys": keys,
    }

    plain = median_seconds(lambda: joblib.load(io.BytesIO(raw)))
    verified = median_seconds(lambda: envelope.load_artifact(ciphertext, **metadata))
    decrypt = median_seconds(lambda: envelope.decrypt_artifact(ciphertext, **metadata).close())
    gcm, nonce = AESGCM(os.urandom(32)), os.urandom(12)
    one_buffer = gcm.encrypt(nonce, raw, None)
    machine = median_seconds(lambda: gcm.decrypt(nonce, one_buffer, None))
    # The cipher alone, into memory already faulted in: what no fresh-buffer decrypt can reach.
    reused = bytearray(size)
    cipher_only = median_seconds(lambda: gcm.decrypt_into(nonce, one_buffer, None, reused))

    spec = {
        "key": base64.b64encode(keys[0][1]).decode(),
        "ciphertext": str(workdir / "artifact.bwae"),
        "wrapped_key": base64.b64encode(artifact.wrapped_key).decode(),
        "sha256": artifact.sha256,
    }
    Path(spec["ciphertext"]).write_bytes(ciphertext)  # ciphertext only: plaintext never on disk
    peak_plain = peak_bytes("plain-load", spec, raw) / size
    peak_load = peak_bytes("load", spec) / size
    peak_file = peak_bytes("encrypt-file", spec, raw) / size
    peak_chunks = peak_bytes("encrypt-chunks", spec, raw) / size

    mb = size / 1e6
    label = f"{name} ({mb:.0f} MB)"
    load_ratio = verified / plain
    speed = mb / decrypt / (mb / machine)
    return [
        (label, "plain joblib.load from memory", f"{plain * 1e3:.0f} ms", "baseline", ""),
        (
            "",
            "verified load (unwrap+decrypt+sha256+load)",
            f"{verified * 1e3:.0f} ms",
            f"{load_ratio:.2f}x",
            f"aim <= 1.5x: {verdict(load_ratio, 1.5, below=True)}",
        ),
        ("", "AESGCM.decrypt, one buffer", f"{mb / machine:.0f} MB/s", "baseline", ""),
        (
            "",
            "envelope decrypt (chunks+sha256)",
            f"{mb / decrypt:.0f} MB/s",
            f"{speed:.2f}x",
            f"aim >= 0.7x: {verdict(speed, 0.7, below=False)}",
        ),
        (
            "",
            "(ref.) AESGCM.decrypt_into a reused buffer",
            f"{mb / cipher_only:.0f} MB/s",
            f"{cipher_only / decrypt:.2f}x",
            "",
        ),
        ("", "(ref.) peak RSS, plain joblib.load", "", f"{peak_plain:.2f}x size", ""),
        (
            "",
            "peak RSS, verified load from file",
            "",
            f"{peak_load:.2f}x size",
            f"aim < 2.5x: {verdict(peak_load, 2.5, below=True)}",
        ),
        (
            "",
            "peak RSS, encrypt upload file",
            "",
            f"{peak_file:.2f}x size",
            f"aim < 2.5x: {verdict(peak_file, 2.5, below=True)}",
        ),
        (
            "",
            "peak RSS, encrypt chunk iterator",
            "",
            f"{peak_chunks:.2f}x size",
            f"aim < 2.5x: {verdict(peak_chunks, 2.5, below=True)}",
        ),
    ]


def main() -> None:
    rows = [("artifact", "measure", "value", "ratio", "aim")]
    with tempfile.TemporaryDirectory() as workdir:
        for name, build in CASES.items():
            rows.extend(run_case(name, build, Path(workdir)))
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    print(f"(medians of {REPEATS}; peak RSS = VmHWM - VmRSS before the work, fresh process)")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], json.loads(sys.argv[3]))
    else:
        main()
