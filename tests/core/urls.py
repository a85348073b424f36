"""Test-only endpoints, mounted beside the real ones, to drive the shared HTTP behaviour
(parsing, errors, pagination, outages) before the product's own endpoints exist."""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import connections
from django.urls import path
from rest_framework import serializers
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import Throttled
from rest_framework.generics import ListAPIView
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.accounts.models import User
from apps.core.pagination import CursorPagination
from controlplane.urls import urlpatterns as real_urlpatterns

logger = logging.getLogger("tests.echo")


class Open(APIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]


class EchoApi(Open):
    def post(self, request: Request) -> Response:
        logger.info("echo received %s", request.data, extra={"body": request.data})
        return Response({"received": request.data})


class RowSerializer(serializers.Serializer):
    price = serializers.IntegerField(min_value=10)


class ValidateApi(Open):
    class InputSerializer(serializers.Serializer):
        inputs = RowSerializer(many=True)

    def post(self, request: Request) -> Response:
        self.InputSerializer(data=request.data).is_valid(raise_exception=True)
        return Response({"ok": True})


class BearerOnly(BaseAuthentication):
    """Stands in for the JWT authenticator of the identity issue: finds nobody, asks for Bearer."""

    def authenticate(self, request: Request) -> None:
        return None

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="bulwark"'


class PrivateApi(APIView):
    authentication_classes = [BearerOnly]
    permission_classes = [IsAuthenticated]

    def get(self, request: Request) -> Response:
        return Response({"ok": True})


class ThrottledApi(Open):
    def get(self, request: Request) -> Response:
        raise Throttled(wait=12.2)


class BoomApi(Open):
    def get(self, request: Request) -> Response:
        raise RuntimeError("internal detail /srv/secret/path password=hunter2")


class CacheApi(Open):
    def get(self, request: Request) -> Response:
        cache.set("probe", "1", timeout=5)
        return Response({"cached": cache.get("probe")})


class DeadDatabaseApi(Open):
    """Queries a database server that is not there (its port is given by the test)."""

    port = 1

    def get(self, request: Request) -> Response:
        connection = connections.create_connection("default")
        connection.settings_dict = {
            **connection.settings_dict,
            "HOST": "127.0.0.1",
            "PORT": str(self.port),
        }
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT 1")
        finally:
            connection.close()
        return Response({"reached": True})


class WhoAmIApi(Open):
    def get(self, request: Request) -> Response:
        return Response({"ip": request.META.get("REMOTE_ADDR"), "secure": request.is_secure()})


class UserRowSerializer(serializers.ModelSerializer):
    class Meta:
        model = User
        fields = ["username"]


class UserPagination(CursorPagination):
    ordering = "username"


class UserListApi(ListAPIView):
    authentication_classes: list[type] = []
    permission_classes = [AllowAny]
    serializer_class = UserRowSerializer
    pagination_class = UserPagination
    queryset = User.objects.all()


urlpatterns = [
    path("api/test/echo", EchoApi.as_view()),
    path("api/test/validate", ValidateApi.as_view()),
    path("api/test/private", PrivateApi.as_view()),
    path("api/test/throttled", ThrottledApi.as_view()),
    path("api/test/boom", BoomApi.as_view()),
    path("api/test/cache", CacheApi.as_view()),
    path("api/test/dead-database", DeadDatabaseApi.as_view()),
    path("api/test/whoami", WhoAmIApi.as_view()),
    path("api/test/users", UserListApi.as_view()),
    *real_urlpatterns,
]
handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
