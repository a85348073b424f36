"""`/api/v1/publishers` (docs/api.md "Models and versions", additions): the trusted publishers of
signed artifacts. Security officers and admins only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.pagination import CursorPagination
from apps.core.permissions import Allows
from apps.registry.publishers import publisher_create, publisher_remove
from apps.registry.selectors import publisher_get, publisher_list

TAGS = ["publishers"]


class PublisherSerializer(serializers.Serializer):
    class Meta:
        ref_name = "Publisher"

    id = serializers.UUIDField()
    name = serializers.CharField()
    public_key = serializers.CharField(help_text="PEM (SubjectPublicKeyInfo).")
    key_id = serializers.CharField(
        help_text="SHA-256 of the PEM, hex: the key hint a model-signing bundle carries."
    )
    created_at = serializers.DateTimeField()


class PublisherCollectionApi(ListAPIView):
    permission_classes = [IsAuthenticated, Allows("publishers.manage")]  # type: ignore[list-item]  # an instance for a class
    pagination_class = CursorPagination
    serializer_class = PublisherSerializer

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "PublisherCreate"

        name = serializers.CharField(max_length=100)
        public_key = serializers.CharField(
            max_length=4096, help_text="PEM public key: an elliptic curve on P-256/384/521."
        )

    def get_queryset(self):
        return publisher_list(actor=self.request.user)

    @extend_schema(tags=TAGS, summary="Trusted publishers of signed artifacts")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS,
        summary="Register a trusted publisher",
        description=(
            "Audited `publisher.created`. A key that is not a PEM elliptic-curve public key "
            "(P-256, P-384, P-521): 400 `invalid_input`; a name or key already registered: "
            "409 `conflict`."
        ),
        request=InputSerializer,
        responses={201: PublisherSerializer},
    )
    def post(self, request: Request) -> Response:
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        publisher = publisher_create(actor=request.user, **payload.validated_data)
        return Response(PublisherSerializer(publisher).data, status=201)


class PublisherDetailApi(APIView):
    permission_classes = [IsAuthenticated, Allows("publishers.manage")]  # type: ignore[list-item]  # an instance for a class

    @extend_schema(
        tags=TAGS,
        summary="Remove a trusted publisher",
        description=(
            "Its signatures are no longer accepted; versions that needed its signature (they "
            "import globals beyond the deployment's list) are quarantined. Audited "
            "`publisher.removed`. 204."
        ),
        parameters=[OpenApiParameter("publisher_id", OpenApiTypes.UUID, OpenApiParameter.PATH)],
        responses={204: None},
    )
    def delete(self, request: Request, publisher_id: UUID) -> Response:
        publisher = publisher_get(actor=request.user, publisher_id=publisher_id)
        publisher_remove(actor=request.user, publisher=publisher)
        return Response(status=204)
