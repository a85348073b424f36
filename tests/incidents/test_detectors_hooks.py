"""Detectors fed by other apps and by the key store: failed watermark verifications (SEV2),
audit-chain breaks (SEV1), API keys about to expire (SEV4)."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.audit.services import audit_chain_pending, audit_event_record
from apps.audit.subjects import pseudonym_for
from apps.audit.tasks import audit_verify_all_task, audit_verify_new_task
from apps.incidents.detectors import expiring_keys_detect
from apps.incidents.models import Incident
from apps.registry.models import WatermarkKind, WatermarkResult
from apps.registry.watermarks import watermark_job_create, watermark_verify
from tests.apikeys.conftest import update_key
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import audit_events, move_to
from tests.registry.conftest import make_model
from tests.registry.test_watermarks import classifier_bytes, upload_watermarked

pytestmark = pytest.mark.django_db


def hits(incident: Incident) -> list[dict[str, Any]]:
    return list(incident.timeline.filter(kind="detector_hit").values_list("data", flat=True))


def test_the_hooks_are_configured(settings):
    assert "apps.incidents.hooks.watermark_failed" in settings.WATERMARK_FAILURE_HANDLERS
    assert "apps.incidents.hooks.audit_chain_broken" in settings.AUDIT_CHAIN_BREAK_HANDLERS


# --- Watermarks ------------------------------------------------------------------------------


@pytest.fixture
def engineer(api_client: Any, actors: dict[str, Any], settings: Any, tmp_path: Path) -> Any:
    settings.MEDIA_ROOT = tmp_path / "media"
    make_model(actors["ml_engineer"])
    api_client.force_authenticate(actors["ml_engineer"])
    return api_client


def test_a_failed_watermark_verification_opens_a_sev2_incident(engineer):
    assert upload_watermarked(engineer, classifier_bytes(flipped=True)).status_code == 201
    job = WatermarkResult.objects.get()

    assert watermark_verify(result_id=job.id).status == "failed"

    [incident] = Incident.objects.filter(detector="watermark")
    assert incident.severity == "sev2" and incident.dedup_key == "watermark:pricing:1"
    assert "pricing v1" in incident.title
    [evidence] = hits(incident)
    assert evidence["job_id"] == str(job.id) and evidence["agreement"] == 0.0
    assert evidence["reason"] == "agreement below threshold"
    [link] = incident.resources.all()
    assert (link.kind, link.ref) == ("model_version", "pricing:1")

    # Failing again while it is open: on its timeline, not a second incident.
    again = watermark_job_create(version=job.version)
    assert watermark_verify(result_id=again.id).status == "failed"
    assert Incident.objects.filter(detector="watermark").count() == 1
    assert len(hits(incident)) == 2


def test_a_passing_verification_opens_nothing(engineer):
    upload_watermarked(engineer, classifier_bytes())
    assert watermark_verify(result_id=WatermarkResult.objects.get().id).status == "succeeded"
    assert not Incident.objects.exists()


def test_a_suspect_endpoint_without_our_watermark_is_no_incident(engineer, settings):
    settings.WATERMARK_SUSPECT_HOSTS = []
    upload_watermarked(engineer, classifier_bytes())
    version = WatermarkResult.objects.get().version
    from apps.registry.watermarks import suspect_endpoint_check

    job = watermark_job_create(
        version=version, kind=WatermarkKind.SUSPECT, suspect_url="https://elsewhere.test/p"
    )
    assert suspect_endpoint_check(result_id=job.id).status == "failed"
    assert not Incident.objects.exists()


def refuse_after_us(*, result: Any) -> None:
    """A WATERMARK_FAILURE_HANDLERS entry that fails after the incident hook has run."""
    raise RuntimeError("a later handler failed")


def test_the_incident_commits_with_the_failure_or_not_at_all(engineer, settings):
    """The hook runs in the registry's transaction: when that transaction fails after the
    hook, the incident goes with it."""
    settings.WATERMARK_FAILURE_HANDLERS = [
        "apps.incidents.hooks.watermark_failed",
        f"{__name__}.refuse_after_us",
    ]
    upload_watermarked(engineer, classifier_bytes(flipped=True))
    job = WatermarkResult.objects.get()
    with pytest.raises(RuntimeError):
        watermark_verify(result_id=job.id)
    assert not Incident.objects.exists()
    assert audit_events("incident.created") == []


# --- Audit chain breaks ----------------------------------------------------------------------


def break_the_chain_at(seq: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE audit_auditevent SET hash = repeat('a', 64) WHERE seq = %s", [seq])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def test_an_audit_chain_break_opens_one_sev1_incident_per_break(actors):
    for _ in range(3):
        audit_event_record("x.a", actor=None)
    audit_chain_pending()
    break_the_chain_at(2)

    assert audit_verify_all_task()["ok"] is False

    [incident] = Incident.objects.filter(detector="audit_chain")
    assert incident.severity == "sev1" and incident.title == "Audit chain broken at #2"
    assert hits(incident)[0]["first_bad_seq"] == 2
    assert [(r.kind, r.ref) for r in incident.resources.all()] == [("audit_event", "2")]
    # Every later verification reports the same break: nothing more is opened or added...
    audit_verify_new_task()
    audit_verify_all_task()
    assert Incident.objects.filter(detector="audit_chain").count() == 1
    assert len(hits(incident)) == 1
    # ...not even once the incident is closed.
    move_to(incident, "closed", actor=actors["security_officer"])
    audit_verify_all_task()
    assert Incident.objects.filter(detector="audit_chain").count() == 1
    [created] = [e for e in audit_events("incident.created") if e["details"]["severity"] == "sev1"]
    assert created["actor"] == {"type": "system", "ref": "detector:audit_chain"}


# --- Keys about to expire ----------------------------------------------------------------------


def test_keys_about_to_expire_open_one_sev4_incident_each_once(actors, settings):
    now = timezone.now()
    soon = ApiKeyFactory(owner=actors["key_owner"], expires_at=now + timedelta(days=2))
    edge = ApiKeyFactory(expires_at=now + timedelta(days=6, hours=23))
    ApiKeyFactory(expires_at=now + timedelta(days=8))  # later
    ApiKeyFactory(expires_at=now + timedelta(days=1), revoked_at=now)  # revoked
    successor = ApiKeyFactory()
    rotated = ApiKeyFactory(expires_at=now + timedelta(days=1))
    update_key(rotated, rotated_to=successor, grace_ends_at=now + timedelta(hours=1))
    gone = ApiKeyFactory()
    update_key(gone, expires_at=now - timedelta(days=1))  # already expired

    assert expiring_keys_detect(now=now) == 2

    incidents = {i.dedup_key: i for i in Incident.objects.filter(detector="key_expiring")}
    assert set(incidents) == {f"key_expiring:{soon.prefix}", f"key_expiring:{edge.prefix}"}
    incident = incidents[f"key_expiring:{soon.prefix}"]
    assert incident.severity == "sev4" and soon.prefix in incident.title
    [evidence] = hits(incident)
    assert evidence["days_left"] == 2 and evidence["owner"] == pseudonym_for(actors["key_owner"])
    assert actors["key_owner"].username not in json.dumps(evidence)
    assert {(r.kind, r.ref) for r in incident.resources.all()} == {
        ("api_key", soon.prefix),
        ("user", pseudonym_for(actors["key_owner"])),
    }
    # The next runs add nothing, even once an incident is closed.
    assert expiring_keys_detect(now=now) == 0
    move_to(incident, "closed", actor=actors["security_officer"])
    assert expiring_keys_detect(now=now + timedelta(hours=1)) == 0
    assert Incident.objects.filter(detector="key_expiring").count() == 2
    assert len(hits(incidents[f"key_expiring:{edge.prefix}"])) == 1


def test_the_expiry_horizon_is_a_setting(settings):
    settings.INCIDENT_KEY_EXPIRY_DAYS = 30
    now = timezone.now()
    ApiKeyFactory(expires_at=now + timedelta(days=20))
    assert expiring_keys_detect(now=now) == 1
