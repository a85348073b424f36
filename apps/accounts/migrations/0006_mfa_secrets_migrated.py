"""Move MFA secrets out of django-otp's plain-text plugin tables into apps.accounts' devices.

Before, `otp_totp_totpdevice.key` held each TOTP seed as hex and `otp_static_statictoken.token`
each recovery code, in clear. For every such row this migration writes the same device into
`accounts_totpdevice` (the seed sealed under the current master key: BULWARK_MASTER_KEYS,
read through the normal secrets path, never written here) or `accounts_recoverycodedevice`
(a new random hash key, sealed; each code stored as its HMAC-SHA256 under that key), keeping
names, confirmation, throttling, drift, the last accepted step and the dates. Then it drops the
three plugin tables and forgets their migrations: the plugins are no longer installed, and
dropping (rather than emptying) the tables also removes their files from PostgreSQL's data
directory instead of leaving the secrets in dead rows until a vacuum. Backups and WAL taken
before still hold them (README "Security model").

A database that never had the plugins (a fresh setup) has nothing to move: the migration then
does nothing, and needs no master key. The plugin tables are read through models of this
module (an isolated registry), as the plugins' own migrations left them, on PostgreSQL and
SQLite alike; columns a partly-migrated plugin never added are skipped.

Backwards, nothing moves back: writing the secrets out in plain text again is what this
migration exists to stop. Users would enrol again.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from typing import Any

from django.apps.registry import Apps
from django.db import migrations, models
from django.db.migrations.recorder import MigrationRecorder

from apps.core.sealing import seal

# Copied, not imported (a migration must keep doing what it did when it was written); they
# must equal apps.accounts.devices' TOTP_SEED_PURPOSE, RECOVERY_KEY_PURPOSE and normalize_code,
# which tests/accounts/test_mfa_migration.py checks by verifying migrated codes.
TOTP_SEED_PURPOSE = "accounts.mfa.totp-seed"
RECOVERY_KEY_PURPOSE = "accounts.mfa.recovery-code-key"
_SEPARATORS = re.compile(r"[\s-]+")

LEGACY_APPS = ("otp_totp", "otp_static")
_COMMON: dict[str, Any] = {
    "name": lambda: models.CharField(max_length=64),
    "confirmed": lambda: models.BooleanField(default=True),
    "throttling_failure_timestamp": lambda: models.DateTimeField(null=True),
    "throttling_failure_count": lambda: models.PositiveIntegerField(default=0),
    "created_at": lambda: models.DateTimeField(null=True),
    "last_used_at": lambda: models.DateTimeField(null=True),
}
_TOTP: dict[str, Any] = {
    "key": lambda: models.CharField(max_length=80),
    "step": lambda: models.PositiveSmallIntegerField(default=30),
    "t0": lambda: models.BigIntegerField(default=0),
    "digits": lambda: models.PositiveSmallIntegerField(default=6),
    "tolerance": lambda: models.PositiveSmallIntegerField(default=1),
    "drift": lambda: models.SmallIntegerField(default=0),
    "last_t": lambda: models.BigIntegerField(default=-1),
}
TOTP_TABLE = "otp_totp_totpdevice"
STATIC_DEVICE_TABLE = "otp_static_staticdevice"
STATIC_TOKEN_TABLE = "otp_static_statictoken"


def legacy_models(present: dict[str, set[str]] | None = None) -> dict[str, type[models.Model]]:
    """Unmanaged models of the plugin tables, in a registry of their own, with only the columns
    in `present` (table -> column names; None: all). The tests create the tables from them."""
    registry = Apps(installed_apps=[])

    def build(name: str, table: str, fields: dict[str, Any]) -> type[models.Model]:
        columns = None if present is None else present.get(table, set())
        meta = type(
            "Meta",
            (),
            {"app_label": "mfa_legacy", "db_table": table, "managed": False, "apps": registry},
        )
        attrs: dict[str, Any] = {"__module__": __name__, "Meta": meta}
        for field, make in fields.items():
            column = "user_id" if field == "user" else field
            if columns is None or column in columns:
                attrs[field] = make()
        return type(name, (models.Model,), attrs)

    device_fields = {"user": lambda: models.UUIDField(db_column="user_id"), **_COMMON}
    return {
        "totp": build("LegacyTotpDevice", TOTP_TABLE, {**device_fields, **_TOTP}),
        "static_device": build("LegacyStaticDevice", STATIC_DEVICE_TABLE, device_fields),
        "static_token": build(
            "LegacyStaticToken",
            STATIC_TOKEN_TABLE,
            {
                "device_id": lambda: models.BigIntegerField(),
                "token": lambda: models.CharField(max_length=16),
            },
        ),
    }


def _fields(model: type[models.Model], names: dict[str, Any]) -> list[str]:
    have = {field.name for field in model._meta.get_fields()}
    return [name for name in names if name in have]


def _copy_dates(new_model: Any, pk: int, row: dict[str, Any]) -> None:
    # created_at is auto_now_add: create() would stamp it now, so it is written afterwards.
    if row.get("created_at") is not None:
        new_model.objects.filter(pk=pk).update(created_at=row["created_at"])


def _move_totp(apps: Any, legacy: type[models.Model]) -> None:
    device_model = apps.get_model("accounts", "TotpDevice")
    names = _fields(legacy, {**_COMMON, **_TOTP})
    for row in legacy.objects.order_by("pk").values("user", *names):
        key = str(row.pop("key", "") or "").strip().lower()
        try:
            bytes.fromhex(key)
        except ValueError:
            key = ""
        if not key:
            continue  # an unusable seed produced no valid code; nothing to protect or keep
        created_at = row.pop("created_at", None)
        user_id = row.pop("user")
        new = device_model.objects.create(
            user_id=user_id, key_sealed=seal(key, purpose=TOTP_SEED_PURPOSE), **row
        )
        _copy_dates(device_model, new.pk, {"created_at": created_at})


def _move_static(apps: Any, device: type[models.Model], token: type[models.Model]) -> None:
    device_model = apps.get_model("accounts", "RecoveryCodeDevice")
    code_model = apps.get_model("accounts", "RecoveryCode")
    names = _fields(device, _COMMON)
    for row in device.objects.order_by("pk").values("pk", "user", *names):
        old_pk = row.pop("pk")
        created_at = row.pop("created_at", None)
        user_id = row.pop("user")
        hash_key = os.urandom(32)
        new = device_model.objects.create(
            user_id=user_id,
            hash_key_sealed=seal(hash_key.hex(), purpose=RECOVERY_KEY_PURPOSE),
            **row,
        )
        _copy_dates(device_model, new.pk, {"created_at": created_at})
        hashes = {
            hmac.new(
                hash_key, _SEPARATORS.sub("", code).lower().encode(), hashlib.sha256
            ).hexdigest()
            for code in token.objects.filter(device_id=old_pk).values_list("token", flat=True)
            if code
        }
        code_model.objects.bulk_create(code_model(device=new, code_hash=h) for h in sorted(hashes))


def forward(apps: Any, schema_editor: Any) -> None:
    connection = schema_editor.connection
    tables = set(connection.introspection.table_names())
    legacy_tables = [
        t for t in (TOTP_TABLE, STATIC_DEVICE_TABLE, STATIC_TOKEN_TABLE) if t in tables
    ]
    if legacy_tables:
        with connection.cursor() as cursor:
            present = {
                table: {
                    column.name
                    for column in connection.introspection.get_table_description(cursor, table)
                }
                for table in legacy_tables
            }
        legacy = legacy_models(present)
        if TOTP_TABLE in present:
            _move_totp(apps, legacy["totp"])
        if STATIC_DEVICE_TABLE in present and STATIC_TOKEN_TABLE in present:
            _move_static(apps, legacy["static_device"], legacy["static_token"])
        # Tokens first: they reference the static devices.
        for table in (STATIC_TOKEN_TABLE, STATIC_DEVICE_TABLE, TOTP_TABLE):
            if table in present:
                schema_editor.execute(f"DROP TABLE {schema_editor.quote_name(table)}")
    # Forget the plugins' migrations, so that installing a plugin again would create its
    # tables afresh instead of believing they exist.
    recorder = MigrationRecorder(connection)
    if recorder.has_table():
        recorder.migration_qs.filter(app__in=LEGACY_APPS).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0005_mfa_devices_sealed"),
    ]

    operations = [
        migrations.RunPython(forward, reverse_code=migrations.RunPython.noop, elidable=False),
    ]
