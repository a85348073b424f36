"""Authentication cost per request: JWT (JwtAuthentication, its user cached) and API key
(ApiKeyAuthentication, its record cached), against a bare DRF view without authentication, in
the same run, in-process (APIRequestFactory + view calls), on PostgreSQL and Redis.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bulwark_apikeys_bench \\
    REDIS_URL=redis://127.0.0.1:6379/3 .venv/bin/python -m bench.auth_cost [--calls 5000]

The database is created if missing and migrated; its API keys and users are its own (never
point this at a database that matters). Each call is timed alone; calls of the variants are
interleaved in chunks so that drift (CPU frequency, other load) hits them all alike. The
table shows medians; "added" is the median minus the bare view's median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

TARGET_ADDED_MS = 0.3


def configure() -> None:
    database_url = os.environ.get("DATABASE_URL", "")
    redis_url = os.environ.get("REDIS_URL", "")
    if not database_url.startswith(("postgres://", "postgresql://")) or not redis_url:
        sys.exit("Set DATABASE_URL (postgres://...) and REDIS_URL: see this module's docstring.")
    os.environ["DJANGO_SETTINGS_MODULE"] = "controlplane.test_settings"
    os.environ["BULWARK_DOTENV"] = os.devnull
    os.environ.setdefault("LOG_LEVEL", "warning")
    os.environ["DATABASE_CONN_MAX_AGE"] = "3600"  # reconnecting would be measured otherwise
    ensure_database(database_url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0, interactive=False)


def ensure_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    server = url.replace(parts.path, "/postgres", 1)
    with psycopg.connect(server, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def build() -> dict[str, Callable[[], Any]]:
    """The variants: each a callable that makes one request and runs it through its view."""
    from django.contrib.auth import get_user_model
    from rest_framework.permissions import AllowAny, IsAuthenticated
    from rest_framework.request import Request
    from rest_framework.response import Response
    from rest_framework.test import APIRequestFactory
    from rest_framework.views import APIView

    from apps.accounts.authentication import JwtAuthentication
    from apps.accounts.models import Role
    from apps.accounts.tokens import token_pair_issue
    from apps.apikeys import records
    from apps.apikeys.authentication import ApiKeyAuthentication
    from apps.apikeys.services import api_key_issue
    from apps.apikeys.signatures import sign, signing_message

    class BareApi(APIView):
        authentication_classes: list[type] = []
        permission_classes = [AllowAny]

        def get(self, request: Request) -> Response:
            return Response({"ok": True})

    class JwtApi(BareApi):
        authentication_classes = [JwtAuthentication]
        permission_classes = [IsAuthenticated]

    class ApiKeyApi(BareApi):
        authentication_classes = [ApiKeyAuthentication]
        permission_classes = [IsAuthenticated]

    user_model = get_user_model()
    user = user_model.objects.create_user(
        username=f"bench-{time.time_ns()}", password=None, email=""
    )
    user.roles.set(Role.objects.filter(name__in=["ml_engineer"]))
    access = token_pair_issue(user=user)["access"]
    plain = api_key_issue(actor=user, owner=user, name="bench", scopes=["predict:*"])
    signed = api_key_issue(
        actor=user, owner=user, name="bench-signed", scopes=["predict:*"], require_signature=True
    )
    assert signed.signing_secret is not None
    factory = APIRequestFactory()
    views = {name: cls.as_view() for name, cls in (("bare", BareApi), ("jwt", JwtApi))}
    views["key"] = ApiKeyApi.as_view()
    counter = iter(range(10**9))

    def run(view: Callable[..., Any], request: Any) -> None:
        response = view(request)
        response.render()
        assert response.status_code == 200, response.content

    def signed_request() -> Any:
        # A new path per call: the same (t, v1) twice would be refused as a replay.
        path = f"/bench?n={next(counter)}"
        t = str(int(time.time()))
        header = f"t={t},v1={sign(signed.signing_secret, signing_message(t, 'GET', path, b''))}"
        return factory.get(
            path, HTTP_X_API_KEY=signed.key, HTTP_X_SIGNATURE=header, REMOTE_ADDR="10.0.0.1"
        )

    def key_miss() -> None:
        records.forget(plain.api_key.public_id)
        run(views["key"], factory.get("/bench", HTTP_X_API_KEY=plain.key, REMOTE_ADDR="10.0.0.1"))

    return {
        "bare DRF view, no authentication": lambda: run(views["bare"], factory.get("/bench")),
        "JWT (user cached)": lambda: run(
            views["jwt"], factory.get("/bench", HTTP_AUTHORIZATION=f"Bearer {access}")
        ),
        "API key (record cached)": lambda: run(
            views["key"], factory.get("/bench", HTTP_X_API_KEY=plain.key, REMOTE_ADDR="10.0.0.1")
        ),
        "API key + request signature": lambda: run(views["key"], signed_request()),
        "API key, record not cached (DB)": key_miss,
    }


def measure(variants: dict[str, Callable[[], Any]], calls: int, chunk: int = 100) -> dict:
    timings: dict[str, list[float]] = {name: [] for name in variants}
    for function in variants.values():  # warm-up: caches filled, last_used_at written
        for _ in range(50):
            function()
    for _ in range(calls // chunk):
        for name, function in variants.items():
            for _ in range(chunk):
                started = time.perf_counter_ns()
                function()
                timings[name].append((time.perf_counter_ns() - started) / 1e3)
    return timings


def machine() -> str:
    from django.db import connection

    from apps.core.redis import shared_client

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        pg = cursor.fetchone()[0]
    client = shared_client()
    redis_version = client.info("server")["redis_version"] if client is not None else "none"
    python = sys.version.split()[0]
    return f"{os.cpu_count()} cores, Python {python}, PostgreSQL {pg}, Redis {redis_version}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="timed calls per variant")
    args = parser.parse_args()
    configure()
    variants = build()
    timings = measure(variants, args.calls)
    bare = statistics.median(timings["bare DRF view, no authentication"])
    print(machine())
    print(f"{args.calls} calls per variant, medians in microseconds\n")
    print(f"{'variant':<36} {'median':>8} {'p90':>8} {'added':>8} {'ratio':>6}  target")
    for name, values in timings.items():
        median = statistics.median(values)
        p90 = statistics.quantiles(values, n=10)[-1]
        added = median - bare
        verdict = ""
        if name in {"JWT (user cached)", "API key (record cached)"}:
            verdict = "ok" if added < TARGET_ADDED_MS * 1000 else "OVER"
        print(
            f"{name:<36} {median:>8.1f} {p90:>8.1f} {added:>8.1f} {median / bare:>5.2f}x  {verdict}"
        )


if __name__ == "__main__":
    main()
