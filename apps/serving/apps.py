from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "apps.serving"
    label = "serving"
    verbose_name = "Prediction serving"

    def ready(self) -> None:
        # Registry and group changes bump the serving generation (framework glue only).
        from apps.serving import signals  # noqa: F401
