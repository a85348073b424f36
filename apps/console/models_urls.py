"""The console's models pages under /models/ (docs/api.md: people do here what the API does)."""

from django.urls import path

from apps.console.views import model_upload, models

urlpatterns = [
    path("", models.model_list_page, name="models-list"),
    path("<str:name>", models.model_detail_page, name="models-detail"),
    path("<str:name>/versions/new", model_upload.version_upload_page, name="models-version-new"),
    path("<str:name>/versions/<int:number>", models.version_page, name="models-version"),
    path(
        "<str:name>/versions/<int:number>/stage/<str:stage>",
        models.version_stage_page,
        name="models-version-stage",
    ),
    path(
        "<str:name>/versions/<int:number>/rollback",
        models.version_rollback_page,
        name="models-version-rollback",
    ),
]
