"""`POST /api/v1/models/{name}/predict` (docs/api.md "Predict")."""

from __future__ import annotations

import logging
import time
from typing import Any

from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.authentication import JwtAuthentication
from apps.accounts.user_cache import RecordsRead
from apps.apikeys.authentication import (
    HEADER,
    ApiKeyAuthentication,
    KeyAccepted,
    KeyRefused,
    PresentedKey,
    api_key_authenticate,
)
from apps.apikeys.signatures import SignedRequest
from apps.audit.subjects import Subject
from apps.core import metrics
from apps.core.auth_failures import failure_bucket_of
from apps.core.errors import InvalidInput
from apps.core.exception_handler import to_application_error
from apps.core.parsers import StrictJSONParser
from apps.core.redis import shared_client
from apps.core.renderers import FastJSONRenderer
from apps.serving import limits
from apps.serving.limits import GateResult, gate_for_key, gate_for_user
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


class _PredictKeyAuthentication(ApiKeyAuthentication):
    """`X-API-Key` on predict: the view authenticates it (`PredictApi.key_authenticate`). Being
    DRF's first authenticator keeps DRF's order and state: a key's refusal stands even beside
    a JWT, its challenge heads every 401, and the schema names the apiKey scheme."""

    def __init__(self, view: PredictApi) -> None:
        self.view = view

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        header = request.META.get(HEADER)
        if header is None:
            return None
        return self.view.key_authenticate(request, header)


class PredictApi(APIView):
    """Authenticated by `X-API-Key` (checked first: IP allow-list and signature included) or a
    Bearer JWT; sessions are not accepted here."""

    permission_classes = [IsAuthenticated]
    parser_classes = [StrictJSONParser]
    renderer_classes = [FastJSONRenderer]

    call: PredictCall | None = None
    gate: GateResult | None = None  # the API-key gate's read and count, if any
    key: KeyAccepted | None = None
    refusal: KeyRefused | None = None  # why the key was refused: recorded as predict.rejected
    outcome: str = "ok"  # the refusal's code, for the metrics

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        """The whole call, timed for bulwark_predict_seconds/_total: the model and version
        once the registry resolved them (an unknown name adds no label value)."""
        started = time.perf_counter()
        self.outcome = "internal_error"  # until a response says otherwise
        try:
            response = super().dispatch(request, *args, **kwargs)
            if response.status_code < 400:
                self.outcome = "ok"
            return response
        finally:
            version = self.call.version if self.call is not None else None
            metrics.predict_observe(
                version.model if version is not None else None,
                version.number if version is not None else None,
                self.outcome,
                time.perf_counter() - started,
            )

    def get_authenticators(self) -> list[BaseAuthentication]:
        return [_PredictKeyAuthentication(self), JwtAuthentication(records_read=self.jwt_read)]

    def jwt_read(self, user_id: Any) -> RecordsRead | None:
        """A bearer token whose signature holds: the records JWT authentication reads come
        in the round trip that counts the call (apps.serving.limits.gate_for_user)."""
        if shared_client() is None:
            return None

        def read(keys: list[str]) -> list[Any]:
            gated = gate_for_user(user_id, keys)
            if gated is None:  # Redis went away between the check and the read
                raise RuntimeError("the predict gate needs Redis")
            self.gate, values = gated
            return values

        return read

    def key_authenticate(self, request: Request, header: str) -> tuple[Any, Any]:
        """Steps 2 and 3 of docs/architecture.md "A predict request": with a key this process
        has served before, the gate reads what authentication needs and counts the call in one
        round trip (apps.serving.limits), and authentication takes what it read."""
        http_request = request._request
        key = PresentedKey.parse(header)
        address = http_request.META.get("REMOTE_ADDR", "")
        if key.public_id is not None:
            self.gate = gate_for_key(
                public_id=key.public_id, failure_bucket=failure_bucket_of(address)
            )
        outcome = api_key_authenticate(
            key=key,
            client_address=address,
            signed=SignedRequest.of(http_request),
            gate=self.gate.reading if self.gate is not None else None,
        )
        if isinstance(outcome, KeyRefused):
            # Counted against the address already; handle_exception gives the gate's count
            # back and records the refusal, once, as predict.rejected (not apikey.rejected).
            self.refusal = outcome
            raise outcome.error
        self.key = outcome
        return outcome.owner, outcome.api_key

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
        api_key = self.key.api_key if self.key is not None else None
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
        error = to_application_error(exc)
        code = self.outcome = error.code if error is not None else "internal_error"
        reason: str | None = None
        actor: Any = self.call.actor if self.call is not None else None
        if self.refusal is not None:
            reason, actor = self.refusal.reason, self.refusal.actor
        try:
            predict_rejection_record(
                self.call,
                model=self.kwargs.get("name", ""),
                code=code,
                status=status,
                reason=reason,
                actor=actor or ANONYMOUS,
            )
        except Exception:
            # Fail closed: the refusal stands even when it cannot be recorded.
            logger.exception("predict refusal could not be audited", extra={"code": code})
