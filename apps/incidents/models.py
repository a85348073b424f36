"""Incidents, their timeline, linked resources and post-mortem action items.

People appear as foreign keys that erasure nulls (SET_NULL) and, on the timeline, as the
actor's audit pseudonym, so erasing a person leaves the incident history without them.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from apps.audit.subjects import Subject
from apps.core.models import BaseModel


class Severity(models.TextChoices):
    SEV1 = "sev1", "SEV1"
    SEV2 = "sev2", "SEV2"
    SEV3 = "sev3", "SEV3"
    SEV4 = "sev4", "SEV4"


class Status(models.TextChoices):
    DETECTED = "detected", "Detected"
    CONTAINED = "contained", "Contained"
    INVESTIGATING = "investigating", "Investigating"
    REMEDIATED = "remediated", "Remediated"
    RECOVERED = "recovered", "Recovered"
    CLOSED = "closed", "Closed"


class Resolution(models.TextChoices):
    """How a closed incident ended (docs/api.md "Incidents"): a true positive walks every phase
    and needs a post-mortem; the others close from any open phase with a note."""

    TRUE_POSITIVE = "true_positive", "True positive"
    FALSE_POSITIVE = "false_positive", "False positive"
    DUPLICATE = "duplicate", "Duplicate"
    BENIGN = "benign", "Benign"


class Source(models.TextChoices):
    PERSON = "person", "Person"
    DETECTOR = "detector", "Detector"


class Incident(BaseModel):
    title = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="", max_length=10_000)
    severity = models.CharField(max_length=8, choices=Severity.choices)
    status = models.CharField(
        max_length=16, choices=Status.choices, default=Status.DETECTED, db_index=True
    )
    assignee = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="assigned_incidents",
    )
    source = models.CharField(max_length=16, choices=Source.choices, default=Source.PERSON)
    detector = models.CharField(max_length=64, blank=True, default="")  # "" for people
    reported_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="reported_incidents",
    )
    # "<detector>:<subject>" while a detector's incident is open: one open incident per
    # detector and subject (the constraint below), later hits go to its timeline.
    dedup_key = models.CharField(max_length=200, blank=True, default="")
    # When the incident last entered each phase (time to contain = contained - detected).
    detected_at = models.DateTimeField()
    contained_at = models.DateTimeField(null=True, blank=True)
    investigating_at = models.DateTimeField(null=True, blank=True)
    remediated_at = models.DateTimeField(null=True, blank=True)
    recovered_at = models.DateTimeField(null=True, blank=True)
    closed_at = models.DateTimeField(null=True, blank=True)
    reopened_count = models.PositiveIntegerField(default=0)
    # How it was closed ("" while open: a reopen clears it, the timeline keeps each close's);
    # a duplicate names the incident it repeats (never itself; see the constraints below).
    resolution = models.CharField(max_length=16, choices=Resolution.choices, blank=True, default="")
    duplicate_of = models.ForeignKey(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="duplicates",
    )
    # The post-mortem (closing needs root cause, impact and lessons; action items below).
    root_cause = models.TextField(blank=True, default="", max_length=10_000)
    impact = models.TextField(blank=True, default="", max_length=10_000)
    lessons = models.TextField(blank=True, default="", max_length=10_000)

    class Meta:
        ordering = ["severity", "-detected_at"]  # SEV1 first, newest first within a severity
        constraints = [
            models.UniqueConstraint(
                fields=["dedup_key"],
                condition=~models.Q(status="closed") & ~models.Q(dedup_key=""),
                name="%(app_label)s_%(class)s_one_open_per_detector_subject",
            ),
            models.CheckConstraint(
                condition=(models.Q(status="closed") & ~models.Q(resolution=""))
                | (~models.Q(status="closed") & models.Q(resolution="")),
                name="%(app_label)s_%(class)s_resolution_when_closed",
            ),
            models.CheckConstraint(
                condition=(models.Q(resolution="duplicate") & models.Q(duplicate_of__isnull=False))
                | (~models.Q(resolution="duplicate") & models.Q(duplicate_of__isnull=True)),
                name="%(app_label)s_%(class)s_duplicate_names_its_original",
            ),
            models.CheckConstraint(
                condition=~models.Q(duplicate_of=models.F("id")),
                name="%(app_label)s_%(class)s_not_duplicate_of_itself",
            ),
        ]
        indexes = [
            # The dashboard's open incidents by severity and age (incident_dashboard_figures).
            models.Index(
                fields=["severity", "detected_at"],
                condition=~models.Q(status="closed"),
                name="incidents_open_sev_detected",
            ),
            # Its time to contain over the last 30 days.
            models.Index(
                fields=["contained_at", "detected_at"],
                condition=models.Q(contained_at__isnull=False),
                name="incidents_contained_at",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_severity_display()} {self.title}"

    def audit_subject(self) -> Subject:
        return Subject("incident", str(self.id))

    @property
    def has_postmortem(self) -> bool:
        return bool(self.root_cause.strip() and self.impact.strip() and self.lessons.strip())


class ActionItem(BaseModel):
    """A post-mortem action item: what, who (a user, or a name when not a user), by when."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="actions")
    description = models.CharField(max_length=500)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="incident_actions",
    )
    due_date = models.DateField()
    done = models.BooleanField(default=False)

    class Meta:
        ordering = ["due_date", "created_at"]

    def __str__(self) -> str:
        return self.description


class ResourceKind(models.TextChoices):
    API_KEY = "api_key", "API key"
    MODEL_VERSION = "model_version", "Model version"
    USER = "user", "User (pseudonym)"
    AUDIT_EVENT = "audit_event", "Audit event"
    IP = "ip", "Client network"


class LinkedResource(BaseModel):
    """Evidence linked to an incident, by reference: a key's prefix (and id), `model:n`, a
    user's pseudonym (never a name), an audit event's seq, a truncated client network."""

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="resources")
    kind = models.CharField(max_length=16, choices=ResourceKind.choices)
    ref = models.CharField(max_length=128)
    label = models.CharField(max_length=200, blank=True, default="")

    class Meta:
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["incident", "kind", "ref"], name="%(app_label)s_%(class)s_unique_link"
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.ref}"


class EntryKind(models.TextChoices):
    CREATED = "created", "Created"
    TRANSITION = "transition", "Transition"
    NOTE = "note", "Note"
    CONTAINMENT = "containment", "Containment action"
    DETECTOR_HIT = "detector_hit", "Detector hit"
    ASSIGNMENT = "assignment", "Assignment"
    POSTMORTEM = "postmortem", "Post-mortem"


class TimelineEntry(BaseModel):
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="timeline")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    # The actor as the audit trail names it: {"type": "user", "ref": "<pseudonym>"} or a system
    # component; the UI shows a user's name only while the pseudonym still maps to one.
    actor_type = models.CharField(max_length=16)
    actor_ref = models.CharField(max_length=64)
    text = models.TextField(blank=True, default="", max_length=10_000)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["created_at"]
        verbose_name_plural = "timeline entries"

    def __str__(self) -> str:
        return f"{self.kind} at {self.created_at:%Y-%m-%d %H:%M}"


class DetectorCursor(models.Model):
    """How far a detector that reads the audit trail has got: the last `seq` it processed.
    It moves in the same transaction as the incidents its batch opened, so a run that dies
    midway re-reads that batch instead of skipping it, and a committed batch is never
    counted again. Chaining gives seqs in commit order, so nothing lands behind it."""

    name = models.CharField(max_length=64, primary_key=True)
    last_seq = models.BigIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.name} at #{self.last_seq}"
