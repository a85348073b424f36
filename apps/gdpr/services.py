"""GDPR: subject access (an audited read) and erasure.

Erasure deletes the person, not the history: the audit trail is append-only and hash-chained,
so its events are never rewritten. They name people only by a random pseudonym; deleting the
one row that maps that pseudonym to the person (ActorPseudonym) leaves every event, and the
chain over them, intact and verifiable, while nothing leads from them to anyone any more.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from importlib import import_module
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.contrib.admin.models import LogEntry
from django.contrib.auth import SESSION_KEY, get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import models, transaction
from django.db.models import ProtectedError, Q, RestrictedError
from django.db.models.functions import Cast

from apps.accounts.safety import Change, access_change_refusal
from apps.accounts.selectors import mfa_device_count, token_family_ids, user_for_update
from apps.accounts.user_cache import mark_family_revoked, refresh_user
from apps.apikeys.services import api_key_erase_owner
from apps.audit.services import audit_event_record, pseudonym_erase
from apps.audit.subjects import Subject
from apps.core.errors import Conflict, NotFound, PermissionDenied
from apps.gdpr.selectors import subject_data
from apps.registry.selectors import predict_grants_of_user
from apps.registry.services import predict_grant_delete

ERASED = "[erased]"
# Tables the free-text review does not read: the audit trail (append-only, and people appear
# in it only as pseudonyms), sessions (ended by user id below) and the user table itself.
_NOT_REVIEWED = frozenset(
    {"audit.auditevent", "audit.pendingevent", "sessions.session", "accounts.user"}
)
MAX_MENTIONS = 100

if TYPE_CHECKING:  # a type hint only
    from apps.accounts.models import User


def subject_access_export(*, actor: User, user: User) -> dict[str, Any]:
    """Everything held about `user` (apps.gdpr.selectors.subject_data), for `user` or for
    an officer answering their request. Audited as privacy.subject_access (the person as its
    target, by pseudonym), committed before the data is returned: no export leaves without
    its event (AuditUnavailable, 503, if it cannot be written)."""
    # Read outside the event's transaction: reading chains pending events under the chain's
    # lock, which a surrounding transaction would hold until it commits.
    data = subject_data(user=user)
    with transaction.atomic():
        audit_event_record(
            "privacy.subject_access",
            actor=actor,
            target=user,
            details={
                "requested_by": "self" if actor.pk == user.pk else "officer",
                "audit_events": len(data["audit_events"]),
            },
        )
    return data


@dataclass(frozen=True)
class ErasureReceipt:
    """What the erasure did. `reference` is random: the only name of this erasure, to be kept
    with the request that asked for it (outside Bulwark); nothing here names the person."""

    reference: str
    counts: dict[str, int]
    # Rows whose free text (incident notes, descriptions, ...) mentions the person's username
    # or e-mail address: written by people, so reviewed by people, not rewritten here.
    mentions: list[dict[str, str]] = field(default_factory=list)


def new_reference() -> str:
    return "er_" + secrets.token_hex(10)


@transaction.atomic
def subject_erase(*, actor: User, user: User) -> ErasureReceipt:
    """Erase `user` (GDPR art. 17), all in one transaction:

    - their API keys are revoked (each audited `apikey.revoked`, reason "erasure") and deleted;
    - their predict grants are withdrawn (audited `model.grant.deleted`);
    - their token families are marked revoked in the cache, their sessions ended, and after
      the delete their cached user record becomes a tombstone (before commit too: if Redis
      cannot take it, the erasure fails with 503 rather than leaving tokens that still work);
    - the admin log's entries about them are deleted, others naming them are redacted;
    - the pseudonym mapping is deleted (events keep the pseudonym; it leads nowhere now);
    - the user row is deleted: token families, refresh-token records, MFA devices and
      recovery codes, role and group memberships go with it (CASCADE); models, versions,
      incidents and action items they owned or were assigned stay, without them (SET_NULL);
    - the erasure is audited as `privacy.erasure`, target `erasure:<reference>`, with counts
      only: no username, e-mail address, user id or pseudonym.

    Raises PermissionDenied (403) for erasing oneself (another officer must do it: it would
    end the caller's own access mid-request), the last active administrator, or (for a
    non-superuser) a superuser (apps.accounts.safety; the entry points audit the refusal);
    NotFound (404) if the user is already gone; Conflict (409) when another app keeps rows
    that block the delete (PROTECT).
    """
    locked = user_for_update(user.pk)
    if locked is None:
        raise NotFound("No user with this username.")
    refusal = access_change_refusal(actor=actor, user=locked, change=Change.ERASE)
    if refusal is not None:
        raise PermissionDenied(refusal[1])
    user_id = locked.pk
    needles = _identifiers(locked)

    counts = {"keys_deleted": api_key_erase_owner(actor=actor, owner=locked)}
    grants = predict_grants_of_user(locked)
    for grant in grants:
        predict_grant_delete(actor=actor, grant=grant)
    counts["grants_deleted"] = len(grants)
    families = token_family_ids(locked)

    def families_revoked() -> None:
        for family_id in families:
            mark_family_revoked(family_id)

    families_revoked()  # now, and again once committed (see apps.accounts.user_cache)
    transaction.on_commit(families_revoked)
    counts["sign_in_families"] = len(families)
    counts["mfa_devices"] = mfa_device_count(locked)
    counts["sessions"] = _sessions_end(str(user_id))
    counts["admin_log_entries"] = _admin_log_erase(locked, needles)
    counts["pseudonym_unlinked"] = int(pseudonym_erase(user_id=user_id))
    try:
        locked.delete()
    except (ProtectedError, RestrictedError) as exc:
        rows = getattr(exc, "protected_objects", ()) or getattr(exc, "restricted_objects", ())
        blocking = sorted({row._meta.label_lower for row in rows})
        raise Conflict(
            f"Rows of {', '.join(blocking)} still need this user; reassign or remove them first."
        ) from None
    # The post_delete signal does this too; erasure must not depend on a signal for it.
    refresh_user(user_id)
    mentions = _free_text_mentions(needles)
    reference = new_reference()
    audit_event_record(
        "privacy.erasure",
        actor=actor,
        target=Subject("erasure", reference),
        # Names chosen to pass masking: "api_keys" or "token_..." would be masked as secrets.
        details={**counts, "free_text_mentions": len(mentions)},
    )
    return ErasureReceipt(reference=reference, counts=counts, mentions=mentions)


def _identifiers(user: User) -> list[str]:
    """What would name the person in text: username, e-mail address, id (dashed and hex)."""
    values = [user.username, user.email, str(user.pk), user.pk.hex]
    return [value for value in values if value]


def _mentions(text: str, needles: list[str]) -> bool:
    return any(
        re.search(rf"(?<![\w.@+-]){re.escape(needle)}(?![\w@-]|\.\w)", text, re.IGNORECASE)
        for needle in needles
    )


def _sessions_end(user_id: str) -> int:
    """End every stored session of the user. Sessions are signed blobs, so each is decoded;
    erasure is rare enough for that. Cache- and cookie-backed engines keep no table to search:
    their sessions name a user id that no longer resolves to anyone, and expire."""
    engine = import_module(settings.SESSION_ENGINE)
    get_model_class = getattr(engine.SessionStore, "get_model_class", None)
    if get_model_class is None:
        return 0
    ended = 0
    for session in get_model_class().objects.iterator():
        if str(session.get_decoded().get(SESSION_KEY, "")) == user_id:
            engine.SessionStore(session_key=session.session_key).delete()
            ended += 1
    return ended


def _admin_log_erase(user: User, needles: list[str]) -> int:
    """Delete the admin log's entries about the user (their object_repr is the username) and
    redact the object names of others that mention them (a grant's "... for user alice").
    Entries they made as an admin go with their row (CASCADE)."""
    user_type = ContentType.objects.get_for_model(get_user_model())
    deleted, _ = LogEntry.objects.filter(content_type=user_type, object_id=str(user.pk)).delete()
    candidates = Q()
    for needle in needles:
        candidates |= Q(object_repr__icontains=needle)
    redacted = [
        entry.pk
        for entry in LogEntry.objects.filter(candidates).only("pk", "object_repr")
        if _mentions(entry.object_repr, needles)
    ]
    LogEntry.objects.filter(pk__in=redacted).update(object_repr=ERASED)
    return deleted + len(redacted)


def _text_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    return [
        field
        for field in model._meta.concrete_fields
        if isinstance(field, models.CharField | models.TextField | models.JSONField)
    ]


def _free_text_mentions(needles: list[str]) -> list[dict[str, str]]:
    """Rows of any other table whose text or JSON columns mention the person (at most
    MAX_MENTIONS): listed in the receipt for someone to review, never rewritten here."""
    from django.apps import apps

    found: list[dict[str, str]] = []
    for model in apps.get_models():
        label = model._meta.label_lower
        if label in _NOT_REVIEWED:
            continue
        for text_field in _text_fields(model):
            column = f"_privacy_{text_field.name}"
            rows = model._default_manager.annotate(
                **{column: Cast(text_field.name, models.TextField())}
            )
            query = Q()
            for needle in needles:
                query |= Q(**{f"{column}__icontains": needle})
            for pk, text in rows.filter(query).values_list("pk", column)[:MAX_MENTIONS]:
                if _mentions(str(text), needles):
                    found.append({"model": label, "id": str(pk), "field": text_field.name})
                    if len(found) >= MAX_MENTIONS:
                        return found
    return found
