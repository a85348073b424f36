"""What the upload's analysis of a ~100 MB artifact costs, as ratios to reading its bytes in
the same run: the static walk of its pickle (every global named, nothing run), the signature
check (SHA-256 of the bytes and one ECDSA verification of the bundle), and, at load, the
restricted unpickler against plain `joblib.load`. No database, no Django. Run with:

    .venv/bin/python -m bench.artifact_analysis

"Reading its bytes" is one pass over the pickle stream the walk reads (bytes(memoryview): a
copy at memory bandwidth, after decompression for a compressed file); SHA-256 of the upload
is the other floor every upload pays (the envelope's digest). Two artifacts: a random forest
(many arrays, the realistic case) and a compressed copy of it (the walk must decompress
first, within the upload limit).
"""

from __future__ import annotations

import hashlib
import io
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import joblib
import numpy as np
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from model_signing import signing as model_signing
from sklearn.ensemble import RandomForestRegressor

from apps.registry.artifacts.joblib_container import pickle_stream
from apps.registry.artifacts.pickle_load import load_joblib
from apps.registry.artifacts.pickle_scan import joblib_globals
from apps.registry.signing import canonical_public_key, parse_bundle, verify_bundle

REPEATS = 7
LIMIT = 1 << 30


def forest_bytes(*, compress: int = 0) -> bytes:
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(10_000, 8))
    # Noise targets grow every tree to full depth: ~0.87 MiB per tree, ~100 MB in all.
    model = RandomForestRegressor(n_estimators=115, n_jobs=-1, random_state=0).fit(
        inputs, rng.normal(size=10_000)
    )
    buffer = io.BytesIO()
    joblib.dump(model, buffer, compress=compress)
    return buffer.getvalue()


def median_seconds(function: Callable[[], object]) -> float:
    function()
    runs = []
    for _ in range(REPEATS):
        start = time.perf_counter()
        function()
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def signed_bundle(data: bytes) -> tuple[str, str]:
    """(bundle, public key PEM) for `data`, signed as `model_signing sign key` does."""
    key = ec.generate_private_key(ec.SECP256R1())
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        (folder / "key.pem").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (folder / "model.joblib").write_bytes(data)
        model_signing.Config().use_elliptic_key_signer(private_key=folder / "key.pem").sign(
            folder / "model.joblib", folder / "model.sig"
        )
        bundle = (folder / "model.sig").read_text()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return bundle, canonical_public_key(public.decode())[0]


def measure(label: str, data: bytes) -> tuple[str, int, float, float, float, float, float, float]:
    view = memoryview(data)
    # "Reading its bytes": one pass over what the walk reads, decompressing it if joblib
    # compressed it (joblib.load pays that too).
    read = median_seconds(lambda: bytes(pickle_stream(view, limit=LIMIT)))
    sha = median_seconds(lambda: hashlib.sha256(data).digest())
    walk = median_seconds(lambda: joblib_globals(data, limit=LIMIT))
    bundle, public = signed_bundle(data)

    def verify() -> None:
        parsed, _ = parse_bundle(bundle)
        verify_bundle(parsed, public_key=public, artifact_sha256=hashlib.sha256(data).digest())

    signature = median_seconds(verify)
    allowed = joblib_globals(data, limit=LIMIT)
    restricted = median_seconds(lambda: load_joblib(data, allowed=allowed, limit=LIMIT))
    plain = median_seconds(lambda: joblib.load(io.BytesIO(data)))
    return label, len(data), read, sha, walk, signature, restricted, plain


def main() -> None:
    rows = [
        measure("random forest", forest_bytes()),
        measure("compressed (zlib 3)", forest_bytes(compress=3)),
    ]
    print(f"{'artifact':<22}{'MB':>7}{'read ms':>9}{'sha256 ms':>11}{'walk ms':>9}"
          f"{'walk/read':>11}{'walk/sha':>10}{'sig ms':>8}{'sig/sha':>9}"
          f"{'restricted load ms':>20}{'/ joblib.load':>15}")  # fmt: skip
    for label, size, read, sha, walk, signature, restricted, plain in rows:
        print(
            f"{label:<22}{size / 1e6:>7.1f}{read * 1e3:>9.1f}{sha * 1e3:>11.1f}{walk * 1e3:>9.1f}"
            f"{walk / read:>11.2f}{walk / sha:>10.2f}{signature * 1e3:>8.1f}"
            f"{signature / sha:>9.2f}{restricted * 1e3:>20.1f}{restricted / plain:>15.2f}"
        )
    print(f"\nmedians of {REPEATS} runs after one warm-up; ratios are within the same run")


if __name__ == "__main__":
    main()
