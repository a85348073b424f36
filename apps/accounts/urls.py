from django.urls import path

from apps.accounts import views

urlpatterns = [
    path("auth/token", views.TokenObtainApi.as_view(), name="auth-token"),
    path("auth/token/refresh", views.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("auth/token/revoke", views.TokenRevokeApi.as_view(), name="auth-token-revoke"),
    path("auth/me", views.MeApi.as_view(), name="auth-me"),
]
