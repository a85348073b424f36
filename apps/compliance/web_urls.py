"""The compliance UI under /compliance/ (docs/api.md "Compliance": people do here what the API
does)."""

from django.urls import path

from apps.compliance import web_views

urlpatterns = [
    path("", web_views.dashboard_page, name="compliance-dashboard"),
    path("items/<uuid:item_id>", web_views.item_update_post, name="compliance-item-update"),
    path(
        "items/<uuid:item_id>/evidence",
        web_views.evidence_add_post,
        name="compliance-evidence-add",
    ),
    path(
        "evidence/<uuid:evidence_id>",
        web_views.evidence_download,
        name="compliance-evidence-download",
    ),
    path("checks/run", web_views.checks_run_post, name="compliance-checks-run"),
    path("report", web_views.report_download, name="compliance-report"),
]
