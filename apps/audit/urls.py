from django.urls import path

from apps.audit import views

urlpatterns = [
    path("audit/events", views.AuditEventListApi.as_view(), name="audit-events"),
    path("audit/checkpoints", views.AuditCheckpointListApi.as_view(), name="audit-checkpoints"),
    path("audit/public-key", views.AuditPublicKeyApi.as_view(), name="audit-public-key"),
    path("audit/verify", views.AuditVerifyApi.as_view(), name="audit-verify"),
    path("audit/export", views.AuditExportApi.as_view(), name="audit-export"),
]
