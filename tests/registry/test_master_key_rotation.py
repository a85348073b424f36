"""Master-key rotation: every data key re-wrapped under the current key, artifacts untouched,
idempotent, and safe to kill at any point (a real subprocess, SIGKILLed)."""

from __future__ import annotations

import base64
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.db import connection

from apps.core import secrets
from apps.registry.models import ModelVersion, RegisteredModel
from apps.registry.rotation import rotate_master_key
from apps.registry.services import model_version_register
from apps.registry.version_loading import model_version_load
from tests.accounts.factories import UserFactory
from tests.registry.conftest import SCHEMA, audit_events, stored_files, trained_bytes

ROOT = Path(__file__).resolve().parents[2]
OLD = ("old", base64.b64encode(os.urandom(32)).decode())
NEW = ("new", base64.b64encode(os.urandom(32)).decode())


def _clear_secrets_cache() -> None:
    secrets._runtime_provider().clear()  # type: ignore[attr-defined]  # the TTL cache
    secrets._runtime_provider.cache_clear()


@pytest.fixture
def use_master_keys(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """Configure BULWARK_MASTER_KEYS (first is current) and drop the cached value."""

    def configure(*keys: tuple[str, str]) -> None:
        monkeypatch.setenv("BULWARK_MASTER_KEYS", ",".join(f"{i}:{k}" for i, k in keys))
        _clear_secrets_cache()

    yield configure
    monkeypatch.undo()
    _clear_secrets_cache()


def make_versions(count: int) -> list[ModelVersion]:
    model = RegisteredModel.objects.create(name="pricing")
    admin = UserFactory(roles=["admin"])
    plaintext = trained_bytes()
    versions = []
    for _ in range(count):
        upload = io.BytesIO(plaintext)
        versions.append(
            model_version_register(actor=admin, model=model, artifact=upload, input_schema=SCHEMA)
        )
    return versions


def assert_all_load() -> None:
    for version in ModelVersion.objects.select_related("model"):
        model = model_version_load(version=version)
        assert model.predict([[1.0, 1.0]])[0] == pytest.approx(1.5)
        model.close()


@pytest.mark.django_db
def test_rotation_rewraps_every_version_and_the_old_key_can_then_be_removed(
    media_root, use_master_keys
):
    use_master_keys(OLD)
    versions = make_versions(5)
    files_before = {path: path.read_bytes() for path in stored_files(media_root)}
    assert {v.master_key_id for v in versions} == {"old"}

    use_master_keys(NEW, OLD)  # the deployment puts the new master-key version first
    report = rotate_master_key(batch=2)

    assert report.rotated == 5 and report.from_ids == ["old"] and report.failed == []
    assert report.still_in_use == {"old": 0} and report.retirable == ["old"]
    rows = ModelVersion.objects.all()
    assert {row.master_key_id for row in rows} == {"new"}
    by_pk = {v.pk: bytes(v.wrapped_data_key) for v in versions}
    assert all(bytes(row.wrapped_data_key) != by_pk[row.pk] for row in rows)
    # The artifacts were not touched, let alone re-encrypted.
    assert {path: path.read_bytes() for path in stored_files(media_root)} == files_before
    assert_all_load()

    use_master_keys(NEW)  # retire the old key: nothing uses it
    assert_all_load()

    [event] = audit_events("masterkey.rotated")
    assert event["actor"] == {"type": "system", "ref": "rotate_master_key"}
    assert event["details"] == {
        "to": "new",
        "from": ["old"],
        "rotated": 5,
        "sealed_rotated": 0,
        "failed": 0,
        "still_in_use": {"old": 0},
    }
    body = json.dumps(event)
    assert OLD[1] not in body and NEW[1] not in body


@pytest.mark.django_db
def test_a_second_rotation_rotates_nothing(media_root, use_master_keys):
    use_master_keys(OLD)
    make_versions(3)
    use_master_keys(NEW, OLD)
    assert rotate_master_key().rotated == 3
    wrapped = {v.pk: bytes(v.wrapped_data_key) for v in ModelVersion.objects.all()}

    again = rotate_master_key()

    assert again.rotated == 0 and again.from_ids == []
    assert {v.pk: bytes(v.wrapped_data_key) for v in ModelVersion.objects.all()} == wrapped
    assert [e["details"]["rotated"] for e in audit_events("masterkey.rotated")] == [3, 0]
    assert_all_load()


@pytest.mark.django_db
def test_the_command_reports_old_keys_still_in_use_and_refuses_a_missing_one(
    media_root, use_master_keys
):
    use_master_keys(OLD)
    make_versions(2)
    use_master_keys(NEW)  # the old key was dropped too early

    with pytest.raises(CommandError, match="no longer holds"):
        call_command("rotate_master_key")
    assert set(ModelVersion.objects.values_list("master_key_id", flat=True)) == {"old"}

    use_master_keys(NEW, OLD)
    out = io.StringIO()
    call_command("rotate_master_key", "--actor", "ops", stdout=out)
    assert "re-wrapped 2 version(s) and 0 sealed secret(s) from old" in out.getvalue()
    assert "old: 0 version(s) or sealed secret(s) still use it (can be removed" in out.getvalue()


@pytest.mark.django_db
def test_the_celery_task_is_registered_and_rotates(media_root, use_master_keys):
    from apps.registry.tasks_rotation import master_key_rotate_task
    from controlplane.celery import app

    assert "registry.rotate_master_key" in app.tasks
    use_master_keys(OLD)
    make_versions(2)
    use_master_keys(NEW, OLD)

    result = master_key_rotate_task.delay(batch=1).get()

    assert result["rotated"] == 2 and result["still_in_use"] == {"old": 0}
    assert audit_events("masterkey.rotated")[0]["actor"] == {"type": "system", "ref": "celery"}


def _subprocess_env(pause: str) -> dict[str, str]:
    # The same secrets as this process (copied environment), the test database, and a pause
    # per row so the run is slow enough to be killed half-way.
    env = dict(os.environ)
    url = urlsplit(env["DATABASE_URL"])
    name = connection.settings_dict["NAME"]
    env["DATABASE_URL"] = urlunsplit(url._replace(path=f"/{name}"))
    env["DJANGO_SETTINGS_MODULE"] = "controlplane.test_settings"
    env["BULWARK_ROTATION_PAUSE_SECONDS"] = pause
    env["MEDIA_ROOT"] = str(django_settings.MEDIA_ROOT)
    return env


def _rotated_count() -> int:
    return ModelVersion.objects.filter(master_key_id="new").count()


def _wait_for_other_backends_to_go(timeout: float = 10.0) -> None:
    # A SIGKILLed client's backend rolls back and exits when it notices the closed socket.
    deadline = time.monotonic() + timeout
    with connection.cursor() as cursor:
        while time.monotonic() < deadline:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            if cursor.fetchone()[0] == 0:
                return
            time.sleep(0.05)
    raise AssertionError("the killed rotation's database session did not end")


@pytest.mark.django_db(transaction=True)
def test_a_rotation_killed_half_way_leaves_everything_decryptable_and_a_rerun_finishes(
    media_root, use_master_keys
):
    total = 40
    use_master_keys(OLD)
    make_versions(total)
    use_master_keys(NEW, OLD)
    command = [sys.executable, "manage.py", "rotate_master_key", "--batch", "7"]

    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env=_subprocess_env("0.1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 60
        while not 0 < _rotated_count() < total // 2:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "the rotation never started"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL
    _wait_for_other_backends_to_go()

    done = _rotated_count()
    assert 0 < done < total
    # Every row is whole: the id recorded is the id that wrapped the key, so all decrypt.
    assert_all_load()

    rerun = subprocess.run(
        command,
        cwd=ROOT,
        env=_subprocess_env("0"),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert rerun.returncode == 0, rerun.stderr
    assert f"re-wrapped {total - done} version(s) and 0 sealed secret(s) from old" in rerun.stdout
    assert _rotated_count() == total
    use_master_keys(NEW)
    assert_all_load()


def test_every_sealed_field_of_every_model_is_resealed_by_rotation():
    # A model field holding sealed text must be registered (apps.core.resealing), or retiring
    # an old master key would leave it unreadable.
    from django.apps import apps

    from apps.core.resealing import sealed_fields

    sealed = {
        f"{model._meta.label_lower}.{field.name}"
        for model in apps.get_models()
        for field in model._meta.concrete_fields
        if field.name.endswith("_sealed")
    }
    assert sealed == {spec.label for spec in sealed_fields()}
    assert "apikeys.apikey.signing_secret_sealed" in sealed  # the walk sees them at all


@pytest.mark.django_db
@pytest.mark.urls("tests.apikeys.urls")
def test_a_signed_api_key_keeps_working_after_rotation_retires_the_old_key(client, use_master_keys):
    from tests.apikeys.factories import ApiKeyFactory
    from tests.apikeys.test_request_signing import header_for, post

    use_master_keys(OLD)
    api_key, key, secret = ApiKeyFactory.issue_signed(owner=UserFactory(roles=["api_client"]))
    assert api_key.signing_secret_sealed.startswith("s1:old:")
    assert post(client, key, header_for(secret)).status_code == 200  # its record now cached

    use_master_keys(NEW, OLD)
    report = rotate_master_key()
    assert report.sealed_rotated == 1 and report.retirable == ["old"]
    api_key.refresh_from_db()
    assert api_key.signing_secret_sealed.startswith("s1:new:")

    use_master_keys(NEW)  # retired, as the report allows: the cached record was rewritten too
    body = {"inputs": [{"price": 13.0}]}  # another request: the first one's signature is spent
    response = post(client, key, header_for(secret, body=body), body=body)
    assert response.status_code == 200, response.content
