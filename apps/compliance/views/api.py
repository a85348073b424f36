"""Compliance endpoints (docs/api.md "Compliance"). Readers hold `compliance.read` (security
officers, admins, auditors); writers `compliance.write` (security officers, admins)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from uuid import UUID

from django.core.files.uploadedfile import UploadedFile
from django.http import HttpRequest, HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.compliance.errors import invalid
from apps.compliance.models import Category, ItemStatus
from apps.compliance.selectors import (
    CHECKLIST,
    compliance_item_get,
    compliance_item_list,
)
from apps.compliance.serializers import EvidenceSerializer, ItemSerializer
from apps.compliance.services import (
    UNSET,
    compliance_checks_run,
    compliance_item_update,
    evidence_add,
)
from apps.compliance.uploads import InMemoryEvidenceUploadHandler
from apps.compliance.views.downloads import evidence_file_response, report_response
from apps.core import permissions
from apps.core.pagination import CursorPagination
from apps.core.parsers import StrictJSONParser

TAGS = ["compliance"]
ITEM_ID = OpenApiParameter("item_id", OpenApiTypes.UUID, OpenApiParameter.PATH)
FRAMEWORK_HELP = "`checklist` (every item, the default), `gdpr`, `hipaa` or `soc2`."


class ReadOrWrite(permissions.ReadOrWrite, area="compliance"):
    """Reads need `compliance.read`, anything else `compliance.write`."""


def refuse_unknown_fields(data: Any, known: set[str]) -> None:
    """DRF ignores fields it does not know; a misspelt field must not pass silently."""
    if not isinstance(data, Mapping):
        raise invalid("", "the body must be a JSON object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise invalid(unknown[0], f"is not a known field (known: {', '.join(sorted(known))})")


class ItemCursorPagination(CursorPagination):
    ordering = "position"  # the checklist's own order; unique, so a stable cursor


class ItemListApi(ReadOrWrite, ListAPIView):
    pagination_class = ItemCursorPagination
    serializer_class = ItemSerializer

    @extend_schema(
        tags=TAGS,
        summary="Checklist items, in checklist order",
        parameters=[
            OpenApiParameter("framework", str, description=FRAMEWORK_HELP),
            OpenApiParameter("category", str, description=f"One of {', '.join(Category.values)}."),
        ],
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        params = self.request.query_params
        return compliance_item_list(
            actor=self.request.user,
            framework=params.get("framework") or None,
            category=params.get("category") or None,
        )


class ItemDetailApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ComplianceItemUpdate"

        status = serializers.ChoiceField(choices=ItemStatus.choices)
        owner = serializers.CharField(
            required=False,
            allow_null=True,
            allow_blank=True,
            max_length=150,
            help_text="A username, or null to clear.",
        )
        notes = serializers.CharField(
            required=False, allow_blank=True, max_length=5000, trim_whitespace=False
        )

    @extend_schema(
        tags=TAGS, summary="One checklist item", parameters=[ITEM_ID], responses=ItemSerializer
    )
    def get(self, request: Request, item_id: UUID) -> Response:
        item = compliance_item_get(actor=request.user, item_id=item_id)
        return Response(ItemSerializer(item).data)

    @extend_schema(
        tags=TAGS,
        summary="Set an item's status (and owner, notes)",
        description="Audited `compliance.item.updated`. An unknown owner is 400.",
        parameters=[ITEM_ID],
        request=InputSerializer,
        responses={200: ItemSerializer},
    )
    def patch(self, request: Request, item_id: UUID) -> Response:
        item = compliance_item_get(actor=request.user, item_id=item_id)
        refuse_unknown_fields(request.data, {"status", "owner", "notes"})
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        values = payload.validated_data
        compliance_item_update(
            actor=request.user,
            item=item,
            status=values["status"],
            owner=values.get("owner", UNSET),
            notes=values.get("notes", UNSET),
        )
        return Response(
            ItemSerializer(compliance_item_get(actor=request.user, item_id=item_id)).data
        )


class EvidenceCreateApi(ReadOrWrite, APIView):
    parser_classes = [StrictJSONParser, MultiPartParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ComplianceEvidenceCreate"

        url = serializers.CharField(required=False, help_text="An http(s) link.")
        text = serializers.CharField(required=False, help_text="At most 10,000 characters.")
        file = serializers.FileField(
            required=False,
            help_text="Multipart only: PDF, PNG, JPEG, text, CSV or JSON; stored encrypted.",
        )

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # Before anything reads the body (CSRF for session callers reads request.POST):
        # files stay in memory, bounded, never in a temporary file in plaintext.
        request.upload_handlers = [InMemoryEvidenceUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS,
        summary="Add evidence to an item: a file, a link or a text",
        description=(
            'JSON `{"url"}` or `{"text"}`, or multipart/form-data with `file`; exactly one. '
            "Files over COMPLIANCE_EVIDENCE_MAX_MB: 413; other types than PDF, PNG, JPEG, "
            "text, CSV and JSON (judged by their bytes too): 415. Audited "
            "`compliance.evidence.added`."
        ),
        parameters=[ITEM_ID],
        request={
            "application/json": InputSerializer,
            "multipart/form-data": InputSerializer,
        },
        responses={201: EvidenceSerializer},
    )
    def post(self, request: Request, item_id: UUID) -> Response:
        item = compliance_item_get(actor=request.user, item_id=item_id)
        data: Any = request.data  # an object: refuse_unknown_fields checks it
        refuse_unknown_fields(data, {"url", "text", "file"})
        values: dict[str, Any] = {}
        for name in ("url", "text"):
            value = data.get(name)
            if value is not None and not isinstance(value, str):
                raise invalid(name, "must be a string")
            values[name] = value
        upload = data.get("file")
        if upload is not None and not isinstance(upload, UploadedFile):
            raise invalid("file", "send a file as multipart/form-data")
        evidence = evidence_add(actor=request.user, item=item, file=upload, **values)
        return Response(EvidenceSerializer(evidence).data, status=201)


class EvidenceFileApi(ReadOrWrite, APIView):
    @extend_schema(
        tags=TAGS,
        summary="Download an evidence file (decrypted and verified)",
        parameters=[OpenApiParameter("evidence_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={(200, "application/octet-stream"): OpenApiTypes.BINARY},
    )
    def get(self, request: Request, evidence_id: UUID) -> HttpResponse:
        return evidence_file_response(actor=request.user, evidence_id=evidence_id)

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        return super().perform_content_negotiation(request, force=True)


class ChecksRunApi(ReadOrWrite, APIView):
    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ComplianceCheckResult"

        item = serializers.UUIDField(source="item_id")
        key = serializers.CharField(source="item.key")
        title = serializers.CharField(source="item.title")
        check = serializers.CharField(source="check_name")
        result = serializers.ChoiceField(choices=["pass", "fail", "manual"])
        detail = serializers.CharField()
        checked_at = serializers.DateTimeField()

    @extend_schema(
        tags=TAGS,
        summary="Run every automated check now",
        description=(
            'Answers `{"results": [...], "next": null}`, one result per checked item. A check '
            "that passed before and fails now is also audited `compliance.check.regressed`."
        ),
        request=None,
        responses={
            200: inline_serializer(
                "ComplianceCheckRun",
                {
                    "results": OutputSerializer(many=True),
                    "next": serializers.CharField(allow_null=True, help_text="Always null."),
                },
            )
        },
    )
    def post(self, request: Request) -> Response:
        results = compliance_checks_run(actor=request.user, trigger="request")
        return Response({"results": self.OutputSerializer(results, many=True).data, "next": None})


class ReportApi(ReadOrWrite, APIView):
    @extend_schema(
        tags=TAGS,
        summary="Download a compliance report (PDF, CSV or JSON)",
        description=(
            "Audited `compliance.report.generated` with the report's SHA-256. The JSON's "
            "`summary` gives per framework `items`, `applicable`, `implemented`, `percent` "
            "(implemented share), `by_status`, and (additions) `evidenced` (applicable items not "
            "marked implemented whose automated check passed in the latest run) and "
            "`percent_with_evidence` (implemented or evidenced)."
        ),
        parameters=[
            OpenApiParameter("framework", str, description=FRAMEWORK_HELP),
            OpenApiParameter("format", str, description="`pdf` (default), `csv` or `json`."),
        ],
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY),
            (200, "text/csv"): OpenApiResponse(OpenApiTypes.STR),
            (200, "application/json"): OpenApiResponse(OpenApiTypes.OBJECT),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        params = request.query_params
        return report_response(
            actor=request.user,
            framework=params.get("framework") or CHECKLIST,
            format=params.get("format") or "pdf",
        )

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # A client asking for application/pdf must not get 406 from the JSON-only renderers.
        return super().perform_content_negotiation(request, force=True)
