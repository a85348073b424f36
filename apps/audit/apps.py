from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        # Imports in ready(), not at the top: models, signals and checks need the app registry.
        from apps.audit.models import ActorPseudonym, AuditEvent, Checkpoint, PendingEvent
        from apps.core.database_roles import append_only, never_updated

        # The application's database role may add events and checkpoints, never change them;
        # it deletes pending events once chained and pseudonyms at erasure, never edits them.
        for model in (AuditEvent, Checkpoint):
            append_only(model._meta.db_table)
        for kept in (PendingEvent, ActorPseudonym):
            never_updated(kept._meta.db_table)

        from apps.audit.metrics import collect_chain
        from apps.core.metrics import register_scrape_collector

        register_scrape_collector("audit_chain", collect_chain)
