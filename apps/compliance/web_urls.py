"""The compliance UI under /compliance/ (docs/api.md "Compliance": people do here what the API
does)."""

from django.urls import path

from apps.compliance.views import web

urlpatterns = [
    path("", web.dashboard_page, name="compliance-dashboard"),
    path("frameworks/<slug:framework>", web.framework_page, name="compliance-framework"),
    # GET: the item's page; POST: save its review (the form's address before items had pages).
    path("items/<uuid:item_id>", web.item_page, name="compliance-item"),
    path(
        "items/<uuid:item_id>/evidence",
        web.evidence_add_post,
        name="compliance-evidence-add",
    ),
    path(
        "evidence/<uuid:evidence_id>",
        web.evidence_download,
        name="compliance-evidence-download",
    ),
    path("checks/run", web.checks_run_post, name="compliance-checks-run"),
    path("report", web.report_download, name="compliance-report"),
]
