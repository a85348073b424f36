"""The incidents UI under /incidents/ (docs/api.md "Incidents": people do here what the API
does)."""

from django.urls import path

from apps.incidents.views import web

urlpatterns = [
    path("", web.incident_list_page, name="incident-list"),
    path("new", web.incident_new_page, name="incident-new"),
    path("<str:incident_id>", web.incident_detail_page, name="incident-detail"),
    path(
        "<str:incident_id>/transition",
        web.incident_transition_post,
        name="incident-transition",
    ),
    path("<str:incident_id>/notes", web.incident_note_post, name="incident-note"),
    path("<str:incident_id>/assign", web.incident_assign_post, name="incident-assign"),
    path("<str:incident_id>/contain", web.incident_contain_post, name="incident-contain"),
    path("<str:incident_id>/close", web.incident_close_post, name="incident-close"),
    path(
        "<str:incident_id>/postmortem/edit",
        web.incident_postmortem_post,
        name="incident-postmortem-save",
    ),
    path(
        "<str:incident_id>/postmortem",
        web.incident_postmortem_page,
        name="incident-postmortem",
    ),
    path(
        "<str:incident_id>/report.pdf",
        web.incident_report_pdf_download,
        name="incident-report-pdf",
    ),
    path(
        "<str:incident_id>/report.json",
        web.incident_report_json,
        name="incident-report-json",
    ),
]
