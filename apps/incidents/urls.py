from django.urls import path

from apps.incidents.views import api

urlpatterns = [
    path("incidents", api.IncidentCollectionApi.as_view(), name="incidents"),
    path("incidents/<uuid:incident_id>", api.IncidentDetailApi.as_view(), name="incident"),
    path(
        "incidents/<uuid:incident_id>/transition",
        api.IncidentTransitionApi.as_view(),
        name="incident-transition",
    ),
    path(
        "incidents/<uuid:incident_id>/notes", api.IncidentNoteApi.as_view(), name="incident-notes"
    ),
    path(
        "incidents/<uuid:incident_id>/actions",
        api.IncidentActionApi.as_view(),
        name="incident-actions",
    ),
    path(
        "incidents/<uuid:incident_id>/assign",
        api.IncidentAssignApi.as_view(),
        name="incident-assign",
    ),
    path(
        "incidents/<uuid:incident_id>/postmortem",
        api.IncidentPostmortemApi.as_view(),
        name="incident-postmortem",
    ),
]
