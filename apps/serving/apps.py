from django.apps import AppConfig


class ServingConfig(AppConfig):
    name = "apps.serving"
    label = "serving"
    verbose_name = "Prediction serving"

    def ready(self) -> None:
        # Imports in ready(), not at the top: models, signals and checks need the app registry.
        # Registry and group changes bump the serving generation (framework glue only).
        # Registration refuses a differential-privacy pair the mechanism cannot serve.
        from apps.registry.version_checks import dp_check_register
        from apps.serving import signals  # noqa: F401
        from apps.serving.privacy.laplace import dp_pair_refusal

        dp_check_register(dp_pair_refusal)
