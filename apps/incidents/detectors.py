"""Detectors: Bulwark opening incidents by itself when it sees trouble.

Each hit goes through `incident_detector_hit`: one open incident per detector and subject,
later hits added to its timeline, never a flood of duplicates.

Bursts are read from the audit trail, which already records every refusal. Each rule counts
one kind of event per subject; a subject whose events within the window reach the threshold
is a hit (thresholds and windows are settings):

- `auth_failures_network` (SEV3): failed authentication from one client network (the event's
  IP, truncated by the audit trail to its /24 or /48): `auth.token.failed` and
  `auth.session.failed` (the sign-in pages and the admin's) with outcome failure,
  `apikey.rejected` and `predict.rejected` with a 401 code. INCIDENT_AUTH_FAILURE_BURST within
  INCIDENT_DETECTOR_WINDOW seconds.
- `auth_failures_account` (SEV3): failed sign-ins for one account (either failure event naming
  the user, by pseudonym). INCIDENT_USERNAME_FAILURE_BURST within LOGIN_FAILURE_WINDOW.
- `rate_limit_flood` (SEV3): `predict.rejected` with code `rate_limited` by one API key.
  INCIDENT_RATE_LIMIT_FLOOD within INCIDENT_DETECTOR_WINDOW.
- `signature_replay` (SEV2): `predict.rejected` or `apikey.rejected` with code
  `signature_replayed` by one API key. INCIDENT_SIGNATURE_REPLAY_BURST within
  INCIDENT_DETECTOR_WINDOW.

Where a run got to is the `seq` of the last event it processed (DetectorCursor, in the
database). The cursor advances in the same transaction as the hits of its batch, and seqs are
given in commit order without gaps, so an event is processed exactly once: a run that dies
re-reads its batch, a committed one is never read as new again. A burst may straddle runs:
the events of the window before a new event are looked at again (as context, never as new),
so a hit needs at least one new event in a window that reaches the threshold.

Not from the audit trail: API keys about to expire (`key_expiring`, SEV4, key rows expiring
within INCIDENT_KEY_EXPIRY_DAYS, once per key), failed watermark verifications of our own
versions (`watermark`, SEV2) and audit-chain breaks (`audit_chain`, SEV1, once per first bad
seq), the last two through the hooks of `apps.incidents.hooks`.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.apikeys.selectors import api_keys_expiring
from apps.audit.selectors import chained_events
from apps.audit.services import audit_chain_pending, chain_head
from apps.audit.subjects import pseudonym_for
from apps.core.exception_handler import UNAUTHENTICATED_CODES
from apps.incidents.models import DetectorCursor, Incident, ResourceKind, Severity
from apps.incidents.services import dedup_key, incident_detector_hit
from apps.registry.selectors import watermark_result_is_self_check

AUDIT_CURSOR = "audit"
BATCH = 5000  # events per transaction
MAX_BATCHES = 20  # per run; a backlog beyond it is the next run's
MAX_LINKED_EVENTS = 20  # audit events linked per hit (the evidence names up to MAX_SEQS)
MAX_SEQS = 100
# Failed authentication: every 401 of docs/api.md except the first step of an MFA sign-in.
AUTH_FAILURE_CODES = UNAUTHENTICATED_CODES - {"mfa_required"}
FAILED_SIGN_INS = ("auth.token.failed", "auth.session.failed")
AUDITED_REFUSALS = (*FAILED_SIGN_INS, "apikey.rejected", "predict.rejected")

Link = tuple[str, str, str]


def _code(event: dict[str, Any]) -> str | None:
    details = event.get("details")
    return details.get("code") if isinstance(details, dict) else None


def _actor(event: dict[str, Any], kind: str) -> str | None:
    actor = event.get("actor") or {}
    ref = actor.get("ref")
    return ref if actor.get("type") == kind and ref and ref != "anonymous" else None


def _failed_login(event: dict[str, Any]) -> bool:
    return event.get("action") in FAILED_SIGN_INS and event.get("outcome") == "failure"


def _failed_authentication(event: dict[str, Any]) -> bool:
    if event.get("action") in {"apikey.rejected", "predict.rejected"}:
        return _code(event) in AUTH_FAILURE_CODES
    return _failed_login(event)


def _network(event: dict[str, Any]) -> str | None:
    if not _failed_authentication(event):
        return None
    return event.get("ip") or None  # already truncated by the audit trail (/24, /48)


def _account(event: dict[str, Any]) -> str | None:
    # Sign-ins for a username nobody has are recorded without a person (we never store the
    # name): they count per network only.
    return _actor(event, "user") if _failed_login(event) else None


def _flooding_key(event: dict[str, Any]) -> str | None:
    if event.get("action") == "predict.rejected" and _code(event) == "rate_limited":
        return _actor(event, "api_key")
    return None


def _replaying_key(event: dict[str, Any]) -> str | None:
    if _code(event) == "signature_replayed":
        return _actor(event, "api_key")
    return None


@dataclass(frozen=True)
class BurstRule:
    detector: str
    severity: str
    threshold_setting: str
    window_setting: str
    subject_of: Callable[[dict[str, Any]], str | None]
    title: str  # formatted with {subject}
    resource_kind: str
    resource_label: str

    @property
    def threshold(self) -> int:
        return int(getattr(settings, self.threshold_setting))

    @property
    def window(self) -> timedelta:
        return timedelta(seconds=int(getattr(settings, self.window_setting)))


RULES: tuple[BurstRule, ...] = (
    BurstRule(
        detector="auth_failures_network",
        severity=Severity.SEV3,
        threshold_setting="INCIDENT_AUTH_FAILURE_BURST",
        window_setting="INCIDENT_DETECTOR_WINDOW",
        subject_of=_network,
        title="Burst of failed authentication from {subject}",
        resource_kind=ResourceKind.IP,
        resource_label="client network",
    ),
    BurstRule(
        detector="auth_failures_account",
        severity=Severity.SEV3,
        threshold_setting="INCIDENT_USERNAME_FAILURE_BURST",
        window_setting="LOGIN_FAILURE_WINDOW",
        subject_of=_account,
        title="Burst of failed sign-ins for one account ({subject})",
        resource_kind=ResourceKind.USER,
        resource_label="account",
    ),
    BurstRule(
        detector="rate_limit_flood",
        severity=Severity.SEV3,
        threshold_setting="INCIDENT_RATE_LIMIT_FLOOD",
        window_setting="INCIDENT_DETECTOR_WINDOW",
        subject_of=_flooding_key,
        title="Rate-limit flood by API key {subject}",
        resource_kind=ResourceKind.API_KEY,
        resource_label="API key",
    ),
    BurstRule(
        detector="signature_replay",
        severity=Severity.SEV2,
        threshold_setting="INCIDENT_SIGNATURE_REPLAY_BURST",
        window_setting="INCIDENT_DETECTOR_WINDOW",
        subject_of=_replaying_key,
        title="Replayed request signatures for API key {subject}",
        resource_kind=ResourceKind.API_KEY,
        resource_label="API key",
    ),
)


@dataclass(frozen=True)
class Seen:
    seq: int
    ts: datetime
    action: str
    new: bool


def _matches(
    rows: Iterable[tuple[int, datetime, str]], *, new: bool
) -> dict[tuple[int, str], list[Seen]]:
    """(rule index, subject) → the events of `rows` (seq, ts, body) that rule counts."""
    found: dict[tuple[int, str], list[Seen]] = defaultdict(list)
    for seq, ts, body in rows:
        event = json.loads(body)
        for index, rule in enumerate(RULES):
            subject = rule.subject_of(event)
            if subject:
                found[(index, subject)].append(Seen(seq, ts, event["action"], new))
    return found


def _refusals(**filters: Any) -> Iterable[tuple[int, datetime, str]]:
    return chained_events(actions=AUDITED_REFUSALS, **filters)


def burst_in(events: list[Seen], *, window: timedelta, threshold: int) -> list[Seen] | None:
    """The largest run of events within `window` of each other that reaches `threshold` and
    holds at least one new event; None when there is none."""
    events = sorted(events, key=lambda seen: (seen.ts, seen.seq))
    new_before = [0]  # new events among events[:i]
    for seen in events:
        new_before.append(new_before[-1] + seen.new)
    best: tuple[int, int] | None = None
    start = 0
    for end, last in enumerate(events):
        while last.ts - events[start].ts >= window:
            start += 1
        size = end - start + 1
        has_new = new_before[end + 1] - new_before[start] > 0
        if size >= threshold and has_new and (best is None or size > best[1] - best[0]):
            best = (start, end + 1)
    return events[best[0] : best[1]] if best else None


def _hit(rule: BurstRule, subject: str, burst: list[Seen], *, new_events: int) -> None:
    links: list[Link] = [(rule.resource_kind, subject, rule.resource_label)]
    links += [(ResourceKind.AUDIT_EVENT, str(seen.seq), seen.action) for seen in burst][
        :MAX_LINKED_EVENTS
    ]
    evidence = {
        "count": len(burst),
        "threshold": rule.threshold,
        "window_seconds": int(rule.window.total_seconds()),
        "new_events": new_events,
        "from": burst[0].ts.isoformat(),
        "to": burst[-1].ts.isoformat(),
        "first_seq": min(seen.seq for seen in burst),
        "last_seq": max(seen.seq for seen in burst),
        "seqs": sorted(seen.seq for seen in burst)[:MAX_SEQS],
        rule.resource_kind: subject,
    }
    incident_detector_hit(
        detector=rule.detector,
        subject=subject,
        severity=rule.severity,
        title=rule.title.format(subject=subject),
        evidence=evidence,
        links=links,
    )


def _detect_batch(last_seq: int, upto: int) -> int:
    """Hits among the events with seq in (last_seq, upto]; returns how many."""
    new = _matches(_refusals(after_seq=last_seq, upto_seq=upto), new=True)
    if not new:
        return 0
    # The events before the new ones that could share a window with them: context only.
    longest = max(rule.window for rule in RULES)
    since = min(seen.ts for events in new.values() for seen in events) - longest
    old = _matches(_refusals(upto_seq=last_seq, since=since), new=False)
    hits = 0
    for (index, subject), fresh in new.items():
        rule = RULES[index]
        burst = burst_in(
            old.get((index, subject), []) + fresh, window=rule.window, threshold=rule.threshold
        )
        if burst is not None:
            _hit(rule, subject, burst, new_events=len(fresh))
            hits += 1
    return hits


def audit_detectors_run(*, batch: int = BATCH, max_batches: int = MAX_BATCHES) -> int:
    """Read the audit events chained since the last run (pending ones are chained first) in
    batches, and record a hit for every subject with a burst. Returns the number of hits.
    Concurrent runs queue on the cursor row; each batch commits with its hits."""
    audit_chain_pending(wait=True)
    hits = 0
    for _ in range(max_batches):
        with transaction.atomic():
            cursor, _created = DetectorCursor.objects.select_for_update().get_or_create(
                name=AUDIT_CURSOR
            )
            head, _hash = chain_head()
            if head <= cursor.last_seq:
                return hits
            upto = min(cursor.last_seq + batch, head)
            hits += _detect_batch(cursor.last_seq, upto)
            cursor.last_seq = upto
            cursor.save(update_fields=["last_seq", "updated_at"])
        if upto == head:
            break
    return hits


# --- Not from the audit trail -----------------------------------------------------------------

KEY_EXPIRING = "key_expiring"
WATERMARK = "watermark"
AUDIT_CHAIN = "audit_chain"


def _ever_opened(detector: str, subject: str) -> bool:
    """Whether this detector ever opened an incident for `subject`, open or closed."""
    return Incident.objects.filter(dedup_key=dedup_key(detector, subject)).exists()


def expiring_keys_detect(*, now: datetime | None = None) -> int:
    """A SEV4 incident for each live API key (not revoked, not rotated away) that expires
    within INCIDENT_KEY_EXPIRY_DAYS; once per key: a closed one is not reopened by the next
    run. Returns how many were opened."""
    now = now or timezone.now()
    horizon = now + timedelta(days=settings.INCIDENT_KEY_EXPIRY_DAYS)
    opened = 0
    for api_key in api_keys_expiring(now=now, horizon=horizon).iterator():
        if _ever_opened(KEY_EXPIRING, api_key.prefix):
            continue
        owner = pseudonym_for(api_key.owner)
        _incident, created = incident_detector_hit(
            detector=KEY_EXPIRING,
            subject=api_key.prefix,
            severity=Severity.SEV4,
            title=f"API key {api_key.prefix} expires on {api_key.expires_at:%Y-%m-%d}",
            evidence={
                "api_key": api_key.prefix,
                "expires_at": api_key.expires_at.isoformat(),
                "days_left": (api_key.expires_at - now).days,
                "owner": owner,
            },
            links=[
                (ResourceKind.API_KEY, api_key.prefix, api_key.name),
                (ResourceKind.USER, owner, "key owner"),
            ],
        )
        opened += created
    return opened


def watermark_failure_detect(*, result: Any) -> None:
    """A SEV2 incident for a failed verification of one of our versions against its own
    watermark (the stored artifact no longer behaves as the one we watermarked, or cannot be
    loaded). A suspect endpoint that does not reproduce our watermark is no evidence of
    trouble here, so that kind of failure opens nothing."""
    if not watermark_result_is_self_check(result):
        return
    version = result.version
    ref = f"{version.model.name}:{version.number}"
    incident_detector_hit(
        detector=WATERMARK,
        subject=ref,
        severity=Severity.SEV2,
        title=f"Watermark verification failed for {version.model.name} v{version.number}",
        evidence={
            "model_version": ref,
            "stage": version.stage,
            "job_id": str(result.id),
            "agreement": result.agreement,
            "threshold": result.threshold,
            "reason": result.reason,
        },
        links=[(ResourceKind.MODEL_VERSION, ref, str(version))],
    )


def audit_chain_break_detect(result: Any) -> None:
    """A SEV1 incident for a break in the audit chain, once per first bad seq: verification
    reports the same break on every run until it is dealt with, and a closed incident about
    it is not reopened by the next report."""
    subject = f"seq:{result.first_bad_seq}"
    if _ever_opened(AUDIT_CHAIN, subject):
        return
    links: list[Link] = []
    if result.first_bad_seq is not None:
        links.append((ResourceKind.AUDIT_EVENT, str(result.first_bad_seq), "first bad event"))
    incident_detector_hit(
        detector=AUDIT_CHAIN,
        subject=subject,
        severity=Severity.SEV1,
        title=f"Audit chain broken at #{result.first_bad_seq}",
        evidence={"first_bad_seq": result.first_bad_seq, "reason": result.reason},
        links=links,
    )
