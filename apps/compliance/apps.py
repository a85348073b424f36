from django.apps import AppConfig


class ComplianceConfig(AppConfig):
    name = "apps.compliance"
    label = "compliance"
    verbose_name = "Compliance"

    def ready(self) -> None:
        # Imports in ready(), not at the top: models, signals and checks need the app registry.
        from apps.compliance.evidence import PURPOSE
        from apps.compliance.models import Evidence
        from apps.core.resealing import sealed_field_register

        # Master-key rotation re-seals the data keys of evidence files.
        sealed_field_register(Evidence, "data_key_sealed", purpose=PURPOSE)
