"""Each automated check, passing and failing, on real state (database, settings, secrets)."""

from __future__ import annotations

import base64
import dataclasses
import io
import os
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import default_storage
from django.utils import timezone

from apps.accounts.models import TotpDevice
from apps.apikeys.models import ApiKey
from apps.audit.services import audit_chain_pending, audit_event_record
from apps.compliance.checks import CHECKS, check_run
from apps.compliance.models import ChecklistItem
from apps.registry.models import (
    ModelVersion,
    RegisteredModel,
    WatermarkKind,
    WatermarkResult,
    WatermarkStatus,
)
from apps.registry.services import model_version_register
from tests.apikeys.factories import ApiKeyFactory
from tests.compliance.conftest import item
from tests.registry.conftest import SCHEMA, trained_bytes


def passes(name: str) -> str:
    outcome = check_run(name)
    assert outcome.passed, outcome.detail
    assert outcome.detail.endswith(".") and "\n" not in outcome.detail
    return outcome.detail


def fails(name: str) -> str:
    outcome = check_run(name)
    assert not outcome.passed, outcome.detail
    assert outcome.detail.endswith(".") and "\n" not in outcome.detail
    return outcome.detail


@pytest.fixture
def media_root(settings: Any, tmp_path: Path) -> Path:
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


def upload_version(owner: Any, name: str = "pricing") -> ModelVersion:
    model, _ = RegisteredModel.objects.get_or_create(name=name, defaults={"created_by": owner})
    model.owners.add(owner)
    artifact = io.BytesIO(trained_bytes())
    artifact.name = "model.joblib"
    return model_version_register(actor=owner, model=model, artifact=artifact, input_schema=SCHEMA)


def test_a_check_that_raises_fails_closed(monkeypatch):
    broken = dataclasses.replace(CHECKS["jwt_lifetimes"], run=lambda: 1 / 0)
    monkeypatch.setitem(CHECKS, "jwt_lifetimes", broken)
    detail = fails("jwt_lifetimes")
    assert "could not run (ZeroDivisionError)" in detail


# --- model_versions_encrypted --------------------------------------------------------------


@pytest.mark.django_db
def test_encrypted_versions_under_the_current_master_key_pass(actors, media_root):
    assert "No model version" in passes("model_versions_encrypted")
    upload_version(actors["ml_engineer"])

    assert passes("model_versions_encrypted") == (
        "The one model version is stored encrypted, data keys wrapped under the current "
        "master key mk1."
    )


@pytest.mark.django_db
def test_a_version_under_an_older_master_key_fails(actors, media_root, monkeypatch, fresh_secrets):
    upload_version(actors["ml_engineer"])
    new_key = "mk2:" + base64.b64encode(os.urandom(32)).decode()
    monkeypatch.setenv("BULWARK_MASTER_KEYS", f"{new_key},{os.environ['BULWARK_MASTER_KEYS']}")
    from apps.core.secrets import _runtime_provider

    _runtime_provider().clear()

    detail = fails("model_versions_encrypted")

    assert "pricing v1 (mk1) is wrapped under an older master key than the current mk2" in detail
    assert "rotate_master_key" in detail


@pytest.mark.django_db
def test_a_version_stored_in_the_clear_fails(actors, media_root):
    version = upload_version(actors["ml_engineer"])
    default_storage.delete(version.artifact)
    default_storage.save(version.artifact, io.BytesIO(trained_bytes()))

    assert "pricing v1 is not stored as Bulwark ciphertext" in fails("model_versions_encrypted")


# --- watermark_recent ----------------------------------------------------------------------


def production_version(owner: Any, *, watermark: bool = True) -> ModelVersion:
    model = RegisteredModel.objects.create(name="fraud", created_by=owner)
    model.owners.add(owner)
    return ModelVersion.objects.create(
        model=model,
        number=1,
        stage="production",
        size=1,
        sha256="0" * 64,
        input_schema=SCHEMA,
        wrapped_data_key=b"wrapped",
        master_key_id="mk1",
        artifact="artifacts/none.bwae",
        watermark_sealed="sealed" if watermark else "",
    )


def verification(version: ModelVersion, *, age: timedelta, status: str) -> WatermarkResult:
    finished = timezone.now() - age
    return WatermarkResult.objects.create(
        version=version,
        kind=WatermarkKind.VERIFY,
        status=status,
        agreement=1.0,
        threshold=0.9,
        started_at=finished,
        finished_at=finished,
    )


@pytest.mark.django_db
def test_a_recent_successful_watermark_verification_passes(actors, settings):
    settings.COMPLIANCE_WATERMARK_MAX_AGE_DAYS = 7
    assert "No model version is in production" in passes("watermark_recent")
    version = production_version(actors["ml_engineer"])
    verification(version, age=timedelta(days=2), status=WatermarkStatus.SUCCEEDED)

    assert "verified successfully in the last 7 days" in passes("watermark_recent")


@pytest.mark.django_db
def test_an_old_failed_or_missing_watermark_verification_fails(actors, settings):
    settings.COMPLIANCE_WATERMARK_MAX_AGE_DAYS = 7
    version = production_version(actors["ml_engineer"])
    verification(version, age=timedelta(days=8), status=WatermarkStatus.SUCCEEDED)
    verification(version, age=timedelta(hours=1), status=WatermarkStatus.FAILED)

    detail = fails("watermark_recent")

    assert "fraud v1 had no successful watermark verification in the last 7 days" in detail
    ModelVersion.objects.filter(pk=version.pk).update(watermark_sealed="")
    assert "fraud v1 carry no watermark set" in fails("watermark_recent")


# --- predict_rate_limit, jwt_lifetimes ------------------------------------------------------


def test_predict_rate_limit_passes_when_configured_and_routed(settings):
    settings.PREDICT_USER_RATE_LIMIT = "30/m"
    assert "/api/v1/models/{name}/predict) is rate limited: 30/m per JWT user" in passes(
        "predict_rate_limit"
    )


@pytest.mark.parametrize(("rate", "expected"), [("", "is not set"), ("lots", "not a rate")])
def test_predict_rate_limit_fails_when_unset_or_malformed(settings, rate, expected):
    settings.PREDICT_USER_RATE_LIMIT = rate
    assert expected in fails("predict_rate_limit")


def test_jwt_lifetimes_within_policy_pass():
    assert passes("jwt_lifetimes") == (
        "Access tokens live 15 minutes and refresh tokens 1 day, within the policy of 15 "
        "minutes and 1 day."
    )


def test_jwt_lifetimes_beyond_policy_fail(settings):
    settings.SIMPLE_JWT = {
        **settings.SIMPLE_JWT,
        "ACCESS_TOKEN_LIFETIME": timedelta(hours=1),
        "REFRESH_TOKEN_LIFETIME": timedelta(days=30),
    }
    detail = fails("jwt_lifetimes")
    assert "access tokens live 1 hour" in detail and "refresh tokens live 30 days" in detail


# --- mfa_privileged ------------------------------------------------------------------------


@pytest.mark.django_db
def test_mfa_passes_when_every_privileged_user_has_a_confirmed_device(actors):
    for role in ("admin", "security_officer"):
        TotpDevice.objects.create(user=actors[role], name="phone", confirmed=True)

    assert "each of the 2 active privileged users has a confirmed TOTP device" in passes(
        "mfa_privileged"
    )


@pytest.mark.django_db
def test_mfa_fails_for_a_privileged_user_without_a_confirmed_device(actors):
    TotpDevice.objects.create(user=actors["admin"], name="phone", confirmed=True)
    TotpDevice.objects.create(user=actors["security_officer"], name="phone", confirmed=False)

    detail = fails("mfa_privileged")

    assert detail.startswith("1 of 2 active privileged users")
    assert actors["security_officer"].username not in detail  # counted, not named


@pytest.mark.django_db
def test_mfa_fails_when_the_required_roles_leave_one_out(actors, settings):
    settings.MFA_REQUIRED_ROLES = ["admin"]
    assert "does not include security_officer" in fails("mfa_privileged")


# --- secrets ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_strong_secrets_pass(fresh_secrets):
    assert "All 6 required secrets" in passes("secrets_strength")


@pytest.mark.django_db
def test_a_short_or_default_secret_fails_without_showing_it(monkeypatch, fresh_secrets):
    monkeypatch.setenv("API_KEY_PEPPER", "pepper-short")
    monkeypatch.setenv("AUDIT_HMAC_KEY", "changeme-changeme-changeme-changeme-0123456789")
    from apps.core.secrets import _runtime_provider

    _runtime_provider().clear()

    detail = fails("secrets_strength")

    assert "API_KEY_PEPPER is shorter than 32 characters" in detail
    assert "AUDIT_HMAC_KEY is a placeholder value" in detail
    assert "pepper-short" not in detail and "changeme" not in detail


def test_the_secrets_backend_check_wants_a_vault(settings):
    settings.SECRETS_BACKEND = "env"
    settings.BULWARK_ENV = "development"
    assert fails("secrets_vault").startswith("Not production")
    settings.BULWARK_ENV = "production"
    assert "set SECRETS_BACKEND=azure-keyvault" in fails("secrets_vault")
    settings.SECRETS_BACKEND = "azure-keyvault"
    assert "Azure Key Vault" in passes("secrets_vault")


@pytest.mark.django_db
def test_api_keys_that_expire_pass_and_one_without_a_bounded_expiry_fails(actors):
    assert "No live API key" in passes("api_keys_expiry")
    good, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert "The one live API key expires" in passes("api_keys_expiry")
    forever, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    ApiKey.objects.filter(pk=forever.pk).update(expires_at=timezone.now() + timedelta(days=3650))

    detail = fails("api_keys_expiry")

    assert forever.prefix in detail and good.prefix not in detail


# --- infrastructure -----------------------------------------------------------------------------


def test_https_fails_in_development(settings):
    settings.BULWARK_ENV = "development"
    assert fails("https_production").startswith("Not production (BULWARK_ENV=development)")


def test_https_passes_in_production_with_every_protection(settings):
    settings.BULWARK_ENV = "production"
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SESSION_COOKIE_SECURE = True
    settings.CSRF_COOKIE_SECURE = True
    assert "sends HSTS for 31536000 s" in passes("https_production")
    settings.SECURE_HSTS_SECONDS = 3600
    settings.CSRF_COOKIE_SECURE = False
    detail = fails("https_production")
    assert "HSTS max-age is 3600 s, under one year" in detail
    assert "CSRF_COOKIE_SECURE is off" in detail


# --- monitoring and auditing --------------------------------------------------------------------


@pytest.mark.django_db
def test_an_intact_audit_chain_passes_and_a_rewritten_one_fails():
    for index in range(3):
        audit_event_record("test.event", actor=None, details={"i": index})
    audit_chain_pending()
    assert passes("audit_chain").startswith("The audit chain verifies: 3 events")

    without_append_only_trigger(
        "UPDATE audit_auditevent SET body = replace(body, '\"i\":1', '\"i\":9') WHERE seq = 2"
    )

    assert fails("audit_chain") == (
        "The audit chain breaks at seq 2: hash does not match the event's content."
    )


def without_append_only_trigger(sql: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute(sql)
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


@pytest.mark.django_db
def test_audit_events_in_the_last_day_pass_and_none_fails():
    # The compliance checks' own events do not count.
    audit_event_record("compliance.checks.completed", actor="compliance")
    assert "No audit event was recorded in the last 24 hours" in fails("audit_recent_events")

    audit_event_record("apikey.created", actor=None)

    assert passes("audit_recent_events") == "1 audit event recorded in the last 24 hours."


@pytest.mark.django_db
def test_keys_unused_for_90_days_fail_listing_their_prefixes(actors):
    fresh, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    assert "The one live API key was used" in passes("api_keys_unused")
    idle, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    never, _ = ApiKeyFactory.issue(owner=actors["key_owner"])
    revoked, _ = ApiKeyFactory.issue(owner=actors["key_owner"], revoked_at=timezone.now())
    long_ago = timezone.now() - timedelta(days=120)
    ApiKey.objects.filter(pk__in=[idle.pk, never.pk, revoked.pk]).update(created_at=long_ago)
    ApiKey.objects.filter(pk=idle.pk).update(last_used_at=timezone.now() - timedelta(days=91))
    ApiKey.objects.filter(pk=fresh.pk).update(
        created_at=long_ago, last_used_at=timezone.now() - timedelta(days=3)
    )

    detail = fails("api_keys_unused")

    assert detail.startswith("2 live API keys went unused for 90 days or more")
    assert idle.prefix in detail and never.prefix in detail
    assert fresh.prefix not in detail and revoked.prefix not in detail


@pytest.mark.django_db
def test_incident_plan_phases_pass_only_when_each_has_an_active_owner(actors):
    phases = ChecklistItem.objects.filter(category="incident_response")
    assert fails("incident_plan_owners").startswith("6 of the 6 incident-response phases")
    phases.update(owner=actors["security_officer"])
    assert passes("incident_plan_owners") == "Each of the 6 incident-response phases has an owner."

    ChecklistItem.objects.filter(pk=item("ir-recovery").pk).update(owner=actors["auditor"])
    actors["auditor"].is_active = False
    actors["auditor"].save()

    assert fails("incident_plan_owners") == (
        "1 of the 6 incident-response phases have no active owner: Recovery."
    )
