"""A real Celery worker process runs a real task through Redis (broker and result backend)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from apps.core.tasks import ping_task
from controlplane import celery_app
from tests.services import own_redis

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis_url():
    configured = os.environ.get("REDIS_URL")
    if configured:
        yield configured
    else:  # a suite run without REDIS_URL still gets a real Redis, its own
        with own_redis() as (port, _process):
            yield f"redis://127.0.0.1:{port}/0"


@pytest.mark.worker
def test_a_real_worker_runs_a_task_through_redis(redis_url, tmp_path):
    queue = f"test-{uuid.uuid4().hex[:8]}"  # nobody else consumes it
    log = tmp_path / "worker.log"
    env = {**os.environ, "REDIS_URL": redis_url, "DJANGO_SETTINGS_MODULE": "controlplane.settings"}
    worker = subprocess.Popen(
        [
            sys.executable, "-m", "celery", "-A", "controlplane", "worker",
            "--pool", "solo", "--queues", queue, "--hostname", f"{queue}@%h",
            "--without-gossip", "--without-mingle", "--without-heartbeat", "--loglevel", "INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    conf = celery_app.conf
    saved = (conf.task_always_eager, conf.broker_url, conf.result_backend)
    conf.update(task_always_eager=False, broker_url=redis_url, result_backend=redis_url)
    try:
        result = ping_task.apply_async(args=["hello"], queue=queue)
        assert result.get(timeout=60) == {"echo": "hello", "host": result.result["host"]}
        assert result.state == "SUCCESS"
    finally:
        conf.update(task_always_eager=saved[0], broker_url=saved[1], result_backend=saved[2])
        worker.terminate()
        worker.wait(timeout=30)
    output = log.read_text()
    # The worker process, not this one, ran it.
    assert f"Task core.ping[{result.id}] received" in output
    assert f"Task core.ping[{result.id}] succeeded" in output


def test_without_redis_url_tasks_run_eagerly(settings):
    assert celery_app.conf.task_always_eager is True  # the test settings' default
    assert ping_task.delay("inline").get(timeout=1)["echo"] == "inline"
