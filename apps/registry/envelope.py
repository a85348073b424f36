"""Envelope encryption of model artifacts: pure functions, no Django models.

Each artifact gets its own random 256-bit data key; the data key is stored wrapped (AES-256-GCM)
under a master key of BULWARK_MASTER_KEYS, so rotating the master key re-wraps 60 bytes per
version and never re-encrypts an artifact.

Ciphertext format, version 1::

    header  = b"BWAE" | format version (u8) | chunk size (u32 BE)                     9 bytes
    chunk i = AES-256-GCM(data key, nonce = i as 12-byte BE,
                          aad = header | context | last flag (0x00 or 0x01))   <= chunk size + 16
    context = b"bulwark-artifact" | len(model) u16 | model UTF-8 | version u64 | SHA-256 (32 B)

A STREAM-like construction: the nonce is the chunk index (safe because each data key encrypts
exactly one artifact), so a reordered or dropped chunk fails its tag; the last-chunk flag makes a
cut at a chunk boundary fail too; the header is in every chunk's AAD, so it is authenticated;
the context binds every chunk to its model, version and plaintext digest, so a ciphertext moved
to another version fails to decrypt. Every chunk but the last holds exactly `chunk size` bytes.

Digest choice (encryption). The digest is in every chunk's AAD, so it must be known before the
first chunk is encrypted: `encrypt_artifact` hashes the plaintext in a first pass, then encrypts
in a second. A seekable file (Django's in-memory upload) is rewound between the passes and never
copied; an iterable of chunks is buffered in memory first, which is bounded because uploads are
(the registry's upload size limit, default 512 MiB, refuses larger bodies before we are called).
Peak memory is the upload (1x) + that buffer (1x, iterables only) + one chunk: under 2.5x. The
alternative, one pass with the digest in an authenticated trailer chunk, would leave the digest
out of all but one chunk and make the metadata exist only after the ciphertext was consumed.
The plaintext is never written to disk: ciphertext is yielded chunk by chunk for storage.

Digest check (loading). Strictly, a separate SHA-256 pass is redundant: only the encryptor ever
held the data key, and it bound the recorded digest into every chunk, so if every chunk
authenticates the plaintext is exactly what it encrypted under that digest. What the AEAD cannot
prove is that the encryptor's digest matched its bytes (an encryptor bug, or a source that changed
between the hashing and the encrypting pass). The safe choice, implemented: hash anyway, fail
closed on a mismatch. The hash of each chunk runs in a worker thread as soon as the chunk is
decrypted (hashlib releases the GIL), so on two cores it mostly overlaps decryption.

Loading decrypts into one anonymous private memory map (1x, never on disk), checks the digest,
and only then hands the map to the format's loader (apps.registry.artifacts: the restricted
unpickler for joblib, skops for skops); with the ciphertext read from a file, peak memory is
that buffer plus the loaded object (about 2x for joblib). Every refusal of the ciphertext raises
`ArtifactRejected` before the loader is called; a loader may refuse too (`ArtifactRejected`).
"""

from __future__ import annotations

import hashlib
import hmac
import io
import mmap
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import IO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from apps.core.secrets import get_secret
from apps.core.secrets.required import parse_master_keys
from apps.registry.artifacts.errors import ArtifactRejected, Reason

MAGIC = b"BWAE"
FORMAT_VERSION = 1
DEFAULT_CHUNK_SIZE = 1 << 20
# Bounds on the header's chunk size: the header is read before anything is authenticated, so
# it must not be able to ask for a huge buffer.
MIN_CHUNK_SIZE = 1 << 10
MAX_CHUNK_SIZE = 1 << 26

_HEADER = struct.Struct(">4sBI")
_TAG = 16
_NONCE = 12
_DATA_KEY = 32
_WRAPPED_LENGTH = _NONCE + _DATA_KEY + _TAG
_MIDDLE, _LAST = b"\x00", b"\x01"

MasterKeys = Sequence[tuple[str, bytes]]
Ciphertext = bytes | bytearray | memoryview | IO[bytes]


@dataclass(frozen=True)
class EncryptedArtifact:
    """What to record for a version, and its ciphertext: the header then one item per chunk.
    Consume `ciphertext` once, while the source is still open."""

    wrapped_key: bytes
    master_key_id: str
    sha256: str
    size: int
    ciphertext: Iterator[bytes]


def master_keys_from_secrets() -> list[tuple[str, bytes]]:
    """BULWARK_MASTER_KEYS from the secrets provider, the current key first."""
    return parse_master_keys(get_secret("BULWARK_MASTER_KEYS"))


# --- data-key wrapping ------------------------------------------------------------------


@lru_cache(maxsize=32)
def _wrapping_cipher(master: bytes) -> AESGCM:
    # A key derived for this one purpose, as apps.core.sealing does for its own purposes: the
    # same master key never encrypts under two meanings.
    key = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"bulwark:artifact-data-key"
    ).derive(master)
    return AESGCM(key)


def _field(text: str) -> bytes:
    # Length-prefixed, so ("ab", "c") and ("a", "bc") never give the same associated data.
    raw = text.encode()
    return len(raw).to_bytes(2, "big") + raw


def _version_bytes(version: int) -> bytes:
    if version < 0:
        raise ValueError("a version number is not negative")
    return version.to_bytes(8, "big")


def _wrap_aad(master_key_id: str, model: str, version: int) -> bytes:
    return b"bulwark-data-key" + _field(master_key_id) + _field(model) + _version_bytes(version)


def _master(master_keys: MasterKeys, master_key_id: str) -> bytes:
    for key_id, material in master_keys:
        if key_id == master_key_id:
            return material
    raise ArtifactRejected(Reason.UNKNOWN_MASTER_KEY)


def wrap_data_key(
    data_key: bytes, *, master_key_id: str, master_keys: MasterKeys, model: str, version: int
) -> bytes:
    """nonce | AES-256-GCM(data key), bound to the master key id, model and version."""
    cipher = _wrapping_cipher(_master(master_keys, master_key_id))
    # Random nonces: one master key wraps every version's key, far below GCM's 2**32 limit.
    nonce = os.urandom(_NONCE)
    return nonce + cipher.encrypt(nonce, data_key, _wrap_aad(master_key_id, model, version))


def unwrap_data_key(
    wrapped: bytes, *, master_key_id: str, master_keys: MasterKeys, model: str, version: int
) -> bytes:
    """The data key; ArtifactRejected if the master key is unknown or the unwrap fails."""
    cipher = _wrapping_cipher(_master(master_keys, master_key_id))
    if len(wrapped) != _WRAPPED_LENGTH:
        raise ArtifactRejected(Reason.KEY_UNWRAP_FAILED)
    try:
        return cipher.decrypt(
            wrapped[:_NONCE], wrapped[_NONCE:], _wrap_aad(master_key_id, model, version)
        )
    except InvalidTag:
        raise ArtifactRejected(Reason.KEY_UNWRAP_FAILED) from None


def rewrap_data_key(
    wrapped: bytes, *, from_id: str, to_id: str, master_keys: MasterKeys, model: str, version: int
) -> bytes:
    """The same data key wrapped under `to_id`, for master-key rotation: the artifact is not
    touched, so the cost does not depend on its size."""
    data_key = unwrap_data_key(
        wrapped, master_key_id=from_id, master_keys=master_keys, model=model, version=version
    )
    return wrap_data_key(
        data_key, master_key_id=to_id, master_keys=master_keys, model=model, version=version
    )


# --- encryption -------------------------------------------------------------------------


def _context(model: str, version: int, digest: bytes) -> bytes:
    return b"bulwark-artifact" + _field(model) + _version_bytes(version) + digest


def _nonce(index: int) -> bytes:
    return index.to_bytes(_NONCE, "big")


def _check_chunk_size(chunk_size: int) -> None:
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be between {MIN_CHUNK_SIZE} and {MAX_CHUNK_SIZE}")


def _read_exact(stream: IO[bytes], size: int) -> bytes:
    # A raw or network stream may return less than asked before its end.
    parts: list[bytes] = []
    remaining = size
    while remaining:
        part = stream.read(remaining)
        if not part:
            break
        parts.append(part)
        remaining -= len(part)
    return parts[0] if len(parts) == 1 else b"".join(parts)


def _digest_pass(
    source: Iterable[bytes] | IO[bytes], chunk_size: int
) -> tuple[Callable[[], Iterator[bytes | memoryview]], bytes, int]:
    """Hash the plaintext; return how to read it again in chunks, its digest and its size."""
    hasher = hashlib.sha256()
    size = 0
    if hasattr(source, "read"):
        stream: IO[bytes] = source  # type: ignore[assignment]  # hasattr does not narrow
        if stream.seekable():
            start = stream.tell()
            while part := stream.read(chunk_size):
                hasher.update(part)
                size += len(part)

            def reread() -> Iterator[bytes | memoryview]:
                stream.seek(start)
                while part := _read_exact(stream, chunk_size):
                    yield part

            return reread, hasher.digest(), size
        pieces: Iterable[bytes] = iter(lambda: stream.read(chunk_size), b"")
    else:
        pieces = source
    # Not rewindable: keep one copy in memory (bounded by the upload size limit).
    buffer = bytearray()
    for piece in pieces:
        hasher.update(piece)
        buffer += piece

    def slices() -> Iterator[bytes | memoryview]:
        view = memoryview(buffer)
        for offset in range(0, len(buffer), chunk_size):
            yield view[offset : offset + chunk_size]

    return slices, hasher.digest(), len(buffer)


def _encrypt_chunks(
    cipher: AESGCM,
    pieces: Iterator[bytes | memoryview],
    *,
    size: int,
    chunk_size: int,
    header: bytes,
    aad: bytes,
) -> Iterator[bytes]:
    yield header
    count = -(-size // chunk_size)
    for index in range(count):
        piece = next(pieces, b"")
        if len(piece) != min(chunk_size, size - index * chunk_size):
            # The source changed length between the two passes: never store a short artifact.
            raise RuntimeError("the artifact changed while it was being encrypted")
        flag = _LAST if index == count - 1 else _MIDDLE
        yield cipher.encrypt(_nonce(index), piece, aad + flag)


def encrypt_artifact(
    source: Iterable[bytes] | IO[bytes],
    *,
    model: str,
    version: int,
    master_keys: MasterKeys,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> EncryptedArtifact:
    """Hash `source` now, under a fresh data key wrapped by the current (first) master key;
    encrypt lazily as `ciphertext` is consumed. Prefer passing the upload file itself over
    its `.chunks()`: a seekable file is read twice instead of copied. Raises ValueError for an
    empty artifact, a bad chunk size or no master key."""
    _check_chunk_size(chunk_size)
    if not master_keys:
        raise ValueError("no master key to wrap the data key with")
    master_key_id = master_keys[0][0]
    reread, digest, size = _digest_pass(source, chunk_size)
    if size == 0:
        raise ValueError("an empty artifact holds no model")
    data_key = AESGCM.generate_key(bit_length=256)
    wrapped = wrap_data_key(
        data_key, master_key_id=master_key_id, master_keys=master_keys, model=model, version=version
    )
    header = _HEADER.pack(MAGIC, FORMAT_VERSION, chunk_size)
    ciphertext = _encrypt_chunks(
        AESGCM(data_key),
        reread(),
        size=size,
        chunk_size=chunk_size,
        header=header,
        aad=header + _context(model, version, digest),
    )
    return EncryptedArtifact(wrapped, master_key_id, digest.hex(), size, ciphertext)


# --- decryption and loading -------------------------------------------------------------


def _open_ciphertext(ciphertext: Ciphertext) -> tuple[int, Callable[[int], bytes | memoryview]]:
    """The ciphertext's length and a function reading its next `n` bytes (fewer at the end)."""
    if isinstance(ciphertext, bytes | bytearray | memoryview):
        view = memoryview(ciphertext).cast("B")
        position = 0

        def read_view(size: int) -> memoryview:
            nonlocal position
            part = view[position : position + size]  # a slice, not a copy
            position += len(part)
            return part

        return len(view), read_view
    start = ciphertext.tell()
    length = ciphertext.seek(0, io.SEEK_END) - start
    ciphertext.seek(start)
    return length, lambda size: _read_exact(ciphertext, size)


def _hash_range(hasher: hashlib._Hash, buffer: mmap.mmap, start: int, stop: int) -> None:
    # A view released right here: the map can only be closed once no view of it is left.
    with memoryview(buffer)[start:stop] as part:
        hasher.update(part)


def decrypt_artifact(
    ciphertext: Ciphertext,
    *,
    wrapped_key: bytes,
    master_key_id: str,
    model: str,
    version: int,
    sha256: str,
    master_keys: MasterKeys,
) -> mmap.mmap:
    """The verified plaintext in anonymous memory, positioned at 0; the caller closes it.
    Raises ArtifactRejected for every reason in `Reason`."""
    data_key = unwrap_data_key(
        wrapped_key,
        master_key_id=master_key_id,
        master_keys=master_keys,
        model=model,
        version=version,
    )
    expected = _expected_digest(sha256)
    length, read = _open_ciphertext(ciphertext)
    header, chunk_size = _read_header(read)
    layout = _layout(length, chunk_size)
    cipher = AESGCM(data_key)
    aad = header + _context(model, version, expected)
    return _decrypt_into_map(read, cipher=cipher, aad=aad, layout=layout, expected=expected)


@dataclass(frozen=True)
class _Layout:
    """`count` blocks of `block` bytes (a chunk and its tag), the last one `last_block` bytes;
    `size` bytes of plaintext in all."""

    block: int
    count: int
    last_block: int
    size: int


def _expected_digest(sha256: str) -> bytes:
    try:
        expected = bytes.fromhex(sha256)
    except ValueError:
        expected = b""
    if len(expected) != hashlib.sha256().digest_size:
        # An unreadable recorded digest cannot be matched: fail closed.
        raise ArtifactRejected(Reason.DIGEST_MISMATCH)
    return expected


def _read_header(read: Callable[[int], bytes | memoryview]) -> tuple[bytes, int]:
    """The header's bytes and its chunk size; BAD_HEADER unless it is ours and in bounds."""
    header = bytes(read(_HEADER.size))
    if len(header) != _HEADER.size:
        raise ArtifactRejected(Reason.BAD_HEADER)
    magic, format_version, chunk_size = _HEADER.unpack(header)
    if magic != MAGIC or format_version != FORMAT_VERSION:
        raise ArtifactRejected(Reason.BAD_HEADER)
    if not MIN_CHUNK_SIZE <= chunk_size <= MAX_CHUNK_SIZE:
        raise ArtifactRejected(Reason.BAD_HEADER)
    return header, chunk_size


def _layout(length: int, chunk_size: int) -> _Layout:
    # The layout follows from the length; anything that does not fit was cut or padded.
    block = chunk_size + _TAG
    body = length - _HEADER.size
    count = -(-body // block)
    last_block = body - (count - 1) * block
    if count == 0 or last_block <= _TAG:
        raise ArtifactRejected(Reason.TAMPERED)
    size = body - count * _TAG
    return _Layout(block=block, count=count, last_block=last_block, size=size)


def _decrypt_into_map(
    read: Callable[[int], bytes | memoryview],
    *,
    cipher: AESGCM,
    aad: bytes,
    layout: _Layout,
    expected: bytes,
) -> mmap.mmap:
    """Every chunk decrypted and authenticated into a new anonymous map, hashed as it goes,
    and the digest checked; the map is closed on any failure."""
    plaintext = mmap.mmap(-1, layout.size, flags=mmap.MAP_PRIVATE)
    hasher = hashlib.sha256()
    try:
        # One worker: chunks are hashed in submission order while later ones decrypt.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="artifact-sha256") as hashing:
            offset = 0
            for index in range(layout.count):
                stop = _decrypt_chunk(
                    read,
                    cipher=cipher,
                    aad=aad,
                    layout=layout,
                    index=index,
                    plaintext=plaintext,
                    offset=offset,
                )
                hashing.submit(_hash_range, hasher, plaintext, offset, stop)
                offset = stop
        if not hmac.compare_digest(hasher.digest(), expected):
            raise ArtifactRejected(Reason.DIGEST_MISMATCH)
    except BaseException:
        plaintext.close()  # unauthenticated bytes go away with the map
        raise
    return plaintext


def _decrypt_chunk(
    read: Callable[[int], bytes | memoryview],
    *,
    cipher: AESGCM,
    aad: bytes,
    layout: _Layout,
    index: int,
    plaintext: mmap.mmap,
    offset: int,
) -> int:
    """Read chunk `index`, decrypt and authenticate it into `plaintext` at `offset`; where it
    ends. TAMPERED if it is short or fails its tag."""
    last = index == layout.count - 1
    wanted = layout.last_block if last else layout.block
    encrypted = read(wanted)
    if len(encrypted) != wanted:
        raise ArtifactRejected(Reason.TAMPERED)  # the file shrank under us
    stop = offset + wanted - _TAG
    with memoryview(plaintext)[offset:stop] as out:
        try:
            cipher.decrypt_into(_nonce(index), encrypted, aad + (_LAST if last else _MIDDLE), out)
        except InvalidTag:
            raise ArtifactRejected(Reason.TAMPERED) from None
    return stop


def load_artifact(
    ciphertext: Ciphertext,
    *,
    wrapped_key: bytes,
    master_key_id: str,
    model: str,
    version: int,
    sha256: str,
    master_keys: MasterKeys,
    loader: Callable[[mmap.mmap], object],
) -> object:
    """Unwrap, decrypt and authenticate every chunk, check the digest, and only then hand the
    plaintext to `loader` (apps.registry.artifacts: the restricted unpickler or skops, here or
    in a model runner). Raises ArtifactRejected, before the loader is called (so before any
    unpickling), when the artifact cannot be proven to be the recorded one; the loader may
    raise it too."""
    plaintext = decrypt_artifact(
        ciphertext,
        wrapped_key=wrapped_key,
        master_key_id=master_key_id,
        model=model,
        version=version,
        sha256=sha256,
        master_keys=master_keys,
    )
    with plaintext:
        return loader(plaintext)
