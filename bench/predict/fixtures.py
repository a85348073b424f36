"""Data for the Bulwark path, made through the project's own services in the bench parent
(Django configured with bench.predict.settings and the servers' environment): a fresh
database, two users, two models with a production version each, two API keys and a JWT.

- `bench-engineer` (ml_engineer: `predict` on every model): the JWT caller of Bulwark and of
  the naive baseline;
- `bench-client` (api_client, granted `predict` on both models): owns the API keys;
- `pricing`: the trained regressor, max_batch 100; `pricing-dp`: the same artifact with
  dp_epsilon/dp_sensitivity (Laplace noise on the outputs);
- keys with rate_limit 1000000/s: `plain`, and `signed` (require_signature).
"""

from __future__ import annotations

from dataclasses import dataclass
from io import BytesIO
from typing import Any

DB_NAME = "bulwark_bench_predict"
PG_SERVER = "postgres://postgres@127.0.0.1:5432"
DATABASE_URL = f"{PG_SERVER}/{DB_NAME}"
REDIS_URL = "redis://127.0.0.1:6379/7"
MODEL = "pricing"
DP_MODEL = "pricing-dp"
KEY_RATE = "1000000/s"
DP_SENSITIVITY = 1.0


@dataclass(frozen=True)
class Fixtures:
    access_token: str
    api_key: str
    signed_key: str
    signing_secret: str
    dp_epsilon: float
    daily_epsilon: float | None  # settings.PRIVACY_DAILY_EPSILON, None where it does not exist


def recreate_database(db_name: str = DB_NAME) -> None:
    """DROP and CREATE the bench database (only this one), so every run starts empty."""
    import psycopg
    from psycopg import sql

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        name = sql.Identifier(db_name)
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(name))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(name))


def flush_redis(url: str = REDIS_URL) -> None:
    """Empty Redis database 7 (the bench's own; another bench passes its own database's URL):
    rate windows, replay marks, budgets."""
    import redis

    redis.Redis.from_url(url).flushdb()


def create(artifact: bytes, *, budget_for_calls: int) -> Fixtures:
    """Migrate the (fresh) database and make the data. `budget_for_calls`: how many DP calls
    the day's privacy budget must cover; epsilon per call is chosen to fit it."""
    import secrets

    from django.conf import settings
    from django.core.management import call_command

    from apps.accounts.services import user_create
    from apps.accounts.tokens import token_pair_issue
    from apps.apikeys.services import api_key_issue
    from apps.registry.services import (
        model_version_register,
        model_version_stage,
        predict_grant_create,
        registered_model_create,
    )
    from bench.predict.model import INPUT_SCHEMA

    call_command("migrate", verbosity=0, interactive=False)
    engineer = user_create(
        username="bench-engineer", password=secrets.token_urlsafe(24), roles=["ml_engineer"]
    )
    client = user_create(
        username="bench-client", password=secrets.token_urlsafe(24), roles=["api_client"]
    )
    daily_epsilon: float | None = getattr(settings, "PRIVACY_DAILY_EPSILON", None)
    # Without a configurable budget the default (10.0 a day) must last the whole run.
    dp_epsilon = min(0.01, (daily_epsilon or 10.0) / (2 * budget_for_calls))
    for name, dp in ((MODEL, None), (DP_MODEL, dp_epsilon)):
        model = registered_model_create(actor=engineer, name=name)
        version = model_version_register(
            actor=engineer,
            model=model,
            artifact=BytesIO(artifact),
            input_schema=INPUT_SCHEMA,
            max_batch=100,
            dp_epsilon=dp,
            dp_sensitivity=None if dp is None else DP_SENSITIVITY,
        )
        model_version_stage(actor=engineer, version=version, stage="production")
        predict_grant_create(actor=engineer, model=model, user=client)
    keys: dict[str, Any] = {}
    for name, signed in (("plain", False), ("signed", True)):
        keys[name] = api_key_issue(
            actor=client,
            owner=client,
            name=f"bench-{name}",
            scopes=[f"predict:{MODEL}", f"predict:{DP_MODEL}"],
            expires_in_days=1,
            rate_limit=KEY_RATE,
            require_signature=signed,
        )
    assert keys["signed"].signing_secret is not None
    return Fixtures(
        access_token=token_pair_issue(user=engineer)["access"],
        api_key=keys["plain"].key,
        signed_key=keys["signed"].key,
        signing_secret=keys["signed"].signing_secret,
        dp_epsilon=dp_epsilon,
        daily_epsilon=daily_epsilon,
    )
