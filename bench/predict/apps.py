from django.apps import AppConfig


class BenchPredictConfig(AppConfig):
    """Installed only by bench.predict.settings: the naive baseline's audit table."""

    name = "bench.predict"
    label = "bench_predict"
    default_auto_field = "django.db.models.BigAutoField"
