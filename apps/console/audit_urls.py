"""The console's audit pages under /audit/ (docs/api.md: people do here what the API does)."""

from django.urls import path  # noqa: F401

urlpatterns: list = []
