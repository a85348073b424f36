"""incident_dashboard_figures, for the console's dashboard: open incidents by severity and by
age, time to contain over the last 30 days (median, 90th percentile, count), in two queries."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone

from apps.incidents.models import Incident
from apps.incidents.selectors import _percentile, incident_dashboard_figures

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


def incident(
    *, age: timedelta, severity: str = "sev3", status: str = "detected", **fields: Any
) -> Incident:
    detected = NOW - age
    resolution = "false_positive" if status == "closed" else ""
    return Incident(
        title="x",
        severity=severity,
        status=status,
        resolution=resolution,
        detected_at=detected,
        **fields,
    )


def contained_after(seconds: float, *, ago: timedelta) -> Incident:
    """An incident contained `ago` before NOW, `seconds` after it was detected."""
    contained = NOW - ago
    return Incident(
        title="c",
        severity="sev2",
        status="investigating",
        detected_at=contained - timedelta(seconds=seconds),
        contained_at=contained,
    )


def by(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    return {row[key]: row["count"] for row in rows}


def test_an_empty_database(django_assert_num_queries):
    with django_assert_num_queries(2):
        figures = incident_dashboard_figures(now=NOW)
    assert figures["open_total"] == 0
    assert by(figures["open_by_severity"], "severity") == dict.fromkeys(
        ("sev1", "sev2", "sev3", "sev4"), 0
    )
    assert [row["label"] for row in figures["open_by_age"]] == [
        "Under 1 hour",
        "1 to 24 hours",
        "1 to 7 days",
        "Older",
    ]
    assert figures["time_to_contain"] == {
        "count": 0,
        "median_seconds": None,
        "p90_seconds": None,
        "since": NOW - timedelta(days=30),
    }


def test_open_incidents_by_severity_and_age(django_assert_num_queries):
    Incident.objects.bulk_create(
        [
            incident(age=timedelta(minutes=5), severity="sev1"),
            incident(age=timedelta(minutes=59), severity="sev1", status="contained"),
            incident(age=timedelta(hours=1), severity="sev2"),  # exactly 1 h: not "under"
            incident(age=timedelta(hours=23), severity="sev2", status="recovered"),
            incident(age=timedelta(days=2), severity="sev3"),
            incident(age=timedelta(days=7), severity="sev3"),  # exactly 7 d: "Older"
            incident(age=timedelta(days=40), severity="sev4", status="investigating"),
            # Closed ones are not open, whatever their age.
            incident(age=timedelta(minutes=1), severity="sev1", status="closed", closed_at=NOW),
            incident(age=timedelta(days=9), severity="sev4", status="closed", closed_at=NOW),
        ]
    )
    with django_assert_num_queries(2):
        figures = incident_dashboard_figures(now=NOW)
    assert figures["open_total"] == 7
    assert by(figures["open_by_severity"], "severity") == {
        "sev1": 2,
        "sev2": 2,
        "sev3": 2,
        "sev4": 1,
    }
    assert by(figures["open_by_age"], "bucket") == {
        "lt_1h": 2,
        "lt_24h": 2,
        "lt_7d": 1,
        "older": 2,
    }
    assert [row["label"] for row in figures["open_by_severity"]] == ["SEV1", "SEV2", "SEV3", "SEV4"]


def test_time_to_contain_over_the_last_30_days():
    seconds = [60, 120, 300, 600, 3600]
    Incident.objects.bulk_create(
        [contained_after(s, ago=timedelta(days=i)) for i, s in enumerate(seconds)]
        + [
            contained_after(99_999, ago=timedelta(days=31)),  # contained before the window
            incident(age=timedelta(hours=2)),  # not contained yet
        ]
    )
    figures = incident_dashboard_figures(now=NOW)["time_to_contain"]
    # percentile_cont: the median is the middle value, the 90th percentile lies at rank
    # 0.9 * 4 = 3.6, between 600 and 3600: 600 + 0.6 * 3000.
    assert figures["count"] == 5
    assert figures["median_seconds"] == 300.0
    assert figures["p90_seconds"] == 2400.0
    # The embedded default (SQLite) counts the same in Python.
    assert _percentile(sorted(seconds), 0.5) == 300.0
    assert _percentile(sorted(seconds), 0.9) == 2400.0


def test_the_python_percentiles_match_postgresqls(monkeypatch):
    seconds = [7, 7, 19, 45, 46, 300, 301, 1200]
    Incident.objects.bulk_create(
        [contained_after(s, ago=timedelta(hours=i)) for i, s in enumerate(seconds)]
    )
    on_postgresql = incident_dashboard_figures(now=NOW)["time_to_contain"]
    monkeypatch.setattr(connection, "vendor", "sqlite")  # the other path, on the same rows
    in_python = incident_dashboard_figures(now=NOW)["time_to_contain"]
    assert in_python == on_postgresql
    assert on_postgresql["count"] == 8 and on_postgresql["median_seconds"] == 45.5


def test_now_defaults_to_the_present():
    Incident.objects.bulk_create([incident(age=timedelta(minutes=5))])
    figures = incident_dashboard_figures()
    assert isinstance(figures["now"], datetime)
    assert by(figures["open_by_age"], "bucket")["lt_1h"] == 1


def test_the_queries_use_the_partial_indexes():
    """With many incidents PostgreSQL reads the open ones and the contained ones through
    their partial indexes (a plan, not a timing: tests never assert on time)."""
    closed = {"status": "closed", "closed_at": NOW}
    rows = [
        incident(age=timedelta(minutes=i), severity=f"sev{i % 4 + 1}", **closed)
        for i in range(3000)
    ] + [incident(age=timedelta(minutes=i)) for i in range(30)]
    Incident.objects.bulk_create(rows, batch_size=1000)
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE incidents_incident")
        since = NOW - timedelta(days=30)
        cursor.execute(
            "EXPLAIN SELECT severity, count(*) FROM incidents_incident "
            "WHERE NOT (status = 'closed') GROUP BY severity"
        )
        open_plan = " ".join(row[0] for row in cursor.fetchall())
        cursor.execute(
            "EXPLAIN SELECT count(*) FROM incidents_incident "
            "WHERE contained_at > %s AND contained_at <= %s",
            [since, NOW],
        )
        contained_plan = " ".join(row[0] for row in cursor.fetchall())
    assert "incidents_open_sev_detected" in open_plan
    assert "incidents_contained_at" in contained_plan
