"""POST /api/v1/compliance/checks/run, the scheduled run, and regressions."""

from __future__ import annotations

import pytest
from django.conf import settings as django_settings
from django.db import connection

from apps.compliance.checks import CHECKS
from apps.compliance.models import CheckResult
from apps.compliance.tasks import compliance_check_run_task
from tests.compliance.conftest import assert_error, audit_events, item
from tests.services import celery_worker, database_url_of, redis_for_worker

RUN = "/api/v1/compliance/checks/run"


@pytest.mark.django_db
def test_running_the_checks_answers_every_result_and_records_them(api_client, actors):
    api_client.force_authenticate(actors["security_officer"])

    response = api_client.post(RUN)

    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body) == {"results", "next"} and body["next"] is None
    assert sorted(result["check"] for result in body["results"]) == sorted(CHECKS)
    jwt = next(result for result in body["results"] if result["check"] == "jwt_lifetimes")
    assert jwt["key"] == "auth-token-expiry" and jwt["result"] == "pass"
    assert jwt["item"] == str(item("auth-token-expiry").id) and jwt["checked_at"]
    https = next(result for result in body["results"] if result["check"] == "https_production")
    assert https["result"] == "fail" and "Not production" in https["detail"]
    assert CheckResult.objects.count() == len(CHECKS)
    [event] = audit_events("compliance.checks.completed")
    assert event["details"]["trigger"] == "request"
    assert event["details"]["pass"] + event["details"]["fail"] == len(CHECKS)
    # The item shows its latest result.
    listed = api_client.get(f"/api/v1/compliance/items/{item('infra-https').id}").json()
    assert listed["check"]["result"] == "fail" and listed["check"]["detail"] == https["detail"]


@pytest.mark.django_db
def test_a_pass_that_turns_to_fail_is_audited_once(api_client, actors, settings):
    api_client.force_authenticate(actors["security_officer"])
    api_client.post(RUN)
    assert audit_events("compliance.check.regressed") == []
    settings.PREDICT_USER_RATE_LIMIT = ""

    api_client.post(RUN)
    api_client.post(RUN)  # still failing: not a new regression

    [event] = audit_events("compliance.check.regressed")
    assert event["outcome"] == "failure"
    assert event["target"] == {"type": "compliance_item", "id": "input-rate-limiting"}
    assert event["details"]["check"] == "predict_rate_limit"
    assert "PREDICT_USER_RATE_LIMIT is not set" in event["details"]["detail"]
    latest = item("input-rate-limiting").check_results.order_by("-checked_at").first()
    assert latest.result == "fail"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "expected"),
    [("admin", 200), ("security_officer", 200), ("auditor", 403), ("ml_engineer", 403)],
)
def test_who_may_run_the_checks(api_client, actors, role, expected):
    api_client.force_authenticate(actors[role])
    response = api_client.post(RUN)
    assert response.status_code == expected
    if expected == 403:
        assert_error(response, 403, "permission_denied")
        assert not CheckResult.objects.exists()


@pytest.mark.django_db
def test_the_scheduled_task_runs_the_checks_as_the_system():
    counts = compliance_check_run_task.delay().get()

    assert counts["pass"] + counts["fail"] == len(CHECKS)
    [event] = audit_events("compliance.checks.completed")
    assert event["actor"] == {"type": "system", "ref": "compliance"}
    assert event["details"]["trigger"] == "schedule"


def test_the_checks_are_on_the_beat_schedule():
    entry = django_settings.CELERY_BEAT_SCHEDULE["compliance-checks"]
    assert entry["task"] == compliance_check_run_task.name == "compliance.run_checks"
    assert entry["schedule"] <= 24 * 3600


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_runs_the_scheduled_checks(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        "DATABASE_URL": database_url_of(connection.settings_dict),
    }
    log = tmp_path / "worker.log"
    with redis_for_worker() as redis_url, celery_worker(redis_url, log, env=env) as queue:
        counts = compliance_check_run_task.apply_async(queue=queue).get(timeout=60)

    assert counts["pass"] + counts["fail"] == len(CHECKS), log.read_text()
    assert "Task compliance.run_checks[" in log.read_text()
    assert CheckResult.objects.count() == len(CHECKS)
    [event] = audit_events("compliance.checks.completed")
    assert event["actor"] == {"type": "system", "ref": "compliance"}
