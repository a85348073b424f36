"""API-key endpoints (docs/api.md "API keys"). Callers authenticate with a JWT (or a session);
an X-API-Key header authenticates nobody here."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.utils import extend_schema, extend_schema_field, inline_serializer
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.apikeys.models import ApiKeyStatus
from apps.apikeys.selectors import api_key_get, api_key_list
from apps.apikeys.services import IssuedKey, api_key_issue, api_key_revoke, api_key_rotate
from apps.apikeys.validation import (
    MAX_ALLOWED_IPS,
    MAX_SCOPES,
    cidr_error,
    scope_error,
    validate_rate_limit,
)
from apps.core.pagination import CursorPagination

TAGS = ["api-keys"]
STATUSES = [choice.value for choice in ApiKeyStatus]


@extend_schema_field(
    {
        "type": "string",
        "pattern": f"^({'|'.join(STATUSES)})$",
        "description": " | ".join(STATUSES),
    }
)
class StatusField(serializers.CharField):
    """A pattern, not an `enum`: drf-spectacular gathers enums into components named after
    the property, and "status" already names another choice set (readiness)."""


def _scope(value: str) -> None:
    error = scope_error(value)
    if error:
        raise serializers.ValidationError(error)


def _cidr(value: str) -> None:
    error = cidr_error(value)
    if error:
        raise serializers.ValidationError(error)


class IssuedKeySerializer(serializers.Serializer):
    """A new key, as shown once: `key` and `signing_secret` appear here and nowhere else."""

    id = serializers.UUIDField(source="api_key.id")
    name = serializers.CharField(source="api_key.name")
    prefix = serializers.CharField(source="api_key.prefix")
    key = serializers.CharField(help_text="The whole key. Shown once: store it now.")
    signing_secret = serializers.CharField(
        required=False,
        help_text="Only for keys with require_signature. Shown once: store it now.",
    )
    scopes = serializers.ListField(child=serializers.CharField(), source="api_key.scopes")
    expires_at = serializers.DateTimeField(source="api_key.expires_at")
    rate_limit = serializers.CharField(source="api_key.rate_limit")
    require_signature = serializers.BooleanField(source="api_key.require_signature")
    allowed_ips = serializers.ListField(child=serializers.CharField(), source="api_key.allowed_ips")
    status = StatusField(source="api_key.status")
    created_at = serializers.DateTimeField(source="api_key.created_at")

    class Meta:
        ref_name = "ApiKeyIssued"  # OpenAPI component names are global

    def to_representation(self, instance: IssuedKey) -> dict[str, Any]:
        data = super().to_representation(instance)
        if instance.signing_secret is None:
            data.pop("signing_secret", None)
        return data


class ApiKeyListApi(ListAPIView):
    pagination_class = CursorPagination

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKey"  # nested serializers share names across views and apps

        id = serializers.UUIDField()
        name = serializers.CharField()
        prefix = serializers.CharField()
        owner = serializers.CharField(source="owner.username")
        scopes = serializers.ListField(child=serializers.CharField())
        status = StatusField()
        expires_at = serializers.DateTimeField()
        last_used_at = serializers.DateTimeField(allow_null=True)
        rate_limit = serializers.CharField()
        require_signature = serializers.BooleanField()
        allowed_ips = serializers.ListField(child=serializers.CharField())
        created_at = serializers.DateTimeField()
        revoked_at = serializers.DateTimeField(allow_null=True)
        grace_ends_at = serializers.DateTimeField(
            allow_null=True, help_text="End of the grace period of a rotated key."
        )
        rotated_to = serializers.UUIDField(
            source="rotated_to_id", allow_null=True, help_text="The id of the successor key."
        )

    serializer_class = OutputSerializer

    @extend_schema(
        tags=TAGS,
        summary="API keys: the caller's own (every key for admins and security officers)",
        description="Newest first. Never shows a key or a signing secret.",
        responses=OutputSerializer(many=True),
    )
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return api_key_list(actor=self.request.user)


class ApiKeyCreateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyCreate"

        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(
            child=serializers.CharField(max_length=80, validators=[_scope]),
            min_length=1,
            max_length=MAX_SCOPES,
            help_text="predict:<model name> or predict:*; within your own grants.",
        )
        expires_in_days = serializers.IntegerField(
            min_value=1, max_value=365, required=False, help_text="Default 90."
        )
        rate_limit = serializers.CharField(
            max_length=16,
            required=False,
            validators=[validate_rate_limit],
            help_text='"N/s", "N/m" or "N/h", N from 1 to 1,000,000 (a fixed window). '
            'Default "60/m".',
        )
        require_signature = serializers.BooleanField(required=False, default=False)
        allowed_ips = serializers.ListField(
            child=serializers.CharField(max_length=64, validators=[_cidr]),
            required=False,
            default=list,
            max_length=MAX_ALLOWED_IPS,
            help_text="CIDRs the key may be used from; empty: any address.",
        )

    @extend_schema(
        tags=TAGS,
        summary="Create an API key for yourself",
        description=(
            "`key` (and `signing_secret` when `require_signature`) appear in this response "
            "only. A scope beyond your own grants is 403 `scope_missing`."
        ),
        request=InputSerializer,
        responses={201: IssuedKeySerializer},
    )
    def post(self, request: Request) -> Response:
        payload = ApiKeyCreateApi.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        issued = api_key_issue(
            actor=request.user,
            owner=request.user,
            **payload.validated_data,
        )
        return Response(IssuedKeySerializer(issued).data, status=201)


class ApiKeyCollectionApi(ApiKeyListApi, ApiKeyCreateApi):
    """`/api-keys`: GET is ApiKeyListApi, POST is ApiKeyCreateApi (one path, two operations)."""


class ApiKeyRotateApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyRotate"

        grace_seconds = serializers.IntegerField(
            min_value=0,
            max_value=604_800,
            required=False,
            help_text="How long the old key keeps working; default 86400, 0 ends it now.",
        )

    @extend_schema(
        tags=TAGS,
        summary="Rotate: a new key; the old one works until its grace period ends",
        description=(
            "The new key keeps the old one's name, scopes, rate limit, signing requirement "
            "(with a new signing secret) and networks, with a fresh lifetime as long as the "
            "old key's. After the grace period the old key gets 401 `api_key_expired`. "
            "Only an active key can be rotated: otherwise 409 `conflict`."
        ),
        request=InputSerializer,
        responses={201: IssuedKeySerializer},
    )
    def post(self, request: Request, key_id: UUID) -> Response:
        api_key = api_key_get(actor=request.user, key_id=key_id)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        issued = api_key_rotate(actor=request.user, api_key=api_key, **payload.validated_data)
        return Response(IssuedKeySerializer(issued).data, status=201)


class ApiKeyRevokeApi(APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiKeyRevoke"

        reason = serializers.CharField(
            max_length=500, required=False, default="", allow_blank=True,
            help_text="Kept in the audit event.",
        )  # fmt: skip

    @extend_schema(
        tags=TAGS,
        summary="Revoke: the next request with the key gets 401 api_key_revoked",
        description="An already revoked key is 409 `conflict`.",
        request=InputSerializer,
        responses={
            200: inline_serializer(
                "ApiKeyRevoked", {"status": serializers.CharField(help_text='Always "revoked".')}
            )
        },
    )
    def post(self, request: Request, key_id: UUID) -> Response:
        api_key = api_key_get(actor=request.user, key_id=key_id)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        api_key_revoke(actor=request.user, api_key=api_key, **payload.validated_data)
        return Response({"status": "revoked"})
