"""Run manage.py in a subprocess with an environment of the test's choosing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

from apps.core.secrets.required import REQUIRED_SECRETS

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = [spec.name for spec in REQUIRED_SECRETS]


def owner_url() -> str:
    """DATABASE_URL's database with an owner role: production runs with both (README,
    Database roles; check --deploy warns without)."""
    parts = urlsplit(os.environ["DATABASE_URL"])
    return parts._replace(netloc=f"bulwark_owner@{parts.hostname}:{parts.port or 5432}").geturl()


def good_secrets() -> dict[str, str]:
    return {spec.name: spec.generate() for spec in REQUIRED_SECRETS}


def base_env(**overrides: str) -> dict[str, str]:
    """The current environment without any secret or Bulwark setting, plus `overrides`."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SECRET_NAMES
        and not name.endswith("_FILE")
        and name not in {"BULWARK_ENV", "DJANGO_DEBUG", "ALLOWED_HOSTS", "BULWARK_DOTENV"}
    }
    env["DJANGO_SETTINGS_MODULE"] = "controlplane.settings"
    env["BULWARK_DOTENV"] = os.devnull
    env.update(overrides)
    return env


def manage(
    *args: str, env: dict[str, str], timeout: float = 60, input_text: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        input=input_text,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
