from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "apps.registry"
    label = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # Celery's autodiscovery imports only tasks.py: register the rotation task too.
        from apps.registry import tasks_rotation  # noqa: F401
