"""The console's keys pages under /keys/ (docs/api.md: people do here what the API does)."""

from django.urls import path

from apps.console.views import keys

urlpatterns = [
    path("", keys.key_list_page, name="keys-list"),
    path("new", keys.key_new_page, name="keys-new"),
    path("issued/<str:reveal>", keys.key_issued_page, name="keys-issued"),
    path("<str:key_id>", keys.key_detail_page, name="keys-detail"),
    path("<str:key_id>/rotate", keys.key_rotate_page, name="keys-rotate"),
    path("<str:key_id>/revoke", keys.key_revoke_page, name="keys-revoke"),
]
