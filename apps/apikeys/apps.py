from django.apps import AppConfig


class ApikeysConfig(AppConfig):
    name = "apps.apikeys"
    label = "apikeys"
    verbose_name = "API keys"

    def ready(self) -> None:
        # Imports in ready(), not at the top: models, signals and checks need the app registry.
        from apps.apikeys import schema, signals  # noqa: F401  # registers the extension and receivers
        from apps.apikeys.models import ApiKey
        from apps.apikeys.records import store_many
        from apps.apikeys.signatures import SIGNING_PURPOSE
        from apps.core.resealing import sealed_field_register

        # Master-key rotation re-seals signing secrets, and rewrites the cached records that
        # carry them, so that retiring the old master key never breaks a signed key.
        sealed_field_register(
            ApiKey, "signing_secret_sealed", purpose=SIGNING_PURPOSE, on_resealed=store_many
        )
