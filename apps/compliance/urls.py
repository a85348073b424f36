from django.urls import path

from apps.compliance import views

urlpatterns = [
    path("compliance/items", views.ItemListApi.as_view(), name="compliance-items"),
    path("compliance/items/<uuid:item_id>", views.ItemDetailApi.as_view(), name="compliance-item"),
    path(
        "compliance/items/<uuid:item_id>/evidence",
        views.EvidenceCreateApi.as_view(),
        name="compliance-item-evidence",
    ),
    path(
        "compliance/evidence/<uuid:evidence_id>/file",
        views.EvidenceFileApi.as_view(),
        name="compliance-evidence-file",
    ),
    path("compliance/checks/run", views.ChecksRunApi.as_view(), name="compliance-checks-run"),
    path("compliance/report", views.ReportApi.as_view(), name="compliance-report"),
]
