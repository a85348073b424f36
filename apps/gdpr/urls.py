from django.urls import path

from apps.gdpr import views

urlpatterns = [
    path("privacy/me/export", views.SubjectAccessMeApi.as_view(), name="privacy-me-export"),
    path("privacy/subject-access", views.SubjectAccessApi.as_view(), name="privacy-subject-access"),
    path("privacy/erasure", views.SubjectErasureApi.as_view(), name="privacy-erasure"),
]
