"""Secrets from the process environment (and `.env`, loaded into it at startup)."""

from __future__ import annotations

import os
from pathlib import Path

from apps.core.secrets.base import SecretsBackendUnavailable, SecretsProvider


class EnvSecretsProvider(SecretsProvider):
    """`NAME` from the environment, or the contents of the file named by `NAME_FILE`
    (Docker and Kubernetes secrets are mounted as files)."""

    label = "environment"

    def get(self, name: str) -> str | None:
        value = os.environ.get(name)
        if value:
            return value
        file_name = os.environ.get(f"{name}_FILE")
        if not file_name:
            return None
        try:
            return Path(file_name).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            raise SecretsBackendUnavailable(
                f"{name}_FILE names {file_name}, which cannot be read ({exc.strerror})."
            ) from None
