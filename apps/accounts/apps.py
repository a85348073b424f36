from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        # Imports in ready(), not at the top: models, signals and checks need the app registry.
        from apps.accounts import signals  # noqa: F401  # cache invalidation
        from apps.accounts.devices import (
            RECOVERY_KEY_PURPOSE,
            TOTP_SEED_PURPOSE,
            RecoveryCodeDevice,
            TotpDevice,
        )
        from apps.core.resealing import sealed_field_register

        # Master-key rotation re-seals these (apps.registry.rotation).
        sealed_field_register(TotpDevice, "key_sealed", purpose=TOTP_SEED_PURPOSE)
        sealed_field_register(RecoveryCodeDevice, "hash_key_sealed", purpose=RECOVERY_KEY_PURPOSE)
