from __future__ import annotations

from django_otp import user_has_device
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.login import login_with_password
from apps.accounts.serializers import RefreshInput
from apps.accounts.tokens import token_refresh, token_revoke
from apps.core.permissions import roles_of

PAIR = inline_serializer(
    "TokenPair",
    {
        "access": serializers.CharField(),
        "refresh": serializers.CharField(),
        "access_expires_in": serializers.IntegerField(help_text="Seconds."),
    },
)


class PublicApi(APIView):
    """Token endpoints: the body is the credential, so no authentication runs before them."""

    authentication_classes: list[type] = []
    permission_classes = [AllowAny]


class TokenObtainApi(PublicApi):
    class InputSerializer(serializers.Serializer):
        username = serializers.CharField(max_length=150)
        password = serializers.CharField(max_length=4096, trim_whitespace=False)
        otp = serializers.CharField(max_length=64, required=False, allow_blank=True)

    @extend_schema(
        request=InputSerializer,
        responses={200: PAIR},
        tags=["auth"],
        summary="Sign in: username, password (and otp for accounts with TOTP) for a token pair",
    )
    def post(self, request: Request) -> Response:
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        data = payload.validated_data
        pair = login_with_password(
            request=request._request,
            username=data["username"],
            password=data["password"],
            otp=data.get("otp"),
        )
        return Response(pair)


class TokenRefreshApi(PublicApi):
    @extend_schema(
        request=RefreshInput,
        responses={200: PAIR},
        tags=["auth"],
        summary="Rotate: a new pair; the presented refresh token is dead from now on",
    )
    def post(self, request: Request) -> Response:
        payload = RefreshInput(data=request.data)
        payload.is_valid(raise_exception=True)
        pair = token_refresh(raw=payload.validated_data["refresh"])
        return Response({"access": pair["access"], "refresh": pair["refresh"]})


class TokenRevokeApi(PublicApi):
    @extend_schema(
        request=RefreshInput,
        responses={204: None},
        tags=["auth"],
        summary="Sign out: the refresh token and every access token issued from its family end",
    )
    def post(self, request: Request) -> Response:
        payload = RefreshInput(data=request.data)
        payload.is_valid(raise_exception=True)
        token_revoke(raw=payload.validated_data["refresh"])
        return Response(status=204)


class MeApi(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(
        tags=["auth"],
        summary="The caller",
        responses=inline_serializer(
            "Me",
            {
                "username": serializers.CharField(),
                "roles": serializers.ListField(child=serializers.CharField()),
                "mfa_enabled": serializers.BooleanField(),
            },
        ),
    )
    def get(self, request: Request) -> Response:
        user = request.user
        return Response(
            {
                "username": user.get_username(),
                "roles": sorted(roles_of(user)),
                "mfa_enabled": user_has_device(user, confirmed=True),
            }
        )
