"""Reads of the audit trail. Everything pending is chained first, so readers see it all."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Count, Q, QuerySet

from apps.audit.models import ActorPseudonym, AuditEvent, Checkpoint, PendingEvent, VerifiedHead
from apps.audit.services import audit_chain_pending


def event_list(
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    actor: str | None = None,
    outcome: str | None = None,
) -> QuerySet[AuditEvent]:
    audit_chain_pending(wait=True)
    events = AuditEvent.objects.order_by("seq")
    if since is not None:
        events = events.filter(ts__gte=since)
    if until is not None:
        events = events.filter(ts__lt=until)
    if action:
        events = events.filter(action=action)
    if actor:
        events = events.filter(actor_ref=actor)
    if outcome:
        events = events.filter(outcome=outcome)
    return events


def event_as_dict(body: str, prev_hash: str, digest: str) -> dict[str, Any]:
    """The API form of an event: its hashed body, plus its links. Events chained before HMAC
    key ids existed show `hmac_key_id` null, so every event has the same fields."""
    return {"hmac_key_id": None, **json.loads(body), "prev_hash": prev_hash, "hash": digest}


def checkpoint_list() -> QuerySet[Checkpoint]:
    return Checkpoint.objects.order_by("-seq")


def pseudonym_usernames(pseudonyms: Iterable[str]) -> dict[str, str]:
    """Usernames behind those pseudonyms that still map to a person (an erased person's maps
    to nobody)."""
    rows = ActorPseudonym.objects.filter(pseudonym__in=set(pseudonyms)).values_list(
        "pseudonym", "user__username"
    )
    return dict(rows)


def chained_events(
    *,
    actions: Iterable[str],
    after_seq: int | None = None,
    upto_seq: int | None = None,
    since: datetime | None = None,
) -> Iterator[tuple[int, datetime, str]]:
    """(seq, ts, body) of chained events with those actions, in order, streamed: for the
    detectors that read the trail."""
    events = AuditEvent.objects.filter(action__in=list(actions))
    if after_seq is not None:
        events = events.filter(seq__gt=after_seq)
    if upto_seq is not None:
        events = events.filter(seq__lte=upto_seq)
    if since is not None:
        events = events.filter(ts__gte=since)
    return events.order_by("seq").values_list("seq", "ts", "body").iterator(chunk_size=1000)


def events_since_count(*, since: datetime, excluding: Iterable[str] = ()) -> int:
    """How many chained events were recorded since `since`, leaving out those actions."""
    return AuditEvent.objects.filter(ts__gte=since).exclude(action__in=list(excluding)).count()


def subject_audit_events(pseudonym: str | None) -> Iterator[dict[str, Any]]:
    """Every event that names the pseudonym: as actor, as target, or in its details (a key's
    owner, an incident's assignee). The pseudonym is random (p_ and 20 hex digits), so its
    quoted form in the canonical body matches only where it names this person."""
    if pseudonym is None:
        return
    audit_chain_pending(wait=True)
    events = AuditEvent.objects.filter(
        Q(actor_ref=pseudonym) | Q(body__contains=f'"{pseudonym}"')
    ).order_by("seq")
    for body, prev_hash, digest in events.values_list("body", "prev_hash", "hash").iterator():
        yield event_as_dict(body, prev_hash, digest)


def pseudonym_of(user: Any) -> str | None:
    """The user's audit pseudonym, if one was ever made (reading never makes one)."""
    return (
        ActorPseudonym.objects.filter(user_id=user.pk).values_list("pseudonym", flat=True).first()
    )


@dataclass(frozen=True, slots=True)
class ChainState:
    """Where the chain stands, for a dashboard: read without chaining anything."""

    head_seq: int
    head_ts: datetime | None
    pending: int
    verified_seq: int
    verified_at: datetime | None
    checkpoint_seq: int | None
    checkpoint_at: datetime | None

    @property
    def unverified(self) -> int:
        return max(self.head_seq - self.verified_seq, 0)


def chain_state() -> ChainState:
    """The head (the primary key's last entry), the backlog waiting to be chained, how far the
    scheduled verification got and the last signed checkpoint: four index reads."""
    head = AuditEvent.objects.order_by("-seq").values_list("seq", "ts").first()
    verified = VerifiedHead.objects.filter(pk=1).values_list("seq", "verified_at").first()
    checkpoint = Checkpoint.objects.order_by("-seq").values_list("seq", "created_at").first()
    return ChainState(
        head_seq=head[0] if head else 0,
        head_ts=head[1] if head else None,
        pending=PendingEvent.objects.count(),
        verified_seq=verified[0] if verified else 0,
        verified_at=verified[1] if verified else None,
        checkpoint_seq=checkpoint[0] if checkpoint else None,
        checkpoint_at=checkpoint[1] if checkpoint else None,
    )


def event_counts_since(since: datetime, actions: Iterable[str]) -> dict[tuple[str, str], int]:
    """How many chained events of those actions, by (action, outcome), since `since` (a range
    of the ts index)."""
    rows = (
        AuditEvent.objects.filter(ts__gte=since, action__in=list(actions))
        .values_list("action", "outcome")
        .annotate(n=Count("seq"))
        .order_by()
    )
    return {(action, outcome): n for action, outcome, n in rows}


def event_details_since(since: datetime, action: str, *, limit: int) -> list[dict[str, Any]]:
    """The `details` of the latest `limit` events of `action` since `since`, newest first."""
    bodies = (
        AuditEvent.objects.filter(ts__gte=since, action=action)
        .order_by("-seq")
        .values_list("body", flat=True)[:limit]
    )
    return [json.loads(body).get("details") or {} for body in bodies]
