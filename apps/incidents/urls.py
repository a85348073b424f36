from django.urls import path

from apps.incidents import views

urlpatterns = [
    path("incidents", views.IncidentCollectionApi.as_view(), name="incidents"),
    path("incidents/<uuid:incident_id>", views.IncidentDetailApi.as_view(), name="incident"),
    path(
        "incidents/<uuid:incident_id>/transition",
        views.IncidentTransitionApi.as_view(),
        name="incident-transition",
    ),
    path(
        "incidents/<uuid:incident_id>/notes", views.IncidentNoteApi.as_view(), name="incident-notes"
    ),
    path(
        "incidents/<uuid:incident_id>/actions",
        views.IncidentActionApi.as_view(),
        name="incident-actions",
    ),
    path(
        "incidents/<uuid:incident_id>/assign",
        views.IncidentAssignApi.as_view(),
        name="incident-assign",
    ),
    path(
        "incidents/<uuid:incident_id>/postmortem",
        views.IncidentPostmortemApi.as_view(),
        name="incident-postmortem",
    ),
]
