"""`POST /api/v1/models/{name}/predict` (docs/api.md "Predict")."""

from __future__ import annotations

import logging
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import JwtAuthentication
from apps.apikeys import records
from apps.apikeys.authentication import HEADER, ApiKeyAuthentication
from apps.apikeys.keys import parse_key
from apps.audit.subjects import Subject
from apps.core.auth_failures import failure_bucket
from apps.core.errors import InvalidInput
from apps.core.exception_handler import to_application_error
from apps.core.parsers import StrictJSONParser
from apps.serving import limits
from apps.serving.limits import GateResult, gate_for_key
from apps.serving.services import (
    PredictCall,
    predict_authorize,
    predict_rate_limit,
    predict_rejection_record,
    predict_run,
)

logger = logging.getLogger("bulwark.serving")
ANONYMOUS = Subject("user", "anonymous")


def _version_param(request: Request) -> int | None:
    raw = request.query_params.get("version")
    if raw is None:
        return None
    # ASCII digits only: str.isdigit() also accepts "²" and "١٢", which int() refuses or reads.
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= 2_147_483_647:
        raise InvalidInput(
            "version: must be a positive version number",
            details=[{"path": "version", "message": "must be a positive version number"}],
        )
    return int(raw)


class PredictApi(APIView):
    """Authenticated by `X-API-Key` (checked first: IP allow-list and signature included) or a
    Bearer JWT; sessions are not accepted here."""

    authentication_classes = [ApiKeyAuthentication, JwtAuthentication]
    permission_classes = [IsAuthenticated]
    parser_classes = [StrictJSONParser]

    call: PredictCall | None = None

    gate: GateResult | None = None

    def perform_authentication(self, request: Request) -> None:
        """With an API key this process has served before, authentication's reads and the
        rate limit share one Redis round trip (apps.serving.limits, "the API-key gate")."""
        parsed = parse_key(request.META.get(HEADER) or "")
        if parsed is not None:
            self.gate = gate_for_key(public_id=parsed[0], failure_bucket=failure_bucket(request))
        token = records.prefetched.set(self.gate.lookup) if self.gate is not None else None
        try:
            super().perform_authentication(request)
        finally:
            if token is not None:
                records.prefetched.reset(token)

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        # The refusal is audited here, once (predict.rejected); the API-key authenticator
        # leaves it to us instead of writing apikey.rejected as well.
        request.rejection_audited_by_view = True  # type: ignore[attr-defined]  # read by the authenticator
        return super().dispatch(request, *args, **kwargs)

    @extend_schema(
        tags=["predict"],
        parameters=[
            OpenApiParameter(
                "version", int, description="A version number; default the production one."
            )
        ],
        request=inline_serializer(
            "PredictRequest", {"inputs": serializers.ListField(child=serializers.DictField())}
        ),
        responses={
            200: inline_serializer(
                "PredictResponse",
                {
                    "model": serializers.CharField(),
                    "version": serializers.IntegerField(),
                    "predictions": serializers.ListField(child=serializers.JSONField()),
                    "request_id": serializers.CharField(),
                    "privacy": inline_serializer(
                        "PredictPrivacy",
                        {
                            "epsilon_spent": serializers.FloatField(),
                            "epsilon_remaining": serializers.FloatField(),
                            "noise": serializers.CharField(
                                help_text="`laplace` on numeric outputs; class labels are "
                                "returned unchanged (`none: ...`). An addition to docs/api.md."
                            ),
                        },
                        required=False,
                    ),
                },
            )
        },
        description=(
            "Checks in this order: body size and type, authentication (API key: IP allow-list "
            "and signature too), rate limit, grant or scope, version, input, privacy budget. "
            "Every response after authentication carries RateLimit-Limit/-Remaining/-Reset."
        ),
    )
    def post(self, request: Request, name: str) -> Response:
        api_key = (
            request.auth
            if isinstance(request.successful_authenticator, ApiKeyAuthentication)
            else None
        )
        self.call = PredictCall(
            user=request.user, api_key=api_key, model=name, version_number=None, gate=self.gate
        )
        predict_rate_limit(self.call)
        predict_authorize(self.call)
        self.call.version_number = _version_param(request)
        body = predict_run(self.call, request.data)
        body["request_id"] = getattr(request._request, "request_id", None)
        return Response(body)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self.call is not None and self.call.verdict is not None:
            for header, value in self.call.verdict.headers().items():
                response[header] = value
        return response

    def handle_exception(self, exc: Exception) -> Response:
        if self.gate is not None and not self.gate.used:
            # Refused before the call was the key's (authentication, a lock-out): give it back.
            try:
                limits.give_back(self.gate)
            except Exception:
                logger.warning("gate count not given back", exc_info=True)
        try:
            response = super().handle_exception(exc)
        except Exception:
            self._record_rejection(exc, status=500)  # a bug: Django's handler500 answers
            raise
        self._record_rejection(exc, status=response.status_code)
        return response

    def _record_rejection(self, exc: Exception, *, status: int) -> None:
        request: Request = self.request
        http_request = request._request
        error = to_application_error(exc)
        code = error.code if error is not None else "internal_error"
        rejection = getattr(http_request, "api_key_rejection", None) or {}
        actor: Any = rejection.get("actor")
        if actor is None and self.call is not None:
            actor = self.call.actor
        try:
            predict_rejection_record(
                self.call,
                model=self.kwargs.get("name", ""),
                code=code,
                status=status,
                reason=rejection.get("reason"),
                actor=actor or ANONYMOUS,
            )
        except Exception:
            # Fail closed: the refusal stands even when it cannot be recorded.
            logger.exception("predict refusal could not be audited", extra={"code": code})
