"""API keys: `bwk_<public_id>_<secret>`, stored as the public id and a keyed hash of the secret.

Status is derived from timestamps (`status_at`), never stored as the truth: a key past its
`expires_at` or grace period is refused at once, before any job has run. `expired_at` and
`expiry_warned_at` only remember which events the jobs have already recorded.
"""

from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.apikeys.keys import KEY_PREFIX, PUBLIC_ID_LENGTH, PUBLIC_ID_PATTERN
from apps.apikeys.validation import validate_allowed_ips, validate_rate_limit, validate_scopes
from apps.audit.subjects import Subject
from apps.core.models import BaseModel


class ApiKeyStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    ROTATING = "rotating", "Rotating (grace period)"
    EXPIRED = "expired", "Expired"
    REVOKED = "revoked", "Revoked"


class ApiKeyQuerySet(models.QuerySet["ApiKey"]):
    def live_at(self, now: datetime) -> ApiKeyQuerySet:
        """Keys that authenticate at `now`: `status_at(now)` is active or rotating (not revoked,
        not past expires_at, not past a rotation's grace period). The one query of that rule."""
        return self.filter(revoked_at__isnull=True, expires_at__gt=now).filter(
            Q(grace_ends_at__isnull=True) | Q(grace_ends_at__gt=now)
        )


class ApiKey(BaseModel):
    # PROTECT, not CASCADE: a key ends only through a service (revoked, audited, evicted from
    # the key cache). A cascade would delete live keys silently, with no event, and leave
    # their cached records authenticating until they age out. Erasure calls
    # `api_key_erase_owner` first.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="api_keys"
    )
    name = models.CharField(max_length=100)
    public_id = models.CharField(max_length=PUBLIC_ID_LENGTH, editable=False)
    secret_hash = models.CharField(max_length=64, editable=False)
    scopes = models.JSONField(default=list, validators=[validate_scopes])
    expires_at = models.DateTimeField(db_index=True)
    rate_limit = models.CharField(max_length=16, validators=[validate_rate_limit])
    require_signature = models.BooleanField(default=False)
    signing_secret_sealed = models.TextField(blank=True, default="", editable=False)
    allowed_ips = models.JSONField(default=list, blank=True, validators=[validate_allowed_ips])
    revoked_at = models.DateTimeField(null=True, blank=True)
    # The successor after a rotation; SET_NULL only matters when an erasure deletes both.
    rotated_to = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rotated_from"
    )
    grace_ends_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Bookkeeping of the jobs: when the expiry (and the warning) event was recorded.
    expired_at = models.DateTimeField(null=True, blank=True)
    expiry_warned_at = models.DateTimeField(null=True, blank=True)

    objects = ApiKeyQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "API key"
        constraints = [
            models.UniqueConstraint(
                fields=["public_id"], name="%(app_label)s_%(class)s_unique_public_id"
            ),
            models.CheckConstraint(
                condition=Q(public_id__regex=PUBLIC_ID_PATTERN),
                name="%(app_label)s_%(class)s_public_id_format",
            ),
            models.CheckConstraint(
                condition=Q(secret_hash__regex=r"^[0-9a-f]{64}$"),  # noqa: S106  # a pattern
                name="%(app_label)s_%(class)s_secret_hash_format",
            ),
            # A signing secret exactly when signatures are required.
            models.CheckConstraint(
                condition=(
                    Q(require_signature=True) & ~Q(signing_secret_sealed="")
                    | Q(require_signature=False, signing_secret_sealed="")
                ),
                name="%(app_label)s_%(class)s_signing_secret_iff_required",
            ),
            # A grace period exists exactly for a rotated key.
            models.CheckConstraint(
                condition=(
                    Q(rotated_to__isnull=True, grace_ends_at__isnull=True)
                    | Q(rotated_to__isnull=False, grace_ends_at__isnull=False)
                ),
                name="%(app_label)s_%(class)s_grace_iff_rotated",
            ),
            models.CheckConstraint(
                condition=~Q(rotated_to=models.F("id")),
                name="%(app_label)s_%(class)s_not_rotated_to_itself",
            ),
        ]
        indexes = [
            models.Index(fields=["owner", "-created_at"], name="apikeys_owner_created_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.prefix} ({self.name})"

    @property
    def prefix(self) -> str:
        return f"{KEY_PREFIX}{self.public_id}"

    def audit_subject(self) -> Subject:
        return Subject("api_key", self.prefix)

    def status_at(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return ApiKeyStatus.REVOKED.value
        if now >= self.expires_at or (self.grace_ends_at is not None and now >= self.grace_ends_at):
            return ApiKeyStatus.EXPIRED.value
        if self.rotated_to_id is not None:
            return ApiKeyStatus.ROTATING.value
        return ApiKeyStatus.ACTIVE.value

    @property
    def status(self) -> str:
        return self.status_at(timezone.now())
