from django.urls import path

from apps.compliance.views import api

urlpatterns = [
    path("compliance/items", api.ItemListApi.as_view(), name="compliance-items"),
    path("compliance/items/<uuid:item_id>", api.ItemDetailApi.as_view(), name="compliance-item"),
    path(
        "compliance/items/<uuid:item_id>/evidence",
        api.EvidenceCreateApi.as_view(),
        name="compliance-item-evidence",
    ),
    path(
        "compliance/evidence/<uuid:evidence_id>/file",
        api.EvidenceFileApi.as_view(),
        name="compliance-evidence-file",
    ),
    path("compliance/checks/run", api.ChecksRunApi.as_view(), name="compliance-checks-run"),
    path("compliance/report", api.ReportApi.as_view(), name="compliance-report"),
]
