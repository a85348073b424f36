"""Typed readers for settings that come from the environment.

Every setting is read here; environments differ only by their variables. A `.env`
file in the project folder is read first when present; the real environment wins.
"""

from __future__ import annotations

import ipaddress
import math
import os
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit


class StartupError(Exception):
    """A configuration problem that stops startup with one clear sentence, never a traceback.

    Deliberately not ImproperlyConfigured: Django's command runner swallows that once and
    imports the settings again, which would ask a remote secrets backend twice before failing.
    """


_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*$")


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse `KEY=value` lines; double quotes allow `\\n` escapes (PEM keys), single quotes
    are literal."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if match is None:
            continue
        name, raw = match.groups()
        if len(raw) >= 2 and raw[0] == raw[-1] == '"':
            raw = raw[1:-1].replace("\\n", "\n").replace('\\"', '"').replace("\\\\", "\\")
        elif len(raw) >= 2 and raw[0] == raw[-1] == "'":
            raw = raw[1:-1]
        else:
            raw = raw.split(" #", 1)[0].rstrip()
        values[name] = raw
    return values


def dotenv_quote(value: str) -> str:
    """Quote a value so that `parse_dotenv` reads it back unchanged."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def load_dotenv(path: Path) -> None:
    """Copy `.env` values into the environment without overriding what is already set."""
    if not path.is_file():
        return
    for name, value in parse_dotenv(path.read_text(encoding="utf-8")).items():
        os.environ.setdefault(name, value)


def env_str(name: str, *, default: str = "") -> str:
    """The variable's value; unset and empty both mean the default (`NAME=` in .env is unset)."""
    return os.environ.get(name, "").strip() or default


def env_bool(name: str, *, default: bool = False) -> bool:
    raw = env_str(name, default=str(default)).lower()
    if raw not in {"true", "false"}:
        raise StartupError(f"{name} must be 'true' or 'false', got {raw!r}.")
    return raw == "true"


def env_int(name: str, *, default: int, minimum: int | None = None) -> int:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise StartupError(f"{name} must be a whole number, got {raw!r}.") from None
    if minimum is not None and value < minimum:
        raise StartupError(f"{name} must be at least {minimum}, got {value}.")
    return value


def env_float(name: str, *, default: float, minimum_exclusive: float | None = None) -> float:
    raw = env_str(name)
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise StartupError(f"{name} must be a number, got {raw!r}.") from None
    if not math.isfinite(value) or (minimum_exclusive is not None and value <= minimum_exclusive):
        above = f" above {minimum_exclusive}" if minimum_exclusive is not None else ""
        raise StartupError(f"{name} must be a finite number{above}, got {raw!r}.")
    return value


def env_list(name: str, *, default: list[str] | None = None) -> list[str]:
    raw = env_str(name)
    if not raw:
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_choice(name: str, *, choices: tuple[str, ...], default: str) -> str:
    value = env_str(name, default=default).lower()
    if value not in choices:
        raise StartupError(f"{name} must be one of {', '.join(choices)}; got {value!r}.")
    return value


def env_networks(
    name: str, *, default: list[str] | None = None
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    networks = []
    for item in env_list(name, default=default):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise StartupError(
                f"{name} must list CIDRs such as 10.0.0.0/8; {item!r} is not one."
            ) from None
    return tuple(networks)


_RATE = re.compile(r"^([1-9][0-9]{0,6})/([smh])$")


def parse_rate(value: str) -> tuple[int, int]:
    """`N/s|m|h` → (count, window seconds); N from 1 to 1,000,000 (docs/api.md)."""
    match = _RATE.match(value.strip())
    if match is None or int(match.group(1)) > 1_000_000:
        raise ValueError(f"{value!r} is not a rate like 60/m (N from 1 to 1,000,000 per s, m or h)")
    return int(match.group(1)), {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def env_rate(name: str, *, default: str) -> str:
    value = env_str(name, default=default)
    try:
        parse_rate(value)
    except ValueError as exc:
        raise StartupError(f"{name}: {exc}.") from None
    return value


def _sqlite(name: Path) -> dict[str, object]:
    # IMMEDIATE: a transaction takes the write lock when it begins, so two processes that
    # read-then-write (the audit chain head) queue instead of failing with "database is locked".
    return {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": name,
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
    }


def database_from_url(url: str, *, base_dir: Path) -> dict[str, object]:
    """`postgres://user:pass@host:port/name?opt=v` or `sqlite:///path`; empty means SQLite
    in the project folder."""
    if not url:
        return _sqlite(base_dir / "db.sqlite3")
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        # sqlite:///db.sqlite3 is relative to the project, sqlite:////var/db.sqlite3 absolute.
        name = Path(unquote(parts.path)[1:])
        if not name.is_absolute():
            name = base_dir / name
        return _sqlite(name)
    if parts.scheme in {"postgres", "postgresql", "pgsql"}:
        options = dict(parse_qsl(parts.query))
        options.setdefault("connect_timeout", "10")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": unquote(parts.path.lstrip("/")) or "bulwark",
            "USER": unquote(parts.username or ""),
            "PASSWORD": unquote(parts.password or ""),
            "HOST": parts.hostname or "",
            "PORT": str(parts.port or ""),
            "OPTIONS": options,
            # Persistent connections: reconnecting per request costs more than the request.
            "CONN_MAX_AGE": env_int("DATABASE_CONN_MAX_AGE", default=60, minimum=0),
            # No `SELECT 1` before each request's first query: that is a round trip on every
            # request. A connection that died since the last request fails that one request
            # (503, like any outage) and Django drops it, so the next one reconnects.
            "CONN_HEALTH_CHECKS": False,
        }
    # Never echo the URL: it may carry a password.
    raise StartupError(
        f"DATABASE_URL must start with postgres:// or sqlite://, not {parts.scheme or 'nothing'}://."
    )


def redact_url(url: str) -> str:
    """The URL without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()
