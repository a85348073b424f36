"""Run manage.py in a subprocess with an environment of the test's choosing."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from controlplane.secrets.required import REQUIRED_SECRETS

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = [spec.name for spec in REQUIRED_SECRETS]


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
    *args: str, env: dict[str, str], timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
