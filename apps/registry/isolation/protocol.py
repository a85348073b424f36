"""Messages between a web or worker process and its model runners: one frame per message on
a unix stream socket. Django-free.

    frame = kind (1 byte) | header length (u32 BE) | payload length (u64 BE) | header | payload

The header is JSON (both ways: nothing a runner sends is ever unpickled); the payload is raw
bytes (the artifact's plaintext, once, from the parent to the runner). Whoever reads a frame
states the largest header and payload it accepts, so a runner cannot make its parent
allocate without bound.

A predict call is on the hot path: a frame is sent with one system call and, when it fits
(almost always), read with one, into a buffer the channel keeps (bench/model_isolation.py).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from typing import Any

PREFIX = struct.Struct(">cIQ")
LOAD, PREDICT, QUIT, HELLO, REPLY = b"L", b"P", b"Q", b"H", b"R"
READ_SIZE = 1 << 16


class ChannelClosed(Exception):
    """The other end closed the socket (a runner that died, a parent that went away)."""


class BadFrame(Exception):
    """A frame that is not what the protocol allows."""


_encode = json.JSONEncoder(separators=(",", ":"), allow_nan=True).encode


def encode(value: Any) -> bytes:
    return _encode(value).encode()


class Channel:
    """One end of a runner's socket, with its read buffer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._buffer = bytearray()
        self._timeout: float | None = None
        # Blocking, with the kernel's own timeouts (SO_RCVTIMEO, SO_SNDTIMEO): Python's
        # timeout mode would poll() before every send and receive.
        sock.settimeout(None)

    def set_timeout(self, timeout: float | None) -> None:
        """Bound each send and receive by `timeout` seconds (None: wait for ever); changed
        only when it differs (each change is a syscall)."""
        if timeout != self._timeout:
            self._kernel_timeout(timeout)
            self._timeout = timeout

    def _kernel_timeout(self, timeout: float | None) -> None:
        seconds = 0.0 if timeout is None else max(timeout, 0.000_001)
        value = struct.pack("ll", int(seconds), int((seconds % 1) * 1_000_000))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, value)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, value)

    def _recv(self, size: int) -> bytes:
        try:
            return self.sock.recv(size)
        except BlockingIOError:  # SO_RCVTIMEO ran out
            raise TimeoutError() from None

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()

    def send(self, kind: bytes, header: Any, payload: bytes | memoryview = b"") -> None:
        head = encode(header)
        prefix = PREFIX.pack(kind, len(head), len(payload))
        try:
            if len(payload) <= READ_SIZE:
                self.sock.sendall(b"".join((prefix, head, payload)))
            else:
                self.sock.sendall(prefix + head)
                self.sock.sendall(payload)
        except BlockingIOError:  # SO_SNDTIMEO ran out: the peer stopped reading
            raise TimeoutError() from None

    def _fill(self, size: int, deadline: float | None) -> None:
        """At least `size` bytes in the buffer. The socket's own timeout bounds the first
        read; later ones are bounded by what is left of `deadline`, so a peer that trickles
        bytes cannot hold the caller past it."""
        first = True
        while len(self._buffer) < size:
            if not first and deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self._kernel_timeout(remaining)
                self._retimed = True
            chunk = self._recv(max(READ_SIZE, size - len(self._buffer)))
            if not chunk:
                raise ChannelClosed()
            self._buffer += chunk
            first = False

    def receive(
        self, *, max_header: int, max_payload: int = 0, deadline: float | None = None
    ) -> tuple[bytes, Any, bytearray]:
        """(kind, header, payload) of the next frame. ChannelClosed at end of stream,
        BadFrame for sizes over the limits or a header that is not JSON, TimeoutError past
        the deadline (or the socket's own timeout)."""
        self._retimed = False
        try:
            self._fill(PREFIX.size, deadline)
            kind, header_size, payload_size = PREFIX.unpack_from(self._buffer)
            if header_size > max_header or payload_size > max_payload:
                raise BadFrame(f"a frame of {header_size} + {payload_size} bytes")
            end = PREFIX.size + header_size
            self._fill(end, deadline)
            try:
                header = json.loads(self._buffer[PREFIX.size : end])
            except (ValueError, RecursionError):
                raise BadFrame("a header that is not JSON") from None
            payload = self._payload(end, payload_size, deadline)
        finally:
            if self._retimed:
                self._kernel_timeout(self._timeout)
        return kind, header, payload

    def _payload(self, start: int, size: int, deadline: float | None) -> bytearray:
        """The payload after the header; the buffer keeps whatever follows it."""
        held = self._buffer[start : start + size]
        rest = self._buffer[start + size :]
        self._buffer = rest
        if len(held) == size:
            return held
        payload = bytearray(size)
        payload[: len(held)] = held
        view = memoryview(payload)
        received = len(held)
        while received < size:
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError()
                self._kernel_timeout(remaining)
                self._retimed = True
            try:
                count = self.sock.recv_into(view[received:])
            except BlockingIOError:
                raise TimeoutError() from None
            if count == 0:
                raise ChannelClosed()
            received += count
        return payload
