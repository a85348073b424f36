from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "apps.registry"
    label = "registry"
    verbose_name = "Model registry"

    def ready(self) -> None:
        # Celery's autodiscovery imports only tasks.py: register the rotation task too.
        from apps.registry import tasks_rotation  # noqa: F401
        from apps.registry.trust import deployment_globals

        deployment_globals()  # a never-trusted or malformed extra name stops startup
