"""The Celery app: Redis broker and result backend when REDIS_URL is set, eager otherwise.
Settings are the `CELERY_*` names of controlplane.settings; tasks live in each app's tasks.py."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "controlplane.settings")

app = Celery("bulwark")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
