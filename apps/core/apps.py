from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "apps.core"
    label = "core"
    verbose_name = "Bulwark core"

    def ready(self) -> None:
        # Imports in ready(), not at the top: models, signals and checks need the app registry.
        from apps.core import checks, schema  # noqa: F401  # register the checks, the OpenAPI extensions
        from apps.core.metrics import connect_celery_signals

        connect_celery_signals()
