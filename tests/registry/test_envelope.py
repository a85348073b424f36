"""Envelope encryption of model artifacts: round trips, and every refusal happens before
anything is unpickled. Pure functions: no database."""

from __future__ import annotations

import base64
import io
import os

import joblib
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression

from apps.registry import envelope
from apps.registry.artifacts.pickle_load import load_joblib
from apps.registry.artifacts.pickle_scan import joblib_globals
from apps.registry.envelope import ArtifactRejected, Reason

CHUNK = 1024
BLOCK = CHUNK + 16
HEADER = 9
OLD = ("mk1", os.urandom(32))
NEW = ("mk2", os.urandom(32))


CALLS: list[str] = []


def restricted(plaintext: object) -> object:
    """The joblib loader, recording that plaintext reached it."""
    CALLS.append("load_joblib")
    allowed = joblib_globals(plaintext, limit=1 << 30)
    return load_joblib(plaintext, allowed=allowed, limit=1 << 30)


@pytest.fixture
def unpickled() -> list[str]:
    """Every time plaintext reached the loader (which still loads, so round trips prove the
    record sees them)."""
    CALLS.clear()
    return CALLS


def trained_model(features: int = 512) -> LinearRegression:
    rng = np.random.default_rng(7)
    inputs = rng.normal(size=(600, features))
    targets = inputs @ rng.normal(size=features) + 3.0
    return LinearRegression().fit(inputs, targets)


def dumped(model: object) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def encrypt(
    raw: bytes, *, version: int = 1, keys: list[tuple[str, bytes]] | None = None
) -> tuple[bytes, envelope.EncryptedArtifact]:
    artifact = envelope.encrypt_artifact(
        io.BytesIO(raw),
        model="pricing",
        version=version,
        master_keys=keys or [OLD],
        chunk_size=CHUNK,
    )
    return b"".join(artifact.ciphertext), artifact


def load(ciphertext: bytes | io.BytesIO, artifact: envelope.EncryptedArtifact, **overrides):
    arguments = {
        "wrapped_key": artifact.wrapped_key,
        "master_key_id": artifact.master_key_id,
        "model": "pricing",
        "version": 1,
        "sha256": artifact.sha256,
        "master_keys": [OLD],
    } | overrides
    return envelope.load_artifact(ciphertext, loader=restricted, **arguments)


def refused(unpickled: list[str], ciphertext, artifact, **overrides) -> Reason:
    with pytest.raises(ArtifactRejected) as refusal:
        load(ciphertext, artifact, **overrides)
    assert unpickled == []
    return refusal.value.reason


@pytest.fixture(scope="module")
def model() -> LinearRegression:
    return trained_model()


@pytest.fixture(scope="module")
def raw(model: LinearRegression) -> bytes:
    return dumped(model)


@pytest.fixture(scope="module")
def sealed(raw: bytes) -> tuple[bytes, envelope.EncryptedArtifact]:
    return encrypt(raw)


def test_a_trained_model_round_trips_with_the_default_chunk_size(unpickled):
    model = trained_model(features=4)
    raw = dumped(model)
    artifact = envelope.encrypt_artifact(
        io.BytesIO(raw), model="pricing", version=1, master_keys=[OLD]
    )
    ciphertext = b"".join(artifact.ciphertext)
    assert artifact.size == len(raw)
    assert raw not in ciphertext

    loaded = load(ciphertext, artifact)

    probe = np.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))
    assert unpickled == ["load_joblib"]


@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
def test_a_multi_chunk_model_round_trips(unpickled, model, raw, sealed, as_file):
    ciphertext, artifact = sealed
    assert len(raw) > 5 * CHUNK

    loaded = load(io.BytesIO(ciphertext) if as_file else ciphertext, artifact)

    probe = np.ones((3, 512))
    np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))
    assert unpickled == ["load_joblib"]


@pytest.mark.parametrize("size", [1, CHUNK - 1, CHUNK, 3 * CHUNK, 3 * CHUNK + 1])
def test_chunked_input_and_exact_chunk_multiples_decrypt_to_the_same_bytes(size):
    raw = os.urandom(size)
    pieces = [raw[start : start + 333] for start in range(0, size, 333)]
    artifact = envelope.encrypt_artifact(
        iter(pieces), model="pricing", version=1, master_keys=[OLD], chunk_size=CHUNK
    )
    ciphertext = b"".join(artifact.ciphertext)
    assert len(ciphertext) == HEADER + size + 16 * -(-size // CHUNK)

    with envelope.decrypt_artifact(
        ciphertext,
        wrapped_key=artifact.wrapped_key,
        master_key_id="mk1",
        model="pricing",
        version=1,
        sha256=artifact.sha256,
        master_keys=[OLD],
    ) as plaintext:
        assert plaintext[:] == raw


def test_an_empty_artifact_is_not_encrypted():
    with pytest.raises(ValueError, match="empty"):
        envelope.encrypt_artifact([], model="pricing", version=1, master_keys=[OLD])


@pytest.mark.parametrize(
    ("position", "expected"),
    [
        pytest.param(0, {Reason.BAD_HEADER}, id="header-magic"),
        pytest.param(HEADER - 1, {Reason.TAMPERED}, id="header-chunk-size"),
        pytest.param(HEADER + 10, {Reason.TAMPERED}, id="first-chunk"),
        pytest.param(None, {Reason.TAMPERED}, id="middle"),
        pytest.param(HEADER + BLOCK - 3, {Reason.TAMPERED}, id="first-chunk-tag"),
        pytest.param(-1, {Reason.TAMPERED}, id="last-byte"),
    ],
)
def test_a_flipped_byte_is_refused_before_unpickling(unpickled, sealed, position, expected):
    ciphertext, artifact = sealed
    tampered = bytearray(ciphertext)
    tampered[len(tampered) // 2 if position is None else position] ^= 0x01

    assert refused(unpickled, bytes(tampered), artifact) in expected


@pytest.mark.parametrize(
    ("cut", "expected"),
    [
        pytest.param(HEADER + 2 * BLOCK, Reason.TAMPERED, id="at-a-chunk-boundary"),
        pytest.param(HEADER + 2 * BLOCK + 100, Reason.TAMPERED, id="mid-chunk"),
        pytest.param(-1, Reason.TAMPERED, id="last-byte"),
        pytest.param(HEADER, Reason.TAMPERED, id="header-only"),
        pytest.param(5, Reason.BAD_HEADER, id="inside-the-header"),
    ],
)
@pytest.mark.parametrize("as_file", [False, True], ids=["bytes", "file"])
def test_a_truncated_ciphertext_is_refused_before_unpickling(
    unpickled, sealed, cut, expected, as_file
):
    ciphertext, artifact = sealed
    truncated = ciphertext[:cut]

    reason = refused(unpickled, io.BytesIO(truncated) if as_file else truncated, artifact)

    assert reason == expected


def test_appended_bytes_are_refused_before_unpickling(unpickled, sealed):
    ciphertext, artifact = sealed

    assert refused(unpickled, ciphertext + b"\x00" * 20, artifact) == Reason.TAMPERED


def test_reordered_chunks_are_refused_before_unpickling(unpickled, sealed):
    ciphertext, artifact = sealed
    first = ciphertext[HEADER : HEADER + BLOCK]
    second = ciphertext[HEADER + BLOCK : HEADER + 2 * BLOCK]
    reordered = ciphertext[:HEADER] + second + first + ciphertext[HEADER + 2 * BLOCK :]

    assert refused(unpickled, reordered, artifact) == Reason.TAMPERED


def test_a_ciphertext_swapped_between_versions_is_refused_before_unpickling(unpickled, raw):
    v1_ciphertext, v1 = encrypt(raw, version=1)
    _v2_ciphertext, v2 = encrypt(raw, version=2)
    assert v1.sha256 == v2.sha256  # same bytes: only the binding to the version tells them apart

    with_v2_metadata = refused(
        unpickled, v1_ciphertext, v1, wrapped_key=v2.wrapped_key, version=2, sha256=v2.sha256
    )
    with_v1_key_as_v2 = refused(unpickled, v1_ciphertext, v1, version=2)

    assert with_v2_metadata == Reason.TAMPERED
    assert with_v1_key_as_v2 == Reason.KEY_UNWRAP_FAILED


def test_a_ciphertext_moved_to_another_model_is_refused_before_unpickling(unpickled, sealed):
    ciphertext, artifact = sealed

    assert refused(unpickled, ciphertext, artifact, model="pricing2") == Reason.KEY_UNWRAP_FAILED


def test_a_wrong_master_key_is_refused_before_unpickling(unpickled, sealed):
    ciphertext, artifact = sealed
    impostor = [("mk1", os.urandom(32))]

    assert refused(unpickled, ciphertext, artifact, master_keys=impostor) == (
        Reason.KEY_UNWRAP_FAILED
    )


def test_an_unknown_master_key_id_is_refused_before_unpickling(unpickled, sealed):
    ciphertext, artifact = sealed

    assert refused(unpickled, ciphertext, artifact, master_key_id="mk9") == (
        Reason.UNKNOWN_MASTER_KEY
    )


@pytest.mark.parametrize("digest", ["00" * 32, "not-hex", "ab" * 31])
def test_a_wrong_recorded_digest_is_refused_before_unpickling(unpickled, sealed, digest):
    ciphertext, artifact = sealed

    # The digest is in every chunk's associated data, so a wrong one fails authentication.
    assert refused(unpickled, ciphertext, artifact, sha256=digest) in {
        Reason.TAMPERED,
        Reason.DIGEST_MISMATCH,
    }


def test_bytes_that_changed_between_hashing_and_encrypting_fail_the_digest_check(unpickled, raw):
    # The one case the AEAD cannot catch: the encryptor bound a digest its bytes do not have.
    source = io.BytesIO(raw)
    artifact = envelope.encrypt_artifact(
        source, model="pricing", version=1, master_keys=[OLD], chunk_size=CHUNK
    )
    source.getbuffer()[100] ^= 0x01
    ciphertext = b"".join(artifact.ciphertext)

    assert refused(unpickled, ciphertext, artifact) == Reason.DIGEST_MISMATCH


def test_a_rewrapped_key_loads_under_the_new_master_key_alone(unpickled, model, sealed):
    ciphertext, artifact = sealed
    rewrapped = envelope.rewrap_data_key(
        artifact.wrapped_key,
        from_id="mk1",
        to_id="mk2",
        master_keys=[NEW, OLD],
        model="pricing",
        version=1,
    )

    loaded = load(
        ciphertext, artifact, wrapped_key=rewrapped, master_key_id="mk2", master_keys=[NEW]
    )

    probe = np.ones((1, 512))
    np.testing.assert_array_equal(loaded.predict(probe), model.predict(probe))


def test_a_rewrapped_key_does_not_load_under_the_old_master_key(unpickled, sealed):
    ciphertext, artifact = sealed
    rewrapped = envelope.rewrap_data_key(
        artifact.wrapped_key,
        from_id="mk1",
        to_id="mk2",
        master_keys=[NEW, OLD],
        model="pricing",
        version=1,
    )

    old_alone = refused(unpickled, ciphertext, artifact, wrapped_key=rewrapped, master_key_id="mk2")
    old_bytes_under_new_id = refused(
        unpickled,
        ciphertext,
        artifact,
        wrapped_key=rewrapped,
        master_key_id="mk2",
        master_keys=[("mk2", OLD[1])],
    )

    assert old_alone == Reason.UNKNOWN_MASTER_KEY
    assert old_bytes_under_new_id == Reason.KEY_UNWRAP_FAILED


def test_master_keys_come_from_the_secrets_provider_current_first(monkeypatch):
    value = ",".join(f"{key_id}:{base64.b64encode(key).decode()}" for key_id, key in [NEW, OLD])
    monkeypatch.setattr(envelope, "get_secret", {"BULWARK_MASTER_KEYS": value}.__getitem__)

    assert envelope.master_keys_from_secrets() == [NEW, OLD]
