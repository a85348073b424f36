"""The per-host audit writer: group commit for events that commit on their own (predict's).

Every web worker on a host hands its event to one writer process over a Unix socket and waits
for the writer's answer; the writer puts every event that arrived while it was busy into one
multi-row INSERT, commits once, then answers each: 1 when its event is durable, 0 when it is
not. A worker answers its request only after a 1 (apps.audit.services.audit_event_commit):
concurrent requests share a commit (one WAL flush for many events) and none is answered
before its own event is on disk. Fail closed: a writer that is down, slow past
AUDIT_WRITER_TIMEOUT or answers 0 is AuditUnavailable (503), never a 2xx without its event.

Frames: a 4-byte big-endian length and the event's canonical JSON; the answer is one byte per
frame, in order. The socket is made in a directory only the service's user can enter (0700),
so no other local user can hand it events; it holds no secret (the writer has the database
credentials the workers have, nothing more).

Started by gunicorn's master when AUDIT_WRITER=process (controlplane/gunicorn.conf.py), or on
its own with `manage.py audit_writer --socket PATH`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import socket
import struct
import threading
from pathlib import Path

from django.db import DatabaseError, connection

from apps.audit.models import PendingEvent

logger = logging.getLogger("bulwark.audit.writer")

LENGTH = struct.Struct(">I")
MAX_EVENT_BYTES = 1 << 20  # an event's details are bounded far below this (MAX_DETAILS_BYTES)
MAX_BATCH = 512  # events in one INSERT
COMMITTED, FAILED = b"\x01", b"\x00"
_TABLE = PendingEvent._meta.db_table


class WriterUnavailable(Exception):
    """The event was not acknowledged as committed (why is in the message, for the log)."""


# --- the writer process ------------------------------------------------------------------


def _insert(bodies: list[str]) -> None:
    """One multi-row INSERT in autocommit: committed, all of it, when it returns."""
    values = ", ".join(["(%s)"] * len(bodies))
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {_TABLE} (body) VALUES {values}", bodies)  # noqa: S608  # placeholders only


class _Peer:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = bytearray()

    def frames(self) -> list[str]:
        """Complete frames received so far; ValueError for one over the size limit."""
        found = []
        while len(self.buffer) >= LENGTH.size:
            (size,) = LENGTH.unpack_from(self.buffer)
            if size > MAX_EVENT_BYTES:
                raise ValueError(f"a frame of {size} bytes")
            end = LENGTH.size + size
            if len(self.buffer) < end:
                break
            found.append(bytes(self.buffer[LENGTH.size : end]).decode("utf-8"))
            del self.buffer[:end]
        return found


def bind(path: Path) -> socket.socket:
    """A listening socket at `path`, in a directory only this user can enter."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.parent.stat().st_uid != os.getuid() or path.parent.stat().st_mode & 0o077:
        raise RuntimeError(f"{path.parent} must belong to this user and be closed to others")
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    os.chmod(path, 0o600)
    listener.listen(256)
    return listener


def serve(listener: socket.socket, *, stop: threading.Event | None = None) -> None:
    """Accept workers and commit what they send, batch by batch, until `stop` is set."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    while stop is None or not stop.is_set():
        batch: list[tuple[_Peer, str]] = []
        timeout = 0.5
        # Wait for the first event, then take whatever else is ready now (new workers' first
        # events included) without waiting: that is the group that shares the next commit.
        while len(batch) < MAX_BATCH:
            ready = selector.select(timeout=timeout)
            if not ready:
                break
            timeout = 0
            for key, _ in ready:
                if key.fileobj is listener:
                    accepted, _ = listener.accept()
                    selector.register(accepted, selectors.EVENT_READ, _Peer(accepted))
                else:
                    batch += _receive(selector, key.data)
        for start in range(0, len(batch), MAX_BATCH):
            _commit(batch[start : start + MAX_BATCH])
    selector.close()


def _receive(selector: selectors.BaseSelector, peer: _Peer) -> list[tuple[_Peer, str]]:
    """The complete events a worker has sent; a closed or misbehaving peer is dropped."""
    try:
        data = peer.sock.recv(1 << 16)
        if not data:
            raise ConnectionResetError("closed")
        peer.buffer += data
        return [(peer, body) for body in peer.frames()]
    except (OSError, ValueError, UnicodeDecodeError):
        selector.unregister(peer.sock)
        peer.sock.close()
        return []


def _commit(batch: list[tuple[_Peer, str]]) -> None:
    try:
        _insert([body for _, body in batch])
        answer = COMMITTED
    except DatabaseError as exc:
        logger.error("audit events could not be committed", extra={"error": str(exc)})
        connection.close()  # a fresh connection for the next batch
        answer = FAILED
    for peer, _ in batch:
        # A worker that gave up waiting has answered 503 already; it reconnects next time.
        with contextlib.suppress(OSError):
            peer.sock.sendall(answer)


# --- the workers' side -------------------------------------------------------------------


class WriterClient:
    """One connection to the writer per thread (a sync worker has one)."""

    def __init__(self, path: str, timeout: float) -> None:
        self.path = path
        self.timeout = timeout
        self._local = threading.local()

    def _connection(self) -> socket.socket:
        sock: socket.socket | None = getattr(self._local, "sock", None)
        if sock is not None:
            # The writer never speaks first: anything readable now is its end of the stream
            # (it restarted). A frame sent there would be lost, so reconnect before sending.
            # One select() with no wait: no selector (and its file descriptor) per event.
            readable, _, _ = select.select([sock], [], [], 0)
            if not readable:
                return sock
            self.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        try:
            sock.connect(self.path)
        except OSError:
            sock.close()
            raise
        self._local.sock = sock
        return sock

    def close(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            sock.close()

    def commit(self, body: str) -> None:
        """Return once the writer has committed `body`; WriterUnavailable otherwise (nothing
        is retried: an event whose answer was lost may be committed, and is never sent twice)."""
        raw = body.encode("utf-8")
        try:
            sock = self._connection()
            sock.sendall(LENGTH.pack(len(raw)) + raw)
            answer = sock.recv(1)
        except OSError as exc:  # refused, reset, timed out
            self.close()
            raise WriterUnavailable(f"{type(exc).__name__}: {exc}") from None
        if answer != COMMITTED:
            if not answer:
                self.close()
            raise WriterUnavailable("not committed" if answer else "the writer closed")


_clients: dict[tuple[str, float], WriterClient] = {}


def client_for(path: str, timeout: float) -> WriterClient:
    found = _clients.get((path, timeout))
    if found is None:
        found = _clients.setdefault((path, timeout), WriterClient(path, timeout))
    return found
