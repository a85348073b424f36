"""A buffer read as a file, without copying it."""

from __future__ import annotations

import io
from typing import Any


class BufferFile(io.RawIOBase):
    """Any buffer (bytes, bytearray, an mmap) as a read-only seekable file, without copying
    it: each read copies just what it reads."""

    def __init__(self, buffer: Any) -> None:
        super().__init__()
        self._view = memoryview(buffer).cast("B")
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: len(self._view)}
        self._position = max(0, base[whence] + offset)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._position + size
        part = bytes(self._view[self._position : end])
        self._position += len(part)
        return part

    def readinto(self, target: Any) -> int:
        out = memoryview(target).cast("B")
        part = self._view[self._position : self._position + len(out)]
        out[: len(part)] = part
        self._position += len(part)
        return len(part)

    def readline(self, size: int | None = -1) -> bytes:
        end = len(self._view) if size is None or size < 0 else self._position + size
        found = bytes(self._view[self._position : end]).find(b"\n")
        return self.read(found + 1 if found >= 0 else end - self._position)

    def close(self) -> None:
        self._view.release()
        super().close()
