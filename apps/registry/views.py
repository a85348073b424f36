"""Registry endpoints (docs/api.md "Models and versions"). Writers hold `models.write` (admins, ML
engineers); readers `models.read` (also auditors). Artifacts come in as multipart only."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.http import HttpRequest
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import (
    OpenApiParameter,
    extend_schema,
    extend_schema_field,
    inline_serializer,
)
from rest_framework import serializers
from rest_framework.generics import ListAPIView
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core import permissions
from apps.core.pagination import CursorPagination
from apps.core.permissions import Allows, AllowsAny
from apps.registry.inputs import positive_finite, version_arguments
from apps.registry.models import (
    MAX_BATCH_LIMIT,
    MODEL_NAME_PATTERN,
    ArtifactFormat,
    Stage,
    VersionStatus,
    WatermarkStatus,
)
from apps.registry.selectors import (
    model_version_get,
    model_version_list,
    registered_model_get,
    registered_model_list,
)
from apps.registry.services import (
    model_version_register,
    model_version_stage,
    registered_model_create,
    registered_model_update,
)
from apps.registry.signing import MAX_BUNDLE_BYTES
from apps.registry.trust import beyond_deployment
from apps.registry.uploads import InMemoryArtifactUploadHandler
from apps.registry.watermarks import watermark_result_get, watermark_verification_request

TAGS = ["models"]
NAME = OpenApiParameter("name", str, OpenApiParameter.PATH, description="The model's name.")
NUMBER = OpenApiParameter("number", int, OpenApiParameter.PATH, description="Version number.")


class ReadOrWrite(permissions.ReadOrWrite, area="models"):
    """Reads need `models.read`, anything else `models.write`."""


@extend_schema_field(OpenApiTypes.BINARY)
class BundleField(serializers.Field):
    """A signature bundle sent as a file part (`-F signature=@model.sig`) or as text."""

    def to_internal_value(self, data: Any) -> str:
        if hasattr(data, "read"):
            data = data.read(MAX_BUNDLE_BYTES + 1)
            try:
                data = data.decode()
            except UnicodeDecodeError:
                raise serializers.ValidationError("Must be UTF-8 JSON.") from None
        if not isinstance(data, str):
            raise serializers.ValidationError("Must be a model-signing bundle (JSON).")
        if len(data.encode()) > MAX_BUNDLE_BYTES:
            raise serializers.ValidationError(f"Must be at most {MAX_BUNDLE_BYTES} bytes.")
        return data

    def to_representation(self, value: Any) -> Any:
        return value


class ModelSerializer(serializers.Serializer):
    class Meta:
        ref_name = "RegisteredModel"

    name = serializers.CharField()
    description = serializers.CharField()
    created_by = serializers.CharField(source="created_by.username", allow_null=True, default=None)
    owners = serializers.SerializerMethodField()
    owner_group = serializers.CharField(source="owner_group.name", allow_null=True, default=None)
    require_signed_artifacts = serializers.BooleanField()
    extra_allowed_globals = serializers.ListField(child=serializers.CharField())
    created_at = serializers.DateTimeField()

    def get_owners(self, model: Any) -> list[str]:
        return sorted(user.username for user in model.owners.all())


class AllowedGlobalsSerializer(serializers.Serializer):
    class Meta:
        ref_name = "AllowedGlobals"

    count = serializers.IntegerField(help_text="Globals the artifact imports (all allowed).")
    beyond_default = serializers.ListField(
        child=serializers.CharField(),
        help_text="Those outside the deployment's list: allowed by the model's own list for "
        "a signed artifact.",
    )


def allowed_globals_of(version: Any) -> dict[str, Any]:
    return {
        "count": len(version.allowed_globals),
        "beyond_default": beyond_deployment(version.allowed_globals),
    }


class VersionSerializer(serializers.Serializer):
    class Meta:
        ref_name = "ModelVersion"

    version = serializers.IntegerField(source="number")
    stage = serializers.ChoiceField(choices=Stage.choices)
    status = serializers.ChoiceField(
        choices=VersionStatus.choices, help_text="`quarantined`: never served or promoted."
    )
    quarantine_reason = serializers.CharField()
    allowed_globals = serializers.SerializerMethodField()
    signed_by = serializers.CharField(source="signed_by.name", allow_null=True, default=None)
    format = serializers.ChoiceField(choices=ArtifactFormat.choices)
    sha256 = serializers.CharField(help_text="SHA-256 of the plaintext artifact, hex.")
    size = serializers.IntegerField(help_text="Plaintext bytes.")
    encrypted = serializers.SerializerMethodField()
    input_schema = serializers.JSONField()
    feature_order = serializers.ListField(child=serializers.CharField())
    max_batch = serializers.IntegerField()
    dp_epsilon = serializers.FloatField(allow_null=True)
    dp_sensitivity = serializers.FloatField(allow_null=True)
    created_at = serializers.DateTimeField()

    def get_encrypted(self, version: Any) -> bool:
        # Every stored artifact is ciphertext: there is no unencrypted path into the registry.
        return True

    @extend_schema_field(AllowedGlobalsSerializer)
    def get_allowed_globals(self, version: Any) -> dict[str, Any]:
        return allowed_globals_of(version)


class RegisteredModelListApi(ReadOrWrite, ListAPIView):
    pagination_class = CursorPagination
    serializer_class = ModelSerializer

    @extend_schema(tags=TAGS, summary="Registered models, newest first")
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        return registered_model_list(actor=self.request.user)


class RegisteredModelCreateApi(ReadOrWrite, APIView):
    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RegisteredModelCreate"

        name = serializers.RegexField(
            MODEL_NAME_PATTERN, max_length=64, help_text="1 to 64 of [A-Za-z0-9_-]."
        )
        description = serializers.CharField(
            max_length=2000, required=False, allow_blank=True, default=""
        )

    @extend_schema(
        tags=TAGS,
        summary="Register a model",
        description="A name already taken is 409 `conflict`.",
        request=InputSerializer,
        responses={201: ModelSerializer},
    )
    def post(self, request: Request) -> Response:
        payload = RegisteredModelCreateApi.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        model = registered_model_create(actor=request.user, **payload.validated_data)
        return Response(ModelSerializer(model).data, status=201)


class RegisteredModelCollectionApi(RegisteredModelListApi, RegisteredModelCreateApi):
    """`/models`: GET lists, POST registers (one path, two operations)."""


class RegisteredModelDetailApi(ReadOrWrite, APIView):
    class UpdateSerializer(serializers.Serializer):
        class Meta:
            ref_name = "RegisteredModelUpdate"

        description = serializers.CharField(max_length=2000, required=False, allow_blank=True)
        owners = serializers.ListField(
            child=serializers.CharField(max_length=150),
            required=False,
            max_length=100,
            help_text="Usernames (admins only).",
        )
        owner_group = serializers.CharField(
            max_length=150, required=False, allow_null=True, help_text="A group (admins only)."
        )
        require_signed_artifacts = serializers.BooleanField(
            required=False, help_text="Owners may turn it on; only admins turn it off."
        )
        extra_allowed_globals = serializers.ListField(
            child=serializers.CharField(max_length=300),
            required=False,
            max_length=200,
            help_text="`module.name`s this model's signed artifacts may import beyond the "
            "deployment's list (admins only); removing one quarantines versions that import it.",
        )

    @extend_schema(tags=TAGS, summary="One model", parameters=[NAME], responses=ModelSerializer)
    def get(self, request: Request, name: str) -> Response:
        model = registered_model_get(actor=request.user, name=name)
        return Response(ModelSerializer(model).data)

    @extend_schema(
        tags=TAGS,
        summary="Change a model's owners, signature rule or allow-list extension",
        description=(
            "Owners, owner group and `extra_allowed_globals`: admins only. The description and "
            "turning `require_signed_artifacts` on: the model's owners too. Anyone else: 403 "
            "`permission_denied`. An unknown username or group, or a global that can never be "
            "allowed: 400 `invalid_input`. Audited `model.updated`."
        ),
        parameters=[NAME],
        request=UpdateSerializer,
        responses={200: ModelSerializer},
    )
    def patch(self, request: Request, name: str) -> Response:
        model = registered_model_get(actor=request.user, name=name)
        payload = self.UpdateSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        model = registered_model_update(actor=request.user, model=model, **payload.validated_data)
        return Response(ModelSerializer(registered_model_get(actor=request.user, name=name)).data)


class ModelVersionListApi(ReadOrWrite, ListAPIView):
    pagination_class = CursorPagination
    serializer_class = VersionSerializer

    @extend_schema(tags=TAGS, summary="A model's versions, newest first", parameters=[NAME])
    def get(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return super().get(request, *args, **kwargs)

    def get_queryset(self):
        model = registered_model_get(actor=self.request.user, name=self.kwargs["name"])
        return model_version_list(actor=self.request.user, model=model)


class ModelVersionUploadApi(ReadOrWrite, APIView):
    # Multipart only: an artifact is a file. A JSON body here is 415.
    parser_classes = [MultiPartParser]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ModelVersionUpload"

        artifact = serializers.FileField(help_text="The model file, in `format`.")
        format = serializers.ChoiceField(
            choices=ArtifactFormat.choices,
            required=False,
            default=ArtifactFormat.JOBLIB,
            help_text=(
                "`joblib` (its pickle is walked, never run: every global it imports must be "
                "allowed) or `skops` (loads only allow-listed types)."
            ),
        )
        signature = BundleField(
            required=False,
            help_text="An OpenSSF model-signing bundle (JSON) for the artifact, by a trusted "
            "publisher's key, as a file part or a text field; verified before anything else "
            "reads the artifact.",
        )
        input_schema = serializers.CharField(
            help_text="JSON Schema (draft 2020-12) of one input row, an object, as JSON text."
        )
        feature_order = serializers.CharField(
            required=False,
            help_text="JSON list of property names; default: the schema's `properties` order.",
        )
        max_batch = serializers.IntegerField(
            min_value=1, max_value=MAX_BATCH_LIMIT, required=False, default=100
        )
        dp_epsilon = serializers.FloatField(
            required=False, validators=[positive_finite], help_text="With dp_sensitivity."
        )
        dp_sensitivity = serializers.FloatField(
            required=False, validators=[positive_finite], help_text="With dp_epsilon."
        )
        watermark = serializers.CharField(
            required=False,
            help_text=(
                'JSON {"inputs": [rows], "labels": [...], "threshold": 0 < t <= 1}: rows valid '
                "against input_schema, one label each. Stored sealed; verified after upload."
            ),
        )

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ModelVersionCreated"

        version = serializers.IntegerField(source="number")
        sha256 = serializers.CharField()
        size = serializers.IntegerField()
        stage = serializers.ChoiceField(choices=Stage.choices)
        status = serializers.ChoiceField(choices=VersionStatus.choices)
        format = serializers.ChoiceField(choices=ArtifactFormat.choices)
        allowed_globals = serializers.SerializerMethodField()
        signed_by = serializers.CharField(source="signed_by.name", allow_null=True, default=None)
        encrypted = serializers.BooleanField(default=True)
        created_at = serializers.DateTimeField()

        @extend_schema_field(AllowedGlobalsSerializer)
        def get_allowed_globals(self, version: Any) -> dict[str, Any]:
            return allowed_globals_of(version)

    def initialize_request(self, request: HttpRequest, *args: Any, **kwargs: Any) -> Request:
        # Before anything reads the body: Django's default handlers would write an artifact
        # over 2.5 MB to a temporary file in plaintext. Ours keeps it in memory, bounded.
        request.upload_handlers = [InMemoryArtifactUploadHandler(request)]
        return super().initialize_request(request, *args, **kwargs)

    @extend_schema(
        tags=TAGS,
        summary="Upload a version (encrypted at rest; starts in staging)",
        description=(
            "multipart/form-data only. The model's owners and admins only (else 403 "
            "`permission_denied`). The artifact is kept in memory, encrypted with its own "
            "data key and stored as ciphertext; its plaintext never touches disk. Larger than "
            "the upload limit (MAX_ARTIFACT_MB): 413 `payload_too_large`. 400 `invalid_input` "
            "(path `artifact`) for a pickle that imports a global outside the allow-list (the "
            "message and `details` name each one), that the static walk cannot prove (a "
            "computed import name, an extension code, a persistent id, ...), or a `skops` file "
            "naming an untrusted type; (path `signature`) for a bundle that does not verify, "
            "is for other bytes or names no trusted publisher, or none for a model that "
            "requires signatures. Each such refusal is audited `model.version.rejected`."
        ),
        parameters=[NAME],
        request={"multipart/form-data": InputSerializer},
        responses={201: OutputSerializer},
    )
    def post(self, request: Request, name: str) -> Response:
        model = registered_model_get(actor=request.user, name=name)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        version = model_version_register(
            actor=request.user,
            model=model,
            **version_arguments(payload.validated_data),
        )
        return Response(self.OutputSerializer(version).data, status=201)


class ModelVersionCollectionApi(ModelVersionListApi, ModelVersionUploadApi):
    """`/models/{name}/versions`: GET lists, POST uploads (one path, two operations)."""


class ModelVersionStageApi(APIView):
    # Owners and admins move versions; security officers may archive any (the service
    # decides per stage), so the view lets both capabilities through.
    permission_classes = [IsAuthenticated, AllowsAny("models.write", "models.archive_any")]  # type: ignore[list-item]  # an instance for a class

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ModelVersionStage"

        stage = serializers.ChoiceField(choices=Stage.choices)

    @extend_schema(
        tags=TAGS,
        summary="Move a version to a stage",
        description=(
            "At most one production version per model: promoting one moves the former "
            "production version to staging, in the same transaction. The model's owners and "
            "admins only; security officers may archive any version (else 403 "
            "`permission_denied`). A quarantined version is never promoted: 409 `conflict`."
        ),
        parameters=[NAME, NUMBER],
        request=InputSerializer,
        responses={200: VersionSerializer},
    )
    def post(self, request: Request, name: str, number: int) -> Response:
        model = registered_model_get(actor=request.user, name=name)
        version = model_version_get(actor=request.user, model=model, number=number)
        payload = self.InputSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        version = model_version_stage(
            actor=request.user,
            version=version,
            stage=payload.validated_data["stage"],
        )
        return Response(VersionSerializer(version).data)


class ModelVersionVerifyWatermarkApi(APIView):
    permission_classes = [IsAuthenticated, Allows("models.write")]  # type: ignore[list-item]  # an instance for a class

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WatermarkJobCreated"

        job_id = serializers.UUIDField(source="id")

    @extend_schema(
        tags=TAGS,
        summary="Verify a version's watermark (a background job)",
        description=(
            "Queues a job that loads the version (integrity checked) and predicts its "
            "watermark inputs; poll `GET /api/v1/jobs/{job_id}`. A version without a "
            "watermark set is 409 `conflict`."
        ),
        parameters=[NAME, NUMBER],
        request=None,
        responses={202: OutputSerializer},
    )
    def post(self, request: Request, name: str, number: int) -> Response:
        model = registered_model_get(actor=request.user, name=name)
        version = model_version_get(actor=request.user, model=model, number=number)
        result = watermark_verification_request(actor=request.user, version=version)
        return Response(self.OutputSerializer(result).data, status=202)


class JobDetailApi(APIView):
    permission_classes = [IsAuthenticated, Allows("models.read")]  # type: ignore[list-item]  # an instance for a class

    class ResultSerializer(serializers.Serializer):
        class Meta:
            ref_name = "WatermarkJobResult"

        agreement = serializers.FloatField(allow_null=True)
        threshold = serializers.FloatField(allow_null=True)
        reason = serializers.CharField()

    class OutputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "Job"

        status = serializers.ChoiceField(choices=WatermarkStatus.choices)
        result = serializers.SerializerMethodField()

        @extend_schema_field(
            inline_serializer(
                "WatermarkJobOutcome",
                {
                    "agreement": serializers.FloatField(allow_null=True),
                    "threshold": serializers.FloatField(allow_null=True),
                    "reason": serializers.CharField(),
                },
            )
        )
        def get_result(self, job: Any) -> dict[str, Any] | None:
            return None

    @extend_schema(
        tags=["jobs"],
        summary="A background job's state and, once finished, its result",
        parameters=[
            OpenApiParameter("job_id", OpenApiTypes.UUID, OpenApiParameter.PATH),
        ],
        responses={200: OutputSerializer},
    )
    def get(self, request: Request, job_id: UUID) -> Response:
        job = watermark_result_get(actor=request.user, job_id=job_id)
        body: dict[str, Any] = {"status": job.status}
        if job.status in {WatermarkStatus.SUCCEEDED, WatermarkStatus.FAILED}:
            body["result"] = self.ResultSerializer(job).data
        return Response(body)
