"""Migration 0006 on a database made when django-otp's plugins held the MFA secrets in plain
text: every device moves (seed sealed, codes hashed, state and dates kept), the plugin tables
and their migration records go, and the moved devices accept the same codes as before."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from typing import Any

import pytest
from django.apps import apps as django_apps
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder
from django_otp.oath import TOTP

from apps.accounts import devices
from apps.accounts.mfa import MfaCodeRejected, mfa_code_verify
from apps.accounts.models import RecoveryCode, RecoveryCodeDevice, TotpDevice
from tests.accounts.factories import UserFactory
from tests.accounts.test_mfa_at_rest import database_text, legacy_tables, seed_forms

pytestmark = pytest.mark.django_db

migration = importlib.import_module("apps.accounts.migrations.0006_mfa_secrets_migrated")
SEED = bytes(range(1, 21))
CODES = ["abcd2345", "efgh6723", "ijkl7654"]
ENROLLED = datetime(2025, 3, 4, 5, 6, 7, tzinfo=UTC)


def make_legacy_tables(present: dict[str, set[str]] | None = None) -> dict[str, Any]:
    models = migration.legacy_models(present)
    with connection.schema_editor() as editor:
        for model in models.values():
            editor.create_model(model)
    return models


def run_migration() -> None:
    with connection.schema_editor() as editor:
        migration.forward(django_apps, editor)


def legacy_user_with_mfa(models: dict[str, Any], **totp_state: Any) -> Any:
    user = UserFactory()
    models["totp"].objects.create(
        user=user.pk,
        name="Phone",
        confirmed=True,
        key=SEED.hex(),
        created_at=ENROLLED,
        **totp_state,
    )
    static = models["static_device"].objects.create(
        user=user.pk, name="Recovery codes", confirmed=True, created_at=ENROLLED
    )
    for code in CODES:
        models["static_token"].objects.create(device_id=static.pk, token=code)
    return user


def code_at_next_step(device: TotpDevice) -> str:
    generator = TOTP(SEED, device.step, device.t0, device.digits, device.drift)
    if generator.t() <= device.last_t:
        generator.drift += device.last_t + 1 - generator.t()
    return f"{generator.token():0{device.digits}d}"


def test_the_purposes_copied_into_the_migration_are_the_devices_own():
    assert migration.TOTP_SEED_PURPOSE == devices.TOTP_SEED_PURPOSE
    assert migration.RECOVERY_KEY_PURPOSE == devices.RECOVERY_KEY_PURPOSE


def test_plain_text_rows_move_sealed_and_hashed_and_the_plugin_tables_go():
    models = make_legacy_tables()
    user = legacy_user_with_mfa(models, drift=0, last_t=-1, throttling_failure_count=0)
    half_made = UserFactory()
    models["totp"].objects.create(user=half_made.pk, name="x", confirmed=False, key="ab" * 20)
    recorder = MigrationRecorder(connection)
    for app in migration.LEGACY_APPS:
        recorder.record_applied(app, "0001_initial")

    run_migration()

    assert legacy_tables() == []
    assert not recorder.migration_qs.filter(app__in=migration.LEGACY_APPS).exists()
    [device] = TotpDevice.objects.filter(user=user)
    assert (device.name, device.confirmed, device.created_at) == ("Phone", True, ENROLLED)
    assert device.bin_key == SEED and device.key_sealed.startswith("s1:")
    assert not TotpDevice.objects.get(user=half_made).confirmed
    [recovery] = RecoveryCodeDevice.objects.filter(user=user)
    assert recovery.created_at == ENROLLED and recovery.codes.count() == len(CODES)

    dump = database_text().lower()
    assert all(form.lower() not in dump for form in seed_forms(SEED))
    assert all(code not in dump for code in CODES)

    # The user's app and recovery codes work as before the migration, codes once.
    assert mfa_code_verify(user=user, code=code_at_next_step(device)) == device
    assert isinstance(mfa_code_verify(user=user, code=CODES[1].upper()), RecoveryCodeDevice)
    with pytest.raises(MfaCodeRejected):
        mfa_code_verify(user=user, code=CODES[1])
    assert RecoveryCode.objects.filter(device=recovery).count() == len(CODES) - 1


def test_the_last_accepted_step_and_the_throttle_move_too():
    models = make_legacy_tables()
    far_future_step = 10**10
    user = legacy_user_with_mfa(models, last_t=far_future_step, throttling_failure_count=3)

    run_migration()

    device = TotpDevice.objects.get(user=user)
    assert device.last_t == far_future_step and device.throttling_failure_count == 3
    # A code of a step not newer than the last accepted one is still refused (no replay).
    with pytest.raises(MfaCodeRejected):
        mfa_code_verify(user=user, code=f"{TOTP(SEED).token():06d}")


def test_plugin_tables_from_before_their_timestamp_migration_move_too():
    without_dates = {
        migration.TOTP_TABLE: {"id", "user_id", "name", "confirmed", "key", "step", "t0",
                               "digits", "tolerance", "drift", "last_t"},
        migration.STATIC_DEVICE_TABLE: {"id", "user_id", "name", "confirmed"},
        migration.STATIC_TOKEN_TABLE: {"id", "device_id", "token"},
    }  # fmt: skip
    models = make_legacy_tables(without_dates)
    user = UserFactory()
    models["totp"].objects.create(user=user.pk, name="Phone", key=SEED.hex())
    static = models["static_device"].objects.create(user=user.pk, name="Recovery codes")
    models["static_token"].objects.create(device_id=static.pk, token=CODES[0])

    run_migration()

    assert TotpDevice.objects.get(user=user).bin_key == SEED
    assert isinstance(mfa_code_verify(user=user, code=CODES[0]), RecoveryCodeDevice)
    assert legacy_tables() == []


def test_a_database_that_never_had_the_plugins_is_left_as_it_is():
    before = sorted(connection.introspection.table_names())
    run_migration()
    assert sorted(connection.introspection.table_names()) == before
    assert not TotpDevice.objects.exists() and not RecoveryCodeDevice.objects.exists()
