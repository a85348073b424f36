from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerSplitView

from apps.console.views.dashboard import home
from apps.core.views import HealthzApi, ReadyzApi, favicon, metrics

api_v1 = [  # each app adds its routes here as it lands
    path("", include("apps.accounts.urls")),
    path("", include("apps.apikeys.urls")),
    path("", include("apps.audit.urls")),
    path("", include("apps.registry.urls")),
    path("", include("apps.serving.urls")),
    path("", include("apps.gdpr.urls")),
    path("", include("apps.incidents.urls")),
    path("", include("apps.compliance.urls")),
]

urlpatterns = [
    path("", home, name="home"),
    path("favicon.ico", favicon, name="favicon"),
    path("healthz", HealthzApi.as_view(), name="healthz"),
    path("readyz", ReadyzApi.as_view(), name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("api/schema", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs", SpectacularSwaggerSplitView.as_view(url_name="schema"), name="api-docs"),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("account/", include("apps.accounts.web_urls")),
    path("incidents/", include("apps.incidents.web_urls")),
    path("compliance/", include("apps.compliance.web_urls")),
    path("audit/", include("apps.console.audit_urls")),
    path("keys/", include("apps.console.keys_urls")),
    path("models/", include("apps.console.models_urls")),
    path("admin/", admin.site.urls),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
