from django.urls import path

from apps.serving import views

urlpatterns = [
    path("models/<str:name>/predict", views.PredictApi.as_view(), name="predict"),
]
