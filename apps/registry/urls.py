from django.urls import path

from apps.registry import publisher_views, views

urlpatterns = [
    path("models", views.RegisteredModelCollectionApi.as_view(), name="models"),
    path("models/<str:name>", views.RegisteredModelDetailApi.as_view(), name="model"),
    path(
        "models/<str:name>/versions",
        views.ModelVersionCollectionApi.as_view(),
        name="model-versions",
    ),
    path(
        "models/<str:name>/versions/<int:number>/stage",
        views.ModelVersionStageApi.as_view(),
        name="model-version-stage",
    ),
    path(
        "models/<str:name>/versions/<int:number>/verify-watermark",
        views.ModelVersionVerifyWatermarkApi.as_view(),
        name="model-version-verify-watermark",
    ),
    path("jobs/<uuid:job_id>", views.JobDetailApi.as_view(), name="job"),
    path("publishers", publisher_views.PublisherCollectionApi.as_view(), name="publishers"),
    path(
        "publishers/<uuid:publisher_id>",
        publisher_views.PublisherDetailApi.as_view(),
        name="publisher",
    ),
]
