from django.apps import AppConfig


class AuditConfig(AppConfig):
    name = "apps.audit"
    label = "audit"
    verbose_name = "Audit trail"

    def ready(self) -> None:
        from apps.audit.models import AuditEvent, Checkpoint
        from apps.core.database_roles import append_only

        # The application's database role may add events and checkpoints, never change them.
        for model in (AuditEvent, Checkpoint):
            append_only(model._meta.db_table)
