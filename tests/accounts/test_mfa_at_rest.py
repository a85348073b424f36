"""MFA secrets at rest, tried as someone holding a copy of the database would: the TOTP seed and
the recovery codes appear nowhere in it; the seed is sealed under the master key and follows
its rotation; an altered seal refuses codes without an error page; recovery codes are keyed
hashes, compared in constant time and spent once."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction
from django.test import Client

from apps.accounts import devices
from apps.accounts.mfa import MfaCodeRejected, mfa_code_verify
from apps.accounts.models import RecoveryCode, RecoveryCodeDevice, TotpDevice
from apps.core import secrets
from apps.registry.rotation import MasterKeyMissing, rotate_master_key
from tests.accounts.factories import UserFactory
from tests.accounts.test_mfa import (
    MFA_URL,
    PASSWORD,
    audit_events,
    enrol,
    fresh_code,
    obtain,
)
from tests.accounts.test_mfa_admin import admin_login, signed_in
from tests.accounts.test_web_login import sign_in

pytestmark = pytest.mark.django_db

OLD = ("old", base64.b64encode(os.urandom(32)).decode())
NEW = ("new", base64.b64encode(os.urandom(32)).decode())


def _clear_secrets_cache() -> None:
    secrets._runtime_provider().clear()  # type: ignore[attr-defined]  # the TTL cache
    secrets._runtime_provider.cache_clear()


@pytest.fixture
def use_master_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Configure BULWARK_MASTER_KEYS (first is current) and drop the cached value."""

    def configure(*keys: tuple[str, str]) -> None:
        monkeypatch.setenv("BULWARK_MASTER_KEYS", ",".join(f"{i}:{k}" for i, k in keys))
        _clear_secrets_cache()

    yield configure
    monkeypatch.undo()
    _clear_secrets_cache()


@pytest.fixture
def person(client: Client) -> Any:
    user = UserFactory(roles=["security_officer"], is_staff=True)
    client.force_login(user)
    return user


def seed_forms(seed: bytes) -> list[str]:
    """Every way the seed is usually written: hex, and base32 with or without padding."""
    b32 = base64.b32encode(seed).decode()
    return [seed.hex(), seed.hex().upper(), b32, b32.rstrip("="), b32.lower().rstrip("=")]


def database_text() -> str:
    """Every row of every table of this database, each as PostgreSQL's text form of the whole
    row (every column, bytea as hex, JSON as written): what a dump would hold."""
    rows: list[str] = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            quoted = connection.ops.quote_name(table)
            cursor.execute(f"SELECT t::text FROM {quoted} AS t")  # noqa: S608  # our own table names
            rows.extend(row for (row,) in cursor.fetchall())
    return "\n".join(rows)


def legacy_tables() -> list[str]:
    return [t for t in connection.introspection.table_names() if t.startswith("otp_")]


# --- what a copy of the database holds ----------------------------------------------------


def test_the_database_holds_neither_the_seed_nor_any_recovery_code(client, person):
    device, codes = enrol(client, person)
    seed = device.bin_key
    # A code used and a set regenerated leave nothing behind either.
    assert obtain(Client(), person.username, otp=codes[0]).status_code == 200
    regenerated = client.post("/account/mfa/recovery-codes", {"code": fresh_code(device)})
    assert regenerated.status_code == 200
    new_codes = list(regenerated.context["codes"])

    dump = database_text()

    assert person.username in dump and device.key_sealed in dump  # the scan sees these rows
    dump_folded = dump.lower()
    for form in seed_forms(seed):
        assert form.lower() not in dump_folded, "the TOTP seed is in the database"
    for code in [*codes, *new_codes]:
        assert code.lower() not in dump_folded, "a recovery code is in the database"
    # Nor a hash anyone could compute from a guess: the stored hashes are keyed.
    for code in new_codes:
        assert hashlib.sha256(code.encode()).hexdigest() not in dump
        assert hashlib.sha256(code.upper().encode()).hexdigest() not in dump
    assert legacy_tables() == []


def test_a_seed_cannot_be_stored_unsealed():
    user = UserFactory()
    with pytest.raises(IntegrityError), transaction.atomic():
        TotpDevice.objects.create(user=user, name="app", key_sealed=os.urandom(20).hex())
    device = RecoveryCodeDevice.objects.create(user=user, name="Recovery codes")
    with pytest.raises(IntegrityError), transaction.atomic():
        RecoveryCode.objects.create(device=device, code_hash="abcdefgh")


def test_the_enrolment_page_shows_the_seed_that_the_sealed_value_holds(client, person):
    page = client.get(MFA_URL)
    device = TotpDevice.objects.get(user=person)
    assert page.context["pending"].secret_base32 == seed_forms(device.bin_key)[3]
    assert device.key_sealed.startswith("s1:") and device.bin_key.hex() not in device.key_sealed


# --- master-key rotation --------------------------------------------------------------------


def test_a_seed_sealed_under_an_old_master_key_verifies_and_rotation_reseals_it(
    client, person, use_master_keys
):
    use_master_keys(OLD)
    device, codes = enrol(client, person)
    recovery = RecoveryCodeDevice.objects.get(user=person)
    seed = device.bin_key
    assert device.key_sealed.startswith("s1:old:")
    assert recovery.hash_key_sealed.startswith("s1:old:")

    use_master_keys(NEW, OLD)  # a new master-key version, first; the old one still listed
    assert mfa_code_verify(user=person, code=fresh_code(device)) == device  # still opens
    before = (device.key_sealed, recovery.hash_key_sealed)

    report = rotate_master_key(batch=1)

    assert report.sealed_rotated == 2 and report.rotated == 0
    assert report.from_ids == ["old"] and report.failed == []
    assert report.still_in_use == {"old": 0} and report.retirable == ["old"]
    device.refresh_from_db()
    recovery.refresh_from_db()
    assert device.key_sealed.startswith("s1:new:") and recovery.hash_key_sealed.startswith(
        "s1:new:"
    )
    assert (device.key_sealed, recovery.hash_key_sealed) != before
    assert device.bin_key == seed  # the same seed: the user's app keeps working

    use_master_keys(NEW)  # the old key retired, as the report allows
    assert mfa_code_verify(user=person, code=fresh_code(device)) == device
    assert isinstance(mfa_code_verify(user=person, code=codes[0]), RecoveryCodeDevice)
    [event] = audit_events("masterkey.rotated")
    assert event["details"]["sealed_rotated"] == 2
    assert event["details"]["still_in_use"] == {"old": 0}
    body = json.dumps(event)
    assert all(form not in body for form in seed_forms(seed))
    assert rotate_master_key().sealed_rotated == 0  # nothing left to do


def test_the_rotation_keeps_an_old_key_in_use_until_the_seeds_move_and_refuses_a_missing_one(
    client, person, use_master_keys
):
    use_master_keys(OLD)
    device, _codes = enrol(client, person)
    use_master_keys(NEW)  # the old key dropped too early: nothing can open the seed

    with pytest.raises(MasterKeyMissing):
        rotate_master_key()
    with pytest.raises(CommandError, match="no longer holds"):
        call_command("rotate_master_key")
    device.refresh_from_db()
    assert device.key_sealed.startswith("s1:old:")  # nothing was changed

    use_master_keys(NEW, OLD)
    report = rotate_master_key()
    assert report.sealed_rotated == 2 and report.still_in_use == {"old": 0}


# --- an altered seal fails closed -----------------------------------------------------------


def tamper(sealed: str) -> str:
    """Flip one bit of the ciphertext, keeping the text well-formed."""
    prefix, payload = sealed.rsplit(":", 1)
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 1
    return f"{prefix}:{base64.urlsafe_b64encode(bytes(raw)).decode()}"


def test_an_altered_seed_refuses_the_right_code_everywhere_without_an_error(
    client, person, log_output
):
    device, _codes = enrol(client, person)
    seed = device.bin_key
    code = fresh_code(device)  # the code the user's app shows: right, but unverifiable now
    TotpDevice.objects.filter(pk=device.pk).update(key_sealed=tamper(device.key_sealed))

    api = obtain(Client(), person.username, otp=code)
    assert api.status_code == 401 and api.json()["error"]["code"] == "mfa_required"
    page = sign_in(Client(), person, otp=code)
    assert page.status_code == 400 and "That code is wrong" in page.content.decode()
    browser = Client()
    admin = admin_login(browser, person, otp=code)
    assert admin.status_code == 200 and not signed_in(browser)
    with pytest.raises(MfaCodeRejected):
        mfa_code_verify(user=person, code=code)

    device.refresh_from_db()
    assert device.throttling_failure_count == 0  # not the user's fault: no backoff
    logged = log_output.getvalue()
    assert "TOTP seed does not unseal" in logged and device.persistent_id in logged
    assert device.key_sealed not in logged
    assert all(form not in logged for form in seed_forms(seed))


def test_a_sealed_value_moved_to_another_purpose_or_altered_does_not_open(client, person):
    device, codes = enrol(client, person)
    recovery = RecoveryCodeDevice.objects.get(user=person)
    code = fresh_code(device)
    # The recovery device's sealed key, put where the seed belongs: another purpose.
    TotpDevice.objects.filter(pk=device.pk).update(key_sealed=recovery.hash_key_sealed)
    with pytest.raises(MfaCodeRejected):
        mfa_code_verify(user=person, code=code)
    # A sealed key that does not open: the recovery codes are refused too, without an error.
    RecoveryCodeDevice.objects.filter(pk=recovery.pk).update(
        hash_key_sealed=tamper(recovery.hash_key_sealed)
    )
    with pytest.raises(MfaCodeRejected):
        mfa_code_verify(user=person, code=codes[0])
    assert RecoveryCode.objects.filter(device=recovery).count() == 10  # nothing spent


def test_a_pending_seed_that_does_not_open_is_replaced_on_the_enrolment_page(client, person):
    client.get(MFA_URL)
    pending = TotpDevice.objects.get(user=person)
    TotpDevice.objects.filter(pk=pending.pk).update(key_sealed=tamper(pending.key_sealed))

    page = client.get(MFA_URL)

    assert page.status_code == 200
    [fresh] = TotpDevice.objects.filter(user=person)
    assert fresh.pk != pending.pk and not fresh.confirmed
    assert page.context["pending"].secret_base32 == seed_forms(fresh.bin_key)[3]


# --- recovery codes -------------------------------------------------------------------------


def test_a_recovery_code_works_once(client, person):
    _device, codes = enrol(client, person)
    assert isinstance(mfa_code_verify(user=person, code=codes[3]), RecoveryCodeDevice)
    with pytest.raises(MfaCodeRejected):
        mfa_code_verify(user=person, code=codes[3])
    assert RecoveryCode.objects.filter(device__user=person).count() == 9


def test_every_stored_hash_is_compared_in_constant_time_whatever_the_code(
    client, person, monkeypatch
):
    _device, codes = enrol(client, person)
    recovery = RecoveryCodeDevice.objects.get(user=person)
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a: str, b: str) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(devices.hmac, "compare_digest", spy)

    # The first code stored, the last, and a wrong one: each is compared, with compare_digest,
    # with every hash still stored (10, then 9 once one is spent, then 8): no stop at a match.
    stored = list(recovery.codes.order_by("pk").values_list("code_hash", flat=True))
    by_hash = {recovery.code_hash(code): code for code in codes}
    counted = []
    for code in (by_hash[stored[0]], by_hash[stored[-1]], "zzzzzzzz"):
        calls.clear()
        accepted = recovery.verify_token(code)
        counted.append((accepted, len(calls)))
        assert all(len(a) == len(b) == 64 for a, b in calls)
        recovery.refresh_from_db()
    assert counted == [(True, 10), (True, 9), (False, 8)]


def test_recovery_code_hashes_are_keyed_per_device(client, person):
    _device, codes = enrol(client, person)
    mine = RecoveryCodeDevice.objects.get(user=person)
    other = RecoveryCodeDevice.objects.create(user=UserFactory(), name="Recovery codes")
    assert mine.code_hash(codes[0]) != other.code_hash(codes[0])
    assert mine.code_hash(codes[0]) == mine.code_hash(f" {codes[0][:4].upper()}-{codes[0][4:]}")
    assert not other.verify_token(codes[0])


def test_a_user_signs_in_with_the_password_and_a_recovery_code_after_all_this(client, person):
    _device, codes = enrol(client, person)
    response = sign_in(Client(), person, password=PASSWORD, otp=codes[1].upper())
    assert response.status_code == 302
