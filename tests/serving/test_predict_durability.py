"""Predict's events through the host's audit writer (apps.audit.writer): fail closed when it
cannot commit, and under load, with the writer killed mid-stream, every 2xx has its event."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

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


def test_under_load_every_2xx_has_its_event_when_the_writer_is_killed(
    actors, pricing, media_root: Path, tmp_path: Path
) -> None:
    _, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="100000/m")
    env = {
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "MEDIA_ROOT": str(media_root),
        "AUDIT_WRITER": "process",
    }
    body = json.dumps({"inputs": [ROW]})
    answers: list[tuple[int, str]] = []
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

        (writer_pid,) = writers_of(port)
        with ThreadPoolExecutor(max_workers=12) as pool:
            calls = [pool.submit(call, n) for n in range(300)]
            while sum(future.done() for future in calls) < 100:
                time.sleep(0.01)
            os.kill(writer_pid, signal.SIGKILL)  # mid-load: requests are in flight
            answers += [future.result() for future in calls]
        # The master starts a writer again: predict recovers.
        deadline = time.monotonic() + 30
        while call(0)[0] != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert call(0)[0] == 200
    statuses = {status for status, _ in answers}
    assert statuses <= {200, 503}, statuses
    recorded = {event["request_id"] for event in audit_events("predict.succeeded")}
    answered = [request_id for status, request_id in answers if status == 200]
    assert answered and all(request_id in recorded for request_id in answered)
