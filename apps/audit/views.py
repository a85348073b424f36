from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.http import StreamingHttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.audit.export import export_csv, export_jsonl
from apps.audit.selectors import checkpoint_list, event_as_dict, event_list
from apps.audit.services import audit_event_record, checkpoint_as_dict, checkpoint_create
from apps.audit.signing import public_key_pem
from apps.audit.verification import audit_chain_verify
from apps.core.pagination import CursorPagination
from apps.core.permissions import Allows

CAN_READ: list[Any] = [IsAuthenticated, Allows("audit.read")]  # Allows(...) stands in for a class


class EventSerializer(serializers.Serializer):
    """An event as docs/api.md shows it (rendered from its hashed body)."""

    seq = serializers.IntegerField()
    ts = serializers.DateTimeField()
    action = serializers.CharField()
    outcome = serializers.ChoiceField(choices=["success", "failure", "denied"])
    actor = inline_serializer(
        "AuditActor", {"type": serializers.CharField(), "ref": serializers.CharField()}
    )
    target = inline_serializer(
        "AuditTarget",
        {
            "type": serializers.CharField(allow_null=True),
            "id": serializers.CharField(allow_null=True),
        },
    )
    request_id = serializers.CharField(allow_null=True)
    ip = serializers.CharField(allow_null=True, help_text="Truncated: an IPv4 /24 or IPv6 /48.")
    details = serializers.DictField()
    prev_hash = serializers.CharField()
    hash = serializers.CharField()
    hmac_key_id = serializers.CharField(
        allow_null=True,
        help_text="The id of the audit HMAC key that chained the event (docs/api.md); "
        "null for events chained before key ids existed.",
    )

    def to_representation(self, instance):
        return event_as_dict(instance.body, instance.prev_hash, instance.hash)


class RangeSerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False, help_text="Events at or after (ISO 8601).")
    until = serializers.DateTimeField(required=False, help_text="Events before (ISO 8601).")

    def validate(self, attrs):
        if "since" in attrs and "until" in attrs and attrs["since"] >= attrs["until"]:
            raise serializers.ValidationError({"until": "must be after since"})
        return attrs


class SeqPagination(CursorPagination):
    ordering = "seq"


class NewestFirstPagination(CursorPagination):
    ordering = "-seq"


class AuditEventListApi(ListAPIView):
    permission_classes = CAN_READ
    serializer_class = EventSerializer
    pagination_class = SeqPagination

    class FilterSerializer(RangeSerializer):
        action = serializers.CharField(required=False, max_length=64)
        actor = serializers.CharField(
            required=False, max_length=64, help_text="An actor ref (pseudonym or key prefix)."
        )
        outcome = serializers.ChoiceField(choices=["success", "failure", "denied"], required=False)

    @extend_schema(
        parameters=[FilterSerializer], tags=["audit"], summary="Audit events, oldest first"
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        return event_list(**filters.validated_data)


class CheckpointSerializer(serializers.Serializer):
    seq = serializers.IntegerField()
    head = serializers.CharField()
    ts = serializers.CharField()
    signature = serializers.CharField(
        help_text="Hex Ed25519 signature over the canonical JSON of {seq, head, ts}."
    )

    def to_representation(self, instance):
        return checkpoint_as_dict(instance)


class AuditCheckpointListApi(ListAPIView):
    permission_classes = CAN_READ
    serializer_class = CheckpointSerializer
    pagination_class = NewestFirstPagination

    @extend_schema(
        tags=["audit"], summary="Signed checkpoints, newest first (?limit= sets the page size)"
    )
    def get(self, request: Request, *args, **kwargs) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return checkpoint_list()


class AuditPublicKeyApi(APIView):
    permission_classes = CAN_READ

    @extend_schema(
        tags=["audit"],
        summary="The Ed25519 public key that signs checkpoints and export manifests",
        responses=inline_serializer(
            "AuditPublicKey",
            {"algorithm": serializers.CharField(), "public_key_pem": serializers.CharField()},
        ),
    )
    def get(self, request: Request) -> Response:
        return Response({"algorithm": "Ed25519", "public_key_pem": public_key_pem()})


class AuditVerifyApi(APIView):
    permission_classes = CAN_READ

    @extend_schema(
        tags=["audit"],
        summary="Verify the whole chain now",
        responses=inline_serializer(
            "AuditVerify",
            {
                "ok": serializers.BooleanField(),
                "checked": serializers.IntegerField(required=False),
                "head": serializers.CharField(required=False),
                "first_bad_seq": serializers.IntegerField(required=False),
                "reason": serializers.CharField(required=False),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        return Response(audit_chain_verify().as_dict())


class AuditExportApi(APIView):
    permission_classes = CAN_READ

    class InputSerializer(RangeSerializer):
        format = serializers.ChoiceField(choices=["jsonl", "csv"], default="jsonl")

    @extend_schema(
        tags=["audit"],
        summary="Streamed export; JSONL ends with a signed manifest line",
        description=(
            'JSONL: one event per line, then `{"manifest": {count, first_seq, last_seq, head, '
            "generated_at, sha256, signature}}` where `sha256` (an addition to docs/api.md) is the "
            "SHA-256 of all event lines and `signature` the Ed25519 signature over the canonical "
            "JSON of the other fields. Verify offline with `manage.py audit_verify_export`."
        ),
        parameters=[
            InputSerializer,
            OpenApiParameter("format", OpenApiTypes.STR, enum=["jsonl", "csv"]),
        ],
        responses={
            (200, "application/x-ndjson"): OpenApiTypes.BINARY,
            (200, "text/csv"): OpenApiTypes.BINARY,
        },
    )
    def get(self, request: Request) -> StreamingHttpResponse:
        payload = self.InputSerializer(data=request.query_params)
        payload.is_valid(raise_exception=True)
        since, until = payload.validated_data.get("since"), payload.validated_data.get("until")
        export_format = payload.validated_data["format"]
        with transaction.atomic():
            audit_event_record(
                "audit.exported",
                actor=request.user,
                details={
                    "format": export_format,
                    "since": since.isoformat() if since else None,
                    "until": until.isoformat() if until else None,
                },
            )
        checkpoint = checkpoint_create()  # chains everything, the export event included
        last_seq = checkpoint.seq if checkpoint is not None else 0
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if export_format == "csv":
            content, content_type = (
                export_csv(since=since, until=until, last_seq=last_seq),
                "text/csv",
            )
        else:
            content = export_jsonl(since=since, until=until, last_seq=last_seq)
            content_type = "application/x-ndjson"
        response = StreamingHttpResponse(content, content_type=content_type)
        response["Content-Disposition"] = (
            f'attachment; filename="bulwark-audit-{stamp}.{export_format}"'
        )
        return response
