"""The host's audit writer (apps.audit.writer): concurrent workers share commits, each waits
for its own event to be durable, and predict fails closed when the writer cannot commit."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from apps.audit import writer
from apps.audit.models import PendingEvent

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def running_writer(tmp_path: Path) -> Any:
    """A writer serving in a thread of this process (its own database connection)."""
    path = tmp_path / "writer" / "writer.sock"
    listener = writer.bind(path)
    stop = threading.Event()

    def run() -> None:
        try:
            writer.serve(listener, stop=stop)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield path
    stop.set()
    thread.join(timeout=10)
    listener.close()


def test_concurrent_events_share_commits_and_each_is_durable_when_acknowledged(
    running_writer: Path, monkeypatch: Any
) -> None:
    batches: list[int] = []
    first_batch_held = threading.Event()
    release = threading.Event()
    real_insert = writer._insert

    def insert(bodies: list[str]) -> None:
        batches.append(len(bodies))
        if len(batches) == 1:  # keep the writer busy while the other workers send
            first_batch_held.set()
            release.wait(timeout=10)
        real_insert(bodies)

    monkeypatch.setattr(writer, "_insert", insert)
    bodies = [json.dumps({"n": n}) for n in range(12)]
    acknowledged: list[int] = []

    def send(n: int) -> None:
        client = writer.WriterClient(str(running_writer), timeout=10)
        try:
            client.commit(bodies[n])
            # Acknowledged: the event is already committed, seen from another connection.
            assert PendingEvent.objects.filter(body=bodies[n]).exists()
            acknowledged.append(n)
        finally:
            client.close()
            connection.close()

    first = threading.Thread(target=send, args=(0,))
    first.start()
    assert first_batch_held.wait(timeout=10)
    with ThreadPoolExecutor(max_workers=11) as pool:
        sent = [pool.submit(send, n) for n in range(1, 12)]
        time.sleep(0.5)  # all eleven are waiting on the writer, which is still committing #0
        release.set()
        for future in sent:
            future.result(timeout=10)
    first.join(timeout=10)
    assert sorted(acknowledged) == list(range(12))
    assert sum(batches) == 12 and len(batches) < 12  # commits were shared
    assert batches[0] == 1 and max(batches) > 1


def test_an_event_the_database_refuses_is_not_acknowledged(
    running_writer: Path, monkeypatch: Any
) -> None:
    from django.db import OperationalError

    def refuse(bodies: list[str]) -> None:
        raise OperationalError("the server closed the connection")

    monkeypatch.setattr(writer, "_insert", refuse)
    client = writer.WriterClient(str(running_writer), timeout=10)
    with pytest.raises(writer.WriterUnavailable, match="not committed"):
        client.commit('{"n": 1}')
    monkeypatch.undo()
    client.commit('{"n": 2}')  # the writer goes on with the next batch
    assert PendingEvent.objects.filter(body='{"n": 2}').exists()
    assert not PendingEvent.objects.filter(body='{"n": 1}').exists()


def test_a_writer_that_restarted_gets_a_fresh_connection(tmp_path: Path) -> None:
    path = tmp_path / "writer" / "writer.sock"
    client = writer.WriterClient(str(path), timeout=10)
    for _round in range(2):  # the same client, across a writer's restart
        listener = writer.bind(path)
        stop = threading.Event()

        def run(listener: Any = listener, stop: threading.Event = stop) -> None:
            try:
                writer.serve(listener, stop=stop)
            finally:
                connection.close()

        thread = threading.Thread(target=run)
        thread.start()
        client.commit(json.dumps({"round": _round}))
        stop.set()
        thread.join(timeout=10)
        listener.close()
    assert PendingEvent.objects.filter(body__startswith='{"round"').count() == 2


def test_the_socket_is_closed_to_other_users(tmp_path: Path) -> None:
    path = tmp_path / "private" / "writer.sock"
    writer.bind(path).close()
    assert path.parent.stat().st_mode & 0o777 == 0o700
    open_dir = tmp_path / "open"
    open_dir.mkdir(mode=0o755)
    os.chmod(open_dir, 0o755)  # noqa: S103  # the permissive directory the writer refuses
    with pytest.raises(RuntimeError, match="closed to others"):
        writer.bind(open_dir / "writer.sock")
