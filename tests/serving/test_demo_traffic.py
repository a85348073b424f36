"""`manage.py demo_traffic` against a live server set up by `bootstrap_demo`, with the keys it
printed: the steady calls succeed, the bad keys and the replayed signature are refused, and
the scheduler's detector run opens the two incidents the newcomer is told to look for."""

from __future__ import annotations

import io
import re
import time
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from apps.accounts.models import Role
from apps.accounts.roles import RoleName
from apps.core.scheduler import BackgroundScheduler
from apps.incidents.models import Incident
from tests.services import free_port

pytestmark = pytest.mark.django_db(transaction=True)

DETECT_NOW = {"incidents-detect-audit": {"task": "incidents.detect_audit", "schedule": 0.3}}


def demo_keys() -> dict[str, str]:
    """What `make run` shows the newcomer once: the BULWARK_* lines of bootstrap_demo."""
    for name in RoleName.values:  # a transactional test's flush empties the migration's rows
        Role.objects.get_or_create(name=name)
    out = io.StringIO()
    call_command("bootstrap_demo", stdout=out)
    return dict(re.findall(r"^\s+(BULWARK_[A-Z_]+)=(\S+)$", out.getvalue(), flags=re.MULTILINE))


def traffic(url: str, seconds: str = "3") -> str:
    out = io.StringIO()
    call_command("demo_traffic", "--url", url, "--seconds", seconds, stdout=out)
    return out.getvalue()


def incidents_after_the_detectors_ran(expected: int) -> list[Incident]:
    scheduler = BackgroundScheduler(DETECT_NOW)
    scheduler.start()
    try:
        deadline = time.monotonic() + 60
        while Incident.objects.count() < expected and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)  # another run or two: nothing more may open
    finally:
        scheduler.stop()
    return list(Incident.objects.order_by("severity"))


def test_demo_traffic_makes_the_detectors_open_incidents(live_server: Any, monkeypatch: Any):
    keys = demo_keys()
    assert set(keys) == {"BULWARK_KEY", "BULWARK_SIGNED_KEY", "BULWARK_SIGNING_SECRET"}
    for name, value in keys.items():
        monkeypatch.setenv(name, value)

    output = traffic(live_server.url)

    assert re.search(r"steady \(signed\)\s+\d+ x 200", output), output
    assert re.search(r"steady \(plain\)\s+\d+ x 200", output), output
    assert "bad keys         22 x 401 api_key_invalid" in output
    assert "replay (first)   1 x 200" in output
    assert "replay (again)   4 x 401 signature_replayed" in output
    assert f"{live_server.url}/incidents/" in output
    for value in keys.values():
        assert value not in output  # the secrets are used, never printed

    signed_prefix = keys["BULWARK_SIGNED_KEY"].split("_")[1]
    opened = incidents_after_the_detectors_ran(2)
    assert [(i.detector, i.severity, i.status) for i in opened] == [
        ("signature_replay", "sev2", "detected"),
        ("auth_failures_network", "sev3", "detected"),
    ]
    assert opened[0].title == f"Replayed request signatures for API key bwk_{signed_prefix}"
    assert opened[1].title == "Burst of failed authentication from 127.0.0.0/24"


def test_without_the_keys_it_still_sends_the_bad_key_burst(live_server: Any, monkeypatch: Any):
    demo_keys()  # the demo exists, but its keys were not kept
    for name in ("BULWARK_KEY", "BULWARK_SIGNED_KEY", "BULWARK_SIGNING_SECRET"):
        monkeypatch.delenv(name, raising=False)

    output = traffic(live_server.url, seconds="1")

    assert "Not given: BULWARK_KEY, BULWARK_SIGNED_KEY, BULWARK_SIGNING_SECRET" in output
    assert "Replay skipped" in output
    assert "steady" not in output
    assert "bad keys         22 x 401 api_key_invalid" in output
    opened = incidents_after_the_detectors_ran(1)
    assert [i.detector for i in opened] == ["auth_failures_network"]


def test_it_says_what_to_do_when_nothing_answers():
    with pytest.raises(CommandError, match=r"Nothing answers at .*make run"):
        traffic(f"http://127.0.0.1:{free_port()}")


def test_the_url_must_be_http():
    with pytest.raises(CommandError, match="must start with http"):
        traffic("file:///etc/passwd")
