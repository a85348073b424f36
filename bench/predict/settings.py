"""Bench-only settings: the project's settings unchanged, with a URLconf that adds the two
baseline views (`/bench/bare/predict`, `/bench/naive/predict`) next to `controlplane.urls`, so
production code carries no bench views. Served by `controlplane.wsgi` under gunicorn with
DJANGO_SETTINGS_MODULE=bench.predict.settings and BULWARK_ENV=production (bench.predict.run).
"""

from controlplane.settings import *  # noqa: F403

ROOT_URLCONF = "bench.predict.urls"
# The naive baseline's audit table (bench.predict.models).
INSTALLED_APPS = [*INSTALLED_APPS, "bench.predict.apps.BenchPredictConfig"]  # noqa: F405
