"""The incident API's serializers: what readers get (the incident, its timeline, links and
post-mortem) and what writers send (docs/api.md "Incidents")."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers

from apps.incidents.models import (
    EntryKind,
    Incident,
    Resolution,
    ResourceKind,
    Severity,
    Source,
    Status,
    TimelineEntry,
)
from apps.incidents.selectors import (
    phase_durations,
)
from apps.incidents.services import (
    MAX_ACTION_ITEMS,
)
from apps.incidents.workflow import TRANSITIONS

MAX_TEXT = 10_000
User = get_user_model()


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else round(duration.total_seconds(), 3)


def user_field(**kwargs: Any) -> serializers.SlugRelatedField:
    return serializers.SlugRelatedField(
        slug_field="username", queryset=User.objects.all(), **kwargs
    )


# --- Output ------------------------------------------------------------------------------------


class TimelineEntrySerializer(serializers.Serializer):
    """`actor.username` is the person while their pseudonym still maps to one (null for
    system components and erased people); assignment entries carry `data.assignee_username`
    the same way."""

    class Meta:
        ref_name = "IncidentTimelineEntry"

    id = serializers.UUIDField()
    at = serializers.DateTimeField(source="created_at")
    kind = serializers.ChoiceField(choices=EntryKind.choices)
    actor = serializers.SerializerMethodField()
    text = serializers.CharField()
    data = serializers.SerializerMethodField()  # type: ignore[assignment]  # a field, not .data

    def _names(self) -> dict[str, str]:
        return self.context.get("names", {})

    @extend_schema_field(
        inline_serializer(
            "IncidentTimelineActor",
            {
                "type": serializers.CharField(help_text="user | system | api_key"),
                "ref": serializers.CharField(help_text="A pseudonym, or a component's name."),
                "username": serializers.CharField(allow_null=True),
            },
        )
    )
    def get_actor(self, entry: TimelineEntry) -> dict[str, Any]:
        username = self._names().get(entry.actor_ref) if entry.actor_type == "user" else None
        return {"type": entry.actor_type, "ref": entry.actor_ref, "username": username}

    @extend_schema_field(OpenApiTypes.OBJECT)
    def get_data(self, entry: TimelineEntry) -> dict[str, Any]:
        data = dict(entry.data)
        if entry.kind == EntryKind.ASSIGNMENT:
            data["assignee_username"] = self._names().get(str(data.get("assignee")))
        return data


class ResourceSerializer(serializers.Serializer):
    class Meta:
        ref_name = "IncidentResource"

    kind = serializers.ChoiceField(choices=ResourceKind.choices)
    ref = serializers.CharField(
        help_text="A key prefix, `model:n`, a user's pseudonym, an audit seq, a client network."
    )
    label = serializers.CharField()  # type: ignore[assignment]  # a field, not Field.label
    username = serializers.SerializerMethodField()
    linked_at = serializers.DateTimeField(source="created_at")

    @extend_schema_field(OpenApiTypes.STR)
    def get_username(self, resource: Any) -> str | None:
        if resource.kind != ResourceKind.USER:
            return None
        return self.context.get("names", {}).get(resource.ref)


class ActionItemOutputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "IncidentActionItem"

    id = serializers.UUIDField()
    description = serializers.CharField()
    owner = serializers.CharField(source="owner.username", allow_null=True, default=None)
    due_date = serializers.DateField()
    done = serializers.BooleanField()


class PostmortemOutputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "IncidentPostmortem"

    root_cause = serializers.CharField()
    impact = serializers.CharField()
    lessons = serializers.CharField()
    complete = serializers.BooleanField(
        source="has_postmortem", help_text="Root cause, impact and lessons are all given."
    )
    actions = ActionItemOutputSerializer(many=True)


class PhasesSerializer(serializers.Serializer):
    """When the incident last entered each phase."""

    class Meta:
        ref_name = "IncidentPhases"

    detected_at = serializers.DateTimeField()
    contained_at = serializers.DateTimeField(allow_null=True)
    investigating_at = serializers.DateTimeField(allow_null=True)
    remediated_at = serializers.DateTimeField(allow_null=True)
    recovered_at = serializers.DateTimeField(allow_null=True)
    closed_at = serializers.DateTimeField(allow_null=True)


class IncidentSummarySerializer(serializers.Serializer):
    class Meta:
        ref_name = "IncidentSummary"

    id = serializers.UUIDField()
    title = serializers.CharField()
    severity = serializers.ChoiceField(choices=Severity.choices)
    status = serializers.ChoiceField(choices=Status.choices)
    source = serializers.ChoiceField(choices=Source.choices)  # type: ignore[assignment]  # a field
    detector = serializers.CharField(help_text='The detector that opened it; "" for people.')
    assignee = serializers.CharField(source="assignee.username", allow_null=True, default=None)
    detected_at = serializers.DateTimeField()
    reopened_count = serializers.IntegerField()
    resolution = serializers.SerializerMethodField()
    duplicate_of = serializers.UUIDField(
        source="duplicate_of_id",
        allow_null=True,
        help_text="The incident this one repeats (resolution `duplicate`); else null.",
    )
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()

    @extend_schema_field(
        serializers.ChoiceField(
            choices=Resolution.choices,
            allow_null=True,
            help_text="How the incident was closed; null while it is open.",
        )
    )
    def get_resolution(self, incident: Incident) -> str | None:
        return incident.resolution or None


class IncidentSerializer(IncidentSummarySerializer):
    """The whole incident: phase times and durations from detection, post-mortem with its
    action items, linked resources, and the timeline (oldest first)."""

    class Meta:
        ref_name = "Incident"

    description = serializers.CharField()
    reported_by = serializers.CharField(
        source="reported_by.username", allow_null=True, default=None
    )
    next_status = serializers.SerializerMethodField()
    phases = PhasesSerializer(source="*")
    durations = serializers.SerializerMethodField()
    postmortem = PostmortemOutputSerializer(source="*")
    resources = ResourceSerializer(many=True)
    timeline = TimelineEntrySerializer(many=True)

    @extend_schema_field(
        serializers.ChoiceField(
            choices=Status.choices,
            help_text="The one status `transition` accepts from here (closed: the reopen).",
        )
    )
    def get_next_status(self, incident: Incident) -> str:
        return TRANSITIONS[incident.status]

    @extend_schema_field(
        inline_serializer(
            "IncidentDurations",
            {
                name: serializers.FloatField(allow_null=True, help_text="Seconds from detection.")
                for name in ("time_to_contain", "time_to_recover", "time_to_close")
            },
        )
    )
    def get_durations(self, incident: Incident) -> dict[str, float | None]:
        return {name: _seconds(value) for name, value in phase_durations(incident).items()}


# --- Input -------------------------------------------------------------------------------------


class ActionItemInputSerializer(serializers.Serializer):
    class Meta:
        ref_name = "IncidentActionItemInput"

    description = serializers.CharField(max_length=500)
    owner = serializers.CharField(
        max_length=150,
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="A username; empty or null for none.",
    )
    due_date = serializers.DateField(help_text="YYYY-MM-DD.")

    def validate_owner(self, value: str | None) -> str | None:
        if value and not User.objects.filter(username=value).exists():
            raise serializers.ValidationError("is not a user")
        return value or None


class PostmortemInputSerializer(serializers.Serializer):
    """Root cause, impact and lessons (all three non-empty to close), action items."""

    class Meta:
        ref_name = "IncidentPostmortemInput"

    root_cause = serializers.CharField(max_length=MAX_TEXT, allow_blank=True)
    impact = serializers.CharField(max_length=MAX_TEXT, allow_blank=True)
    lessons = serializers.CharField(max_length=MAX_TEXT, allow_blank=True)
    actions = ActionItemInputSerializer(  # type: ignore[call-arg]  # max_length: for many=True
        many=True,
        required=False,
        max_length=MAX_ACTION_ITEMS,
        help_text="Replaces the action items; absent: they stay as they are.",
    )


class PartialPostmortemInputSerializer(PostmortemInputSerializer):
    class Meta:
        ref_name = "IncidentPostmortemPartialInput"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for field in ("root_cause", "impact", "lessons"):
            self.fields[field].required = False
