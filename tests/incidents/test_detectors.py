"""The detectors that read the audit trail, against real refusals recorded by the real
endpoints (PostgreSQL for the trail and the incidents, Redis for the throttles): one incident
per burst and subject, later bursts on its timeline, a new incident once it is closed."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from apps.audit.models import AuditEvent
from apps.audit.services import audit_event_record, chain_head
from apps.audit.subjects import Subject, pseudonym_for
from apps.incidents.detectors import Seen, audit_detectors_run, burst_in
from apps.incidents.models import DetectorCursor, Incident
from tests.accounts.factories import UserFactory
from tests.apikeys.factories import ApiKeyFactory
from tests.incidents.conftest import INCIDENTS, audit_events, move_to

pytestmark = pytest.mark.django_db

TOKEN = "/api/v1/auth/token"
PREDICT = "/api/v1/models/pricing/predict"
BODY = {"inputs": [{"price": 120.0, "demand": 0.6, "inventory": 300}]}
ATTACKER = "203.0.113.7"  # TEST-NET-3: its network is 203.0.113.0/24
NETWORK = "203.0.113.0/24"


def fail_logins(
    client: Any, count: int, *, ip: str = ATTACKER, username: str | None = None
) -> None:
    """`count` sign-ins with a wrong password, each refused 401 and audited."""
    for n in range(count):
        response = client.post(
            TOKEN,
            {"username": username or f"guess{n}", "password": "wrong password, surely"},
            content_type="application/json",
            REMOTE_ADDR=ip,
        )
        assert response.status_code == 401, response.content


def detector_incidents(detector: str) -> list[Incident]:
    return list(Incident.objects.filter(detector=detector).order_by("created_at"))


def hits(incident: Incident) -> list[dict[str, Any]]:
    return list(
        incident.timeline.filter(kind="detector_hit")
        .order_by("created_at")
        .values_list("data", flat=True)
    )


# --- Failed authentication from one network ----------------------------------------------------


def test_a_burst_of_failed_sign_ins_opens_exactly_one_incident(client):
    fail_logins(client, 20)  # the default threshold, within the default 5 minutes

    assert audit_detectors_run() == 1

    [incident] = detector_incidents("auth_failures_network")
    assert incident.severity == "sev3" and incident.status == "detected"
    assert incident.source == "detector" and NETWORK in incident.title
    [evidence] = hits(incident)
    seqs = [event.seq for event in AuditEvent.objects.filter(action="auth.token.failed")]
    assert evidence["count"] == 20 and evidence["threshold"] == 20
    assert evidence["window_seconds"] == 300 and evidence["new_events"] == 20
    assert evidence["seqs"] == seqs and evidence["ip"] == NETWORK
    assert (evidence["first_seq"], evidence["last_seq"]) == (seqs[0], seqs[-1])
    links = {(r.kind, r.ref) for r in incident.resources.all()}
    assert ("ip", NETWORK) in links
    assert {("audit_event", str(seq)) for seq in seqs} <= links
    [created] = audit_events("incident.created")
    assert created["actor"] == {"type": "system", "ref": "detector:auth_failures_network"}
    assert created["details"] == {
        "severity": "sev3",
        "source": "detector",
        "detector": "auth_failures_network",
    }
    # Nothing new since: the same events are never counted again.
    assert audit_detectors_run() == 0
    assert len(hits(incident)) == 1
    assert DetectorCursor.objects.get(name="audit").last_seq == chain_head()[0]


def test_failed_sign_ins_at_the_admin_and_the_pages_count_with_the_api_ones(client):
    fail_logins(client, 10)
    for n in range(5):
        response = client.post(
            "/admin/login/",
            {"username": f"admin-guess{n}", "password": "wrong password, surely"},
            REMOTE_ADDR="203.0.113.7",
        )
        assert response.status_code == 200
        response = client.post(
            "/account/login",
            {"username": f"page-guess{n}", "password": "wrong password, surely"},
            REMOTE_ADDR="203.0.113.8",
        )
        assert response.status_code == 400
    assert len(audit_events("auth.session.failed")) == 10
    assert audit_detectors_run() == 1
    [incident] = detector_incidents("auth_failures_network")
    [evidence] = hits(incident)
    assert evidence["count"] == 20 and evidence["ip"] == NETWORK


def test_below_the_threshold_nothing_opens(client):
    fail_logins(client, 19)
    assert audit_detectors_run() == 0
    assert not Incident.objects.exists()


def test_a_burst_split_across_runs_is_still_one_burst(client):
    fail_logins(client, 15)
    assert audit_detectors_run() == 0
    fail_logins(client, 5)
    assert audit_detectors_run() == 1
    [incident] = detector_incidents("auth_failures_network")
    [evidence] = hits(incident)
    assert evidence["count"] == 20 and evidence["new_events"] == 5


def test_small_batches_find_the_same_burst_once(client):
    fail_logins(client, 20)
    assert audit_detectors_run(batch=3) == 1
    [incident] = detector_incidents("auth_failures_network")
    assert len(hits(incident)) == 1


def test_another_network_is_another_incident(client, settings):
    settings.INCIDENT_AUTH_FAILURE_BURST = 4
    fail_logins(client, 4, ip="198.51.100.9")
    fail_logins(client, 4, ip="2001:db8:1234:5::1")
    fail_logins(client, 3, ip="192.0.2.1")  # below the threshold
    assert audit_detectors_run() == 2
    subjects = {i.dedup_key for i in detector_incidents("auth_failures_network")}
    assert subjects == {
        "auth_failures_network:198.51.100.0/24",
        "auth_failures_network:2001:db8:1234::/48",
    }


def test_a_second_burst_goes_on_the_open_incidents_timeline(client, settings):
    settings.INCIDENT_AUTH_FAILURE_BURST = 5
    fail_logins(client, 5)
    assert audit_detectors_run() == 1
    fail_logins(client, 6)
    assert audit_detectors_run() == 1

    [incident] = detector_incidents("auth_failures_network")
    first, second = hits(incident)
    assert first["count"] == 5 and second["new_events"] == 6
    assert second["count"] == 11  # both bursts fall in one window
    assert len(audit_events("incident.created")) == 1


def test_after_closing_a_new_burst_opens_a_new_incident(client, settings, actors):
    settings.INCIDENT_AUTH_FAILURE_BURST = 5
    fail_logins(client, 5)
    assert audit_detectors_run() == 1
    [first] = detector_incidents("auth_failures_network")
    move_to(first, "closed", actor=actors["security_officer"])

    fail_logins(client, 5)
    assert audit_detectors_run() == 1
    closed, fresh = detector_incidents("auth_failures_network")
    assert closed.pk == first.pk and closed.status == "closed" and len(hits(closed)) == 1
    assert fresh.status == "detected" and fresh.dedup_key == first.dedup_key
    assert len(audit_events("incident.created")) == 2


def test_failed_api_key_predicts_count_as_failed_authentication(client, settings):
    settings.INCIDENT_AUTH_FAILURE_BURST = 6
    for n in range(6):
        response = client.post(
            PREDICT, BODY, content_type="application/json",
            HTTP_X_API_KEY=f"bwk_{'x' * 10}{n}_nope", REMOTE_ADDR=ATTACKER,
        )  # fmt: skip
        assert response.status_code == 401
    assert {e["details"]["code"] for e in audit_events("predict.rejected")} == {"api_key_invalid"}
    assert audit_detectors_run() == 1
    [incident] = detector_incidents("auth_failures_network")
    assert hits(incident)[0]["count"] == 6


def test_what_is_not_a_failed_authentication_is_not_counted(client, settings):
    settings.INCIDENT_AUTH_FAILURE_BURST = 3
    user = UserFactory()
    for _ in range(5):  # successful sign-ins
        response = client.post(
            TOKEN,
            {"username": user.username, "password": "correct horse battery staple"},
            content_type="application/json",
            REMOTE_ADDR=ATTACKER,
        )
        assert response.status_code == 200
    for _ in range(3):  # the first step of an MFA sign-in is no failure
        audit_event_record(
            "auth.token.failed", actor=user, outcome="denied", details={"reason": "mfa_required"}
        )
    for _ in range(3):  # refusals that are not about credentials
        audit_event_record(
            "predict.rejected", actor=None, outcome="denied", details={"code": "scope_missing"}
        )
    assert audit_detectors_run() == 0
    assert not Incident.objects.exists()


# --- Failed sign-ins for one account -------------------------------------------------------------


def test_failed_sign_ins_for_one_account_open_an_incident_naming_it_by_pseudonym(
    api_client, client, actors
):
    victim = UserFactory()
    # From five addresses: the per-network rule does not fire, the per-account one does (the
    # default threshold is the lock-out: 5 failures in 15 minutes).
    for n in range(5):
        fail_logins(client, 1, ip=f"198.51.{n}.1", username=victim.username)
    locked = client.post(
        TOKEN, {"username": victim.username, "password": "x"}, content_type="application/json"
    )
    assert locked.status_code == 429

    assert audit_detectors_run() == 1

    [incident] = detector_incidents("auth_failures_account")
    pseudonym = pseudonym_for(victim)
    assert victim.username not in incident.title and pseudonym in incident.title
    assert incident.dedup_key == f"auth_failures_account:{pseudonym}"
    assert hits(incident)[0]["count"] == 5 and hits(incident)[0]["user"] == pseudonym
    # Readers of incidents see who it is; the audit trail never does.
    api_client.force_authenticate(actors["auditor"])
    resources = api_client.get(f"{INCIDENTS}/{incident.id}").json()["resources"]
    [account] = [r for r in resources if r["kind"] == "user"]
    assert account == account | {"ref": pseudonym, "username": victim.username}
    assert victim.username not in json.dumps(audit_events())


# --- Rate-limit floods and signature replays, per API key -----------------------------------------


def test_a_rate_limit_flood_by_one_key_opens_an_incident_for_the_key(client, actors, settings):
    settings.INCIDENT_RATE_LIMIT_FLOOD = 5
    api_key, key = ApiKeyFactory.issue(owner=actors["ml_engineer"], rate_limit="1/m")
    codes = []
    for _ in range(6):
        response = client.post(PREDICT, BODY, content_type="application/json", HTTP_X_API_KEY=key)
        codes.append(response.status_code)
    assert codes[1:] == [429] * 5

    assert audit_detectors_run() == 1

    [incident] = detector_incidents("rate_limit_flood")
    assert incident.severity == "sev3" and api_key.prefix in incident.title
    assert hits(incident)[0]["count"] == 5 and hits(incident)[0]["api_key"] == api_key.prefix
    assert ("api_key", api_key.prefix) in {(r.kind, r.ref) for r in incident.resources.all()}
    assert not Incident.objects.exclude(detector="rate_limit_flood").exists()


def signature_header(secret: str, path: str, body: bytes, t: int) -> str:
    digest = hashlib.sha256(body).hexdigest()
    mac = hmac.new(secret.encode(), f"{t}.POST.{path}.{digest}".encode(), hashlib.sha256)
    return f"t={t},v1={mac.hexdigest()}"


def test_replayed_signatures_open_a_sev2_incident_for_the_key(client, actors):
    api_key, key, secret = ApiKeyFactory.issue_signed(owner=actors["ml_engineer"])
    raw = json.dumps(BODY).encode()
    header = signature_header(secret, PREDICT, raw, int(time.time()))
    codes = []
    for _ in range(4):  # one original, three replays (the default threshold)
        response = client.post(
            PREDICT, raw, content_type="application/json",
            HTTP_X_API_KEY=key, HTTP_X_SIGNATURE=header,
        )  # fmt: skip
        codes.append(response.json().get("error", {}).get("code"))
    assert codes[1:] == ["signature_replayed"] * 3

    assert audit_detectors_run() == 1

    [incident] = detector_incidents("signature_replay")
    assert incident.severity == "sev2"
    assert incident.dedup_key == f"signature_replay:{api_key.prefix}"
    assert hits(incident)[0]["count"] == 3


# --- The window, exactly ------------------------------------------------------------------------


T0 = datetime(2030, 1, 1, tzinfo=UTC)


def seen(seconds: float, *, new: bool = True, seq: int = 0) -> Seen:
    return Seen(seq=seq, ts=T0 + timedelta(seconds=seconds), action="x", new=new)


def test_a_burst_is_events_less_than_a_window_apart():
    window = timedelta(seconds=300)
    assert burst_in([seen(0), seen(299.999)], window=window, threshold=2) is not None
    assert burst_in([seen(0), seen(300)], window=window, threshold=2) is None
    # The largest burst is the one reported.
    events = [seen(0, seq=1), seen(400, seq=2), seen(401, seq=3), seen(402, seq=4)]
    burst = burst_in(events, window=window, threshold=2)
    assert burst is not None and [e.seq for e in burst] == [2, 3, 4]


def test_a_burst_of_old_events_alone_is_not_reported_again():
    window = timedelta(seconds=300)
    old = [seen(n, new=False) for n in range(5)]
    assert burst_in(old, window=window, threshold=3) is None
    assert burst_in([*old, seen(10)], window=window, threshold=3) is not None
    # A new event too far from the old burst does not revive it.
    assert burst_in([*old, seen(400)], window=window, threshold=3) is None


def test_a_detector_run_that_fails_midway_rereads_its_batch(client, settings, monkeypatch):
    settings.INCIDENT_AUTH_FAILURE_BURST = 3
    fail_logins(client, 3)
    from apps.incidents import detectors

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("the database went away")

    monkeypatch.setattr(detectors, "incident_detector_hit", broken)
    with pytest.raises(RuntimeError):
        audit_detectors_run()
    assert DetectorCursor.objects.filter(name="audit", last_seq__gt=0).count() == 0
    monkeypatch.undo()
    assert audit_detectors_run() == 1
    assert len(detector_incidents("auth_failures_network")) == 1


def test_events_from_anonymous_callers_have_no_account_or_key_subject():
    for _ in range(5):
        audit_event_record(
            "predict.rejected",
            actor=Subject("user", "anonymous"),
            outcome="denied",
            details={"code": "rate_limited"},
        )
    assert audit_detectors_run() == 0
