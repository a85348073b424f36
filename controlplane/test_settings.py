"""Settings for the test suite: the real settings, made fast. Secrets are random per run;
PostgreSQL and Redis come from DATABASE_URL and REDIS_URL (the README's test command sets them)."""

import os
import tempfile
from pathlib import Path

from controlplane.secrets.required import REQUIRED_SECRETS

for _spec in REQUIRED_SECRETS:
    os.environ.setdefault(_spec.name, _spec.generate())
# Tests must never write the developer's .env.
os.environ.setdefault("BULWARK_DOTENV", os.devnull)

from controlplane.settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
STATIC_ROOT = Path(tempfile.mkdtemp(prefix="bulwark-static-"))
# Tasks run inline unless a test starts a real worker and turns this off for itself.
CELERY_TASK_ALWAYS_EAGER = True
AUDIT_CHAIN_INLINE = True
