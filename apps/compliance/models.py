"""The security checklist, the framework controls each item supports, evidence and the
results of the automated checks.

The checklist and the frameworks are seeded by a data migration (0002); people change an
item's status, owner and notes and add evidence (apps.compliance.services), the automated
checks add results. Evidence files exist only as ciphertext (apps.compliance.evidence).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.audit.subjects import Subject
from apps.core.models import BaseModel

NOTES_MAX = 5000
EVIDENCE_TEXT_MAX = 10_000
EVIDENCE_URL_MAX = 2000


class Framework(BaseModel):
    """A compliance framework (GDPR, HIPAA, SOC 2). The security checklist itself is the
    pseudo-framework `checklist`: every item, not a row here."""

    key = models.SlugField(max_length=16, unique=True)
    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name


class Control(BaseModel):
    framework = models.ForeignKey(Framework, on_delete=models.PROTECT, related_name="controls")
    code = models.CharField(max_length=32)
    title = models.CharField(max_length=200)
    # SOC 2: the trust services criterion the control belongs to; "" elsewhere.
    group = models.CharField(max_length=64, blank=True, default="")
    description = models.TextField(blank=True, default="")
    position = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["framework__position", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["framework", "code"], name="%(app_label)s_%(class)s_unique_code"
            )
        ]

    def __str__(self) -> str:
        return f"{self.framework.name} {self.code} {self.title}"


class Category(models.TextChoices):
    AUTHENTICATION = "authentication", "Authentication & authorization"
    INPUT = "input", "Input security"
    MODEL = "model", "Model security"
    PRIVACY = "privacy", "Data privacy"
    INFRASTRUCTURE = "infrastructure", "Infrastructure"
    MONITORING = "monitoring", "Monitoring & auditing"
    SECRETS = "secrets", "Secrets management"
    INCIDENT_RESPONSE = "incident_response", "Incident response plan"


class ItemStatus(models.TextChoices):
    NOT_STARTED = "not_started", "Not started"
    IN_PROGRESS = "in_progress", "In progress"
    IMPLEMENTED = "implemented", "Implemented"
    NOT_APPLICABLE = "not_applicable", "Not applicable"


class ChecklistItem(BaseModel):
    key = models.SlugField(max_length=64, unique=True)
    # The checklist's order (categories, then items): unique, so it can order a cursor.
    position = models.PositiveSmallIntegerField(unique=True)
    category = models.CharField(max_length=32, choices=Category.choices)
    title = models.CharField(max_length=200)
    description = models.TextField(max_length=2000)
    status = models.CharField(
        max_length=16, choices=ItemStatus.choices, default=ItemStatus.NOT_STARTED
    )
    # SET_NULL: erasing a person (privacy erasure) leaves the item, without an owner.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="compliance_items",
    )
    notes = models.TextField(blank=True, default="", max_length=NOTES_MAX)
    last_reviewed_at = models.DateTimeField(null=True, blank=True)
    # The name of the automated check (apps.compliance.checks.CHECKS) that tests this item
    # against the live system; "" when only people can tell.
    automated_check = models.CharField(max_length=64, blank=True, default="")
    controls = models.ManyToManyField(Control, related_name="items", blank=True)

    class Meta:
        ordering = ["position"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=ItemStatus.values),
                name="%(app_label)s_%(class)s_status_known",
            ),
            models.CheckConstraint(
                condition=Q(category__in=Category.values),
                name="%(app_label)s_%(class)s_category_known",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    def audit_subject(self) -> Subject:
        return Subject("compliance_item", self.key)


class EvidenceKind(models.TextChoices):
    FILE = "file", "File"
    LINK = "link", "Link"
    TEXT = "text", "Text"


class Evidence(BaseModel):
    """Append-only: evidence is added, never edited or removed (it is what an auditor saw)."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.PROTECT, related_name="evidence")
    kind = models.CharField(max_length=8, choices=EvidenceKind.choices)
    url = models.CharField(max_length=EVIDENCE_URL_MAX, blank=True, default="")
    text = models.TextField(blank=True, default="", max_length=EVIDENCE_TEXT_MAX)
    file_name = models.CharField(max_length=255, blank=True, default="")
    content_type = models.CharField(max_length=64, blank=True, default="")
    size = models.PositiveIntegerField(null=True, blank=True, help_text="Plaintext bytes.")
    sha256 = models.CharField(max_length=64, blank=True, default="")
    # The file's data key, sealed under the current master key (apps.core.sealing), and the
    # file as nonce | AES-256-GCM ciphertext. Kept in the row, so an evidence file commits
    # or rolls back with its record: nothing is ever half-written.
    data_key_sealed = models.TextField(blank=True, default="", editable=False)
    ciphertext = models.BinaryField(blank=True, default=b"", editable=False)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "evidence"
        constraints = [
            models.CheckConstraint(
                condition=(
                    Q(kind="link", text="", file_name="", data_key_sealed="") & ~Q(url="")
                    | Q(kind="text", url="", file_name="", data_key_sealed="") & ~Q(text="")
                    | Q(kind="file", url="", text="")
                    & ~Q(file_name="")
                    & ~Q(sha256="")
                    & ~Q(data_key_sealed="")
                ),
                name="%(app_label)s_%(class)s_fields_match_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} evidence for {self.item_id}"


class CheckResultValue(models.TextChoices):
    PASS = "pass", "Pass"
    FAIL = "fail", "Fail"
    MANUAL = "manual", "Manual"


class CheckResult(BaseModel):
    """One run of one automated check against the live system; the newest per item counts."""

    item = models.ForeignKey(ChecklistItem, on_delete=models.CASCADE, related_name="check_results")
    check_name = models.CharField(max_length=64)
    result = models.CharField(max_length=8, choices=CheckResultValue.choices)
    detail = models.CharField(max_length=1000)
    checked_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-checked_at"]
        indexes = [
            models.Index(fields=["item", "-checked_at"], name="compliance_result_item_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(result__in=CheckResultValue.values),
                name="%(app_label)s_%(class)s_result_known",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.check_name}: {self.result}"
