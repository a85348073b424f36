"""Incident endpoints (docs/api.md "Incidents"). Holders of `incidents.read` (security officers,
admins, auditors) read; holders of `incidents.write` (security officers, admins) open, move,
annotate, assign and contain. Assignment and the post-mortem's own endpoint are additions to
docs/api.md, documented in the schema."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any
from uuid import UUID

from django.contrib.auth import get_user_model
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import permissions
from apps.core.pagination import CursorPagination
from apps.incidents.models import (
    EntryKind,
    Incident,
    ResourceKind,
    Severity,
    Source,
    Status,
    TimelineEntry,
)
from apps.incidents.selectors import (
    incident_get,
    incident_list,
    incident_people_names,
    phase_durations,
)
from apps.incidents.services import (
    CONTAINMENT_ACTIONS,
    MAX_ACTION_ITEMS,
    incident_assign,
    incident_contain,
    incident_create,
    incident_note_add,
    incident_postmortem_save,
    incident_transition,
)
from apps.incidents.workflow import TRANSITIONS

TAGS = ["incidents"]
INCIDENT_ID = OpenApiParameter("incident_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
# The list's filters: docs/api.md's `status` and `severity`, and the selector's `state` and
# `assignee` (additions). Sorting stays the cursor's (newest first): a cursor needs one order.
LIST_FILTERS = ("status", "severity", "state", "assignee")
MAX_TEXT = 10_000
User = get_user_model()


class ReadOrWrite(permissions.ReadOrWrite, area="incidents"):
    """Reads need `incidents.read`, anything else `incidents.write` (auditors: 403)."""


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else round(duration.total_seconds(), 3)


def _user_field(**kwargs: Any) -> serializers.SlugRelatedField:
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
    created_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField()


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


def _incident_response(request: Request, incident: Incident, *, status: int = 200) -> Response:
    """The incident as readers see it, read afresh (timeline and links included)."""
    incident = incident_get(actor=request.user, incident_id=incident.pk)
    names = incident_people_names(actor=request.user, incident=incident)
    data = IncidentSerializer(incident, context={"names": names}).data
    return Response(data, status=status)


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


# --- Endpoints ---------------------------------------------------------------------------------


class IncidentListApi(ReadOrWrite, ListAPIView):
    pagination_class = CursorPagination
    serializer_class = IncidentSummarySerializer

    @extend_schema(
        tags=TAGS,
        summary="Incidents, newest first",
        parameters=[
            OpenApiParameter("status", str, enum=Status.values),
            OpenApiParameter("severity", str, enum=Severity.values),
            OpenApiParameter(
                "state", str, enum=["open", "closed"], description="An addition to docs/api.md."
            ),
            OpenApiParameter(
                "assignee",
                str,
                description="A username, or `none` for unassigned. An addition to docs/api.md.",
            ),
        ],
        description="An unknown filter value is 400 `invalid_input` naming the parameter.",
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        filters = {name: params[name] for name in LIST_FILTERS if params.get(name)}
        return incident_list(actor=self.request.user, filters=filters)


class IncidentCreateApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "IncidentCreate"

        title = serializers.CharField(max_length=200)
        severity = serializers.ChoiceField(choices=Severity.choices)
        description = serializers.CharField(
            max_length=MAX_TEXT, required=False, allow_blank=True, default=""
        )
        assignee = _user_field(
            required=False,
            allow_null=True,
            default=None,
            help_text="A username: an active security officer or admin.",
        )

    @extend_schema(
        tags=TAGS,
        summary="Open an incident (status detected)",
        request=InputSerializer,
        responses={201: IncidentSerializer},
    )
    def post(self, request: Request) -> Response:
        payload = IncidentCreateApi.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        incident = incident_create(actor=request.user, **payload.validated_data)
        return _incident_response(request, incident, status=201)


class IncidentCollectionApi(IncidentListApi, IncidentCreateApi):
    """`/incidents`: GET lists, POST opens (one path, two operations)."""


class IncidentDetailApi(ReadOrWrite, APIView):
    @extend_schema(
        tags=TAGS,
        summary="One incident with its timeline",
        parameters=[INCIDENT_ID],
        responses=IncidentSerializer,
    )
    def get(self, request: Request, incident_id: UUID) -> Response:
        incident = incident_get(actor=request.user, incident_id=incident_id)
        return _incident_response(request, incident)


class IncidentTransitionApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "IncidentTransition"

        to = serializers.ChoiceField(choices=Status.choices)
        note = serializers.CharField(max_length=MAX_TEXT, help_text="Why; required.")
        postmortem = PartialPostmortemInputSerializer(
            required=False,
            help_text="Saved with the transition; closing needs a complete one (given here or "
            "saved before with PUT .../postmortem).",
        )

    @extend_schema(
        tags=TAGS,
        summary="Move to the next status",
        description=(
            "Only the next status of detected → contained → investigating → remediated → "
            "recovered → closed, or closed → investigating (reopen); anything else is 409 "
            "`invalid_transition`. A missing note, or closing without a complete post-mortem, "
            "is 400. Each transition is on the timeline and audited `incident.transitioned`."
        ),
        parameters=[INCIDENT_ID],
        request=InputSerializer,
        responses={200: IncidentSerializer},
    )
    def post(self, request: Request, incident_id: UUID) -> Response:
        incident = incident_get(actor=request.user, incident_id=incident_id)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        incident = incident_transition(
            actor=request.user,
            incident=incident,
            to=data["to"],
            note=data["note"],
            postmortem=data.get("postmortem"),
        )
        return _incident_response(request, incident)


class IncidentNoteApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "IncidentNote"

        text = serializers.CharField(max_length=MAX_TEXT)

    @extend_schema(
        tags=TAGS,
        summary="Add a note to the timeline",
        parameters=[INCIDENT_ID],
        request=InputSerializer,
        responses={201: TimelineEntrySerializer},
    )
    def post(self, request: Request, incident_id: UUID) -> Response:
        incident = incident_get(actor=request.user, incident_id=incident_id)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        entry = incident_note_add(
            actor=request.user,
            incident=incident,
            text=payload.validated_data["text"],
        )
        names = {entry.actor_ref: request.user.username}
        return Response(TimelineEntrySerializer(entry, context={"names": names}).data, status=201)


def _target_error(path: str, message: str) -> serializers.ValidationError:
    return serializers.ValidationError({path: [message]})


class IncidentActionApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "IncidentContainment"

        action = serializers.ChoiceField(choices=CONTAINMENT_ACTIONS)
        target = serializers.JSONField(
            help_text='revoke_api_key: the key\'s id; archive_model_version: {"model": name, '
            '"version": n}; deactivate_user: a username.'
        )

        def validate(self, data: dict[str, Any]) -> dict[str, Any]:
            action, target = data["action"], data["target"]
            if action == "revoke_api_key":
                try:
                    data["target"] = str(uuid.UUID(target if isinstance(target, str) else ""))
                except ValueError:
                    raise _target_error("target", "must be an API key's id (a UUID)") from None
            elif action == "archive_model_version":
                if not isinstance(target, dict) or set(target) != {"model", "version"}:
                    raise _target_error("target", 'must be {"model": name, "version": n}')
                if not isinstance(target["model"], str) or not 0 < len(target["model"]) <= 64:
                    raise _target_error("target/model", "must be a model's name")
                version = target["version"]
                if isinstance(version, bool) or not isinstance(version, int) or version < 1:
                    raise _target_error("target/version", "must be a version number")
            elif not isinstance(target, str) or not 0 < len(target) <= 150:
                raise _target_error("target", "must be a username")
            return data

    @extend_schema(
        tags=TAGS,
        summary="Contain: revoke an API key, archive a model version or deactivate a user",
        description=(
            "Done by the owning app's service (and audited there), effective on the very next "
            "request; the incident links the resource, records the action on its timeline "
            "and audits `incident.containment`. An unknown target is 404; a closed incident, "
            "or a key already revoked, a version already archived, a user already deactivated "
            "is 409 `conflict`, and nothing is written."
        ),
        parameters=[INCIDENT_ID],
        request=InputSerializer,
        responses={200: IncidentSerializer},
    )
    def post(self, request: Request, incident_id: UUID) -> Response:
        incident = incident_get(actor=request.user, incident_id=incident_id)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        incident_contain(
            actor=request.user,
            incident=incident,
            action=data["action"],
            target=data["target"],
        )
        return _incident_response(request, incident)


class IncidentAssignApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "IncidentAssign"

        assignee = _user_field(
            allow_null=True, help_text="A username (an active security officer or admin), or null."
        )

    @extend_schema(
        tags=TAGS,
        summary="Assign (or unassign) the incident. An addition to docs/api.md",
        description="On the timeline and audited `incident.assigned` (people as pseudonyms).",
        parameters=[INCIDENT_ID],
        request=InputSerializer,
        responses={200: IncidentSerializer},
    )
    def post(self, request: Request, incident_id: UUID) -> Response:
        incident = incident_get(actor=request.user, incident_id=incident_id)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        incident = incident_assign(
            actor=request.user,
            incident=incident,
            assignee=payload.validated_data["assignee"],
        )
        return _incident_response(request, incident)


class IncidentPostmortemApi(ReadOrWrite, APIView):
    @extend_schema(
        tags=TAGS,
        summary="Save the post-mortem, at any phase. An addition to docs/api.md",
        description=(
            "Root cause, impact and lessons are replaced (empty strings keep a draft); "
            "`actions`, when given, replace the action items. Closing needs all three "
            "non-empty. Audited `incident.postmortem_saved`."
        ),
        parameters=[INCIDENT_ID],
        request=PostmortemInputSerializer,
        responses={200: IncidentSerializer},
    )
    def put(self, request: Request, incident_id: UUID) -> Response:
        incident = incident_get(actor=request.user, incident_id=incident_id)
        payload = PostmortemInputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        incident = incident_postmortem_save(
            actor=request.user,
            incident=incident,
            postmortem=payload.validated_data,
        )
        return _incident_response(request, incident)
