"""The console's audit pages under /audit/ (docs/api.md: people do here what the API does)."""

from django.urls import path

from apps.console.views import audit

urlpatterns = [
    path("", audit.audit_list_page, name="audit-list"),
    path("search", audit.audit_search_page, name="audit-search"),
    path("events/<int:seq>", audit.audit_event_page, name="audit-event"),
    path("chain", audit.audit_chain_page, name="audit-chain"),
    path("chain/verify", audit.audit_chain_verify_page, name="audit-chain-verify"),
    path("export", audit.audit_export_page, name="audit-export"),
    path("export/verify", audit.audit_export_verify_page, name="audit-export-verify"),
    path("export/public-key.pem", audit.audit_public_key_page, name="audit-public-key"),
    path("pseudonyms", audit.audit_pseudonym_page, name="audit-pseudonyms"),
]
