"""django-otp devices whose secrets are protected at rest (imported by apps.accounts.models).

- `TotpDevice`: an authenticator app. Its seed is sealed (AES-256-GCM under a key derived from
  the current master key, apps.core.sealing) in `key_sealed`; only `bin_key` opens it, when a
  code is checked or the enrolment page shows it. Master-key rotation re-seals it.
- `RecoveryCodeDevice` and its `RecoveryCode`s: the codes are stored only as HMAC-SHA256
  under a random 32-byte key of the device, itself sealed in `hash_key_sealed`. A copy of the
  database alone can neither read a code nor test guesses offline (the codes have 40 bits:
  an unkeyed hash of them would fall to brute force); rotation re-seals the device's key,
  never needing the codes. A code is compared in constant time and spent once.

A sealed value that does not open (altered, or under a master key no longer configured) makes
the device refuse every code, with a warning in the log that names the device, never a value:
security checks fail closed. django-otp finds these models through the app registry (they are
`Device` subclasses), so its session verification (`otp_login`, `persistent_id`,
`user_has_device`, the OTPMiddleware) works with them unchanged.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import time
from base64 import b32encode
from binascii import unhexlify
from typing import Any
from urllib.parse import quote, urlencode

from django.conf import settings
from django.db import models
from django.db.models import Q
from django_otp.models import Device, ThrottlingMixin, TimestampMixin
from django_otp.oath import TOTP

from apps.core.sealing import VERSION, SealError, seal, unseal

logger = logging.getLogger("bulwark.accounts")

TOTP_SEED_PURPOSE = "accounts.mfa.totp-seed"
RECOVERY_KEY_PURPOSE = "accounts.mfa.recovery-code-key"
TOTP_SEED_BYTES = 20  # 160 bits, RFC 4226's recommendation (django-otp's default too)
RECOVERY_HASH_KEY_BYTES = 32
_THROTTLE_FIELDS = ["throttling_failure_timestamp", "throttling_failure_count"]

# Users type codes with spaces ("123 456") or copy recovery codes in capitals; neither changes
# what they mean.
_SEPARATORS = re.compile(r"[\s-]+")


def normalize_code(code: str) -> str:
    return _SEPARATORS.sub("", code).lower()


def new_sealed_seed() -> str:
    """A fresh random TOTP seed, sealed: the default of `TotpDevice.key_sealed`."""
    return seal(os.urandom(TOTP_SEED_BYTES).hex(), purpose=TOTP_SEED_PURPOSE)


def new_sealed_hash_key() -> str:
    """A fresh random recovery-code hash key, sealed: the default of
    `RecoveryCodeDevice.hash_key_sealed`."""
    return seal(os.urandom(RECOVERY_HASH_KEY_BYTES).hex(), purpose=RECOVERY_KEY_PURPOSE)


def new_recovery_code() -> str:
    """8 lower-case base32 characters (40 bits), the format django-otp's static tokens had."""
    return b32encode(os.urandom(5)).decode("ascii").lower()


def _unopened(device: Device, what: str) -> None:
    # Ids only: never the sealed text, let alone what it holds.
    logger.warning(
        "MFA: a %s does not unseal (altered, or its master key is not configured); "
        "the device refuses every code",
        what,
        extra={"device": device.persistent_id, "user_id": str(device.user_id)},
    )


class TotpDevice(TimestampMixin, ThrottlingMixin, Device):
    """An authenticator app: django-otp's TOTPDevice with the seed sealed (`key_sealed`)."""

    key_sealed = models.TextField(default=new_sealed_seed, editable=False)
    step = models.PositiveSmallIntegerField(default=30)
    t0 = models.BigIntegerField(default=0)
    digits = models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)
    tolerance = models.PositiveSmallIntegerField(default=1)
    drift = models.SmallIntegerField(default=0)
    # The time step of the last accepted code: a code is accepted once.
    last_t = models.BigIntegerField(default=-1)

    class Meta(Device.Meta):
        verbose_name = "TOTP device"
        constraints = [
            models.CheckConstraint(
                condition=Q(key_sealed__startswith=f"{VERSION}:"),
                name="%(app_label)s_%(class)s_key_is_sealed",
            ),
        ]

    @property
    def bin_key(self) -> bytes:
        """The seed. Raises SealError when the sealed value does not open."""
        return unhexlify(unseal(self.key_sealed, purpose=TOTP_SEED_PURPOSE))

    def get_throttle_factor(self) -> int:
        return int(getattr(settings, "OTP_TOTP_THROTTLE_FACTOR", 1))

    def verify_token(self, token: Any) -> bool:
        """Accept a code of the current step (± tolerance) that is newer than the last one
        accepted. Failures count towards the throttle; a seed that does not unseal refuses
        every code without counting (the user did nothing wrong)."""
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        try:
            key = self.bin_key
        except SealError:
            _unopened(self, "TOTP seed")
            return False
        try:
            code = int(str(token))
        except ValueError:
            code = None
        generator = TOTP(key, self.step, self.t0, self.digits, self.drift)
        generator.time = time.time()
        if code is not None and generator.verify(code, self.tolerance, self.last_t + 1):
            self.last_t = generator.t()
            if getattr(settings, "OTP_TOTP_SYNC", True):
                self.drift = generator.drift
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            # Never the whole row: a concurrent master-key rotation may have re-sealed the seed.
            self.save(update_fields=[*_THROTTLE_FIELDS, "last_t", "drift", "last_used_at"])
            return True
        self.throttle_increment(commit=False)
        self.save(update_fields=_THROTTLE_FIELDS)
        return False

    @property
    def config_url(self) -> str:
        """The otpauth:// URI an authenticator app scans (Key Uri Format). Raises SealError."""
        label = str(self.user.get_username())
        params = urlencode(
            {
                "secret": b32encode(self.bin_key),
                "algorithm": "SHA1",
                "digits": self.digits,
                "period": self.step,
            }
        )
        issuer = str(getattr(settings, "OTP_TOTP_ISSUER", "") or "").replace(":", "")
        if issuer:
            label = f"{issuer}:{label}"
            params += f"&issuer={quote(issuer)}"
        return f"otpauth://totp/{quote(label)}?{params}"


class RecoveryCodeDevice(TimestampMixin, ThrottlingMixin, Device):
    """A user's recovery codes: one-time codes stored as keyed hashes (see the module)."""

    hash_key_sealed = models.TextField(default=new_sealed_hash_key, editable=False)

    class Meta(Device.Meta):
        verbose_name = "recovery-code device"
        constraints = [
            models.CheckConstraint(
                condition=Q(hash_key_sealed__startswith=f"{VERSION}:"),
                name="%(app_label)s_%(class)s_hash_key_is_sealed",
            ),
        ]

    def code_hash(self, code: str) -> str:
        """HMAC-SHA256 of the normalized code under the device's key, hex. Raises SealError."""
        key = unhexlify(unseal(self.hash_key_sealed, purpose=RECOVERY_KEY_PURPOSE))
        return hmac.new(key, normalize_code(code).encode(), hashlib.sha256).hexdigest()

    def get_throttle_factor(self) -> int:
        return int(getattr(settings, "OTP_STATIC_THROTTLE_FACTOR", 1))

    def verify_token(self, token: Any) -> bool:
        """Accept one of the device's codes, and spend it (delete it). Every stored hash is
        compared with hmac.compare_digest, without stopping at a match, so the time taken
        says nothing about which or how many hashes matched how far."""
        allowed, _ = self.verify_is_allowed()
        if not allowed:
            return False
        try:
            candidate = self.code_hash(str(token))
        except SealError:
            _unopened(self, "recovery-code key")
            return False
        match = None
        for pk, stored in self.codes.values_list("pk", "code_hash"):
            if hmac.compare_digest(stored, candidate):
                match = pk
        # The delete is the spend: of two concurrent uses of one code only one deletes it.
        if match is not None and self.codes.filter(pk=match).delete()[0]:
            self.throttle_reset(commit=False)
            self.set_last_used_timestamp(commit=False)
            self.save(update_fields=[*_THROTTLE_FIELDS, "last_used_at"])
            return True
        self.throttle_increment(commit=False)
        self.save(update_fields=_THROTTLE_FIELDS)
        return False


class RecoveryCode(models.Model):
    """One unspent recovery code, as its keyed hash (never the code)."""

    device = models.ForeignKey(RecoveryCodeDevice, on_delete=models.CASCADE, related_name="codes")
    code_hash = models.CharField(max_length=64, editable=False)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["device", "code_hash"], name="%(app_label)s_%(class)s_unique_per_device"
            ),
            models.CheckConstraint(
                condition=Q(code_hash__regex=r"^[0-9a-f]{64}$"),
                name="%(app_label)s_%(class)s_hash_format",
            ),
        ]

    def __str__(self) -> str:
        return f"recovery code {self.pk} of device {self.device_id}"
