"""A test-only endpoint authenticated by ApiKeyAuthentication (its refusals recorded as
apikey.rejected; predict makes the same call, api_key_authenticate, itself), mounted beside the
real routes."""

from __future__ import annotations

from django.urls import path
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.apikeys.authentication import ApiKeyAuthentication
from controlplane.urls import urlpatterns as real_urlpatterns


class KeyedApi(APIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [IsAuthenticated]

    def _answer(self, request: Request) -> Response:
        return Response(
            {
                "owner": str(request.user.pk),
                "prefix": request.auth.prefix,
                "scopes": request.auth.scopes,
                "received": request.data if request.method == "POST" else None,
            }
        )

    def get(self, request: Request) -> Response:
        return self._answer(request)

    def post(self, request: Request) -> Response:
        return self._answer(request)


urlpatterns = [
    path("api/test/keyed", KeyedApi.as_view()),
    *real_urlpatterns,
]
handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
