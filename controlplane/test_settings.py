"""Settings for the test suite: the real settings, made fast. Secrets are random per run;
PostgreSQL and Redis come from DATABASE_URL and REDIS_URL (the README's test command sets them)."""

import os
import tempfile
from pathlib import Path

from apps.core.secrets.required import REQUIRED_SECRETS

for _spec in REQUIRED_SECRETS:
    os.environ.setdefault(_spec.name, _spec.generate())
# Tests must never write the developer's .env.
os.environ.setdefault("BULWARK_DOTENV", os.devnull)

from controlplane.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# The suite creates, migrates and flushes its own database as one role (DATABASE_URL's);
# tests/controlplane/test_database_roles.py runs the two-role setup on a database of its own.
DATABASE_OWNER = None
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="bulwark-static-"))
# Tasks run inline unless a test starts a real worker and turns this off for itself.
CELERY_TASK_ALWAYS_EAGER = True
AUDIT_CHAIN_INLINE = True

# Models run as in production: in sandboxed runner processes. The test-only model types
# (tests/serving/odd_models.py) are trusted here, and runners may import them.
MODEL_ISOLATION = "process"
MODEL_RUNNER_PACKAGES = [*MODEL_RUNNER_PACKAGES, BASE_DIR / "tests"]  # noqa: F405
PICKLE_TRUSTED_GLOBALS_EXTRA = [
    "tests.serving.odd_models.NanModel",
    "tests.serving.odd_models.RefusingModel",
    "tests.serving.odd_models.NamedFeatureModel",
    "tests.serving.odd_models.SecretsHunter",
    "tests.serving.odd_models.SlowModel",
    "tests.serving.odd_models.WrongLengthModel",
    "tests.serving.odd_models.MemoryHog",
]
