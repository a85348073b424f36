"""Incident endpoints (docs/api.md "Incidents"). Holders of `incidents.read` (security officers,
admins, auditors) read; holders of `incidents.write` (security officers, admins) open, move,
annotate, assign and contain. Assignment and the post-mortem's own endpoint are additions to
docs/api.md, documented in the schema."""

from __future__ import annotations

import uuid
from typing import Any
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
)
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import permissions
from apps.core.pagination import CursorPagination
from apps.incidents.models import (
    Incident,
    Resolution,
    Severity,
    Status,
)
from apps.incidents.selectors import (
    incident_get,
    incident_list,
    incident_people_names,
)
from apps.incidents.serializers import (
    MAX_TEXT,
    IncidentSerializer,
    IncidentSummarySerializer,
    PartialPostmortemInputSerializer,
    PostmortemInputSerializer,
    TimelineEntrySerializer,
    user_field,
)
from apps.incidents.services import (
    CONTAINMENT_ACTIONS,
    incident_assign,
    incident_contain,
    incident_create,
    incident_note_add,
    incident_postmortem_save,
    incident_transition,
)

TAGS = ["incidents"]
INCIDENT_ID = OpenApiParameter("incident_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
# The list's filters: docs/api.md's `status` and `severity`, and the selector's `state`,
# `assignee` and `resolution` (additions). Sorting stays the cursor's (newest first): a
# cursor needs one order.
LIST_FILTERS = ("status", "severity", "state", "assignee", "resolution")


class ReadOrWrite(permissions.ReadOrWrite, area="incidents"):
    """Reads need `incidents.read`, anything else `incidents.write` (auditors: 403)."""


def _incident_response(request: Request, incident: Incident, *, status: int = 200) -> Response:
    """The incident as readers see it, read afresh (timeline and links included)."""
    incident = incident_get(actor=request.user, incident_id=incident.pk)
    names = incident_people_names(actor=request.user, incident=incident)
    data = IncidentSerializer(incident, context={"names": names}).data
    return Response(data, status=status)


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
            OpenApiParameter(
                "resolution",
                str,
                enum=Resolution.values,
                description="How closed incidents were closed. An addition to docs/api.md.",
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
        assignee = user_field(
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
            help_text="Saved with the transition; closing a true positive needs a complete "
            "one (given here or saved before with PUT .../postmortem).",
        )
        resolution = serializers.ChoiceField(
            choices=Resolution.choices,
            required=False,
            help_text="Only with `to: closed`; true_positive when absent. false_positive, "
            "duplicate and benign close from any open status with no post-mortem.",
        )
        duplicate_of = serializers.UUIDField(
            required=False,
            help_text="With `resolution: duplicate`: the id of the incident this one repeats "
            "(not itself, nor a duplicate of it).",
        )

    @extend_schema(
        tags=TAGS,
        summary="Move to the next status",
        description=(
            "Only the next status of detected → contained → investigating → remediated → "
            "recovered → closed, or closed → investigating (reopen); or `closed` from any "
            "open status with `resolution` false_positive, duplicate (and `duplicate_of`) or "
            "benign; anything else is 409 `invalid_transition`. A missing note, closing a "
            "true positive without a complete post-mortem, a resolution on another move, or "
            "a `duplicate_of` that is unknown, the incident itself or a duplicate of it, is "
            "400 `invalid_input`. Reopening clears the resolution. Each transition is on the "
            "timeline and audited `incident.transitioned` (a close with its `resolution`, "
            "and `duplicate_of`)."
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
            resolution=data.get("resolution"),
            duplicate_of=data.get("duplicate_of"),
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
        then_contained = serializers.BooleanField(
            required=False,
            default=False,
            help_text="Also move an incident that is still detected to contained, in the "
            "same step (audited `incident.transitioned` too). An addition to docs/api.md.",
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
            then_contained=data["then_contained"],
        )
        return _incident_response(request, incident)


class IncidentAssignApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "IncidentAssign"

        assignee = user_field(
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
