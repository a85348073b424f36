"""GDPR endpoints (docs/api.md "Privacy"): subject access for oneself and, for officers, for anyone;
erasure for officers. Each view validates, calls one service, shapes the answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

if TYPE_CHECKING:  # a type hint only: users are reached through accounts' services
    from apps.accounts.models import User

from apps.accounts.safety import Change, access_change_check
from apps.core.permissions import Allows
from apps.gdpr.selectors import subject_get
from apps.gdpr.services import subject_access_export, subject_erase

CAN_MANAGE: list[Any] = [IsAuthenticated, Allows("privacy.manage")]  # Allows(...): a class
EXPORT_DESCRIPTION = (
    "Every personal datum held about the person, by category: account, audit_pseudonym, "
    "mfa_devices, token_families, api_keys, predict_grants, models, incidents, admin_log, "
    "audit_events (every event naming their pseudonym), compliance (when that app is "
    "installed), other_records. Never a password hash, TOTP seed, recovery code, token, key "
    "secret or hash, or signing secret. A download (`Content-Disposition: attachment`)."
)


class UsernameSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)


def _download(data: dict[str, Any]) -> Response:
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    # No username in the file name: it would end up in browser histories and proxy logs.
    return Response(
        data,
        headers={"Content-Disposition": f'attachment; filename="subject-access-{stamp}.json"'},
    )


class SubjectAccessMeApi(APIView):
    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]  # a download, never the browsable page

    @extend_schema(
        tags=["privacy"],
        summary="Everything Bulwark holds about the caller (GDPR subject access)",
        description=EXPORT_DESCRIPTION,
        responses={(200, "application/json"): OpenApiTypes.OBJECT},
    )
    def get(self, request: Request) -> Response:
        user = cast("User", request.user)  # IsAuthenticated
        return _download(subject_access_export(actor=user, user=user))


class SubjectAccessApi(APIView):
    permission_classes = CAN_MANAGE
    renderer_classes = [JSONRenderer]

    @extend_schema(
        tags=["privacy"],
        summary="Everything Bulwark holds about a user (admins and security officers)",
        description=EXPORT_DESCRIPTION,
        request=UsernameSerializer,
        responses={(200, "application/json"): OpenApiTypes.OBJECT},
    )
    def post(self, request: Request) -> Response:
        payload = UsernameSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = subject_get(username=payload.validated_data["username"])
        return _download(subject_access_export(actor=cast("User", request.user), user=user))


class SubjectErasureApi(APIView):
    permission_classes = CAN_MANAGE

    class OutputSerializer(serializers.Serializer):
        erased = serializers.BooleanField(default=True)
        reference = serializers.CharField(
            help_text="The erasure's only name (also in its privacy.erasure audit event)."
        )
        counts = serializers.DictField(child=serializers.IntegerField())
        mentions = serializers.ListField(
            child=inline_serializer(
                "ErasureMention",
                {
                    "model": serializers.CharField(),
                    "id": serializers.CharField(),
                    "field": serializers.CharField(),
                },
            ),
            help_text="Free text that still names the person: for a person to review.",
        )

    @extend_schema(
        tags=["privacy"],
        summary="Erase a user (GDPR): account gone, keys revoked, pseudonym unlinked",
        description=(
            "The user and their pseudonym mapping are deleted, their API keys revoked and "
            "deleted, their tokens and sessions end at once; the audit chain is untouched and "
            "still verifies. Audited as privacy.erasure with a new random reference, never the "
            "username, e-mail address or id. Erasing oneself, the last active administrator, or "
            "(unless the caller is one) a superuser is 403 `permission_denied`, audited "
            "`user.change_refused`."
        ),
        request=UsernameSerializer,
        responses={200: OutputSerializer},
    )
    def post(self, request: Request) -> Response:
        payload = UsernameSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        user = subject_get(username=payload.validated_data["username"])
        access_change_check(actor=request.user, user=user, change=Change.ERASE)
        receipt = subject_erase(actor=cast("User", request.user), user=user)
        return Response(
            self.OutputSerializer(
                {
                    "erased": True,
                    "reference": receipt.reference,
                    "counts": receipt.counts,
                    "mentions": receipt.mentions,
                }
            ).data
        )
