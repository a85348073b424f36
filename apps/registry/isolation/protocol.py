"""Messages between a web or worker process and its model runners: one frame per message on
a unix stream socket. Django-free.

    frame = kind (1 byte) | header length (u32 BE) | payload length (u64 BE) | header | payload

The header is JSON (both ways: nothing a runner sends is ever unpickled); the payload is raw
bytes (the artifact's plaintext, once, from the parent to the runner). Whoever reads a frame
states the largest header and payload it accepts, so a runner cannot make its parent
allocate without bound.
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any

PREFIX = struct.Struct(">cIQ")
LOAD, PREDICT, QUIT, HELLO, REPLY = b"L", b"P", b"Q", b"H", b"R"


class ChannelClosed(Exception):
    """The other end closed the socket (a runner that died, a parent that went away)."""


class BadFrame(Exception):
    """A frame that is not what the protocol allows."""


def encode(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), allow_nan=True).encode()


def send(
    channel: socket.socket, kind: bytes, header: Any, payload: bytes | memoryview = b""
) -> None:
    head = encode(header)
    prefix = PREFIX.pack(kind, len(head), len(payload))
    if len(payload) <= 1 << 16:
        channel.sendall(b"".join((prefix, head, payload)))
    else:
        channel.sendall(prefix + head)
        channel.sendall(payload)


def _receive_exact(channel: socket.socket, size: int) -> bytearray:
    buffer = bytearray(size)
    view = memoryview(buffer)
    received = 0
    while received < size:
        count = channel.recv_into(view[received:])
        if count == 0:
            raise ChannelClosed()
        received += count
    return buffer


def receive(
    channel: socket.socket, *, max_header: int, max_payload: int = 0
) -> tuple[bytes, Any, bytearray]:
    """(kind, header, payload) of the next frame. ChannelClosed at end of stream, BadFrame for
    sizes over the limits or a header that is not JSON."""
    kind, header_size, payload_size = PREFIX.unpack(_receive_exact(channel, PREFIX.size))
    if header_size > max_header or payload_size > max_payload:
        raise BadFrame(f"a frame of {header_size} + {payload_size} bytes")
    raw = _receive_exact(channel, header_size)
    try:
        header = json.loads(raw)
    except (ValueError, RecursionError):
        raise BadFrame("a header that is not JSON") from None
    payload = _receive_exact(channel, payload_size) if payload_size else bytearray()
    return kind, header, payload
