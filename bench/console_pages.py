"""Every console page's HTML weight and server time with a big database. Aims (issue 16): every
page under 150 KB of HTML and under 300 ms server time with 10,000 incidents, 1,000 API keys and
1,000,000 audit events. One command (from the project folder; PostgreSQL and Redis on
127.0.0.1):

    .venv/bin/python -m bench.console_pages [--events 1000000] [--incidents 10000] [--keys 1000]
                                            [--repeat 7]

On the bench database (bench/_db.py: `bulwark_bench`, its audit events generated once by
bench/_data.py and reused) and Redis database 15. Incidents, keys, people and a few model
versions are written with bulk inserts once and reused while their counts match. Each page is
fetched in-process through the whole Django stack (Django's test Client: every middleware, the
session, the template), signed in as each role that may see it, once to warm up and then
`--repeat` times; the table shows the median and the slowest, and the HTML's size. The
landing page for a visitor is the baseline measured in the same run (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
from datetime import timedelta
from typing import Any

from bench._db import machine, setup

AIM_BYTES = 150 * 1024
AIM_MS = 300.0
HOST = "localhost"  # in ALLOWED_HOSTS of the test settings
ROLES = ("admin", "security_officer", "auditor", "ml_engineer", "api_client")


def _people() -> dict[str, Any]:
    from django.contrib.auth import get_user_model

    from apps.accounts.models import Role

    user_model = get_user_model()
    people = {}
    for role in ROLES:
        user, created = user_model.objects.get_or_create(
            username=f"bench-{role}",
            defaults={"is_staff": role == "admin", "is_superuser": role == "admin"},
        )
        if created:
            user.roles.set([Role.objects.get_or_create(name=role)[0]])
        if role == "admin" and not user.is_superuser:  # runs of an earlier fill
            user.is_staff = user.is_superuser = True
            user.save(update_fields=["is_staff", "is_superuser"])
        people[role] = user
    return people


def _seed_incidents(count: int, reporter: Any) -> None:
    from django.utils import timezone

    from apps.incidents.models import Incident

    have = Incident.objects.count()
    if have >= count:
        return
    rng = random.Random(16)  # noqa: S311  # a repeatable fill, not a secret
    now = timezone.now()
    statuses = ["detected", "contained", "investigating", "remediated", "recovered", "closed"]
    rows = []
    for index in range(have, count):
        detected = now - timedelta(minutes=rng.randrange(60 * 24 * 365))
        status = rng.choices(statuses, weights=[3, 2, 2, 1, 1, 11])[0]
        contained = None
        if status != "detected":
            contained = detected + timedelta(minutes=rng.randrange(5, 600))
        closed = contained + timedelta(days=2) if status == "closed" and contained else None
        rows.append(
            Incident(
                title=f"Bench incident {index}",
                severity=f"sev{rng.randrange(1, 5)}",
                status=status,
                reported_by=reporter,
                detected_at=detected,
                contained_at=contained,
                closed_at=closed,
                resolution="true_positive" if closed else "",
            )
        )
    Incident.objects.bulk_create(rows, batch_size=2000)


def _seed_keys(count: int, owners: list[Any]) -> None:
    from django.utils import timezone

    from apps.apikeys.keys import hash_secret, new_public_id, new_secret
    from apps.apikeys.models import ApiKey

    have = ApiKey.objects.count()
    if have >= count:
        return
    rng = random.Random(16)  # noqa: S311  # a repeatable fill, not a secret
    now = timezone.now()
    secret_hash = hash_secret(new_secret())  # one hash for all: nothing authenticates with them
    ApiKey.objects.bulk_create(
        [
            ApiKey(
                owner=owners[index % len(owners)],
                name=f"bench key {index}",
                public_id=new_public_id(),
                secret_hash=secret_hash,
                scopes=["predict:*"],
                expires_at=now + timedelta(days=rng.randrange(-30, 120)),
                rate_limit="60/m",
                revoked_at=now if index % 10 == 0 else None,
            )
            for index in range(have, count)
        ],
        batch_size=1000,
    )


def _seed_models(owner: Any) -> None:
    from apps.registry.models import ModelVersion, RegisteredModel

    if RegisteredModel.objects.filter(name__startswith="bench-").exists():
        return
    for m in range(3):
        model = RegisteredModel.objects.create(name=f"bench-{m}")
        model.owners.add(owner)
        ModelVersion.objects.bulk_create(
            [
                ModelVersion(
                    model=model,
                    number=n,
                    stage="archived" if n < 5 else "production",
                    size=1,
                    sha256="0" * 64,
                    input_schema={"type": "object", "properties": {"x": {"type": "number"}}},
                    wrapped_data_key=b"",
                    master_key_id="bench",
                    artifact=f"bench/{m}-{n}",
                    created_by=owner,
                )
                for n in range(1, 6)
            ]
        )


def _client_for(user: Any) -> Any:
    from django.test import Client
    from django_otp import DEVICE_ID_SESSION_KEY

    from apps.accounts.models import TotpDevice

    device = TotpDevice.objects.filter(user=user, confirmed=True).first()
    if device is None:
        device = TotpDevice.objects.create(user=user, name="bench", confirmed=True)
    client = Client(HTTP_HOST=HOST)
    client.force_login(user)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return client


def pages() -> list[tuple[str, str]]:
    """(label, path) of every console page, with real ids from the bench database."""
    from apps.apikeys.models import ApiKey
    from apps.audit.models import AuditEvent
    from apps.compliance.models import ChecklistItem, Framework
    from apps.incidents.models import Incident
    from bench._data import PSEUDONYMS

    incident = Incident.objects.order_by("-detected_at").first()
    key = ApiKey.objects.order_by("-created_at").first()
    seq = AuditEvent.objects.order_by("-seq").values_list("seq", flat=True).first()
    framework = Framework.objects.order_by("key").values_list("key", flat=True).first()
    item = ChecklistItem.objects.order_by("key").values_list("pk", flat=True).first()
    return [
        ("dashboard", "/"),
        ("incidents", "/incidents/"),
        ("incidents (open, sev1)", "/incidents/?severity=sev1"),
        ("incident", f"/incidents/{incident.pk}"),
        ("compliance", "/compliance/"),
        ("compliance item", f"/compliance/items/{item}"),
        ("framework", f"/compliance/frameworks/{framework}"),
        ("audit", "/audit/"),
        ("audit (action filter)", "/audit/?action=apikey.used"),
        ("audit (actor filter)", f"/audit/?actor={PSEUDONYMS[7]}"),
        ("audit (old range)", "/audit/?to=2020-01-01T00:00"),
        ("audit pseudonyms", "/audit/pseudonyms"),
        ("audit event", f"/audit/events/{seq}"),
        ("audit chain", "/audit/chain"),
        ("audit export", "/audit/export"),
        ("keys", "/keys/"),
        ("keys (expiring)", "/keys/?state=expiring"),
        ("key", f"/keys/{key.pk}"),
        ("issue a key", "/keys/new"),
        ("models", "/models/"),
        ("model", "/models/bench-0"),
        ("model version", "/models/bench-0/versions/5"),
        ("upload a version", "/models/bench-0/versions/new"),
        ("admin", "/admin/"),
        ("admin: API keys", "/admin/apikeys/apikey/"),
        ("admin: audit events", "/admin/audit/auditevent/"),
        ("MFA", "/account/mfa/"),
    ]


def _time(client: Any, path: str, repeat: int) -> tuple[int, int, list[float]]:
    response = client.get(path)  # warm-up (and the status and size)
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        client.get(path)
        times.append((time.perf_counter() - started) * 1000)
    return response.status_code, len(response.content), times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--incidents", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
    os.environ["LOG_LEVEL"] = "error"  # not a line per request
    setup()
    from django.core.cache import cache

    from bench._data import ensure_events

    generated = ensure_events(args.events)
    from django.db import connection

    with connection.cursor() as cursor:
        # The state autovacuum keeps: chaining 1M pending events left as many dead rows.
        cursor.execute("VACUUM ANALYZE audit_pendingevent")
    people = _people()
    _seed_incidents(args.incidents, people["security_officer"])
    _seed_keys(args.keys, [people["api_client"], people["ml_engineer"]])
    _seed_models(people["ml_engineer"])
    cache.clear()
    print(machine())
    print(
        f"{args.events:,} audit events ({'reused' if generated.reused else 'generated'}),"
        f" {args.incidents:,} incidents, {args.keys:,} API keys; median of {args.repeat}"
    )
    from django.test import Client

    _, _, base_times = _time(Client(HTTP_HOST=HOST), "/", args.repeat)
    baseline = statistics.median(base_times)
    print(f"baseline: the landing page for a visitor, {baseline:.1f} ms\n")
    header = (
        f"{'page':<24} {'role':<17} {'status':>6} {'KB':>7} {'ms p50':>8} {'ms max':>8}"
        f" {'x base':>7}  aims"
    )
    print(header)
    print("-" * len(header))
    misses = 0
    clients = {role: _client_for(user) for role, user in people.items()}
    for label, path in pages():
        for role in ROLES:
            status, size, times = _time(clients[role], path, args.repeat)
            if status in (302, 403, 404) and role != "admin":
                continue  # not this role's page: shown for the roles that may see it
            p50 = statistics.median(times)
            ok = size < AIM_BYTES and p50 < AIM_MS and status == 200
            misses += not ok
            print(
                f"{label:<24} {role:<17} {status:>6} {size / 1024:>7.1f} {p50:>8.1f}"
                f" {max(times):>8.1f} {p50 / baseline:>7.1f}  {'met' if ok else 'MISSED'}"
            )
    print(f"\n{'every page met both aims' if not misses else f'{misses} page(s) missed an aim'}")


if __name__ == "__main__":
    main()
