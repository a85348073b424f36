"""The project's URLs plus the two baselines of bench.predict (never in production)."""

from django.urls import include, path

from bench.predict.views import BarePredictApi, NaivePredictApi

urlpatterns = [
    path("bench/bare/predict", BarePredictApi.as_view()),
    path("bench/naive/predict", NaivePredictApi.as_view()),
    path("", include("controlplane.urls")),
]

handler400 = "apps.core.views.bad_request"
handler403 = "apps.core.views.permission_denied"
handler404 = "apps.core.views.page_not_found"
handler500 = "apps.core.views.server_error"
