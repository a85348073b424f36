"""Registered models and their versions. A version's artifact exists only as ciphertext in
Django's default storage; this table holds what is needed to prove and decrypt it."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models

from apps.audit.subjects import Subject
from apps.core.models import BaseModel

# The same alphabet and length as the model part of an API-key scope (`predict:<name>`).
MODEL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
validate_model_name = RegexValidator(
    MODEL_NAME_PATTERN, "Use 1 to 64 letters, digits, hyphens or underscores."
)
MAX_BATCH_LIMIT = 10_000


class RegisteredModel(BaseModel):
    name = models.CharField(max_length=64, unique=True, validators=[validate_model_name])
    description = models.TextField(blank=True, default="", max_length=2000)
    # SET_NULL: erasing a person (privacy erasure) must not delete the models they registered.
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="registered_models",
    )
    # Who may upload, stage and archive this model's versions besides admins (security
    # officers may archive any version: containment). Changed by admins only, audited.
    owners = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="owned_models"
    )
    owner_group = models.ForeignKey(
        "auth.Group",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="owned_models",
    )
    # Uploads must carry a signature bundle from a trusted publisher.
    require_signed_artifacts = models.BooleanField(default=False)
    # Globals beyond the deployment's list that this model's artifacts may import, by name,
    # and only when signed by a trusted publisher (admins only, audited).
    extra_allowed_globals = models.JSONField(default=list, blank=True)

    class Meta:
        verbose_name = "model"
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def audit_subject(self) -> Subject:
        return Subject("model", self.name)


class Stage(models.TextChoices):
    STAGING = "staging"
    PRODUCTION = "production"
    ARCHIVED = "archived"


class ArtifactFormat(models.TextChoices):
    JOBLIB = "joblib"  # pickle: loaded by the restricted unpickler (apps.registry.artifacts)
    SKOPS = "skops"  # loads only allow-listed types (apps.registry.formats)


class VersionStatus(models.TextChoices):
    OK = "ok"
    # Never served and never promoted: its artifact imports what is no longer allowed, or
    # failed its integrity check when the store was scanned (artifacts_scan).
    QUARANTINED = "quarantined"


class Publisher(BaseModel):
    """A trusted publisher of signed artifacts: a name and the public key (PEM, an elliptic
    curve key as OpenSSF model signing uses) whose signatures are accepted. Removing one
    keeps the row (versions name their signer) and stops accepting its signatures."""

    name = models.CharField(max_length=100)
    public_key = models.TextField(help_text="PEM, SubjectPublicKeyInfo.")
    # SHA-256 of the PEM, hex: what a model-signing bundle names as its key hint.
    key_id = models.CharField(max_length=64, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )
    removed_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(removed_at__isnull=True),
                name="%(app_label)s_%(class)s_unique_active_name",
            ),
            models.UniqueConstraint(
                fields=["key_id"],
                condition=models.Q(removed_at__isnull=True),
                name="%(app_label)s_%(class)s_unique_active_key",
            ),
        ]

    def __str__(self) -> str:
        return self.name if self.removed_at is None else f"{self.name} (removed)"

    def audit_subject(self) -> Subject:
        return Subject("publisher", str(self.pk))


class ModelVersion(BaseModel):
    # PROTECT: a version's ciphertext lives in storage; deleting rows would orphan it silently.
    model = models.ForeignKey(RegisteredModel, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField(validators=[MinValueValidator(1)])
    stage = models.CharField(max_length=16, choices=Stage.choices, default=Stage.STAGING)
    format = models.CharField(
        max_length=16, choices=ArtifactFormat.choices, default=ArtifactFormat.JOBLIB
    )
    size = models.PositiveBigIntegerField(help_text="Plaintext bytes.")
    sha256 = models.CharField(max_length=64, help_text="SHA-256 of the plaintext, hex.")
    input_schema = models.JSONField(help_text="JSON Schema (draft 2020-12) of one input row.")
    feature_order = models.JSONField(default=list)
    max_batch = models.PositiveIntegerField(
        default=100, validators=[MinValueValidator(1), MaxValueValidator(MAX_BATCH_LIMIT)]
    )
    dp_epsilon = models.FloatField(null=True, blank=True)
    dp_sensitivity = models.FloatField(null=True, blank=True)
    wrapped_data_key = models.BinaryField(editable=False)
    master_key_id = models.CharField(max_length=64, editable=False)
    # A storage name, not a FileField: nothing should ever open it as a plain file (no URL,
    # no admin download); only the registry's verified-load service reads it.
    artifact = models.CharField(max_length=255, editable=False)
    # The watermark set (inputs, labels, threshold) as JSON, sealed (apps.core.sealing, purpose
    # WATERMARK_PURPOSE): it proves ownership, so it is kept as secret as the artifact.
    watermark_sealed = models.TextField(blank=True, default="", editable=False)  # "": none
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    # Every global the artifact imports (joblib), as found at upload: the restricted
    # unpickler imports these and no other (apps.registry.artifacts.pickle_load).
    allowed_globals = models.JSONField(default=list, editable=False)
    status = models.CharField(
        max_length=16, choices=VersionStatus.choices, default=VersionStatus.OK
    )
    quarantine_reason = models.CharField(max_length=500, blank=True, default="", editable=False)
    signed_by = models.ForeignKey(
        Publisher,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        editable=False,
        related_name="versions",
    )
    # The OpenSSF model-signing bundle as uploaded (public: it proves who signed).
    signature = models.TextField(blank=True, default="", editable=False)

    class Meta:
        ordering = ["model", "-number"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "number"], name="%(app_label)s_%(class)s_unique_number"
            ),
            # The database, not only the service, guarantees a single production version.
            models.UniqueConstraint(
                fields=["model"],
                condition=models.Q(stage="production"),
                name="%(app_label)s_%(class)s_one_production",
            ),
            models.CheckConstraint(
                condition=models.Q(max_batch__gte=1, max_batch__lte=MAX_BATCH_LIMIT),
                name="%(app_label)s_%(class)s_max_batch_range",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(dp_epsilon__isnull=True, dp_sensitivity__isnull=True)
                    | models.Q(dp_epsilon__gt=0, dp_sensitivity__gt=0)
                ),
                name="%(app_label)s_%(class)s_dp_both_positive_or_neither",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.model.name} v{self.number}"

    def audit_subject(self) -> Subject:
        return Subject("model_version", f"{self.model.name}:{self.number}")

    @property
    def is_archived(self) -> bool:
        return bool(self.stage == Stage.ARCHIVED)

    @property
    def is_quarantined(self) -> bool:
        return bool(self.status == VersionStatus.QUARANTINED)


WATERMARK_PURPOSE = "registry.watermark"


class WatermarkKind(models.TextChoices):
    VERIFY = "verify"  # our stored version predicts its own watermark
    SUSPECT = "suspect"  # a suspect prediction endpoint predicts our watermark


class WatermarkStatus(models.TextChoices):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class WatermarkResult(BaseModel):
    """One watermark job and its outcome, kept per version; its id is the job id of the API."""

    version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, related_name="watermark_results"
    )
    kind = models.CharField(
        max_length=16, choices=WatermarkKind.choices, default=WatermarkKind.VERIFY
    )
    status = models.CharField(
        max_length=16, choices=WatermarkStatus.choices, default=WatermarkStatus.PENDING
    )
    suspect_url = models.URLField(max_length=500, blank=True, default="")
    agreement = models.FloatField(null=True, blank=True)
    threshold = models.FloatField(null=True, blank=True)
    reason = models.CharField(max_length=500, blank=True, default="")
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(agreement__isnull=True)
                | models.Q(agreement__gte=0, agreement__lte=1),
                name="%(app_label)s_%(class)s_agreement_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.version} {self.kind} {self.status}"


class PredictGrant(BaseModel):
    """`predict` on one model, granted to one user or to one group (exactly one of the two).
    Roles holding `predict.all_models` need none; API clients predict only where granted."""

    model = models.ForeignKey(
        RegisteredModel, on_delete=models.CASCADE, related_name="predict_grants"
    )
    # CASCADE: a grant means nothing without its grantee (an erased person, a deleted group).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="predict_grants",
    )
    group = models.ForeignKey(
        "auth.Group",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="predict_grants",
    )
    granted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        editable=False,
        related_name="+",
    )

    class Meta:
        ordering = ["model", "-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(
                    models.Q(user__isnull=False, group__isnull=True)
                    | models.Q(user__isnull=True, group__isnull=False)
                ),
                name="%(app_label)s_%(class)s_user_or_group",
                violation_error_message="Grant to exactly one of a user or a group.",
            ),
            models.UniqueConstraint(
                fields=["model", "user"],
                condition=models.Q(user__isnull=False),
                name="%(app_label)s_%(class)s_unique_user",
            ),
            models.UniqueConstraint(
                fields=["model", "group"],
                condition=models.Q(group__isnull=False),
                name="%(app_label)s_%(class)s_unique_group",
            ),
        ]

    def __str__(self) -> str:
        grantee = f"user {self.user}" if self.user_id else f"group {self.group}"
        return f"predict on {self.model} for {grantee}"
