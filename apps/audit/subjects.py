"""Who acted on what, as events name them: people by pseudonym, keys by prefix, IPs truncated."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.db.models import Model

from apps.audit.models import ActorPseudonym


@dataclass(frozen=True)
class Subject:
    type: str
    ref: str


def system(component: str = "bulwark") -> Subject:
    return Subject("system", component)


# Pseudonyms this process has looked up, by user id: a person's pseudonym never changes, and
# every authenticated request that writes an event would otherwise read it again (the user
# object is rebuilt per request from the cache record). Erasure deletes the mapping and drops
# it here; another process's entry is harmless, as the erased user can no longer act.
_KNOWN: dict[Any, str] = {}
_MAX_KNOWN = 10_000


def pseudonym_for(user: Any) -> str:
    """The person's pseudonym, created on first use (random; see ActorPseudonym)."""
    cached = getattr(user, "_audit_pseudonym", None) or _KNOWN.get(user.pk)
    if cached:
        return cached
    pseudonym = (
        ActorPseudonym.objects.filter(user_id=user.pk).values_list("pseudonym", flat=True).first()
    )
    if pseudonym is None:
        try:
            with transaction.atomic():  # a savepoint: a concurrent first use may win the race
                pseudonym = ActorPseudonym.objects.create(user_id=user.pk).pseudonym
        except IntegrityError:
            pseudonym = ActorPseudonym.objects.values_list("pseudonym", flat=True).get(
                user_id=user.pk
            )
    user._audit_pseudonym = pseudonym
    # Remembered for the process only once the row is surely committed: a rolled-back
    # transaction would otherwise leave a pseudonym that maps to nobody.
    user_id = user.pk
    transaction.on_commit(lambda: _remember(user_id, pseudonym))
    return pseudonym


def _remember(user_id: Any, pseudonym: str) -> None:
    if len(_KNOWN) >= _MAX_KNOWN:
        _KNOWN.clear()
    _KNOWN[user_id] = pseudonym


def pseudonym_forget(user_id: Any) -> None:
    """Drop this process's memory of a pseudonym (erasure)."""
    _KNOWN.pop(user_id, None)


def _is_user(value: Any) -> bool:
    return isinstance(value, get_user_model())


def actor_of(actor: Any) -> Subject:
    """`actor` as an event names it: a user (pseudonym), anything with `audit_subject()` (API
    keys: their prefix), a Subject, a system component name, or None (the system itself)."""
    if actor is None:
        return system()
    if isinstance(actor, Subject):
        return actor
    if isinstance(actor, str):
        return system(actor)
    if hasattr(actor, "audit_subject"):
        return actor.audit_subject()
    if _is_user(actor):
        return Subject("user", pseudonym_for(actor))
    if not getattr(actor, "is_authenticated", True):
        return Subject("user", "anonymous")
    raise TypeError(f"cannot name {type(actor).__name__} as an audit actor")


def target_of(target: Any) -> dict[str, str | None]:
    if target is None:
        return {"type": None, "id": None}
    if isinstance(target, Subject):
        return {"type": target.type, "id": target.ref}
    if isinstance(target, tuple):
        kind, ident = target
        return {"type": str(kind), "id": str(ident)}
    if hasattr(target, "audit_subject"):
        subject = target.audit_subject()
        return {"type": subject.type, "id": subject.ref}
    if _is_user(target):
        return {"type": "user", "id": pseudonym_for(target)}
    if isinstance(target, Model):
        return {"type": target._meta.label_lower, "id": str(target.pk)}
    raise TypeError(f"cannot name {type(target).__name__} as an audit target")


@lru_cache(maxsize=4096)  # a pure function of the address, asked for every event
def truncated_ip(address: str | None) -> str | None:
    """IPv4 to its /24, IPv6 to its /48: enough to tell networks apart in an investigation,
    too coarse to single out a person, and irreversible without keeping any key."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return None
    prefix = 24 if ip.version == 4 else 48
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
