"""Predict's events through the host's audit writer (apps.audit.writer): fail closed when it
cannot commit, and under load, with the writer killed mid-stream, every 2xx has its event."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from tests.apikeys.factories import ApiKeyFactory
from tests.services import database_url_of, web_process
from tests.serving.conftest import PREDICT, ROW, assert_error, audit_events, post

pytestmark = pytest.mark.django_db(transaction=True)


def test_predict_fails_closed_when_the_writer_is_down(
    client, actors, pricing, settings, tmp_path: Path
) -> None:
    settings.AUDIT_WRITER_SOCKET = str(tmp_path / "nobody-listens.sock")
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="100/m")
    before = len(audit_events("predict."))
    response = post(client, {"inputs": [ROW]}, HTTP_X_API_KEY=key)
    assert_error(response, 503, "service_unavailable")
    # Neither the success nor the refusal could be recorded: nothing, and no 2xx.
    assert len(audit_events("predict.")) == before


def writers_of(port: int) -> list[int]:
    """The audit writers started by the gunicorn master serving `port`."""
    found = subprocess.run(
        ["pgrep", "-f", "audit_writer --socket"], capture_output=True, text=True, check=False
    ).stdout.split()
    mine = []
    for pid in found:
        stat = Path(f"/proc/{pid}/stat").read_text()
        parent = stat[stat.rindex(")") + 2 :].split()[1]
        if f"127.0.0.1:{port}" in Path(f"/proc/{parent}/cmdline").read_text():
            mine.append(int(pid))
    return mine


def under_load(
    actors: dict[str, Any], media_root: Path, tmp_path: Path, interrupt: Callable[[int], None]
) -> list[tuple[int, str]]:
    """300 one-row predicts from 12 threads against 3 workers sharing one audit writer, with
    `interrupt(port)` done after the first 100 answers, while the rest are in flight; then
    predict must recover. The (status, request id) of every answer."""
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="100000/m")
    env = {
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "MEDIA_ROOT": str(media_root),
        "AUDIT_WRITER": "process",
    }
    body = json.dumps({"inputs": [ROW]})
    with web_process(env, tmp_path / "web.log", workers=3, production_config=True) as port:

        def call(_: int) -> tuple[int, str]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                conn.request(
                    "POST", PREDICT, body, {"Content-Type": "application/json", "X-API-Key": key}
                )
                response = conn.getresponse()
                response.read()
                return response.status, response.getheader("X-Request-ID") or ""
            finally:
                conn.close()

        with ThreadPoolExecutor(max_workers=12) as pool:
            calls = [pool.submit(call, n) for n in range(300)]
            while sum(future.done() for future in calls) < 100:
                time.sleep(0.01)
            interrupt(port)
            answers = [future.result() for future in calls]
        deadline = time.monotonic() + 30
        while call(0)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert call(0)[0] == 200  # recovered
    return answers


def assert_every_2xx_has_its_event(answers: list[tuple[int, str]]) -> None:
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 503}, statuses  # fail closed: 503, never a 500 or a lost 2xx
    recorded = {event["request_id"] for event in audit_events("predict.succeeded")}
    answered = [request_id for status, request_id in answers if status == 200]
    assert len(answered) >= 100
    assert [request_id for request_id in answered if request_id not in recorded] == []


def test_under_load_every_2xx_has_its_event_when_the_writer_is_killed(
    actors, pricing, media_root: Path, tmp_path: Path
) -> None:
    def kill_the_writer(port: int) -> None:
        (writer_pid,) = writers_of(port)
        os.kill(writer_pid, signal.SIGKILL)  # the master starts another

    assert_every_2xx_has_its_event(under_load(actors, media_root, tmp_path, kill_the_writer))


def test_under_load_every_2xx_has_its_event_when_postgresql_drops_the_writer(
    actors, pricing, media_root: Path, tmp_path: Path
) -> None:
    def drop_connections(port: int) -> None:
        # PostgreSQL ends every other session on the test database, the writer's among them
        # (the workers make no query per predict: their events go through the writer).
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            assert cursor.fetchall(), "no session was ended"

    assert_every_2xx_has_its_event(under_load(actors, media_root, tmp_path, drop_connections))
