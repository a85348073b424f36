"""The bytes around a joblib pickle: joblib compresses the whole stream with zlib, gzip, bz2,
lzma or xz (recognised by the same magic prefixes as `joblib.numpy_pickle_utils`), and writes
each numpy array's raw data right after the pickled `NumpyArrayWrapper` that describes it.

Decompression is bounded: a small upload must not unpack to more memory than the limit.
"""

from __future__ import annotations

import bz2
import lzma
import zlib
from collections.abc import Callable
from typing import Any

from apps.registry.artifacts.errors import ArtifactRejected, Reason

# Prefixes in joblib's order of detection (joblib/compressor.py).
_ZLIB, _GZIP, _BZ2, _LZMA, _XZ = b"\x78", b"\x1f\x8b", b"BZ", b"]\x00\x00", b"\xfd7zXZ"
_LZ4 = b"\x04\x22\x4d\x18"
_OLD_JOBLIB = b"ZF"  # joblib < 0.10: companion .npy files; not supported

WRAPPER = "joblib.numpy_pickle.NumpyArrayWrapper"
# How protocols 0 and 1 make an object without NEWOBJ (copyreg.__reduce_ex__).
RECONSTRUCTOR = "copyreg._reconstructor"
# What a NumpyArrayWrapper's state may hold (joblib >= 1.2 adds the alignment).
WRAPPER_KEYS = frozenset(
    {"subclass", "shape", "order", "dtype", "allow_mmap", "numpy_array_alignment_bytes"}
)
WRAPPER_REQUIRED = frozenset({"subclass", "shape", "order", "dtype"})
ARRAY_SUBCLASS = "numpy.ndarray"


def _decompressor(data: bytes | bytearray | memoryview) -> tuple[str, Callable[[], Any]] | None:
    head = bytes(data[:8])
    if head.startswith(_OLD_JOBLIB):
        raise ArtifactRejected(
            Reason.UNREADABLE, detail="was written by joblib older than 0.10; re-save it"
        )
    if head.startswith(_ZLIB):
        return "zlib", lambda: zlib.decompressobj(zlib.MAX_WBITS)
    if head.startswith(_GZIP):
        return "gzip", lambda: zlib.decompressobj(zlib.MAX_WBITS | 16)
    if head.startswith(_BZ2):
        return "bz2", bz2.BZ2Decompressor
    if head.startswith(_LZMA):
        return "lzma", lambda: lzma.LZMADecompressor(lzma.FORMAT_ALONE)
    if head.startswith(_XZ):
        return "xz", lambda: lzma.LZMADecompressor(lzma.FORMAT_XZ)
    if head.startswith(_LZ4):
        raise ArtifactRejected(
            Reason.UNREADABLE, detail="is lz4-compressed; use zlib, gzip, bz2, lzma or xz"
        )
    return None


def pickle_stream(data: bytes | bytearray | memoryview, *, limit: int) -> memoryview:
    """The pickle stream of a joblib file: `data` itself, or its decompression when it is
    compressed. ArtifactRejected(UNREADABLE) if it does not decompress, or unpacks to more
    than `limit` bytes, or carries anything after the compressed stream."""
    found = _decompressor(data)
    if found is None:
        return memoryview(data).cast("B")
    name, make = found
    decompressor = make()
    out = bytearray()
    view = memoryview(data).cast("B")
    step = 1 << 20
    fed = 0
    try:
        for offset in range(0, len(view), step):
            if decompressor.eof:
                break  # input left after the end of the stream: refused below
            pending: Any = view[offset : offset + step]
            fed = offset + len(pending)
            # Never more than what is left of the limit: a bomb stops at limit + 1 bytes.
            while pending is not None and len(out) <= limit:
                out += decompressor.decompress(pending, limit + 1 - len(out))
                if hasattr(decompressor, "unconsumed_tail"):  # zlib keeps unread input here
                    pending = decompressor.unconsumed_tail or None
                else:  # bz2 and lzma keep it inside until asked again
                    done = decompressor.needs_input or decompressor.eof
                    pending = None if done else b""
            if len(out) > limit:
                break
    except (zlib.error, OSError, EOFError, lzma.LZMAError, ValueError):
        raise ArtifactRejected(Reason.UNREADABLE, detail=f"is not a valid {name} stream") from None
    if len(out) > limit:
        raise ArtifactRejected(
            Reason.UNREADABLE, detail=f"unpacks to more than the limit of {limit} bytes"
        )
    if not decompressor.eof or decompressor.unused_data or fed < len(view):
        raise ArtifactRejected(
            Reason.UNREADABLE, detail=f"is a truncated {name} stream or has data after it"
        )
    return memoryview(out)
