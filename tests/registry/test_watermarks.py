"""Watermark sets (sealed on the version), verification jobs (API, real worker), the daily
schedule, and the suspect-endpoint job's host allow-list."""

from __future__ import annotations

import http.client
import http.server
import io
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pytest
from django.db import connection
from sklearn.tree import DecisionTreeClassifier

from apps.accounts.models import Role
from apps.registry.models import ModelVersion, Stage, WatermarkKind, WatermarkResult
from apps.registry.tasks import watermark_verify_scheduled_task, watermark_verify_task
from apps.registry.watermarks import (
    suspect_endpoint_check,
    watermark_job_create,
    watermark_unseal,
    watermark_verify,
)
from controlplane import celery_app
from tests.accounts.factories import UserFactory
from tests.registry.conftest import assert_error, audit_events, make_model, stored_files, upload
from tests.services import celery_worker, database_url_of, redis_for_worker

RNG = np.random.default_rng(7)
TRAIN = RNG.uniform(0, 10, size=(80, 2))
LABELS = (TRAIN[:, 0] > TRAIN[:, 1]).astype(int)
WATERMARK = {
    "inputs": [{"rooms": float(a), "area": float(b)} for a, b in TRAIN[:10]],
    "labels": [int(label) for label in LABELS[:10]],
    "threshold": 0.9,
}
failures: list[Any] = []


def record_failure(*, result: WatermarkResult) -> None:
    """A WATERMARK_FAILURE_HANDLERS entry for the tests."""
    failures.append(result.pk)


def classifier_bytes(*, flipped: bool = False) -> bytes:
    model = DecisionTreeClassifier(random_state=0).fit(TRAIN, 1 - LABELS if flipped else LABELS)
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    return buffer.getvalue()


def upload_watermarked(client: Any, content: bytes, watermark: Any = WATERMARK) -> Any:
    return upload(client, "pricing", content, watermark=json.dumps(watermark))


@pytest.fixture
def engineer(api_client: Any, actors: dict[str, Any], media_root: Path) -> Any:
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    return api_client


@pytest.mark.django_db
def test_an_upload_with_a_watermark_stores_it_sealed_and_verifies_it_after_commit(
    engineer, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = upload_watermarked(engineer, classifier_bytes())

    assert response.status_code == 201, response.content
    version = ModelVersion.objects.get()
    assert "rooms" not in version.watermark_sealed
    assert watermark_unseal(version) == WATERMARK
    [result] = WatermarkResult.objects.filter(version=version)
    assert result.status == "succeeded" and result.agreement == 1.0 and result.threshold == 0.9
    assert result.started_at and result.finished_at
    [event] = audit_events("model.version.watermark_verified")
    assert event["outcome"] == "success"
    assert event["details"]["agreement"] == 1.0 and event["details"]["threshold"] == 0.9


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("watermark", "path"),
    [
        ({**WATERMARK, "labels": WATERMARK["labels"][:3]}, "watermark/labels"),
        ({**WATERMARK, "threshold": 0}, "watermark/threshold"),
        ({**WATERMARK, "threshold": 1.5}, "watermark/threshold"),
        ({**WATERMARK, "inputs": [{"rooms": "x", "area": 1}], "labels": [1]}, "watermark/inputs/0"),
        ({"inputs": [], "labels": [], "threshold": 0.9}, "watermark/inputs"),
        ([1, 2], "watermark"),
    ],
)
def test_an_invalid_watermark_is_refused_and_nothing_is_stored(
    engineer, media_root, watermark, path
):
    response = upload_watermarked(engineer, classifier_bytes(), watermark)

    error = assert_error(response, 400, "invalid_input")
    assert error["details"][0]["path"] == path
    assert not ModelVersion.objects.exists() and stored_files(media_root) == []


@pytest.mark.django_db
def test_the_verify_endpoint_queues_a_job_and_the_jobs_api_reports_it(engineer):
    upload_watermarked(engineer, classifier_bytes())
    WatermarkResult.objects.all().delete()  # the after-upload job (never run: no commit)

    response = engineer.post("/api/v1/models/pricing/versions/1/verify-watermark")

    assert response.status_code == 202, response.content
    assert set(response.json()) == {"job_id"}
    job_id = response.json()["job_id"]
    assert engineer.get(f"/api/v1/jobs/{job_id}").json() == {"status": "pending"}
    watermark_verify(result_id=job_id)
    assert engineer.get(f"/api/v1/jobs/{job_id}").json() == {
        "status": "succeeded",
        "result": {"agreement": 1.0, "threshold": 0.9, "reason": ""},
    }
    [event] = audit_events("model.version.watermark_requested")
    assert event["details"]["job_id"] == job_id


@pytest.mark.django_db
def test_a_version_without_a_watermark_is_a_conflict(engineer):
    upload(engineer, "pricing", classifier_bytes())

    response = engineer.post("/api/v1/models/pricing/versions/1/verify-watermark")

    assert "watermark" in assert_error(response, 409, "conflict")["message"]
    assert not WatermarkResult.objects.exists()


@pytest.mark.django_db
def test_unknown_jobs_and_versions_are_404(engineer):
    assert_error(
        engineer.get("/api/v1/jobs/00000000-0000-4000-8000-000000000000"), 404, "not_found"
    )
    assert engineer.get("/api/v1/jobs/not-a-uuid").status_code == 404
    response = engineer.post("/api/v1/models/pricing/versions/9/verify-watermark")
    assert_error(response, 404, "not_found")


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("role", "verify", "read"),
    [
        ("admin", 202, 200),
        ("ml_engineer", 202, 200),
        ("auditor", 403, 200),
        ("security_officer", 403, 403),
        ("api_client", 403, 403),
    ],
)
def test_who_may_verify_and_read_jobs(engineer, actors, role, verify, read):
    upload_watermarked(engineer, classifier_bytes())
    job = WatermarkResult.objects.get()
    engineer.force_authenticate(actors[role])

    assert engineer.post("/api/v1/models/pricing/versions/1/verify-watermark").status_code == (
        verify
    )
    assert engineer.get(f"/api/v1/jobs/{job.id}").status_code == read


@pytest.mark.django_db
def test_a_model_that_disagrees_with_its_watermark_fails_and_calls_the_handlers(engineer, settings):
    settings.WATERMARK_FAILURE_HANDLERS = [f"{__name__}.record_failure"]
    failures.clear()
    upload_watermarked(engineer, classifier_bytes(flipped=True))
    job = WatermarkResult.objects.get()

    result = watermark_verify(result_id=job.id)

    assert result.status == "failed" and result.agreement == 0.0
    assert result.reason == "agreement below threshold"
    assert failures == [job.pk]
    [event] = audit_events("model.version.watermark_verified")
    assert event["outcome"] == "failure" and event["details"]["agreement"] == 0.0
    assert watermark_verify(result_id=job.id).status == "failed"  # a finished job stays so
    assert audit_events("model.version.watermark_verified") == [event]


@pytest.mark.django_db
def test_a_tampered_artifact_fails_the_job_without_unpickling(engineer, media_root, loader_calls):
    upload_watermarked(engineer, classifier_bytes())
    [stored] = stored_files(media_root)
    ciphertext = bytearray(stored.read_bytes())
    ciphertext[len(ciphertext) // 2] ^= 0x01
    stored.write_bytes(bytes(ciphertext))

    result = watermark_verify(result_id=WatermarkResult.objects.get().id)

    assert result.status == "failed" and result.agreement is None
    assert result.reason.startswith("artifact refused")
    assert loader_calls == []
    assert audit_events("model.version.rejected")


@pytest.mark.django_db
def test_the_daily_job_verifies_production_versions_with_a_watermark(
    engineer, settings, django_capture_on_commit_callbacks
):
    assert settings.CELERY_BEAT_SCHEDULE["registry-verify-watermarks"] == {
        "task": "registry.verify_watermarks",
        "schedule": 24 * 3600.0,
    }
    assert watermark_verify_task.name == "registry.verify_watermark" in celery_app.tasks
    upload_watermarked(engineer, classifier_bytes())  # v1: staging
    upload_watermarked(engineer, classifier_bytes())  # v2: production
    upload(engineer, "pricing", classifier_bytes())  # v3: no watermark
    ModelVersion.objects.filter(number=2).update(stage=Stage.PRODUCTION)
    WatermarkResult.objects.all().delete()

    with django_capture_on_commit_callbacks(execute=True):
        assert watermark_verify_scheduled_task() == 1

    [result] = WatermarkResult.objects.all()
    assert result.version.number == 2 and result.status == "succeeded"


def _refuse_connections(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a connection was opened")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(http.client.HTTPConnection, "connect", refuse)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "url",
    [
        "http://suspect.example/predict",
        "http://allowed.example.evil.test/predict",
        "ftp://allowed.example/predict",
        "http://169.254.169.254/latest/meta-data",
    ],
)
def test_the_suspect_job_refuses_a_host_off_the_allow_list_without_connecting(
    engineer, settings, monkeypatch, url
):
    settings.WATERMARK_SUSPECT_HOSTS = ["allowed.example"]
    upload_watermarked(engineer, classifier_bytes())
    version = ModelVersion.objects.get()
    job = watermark_job_create(version=version, kind=WatermarkKind.SUSPECT, suspect_url=url)
    _refuse_connections(monkeypatch)

    result = suspect_endpoint_check(result_id=job.id)

    assert result.status == "failed" and result.reason.startswith("refused:")
    [event] = audit_events("model.version.watermark_verified")
    assert event["outcome"] == "failure" and event["details"]["url"] == url


@pytest.fixture
def suspect_server() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """A tiny prediction endpoint on 127.0.0.1 that answers with our watermark's labels."""
    received: list[dict[str, Any]] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            received.append(body)
            answer = json.dumps({"predictions": WATERMARK["labels"]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/predict", received
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.django_db
def test_the_suspect_job_compares_an_allowed_endpoints_predictions(
    engineer, settings, suspect_server
):
    url, received = suspect_server
    settings.WATERMARK_SUSPECT_HOSTS = ["127.0.0.1"]
    upload_watermarked(engineer, classifier_bytes())
    version = ModelVersion.objects.get()
    job = watermark_job_create(version=version, kind=WatermarkKind.SUSPECT, suspect_url=url)

    result = suspect_endpoint_check(result_id=job.id)

    assert result.status == "succeeded" and result.agreement == 1.0, result.reason
    assert received == [{"inputs": WATERMARK["inputs"]}]


@pytest.mark.worker
@pytest.mark.django_db(transaction=True)
def test_a_real_worker_verifies_a_genuine_model_and_fails_tampered_ones(
    api_client, settings, tmp_path
):
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    # A transactional test before this one may have flushed the migration-made role rows.
    for name in ("ml_engineer", "auditor"):
        Role.objects.get_or_create(name=name)
    engineer, auditor = UserFactory(roles=["ml_engineer"]), UserFactory(roles=["auditor"])
    make_model(engineer)
    api_client.force_authenticate(engineer)
    # Eager here: each upload's own after-commit job runs inline; the worker runs the rest.
    for content in (classifier_bytes(), classifier_bytes(flipped=True), classifier_bytes()):
        assert upload_watermarked(api_client, content).status_code == 201
    genuine, disagreeing, tampered = ModelVersion.objects.order_by("number")
    stored = media / tampered.artifact
    ciphertext = bytearray(stored.read_bytes())
    ciphertext[-10] ^= 0x01
    stored.write_bytes(bytes(ciphertext))
    jobs = [WatermarkResult.objects.create(version=v) for v in (genuine, disagreeing, tampered)]
    env = {
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        "DATABASE_URL": database_url_of(connection.settings_dict),
        "MEDIA_ROOT": str(media),
    }

    log = tmp_path / "worker.log"
    with redis_for_worker() as redis_url, celery_worker(redis_url, log, env=env) as queue:
        outcomes = [
            watermark_verify_task.apply_async(args=[str(job.id)], queue=queue).get(timeout=60)
            for job in jobs
        ]

    assert outcomes == ["succeeded", "failed", "failed"], log.read_text()
    assert "Task registry.verify_watermark[" in log.read_text()
    for job in jobs:
        job.refresh_from_db()
    assert jobs[0].agreement == 1.0
    assert jobs[1].agreement == 0.0 and jobs[1].reason == "agreement below threshold"
    assert jobs[2].agreement is None and jobs[2].reason.startswith("artifact refused")
    api_client.force_authenticate(auditor)
    assert api_client.get(f"/api/v1/jobs/{jobs[0].id}").json()["status"] == "succeeded"


@pytest.mark.django_db
def test_the_admin_shows_the_last_watermark_result_but_not_the_set(
    client, engineer, actors, verified_login
):
    upload_watermarked(engineer, classifier_bytes())
    version = ModelVersion.objects.get()
    watermark_verify(result_id=WatermarkResult.objects.get().id)
    admin = actors["admin"]
    admin.is_staff = admin.is_superuser = True
    admin.save()
    verified_login(client, admin)

    listing = client.get("/admin/registry/modelversion/").content.decode()
    detail = client.get(f"/admin/registry/modelversion/{version.pk}/change/").content.decode()

    assert "verify: succeeded (1.00 / 0.90)" in listing and "verify: succeeded" in detail
    assert version.watermark_sealed not in listing + detail
