from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "apps.registry"
    label = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # In ready(), as every import here: they need the app registry. The Celery tasks are
        # registered in every process (watermarks queue them by name); Celery's autodiscovery
        # imports only tasks.py, so the rotation task is named too.
        from apps.registry import tasks, tasks_rotation  # noqa: F401
        from apps.registry.trust import deployment_globals

        deployment_globals()  # a never-trusted or malformed extra name stops startup

        from apps.core.resealing import sealed_field_register
        from apps.registry.models import WATERMARK_PURPOSE, ModelVersion

        # Master-key rotation re-seals watermark sets beside the data keys it re-wraps.
        sealed_field_register(ModelVersion, "watermark_sealed", purpose=WATERMARK_PURPOSE)
