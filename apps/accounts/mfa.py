"""TOTP multi-factor authentication on django-otp: enrolment, recovery codes, removal, reset,
and the one code check the sign-in paths share.

A user's MFA is one TOTP device (an authenticator app) plus one recovery-code device.
"Enabled" means the TOTP device is confirmed, i.e. the user proved once that their app
produces our codes. Every change here is one transaction that locks the user's row,
so two tabs (or an admin and the user) cannot interleave enrolment, regeneration and removal.

The devices are apps.accounts.devices': the TOTP seed is sealed under the master key and the
recovery codes are stored as keyed hashes, so the codes exist in clear only in the response
that shows them once. Nothing here ever writes a secret or a code to the audit trail or a log.
"""

from __future__ import annotations

import logging
from base64 import b32encode
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import transaction
from django.http import HttpRequest
from django_otp.models import Device, VerifyNotAllowed

from apps.accounts.credentials import Cause, credentials_revoke
from apps.accounts.devices import (
    RecoveryCode,
    RecoveryCodeDevice,
    TotpDevice,
    new_recovery_code,
    new_sealed_hash_key,
    normalize_code,
)
from apps.accounts.models import User
from apps.audit.services import audit_event_record
from apps.core.sealing import SealError

logger = logging.getLogger("bulwark.accounts")

RECOVERY_CODE_COUNT = 10
TOTP_DEVICE_NAME = "Authenticator app"
RECOVERY_DEVICE_NAME = "Recovery codes"


class MfaCodeRejected(Exception):
    """A code was wrong, replayed or throttled. The message is safe to show to the user."""


class MfaAlreadyEnabled(Exception):
    """Enrolment was asked of a user whose authenticator is already confirmed."""


class MfaNotEnabled(Exception):
    """An operation on an enabled MFA was asked of a user without one."""


@dataclass(frozen=True)
class MfaStatus:
    enabled: bool
    enabled_since: datetime | None
    recovery_codes_remaining: int


@dataclass(frozen=True)
class PendingEnrolment:
    """What the user's app needs: the otpauth:// URI, or the same secret typed by hand."""

    config_url: str
    secret_base32: str
    digits: int
    period: int

    @property
    def secret_grouped(self) -> str:
        """The secret in groups of four, as most apps accept it typed."""
        secret = self.secret_base32
        return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def mfa_status_get(*, user: User) -> MfaStatus:
    """The user's MFA state, without any secret."""
    device = (
        TotpDevice.objects.filter(user=user, confirmed=True)
        .order_by("created_at")
        .only("created_at")
        .first()
    )
    remaining = RecoveryCode.objects.filter(device__user=user, device__confirmed=True).count()
    return MfaStatus(
        enabled=device is not None,
        enabled_since=device.created_at if device is not None else None,
        recovery_codes_remaining=remaining,
    )


def _lock_user(user: User) -> None:
    # Serialises every MFA change for one user (see the module docstring).
    User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True).first()


def _verify(device: Device, code: str) -> str | None:
    """None when `device` accepts `code`; else why not, in words for the user.

    The device records failures itself (django-otp's throttling: waits of 1, 2, 4, ... seconds
    after successive failures), so callers must let the surrounding transaction commit even
    when this fails, or the throttle would be rolled back with it.
    """
    allowed, extra = device.verify_is_allowed()
    if not allowed:
        if (extra or {}).get("reason") == VerifyNotAllowed.N_FAILED_ATTEMPTS:
            return "Too many wrong codes in a row: wait a few seconds, then try the next code."
        return "Codes cannot be checked right now: try again shortly."
    if device.verify_token(code):
        return None
    return "That code is wrong or was already used."


def _is_totp_shaped(code: str, digits: int) -> bool:
    return code.isdigit() and len(code) == digits


def _matching_device(user: User, code: str) -> tuple[Device | None, str]:
    """Try `code` on the user's confirmed devices of the kind its shape names: a TOTP code is
    digits of the app's length, anything else is a recovery code. Checking only that kind
    (unlike django_otp.match_token) keeps a recovery code from counting as a failed attempt
    against the app, which would throttle the app's next, correct code. Call inside a
    transaction (the devices are locked for update)."""
    totp_devices = list(
        TotpDevice.objects.filter(user=user, confirmed=True).select_for_update().order_by("pk")
    )
    if any(_is_totp_shaped(code, device.digits) for device in totp_devices):
        candidates: list[Device] = totp_devices
    else:
        candidates = list(
            RecoveryCodeDevice.objects.filter(user=user, confirmed=True)
            .select_for_update()
            .order_by("pk")
        )
    reason = "That code is wrong or was already used."
    for device in candidates:
        refusal = _verify(device, code)
        if refusal is None:
            return device, ""
        reason = refusal
    return None, reason


def _record_recovery_code_use(user: User, device: Device) -> None:
    remaining = RecoveryCode.objects.filter(device=device).count()
    audit_event_record(
        "auth.mfa.recovery_code_used",
        actor=user,
        target=user,
        details={"remaining": remaining},
    )


def mfa_code_verify(*, user: User, code: str) -> Device:
    """Check a TOTP code or a recovery code for a user with MFA; the device that accepted it.

    A recovery code is spent (deleted) and its use audited as `auth.mfa.recovery_code_used`.
    A TOTP code is accepted once (a replay within its window is refused). Raises
    MfaCodeRejected for a wrong, spent, replayed or throttled code; the failure is recorded on
    the device (throttling) before the exception leaves.
    """
    code = normalize_code(code)
    with transaction.atomic():
        device, reason = _matching_device(user, code)
        if isinstance(device, RecoveryCodeDevice):
            _record_recovery_code_use(user, device)
    if device is None:
        raise MfaCodeRejected(reason)
    return device


def totp_device_pending_get_or_create(*, user: User) -> PendingEnrolment:
    """The secret for the user's app: an unconfirmed TOTP device, created on first call and
    reused after (so reloading the page keeps the secret the user may already have scanned).
    A pending device whose seed no longer unseals is replaced by a new one (it was never
    confirmed, so nothing depends on it). Raises MfaAlreadyEnabled when the user has a
    confirmed one."""
    with transaction.atomic():
        _lock_user(user)
        if TotpDevice.objects.filter(user=user, confirmed=True).exists():
            raise MfaAlreadyEnabled()
        device = TotpDevice.objects.filter(user=user, confirmed=False).order_by("pk").first()
        if device is not None:
            try:
                return _pending_enrolment(device)
            except SealError:
                logger.warning(
                    "MFA: a pending TOTP seed does not unseal; replacing the pending device",
                    extra={"device": device.persistent_id, "user_id": str(user.pk)},
                )
                device.delete()
        device = TotpDevice(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
        device.full_clean()
        device.save()
        return _pending_enrolment(device)


def _pending_enrolment(device: TotpDevice) -> PendingEnrolment:
    """What the enrolment page shows of `device`. Raises SealError."""
    return PendingEnrolment(
        config_url=device.config_url,
        secret_base32=b32encode(device.bin_key).decode("ascii").rstrip("="),
        digits=device.digits,
        period=device.step,
    )


def _recovery_codes_replace(user: User) -> list[str]:
    """Delete every recovery code the user had and create a new set, stored as keyed hashes
    under a new hash key of the device; the codes, once. The device itself stays (a session
    it verified stays verified); its new key means the new set never depends on a key that
    may have stopped unsealing."""
    device = RecoveryCodeDevice.objects.filter(user=user).order_by("pk").first()
    RecoveryCodeDevice.objects.filter(user=user).exclude(pk=getattr(device, "pk", None)).delete()
    if device is None:
        device = RecoveryCodeDevice(user=user, name=RECOVERY_DEVICE_NAME, confirmed=True)
        device.full_clean()
        device.save()
    else:
        device.codes.all().delete()
        device.confirmed = True
        device.hash_key_sealed = new_sealed_hash_key()
        device.save(update_fields=["confirmed", "hash_key_sealed"])
    codes: list[str] = []
    while len(codes) < RECOVERY_CODE_COUNT:  # distinct: each hash is unique per device
        code = new_recovery_code()
        if code not in codes:
            codes.append(code)
    RecoveryCode.objects.bulk_create(
        RecoveryCode(device=device, code_hash=device.code_hash(code)) for code in codes
    )
    return codes


def _recovery_codes_issue(user: User) -> list[str]:
    """A new set of recovery codes, audited by count (never the codes)."""
    codes = _recovery_codes_replace(user)
    audit_event_record(
        "auth.mfa.recovery_codes_issued",
        actor=user,
        target=user,
        details={"count": len(codes)},
    )
    return codes


def mfa_enrol_confirm(*, user: User, code: str) -> tuple[TotpDevice, list[str]]:
    """Confirm the user's pending authenticator with a code from it; then issue recovery codes.

    Returns the confirmed device and the recovery codes (the only time they are readable by
    anyone: show them, never store them elsewhere). Audited as `auth.mfa.enrolled` and
    `auth.mfa.recovery_codes_issued`. Raises MfaAlreadyEnabled, MfaNotEnabled (no pending
    device: the page was not loaded first) or MfaCodeRejected (the device stays unconfirmed).
    """
    code = normalize_code(code)
    with transaction.atomic():
        _lock_user(user)
        if TotpDevice.objects.filter(user=user, confirmed=True).exists():
            raise MfaAlreadyEnabled()
        device = (
            TotpDevice.objects.filter(user=user, confirmed=False)
            .select_for_update()
            .order_by("pk")
            .first()
        )
        if device is None:
            raise MfaNotEnabled()
        refusal = _verify(device, code)
        if refusal is None:
            device.confirmed = True
            device.save(update_fields=["confirmed"])
            # Abandoned secrets from other tabs must not linger as half-made devices.
            TotpDevice.objects.filter(user=user, confirmed=False).delete()
            audit_event_record(
                "auth.mfa.enrolled",
                actor=user,
                target=user,
                details={"device": "totp"},
            )
            codes = _recovery_codes_issue(user)
    if refusal is not None:
        raise MfaCodeRejected(refusal)
    return device, codes


def mfa_recovery_codes_regenerate(*, user: User, code: str) -> list[str]:
    """A new set of recovery codes, for a current code from the user's app; the old set stops
    working. Asking the app (not a recovery code, not just the session) means a stolen
    password alone, or a session opened before MFA was set up, cannot mint codes.
    Audited as `auth.mfa.recovery_codes_issued`. Raises MfaNotEnabled or MfaCodeRejected."""
    code = normalize_code(code)
    with transaction.atomic():
        _lock_user(user)
        devices = list(
            TotpDevice.objects.filter(user=user, confirmed=True).select_for_update().order_by("pk")
        )
        if not devices:
            raise MfaNotEnabled()
        refusal: str | None = "That code is wrong or was already used."
        if any(_is_totp_shaped(code, device.digits) for device in devices):
            for device in devices:
                refusal = _verify(device, code)
                if refusal is None:
                    break
        if refusal is None:
            codes = _recovery_codes_issue(user)
    if refusal is not None:
        raise MfaCodeRejected(refusal)
    return codes


def _delete_devices(user: User) -> int:
    deleted = 0
    for model in (TotpDevice, RecoveryCodeDevice):
        count, _ = model.objects.filter(user=user).delete()
        deleted += count
    return deleted


def mfa_remove(*, user: User, code: str) -> None:
    """Turn MFA off for oneself, given a current code (from the app or a recovery code, so a
    user who lost the phone can still start over). Deletes the app and the recovery codes.
    Members of MFA_REQUIRED_ROLES may do it too; the admin then refuses them until they enrol
    again. Audited as `auth.mfa.removed`. Raises MfaNotEnabled or MfaCodeRejected."""
    code = normalize_code(code)
    with transaction.atomic():
        _lock_user(user)
        if not TotpDevice.objects.filter(user=user, confirmed=True).exists():
            raise MfaNotEnabled()
        device, refusal = _matching_device(user, code)
        if device is not None:
            _delete_devices(user)
            audit_event_record(
                "auth.mfa.removed",
                actor=user,
                target=user,
                details={"reason": "self"},
            )
    if device is None:
        raise MfaCodeRejected(refusal)


@transaction.atomic
def mfa_reset(*, actor: Any, user: User, request: HttpRequest | None = None) -> bool:
    """An administrator's reset (a lost phone and no recovery codes): every device of `user`
    is deleted, so they sign in with the password alone until they enrol again. Returns
    whether there was anything to delete; audited as `auth.mfa.removed` only then."""
    _lock_user(user)
    if not _delete_devices(user):
        return False
    audit_event_record(
        "auth.mfa.removed",
        actor=actor,
        target=user,
        details={"reason": "admin_reset"},
    )
    # Whoever asked for the reset may not be the user: nothing signed in before it survives.
    credentials_revoke(user=user, cause=Cause.MFA_RESET, actor=actor, request=request)
    return True
