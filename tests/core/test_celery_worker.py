"""A real Celery worker process runs a real task through Redis (broker and result backend)."""

from __future__ import annotations

import pytest

from apps.core.tasks import ping_task
from controlplane import celery_app
from tests.services import celery_worker, redis_for_worker


@pytest.mark.worker
def test_a_real_worker_runs_a_task_through_redis(tmp_path):
    log = tmp_path / "worker.log"
    with (
        redis_for_worker() as redis_url,
        celery_worker(
            redis_url, log, env={"DJANGO_SETTINGS_MODULE": "controlplane.settings"}
        ) as queue,
    ):
        result = ping_task.apply_async(args=["hello"], queue=queue)
        assert result.get(timeout=60) == {"echo": "hello", "host": result.result["host"]}
        assert result.state == "SUCCESS"
    output = log.read_text()
    # The worker process, not this one, ran it.
    assert f"Task core.ping[{result.id}] received" in output
    assert f"Task core.ping[{result.id}] succeeded" in output


def test_without_redis_url_tasks_run_eagerly(settings):
    assert celery_app.conf.task_always_eager is True  # the test settings' default
    assert ping_task.delay("inline").get(timeout=1)["echo"] == "inline"
