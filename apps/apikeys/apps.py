from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apps.apikeys"
    label = "apikeys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from apps.apikeys import schema, signals  # noqa: F401  # registers the extension and receivers
