from django.urls import path

from apps.accounts.views import api

urlpatterns = [
    path("auth/token", api.TokenObtainApi.as_view(), name="auth-token"),
    path("auth/token/refresh", api.TokenRefreshApi.as_view(), name="auth-token-refresh"),
    path("auth/token/revoke", api.TokenRevokeApi.as_view(), name="auth-token-revoke"),
    path("auth/me", api.MeApi.as_view(), name="auth-me"),
]
