"""GDPR subject access: every personal datum Bulwark holds about one person, as JSON-ready data.

What it never contains: the password hash, TOTP seeds, recovery codes, token values (nor
their `jti`), API-key secrets, their hashes, signing secrets (sealed or not), session data.
Each section reads only the fields it names, so a secret column added later does not leak
into it; the generic section leaves out any field whose name says secret.

Extension point: a model of another app that points at the user (a foreign key, one-to-one
or many-to-many to AUTH_USER_MODEL) and is not read by a section below is exported anyway by
the generic section (apps.gdpr.relations), under `compliance` for that app's rows (items
they own, evidence they added) when it is installed, else under `other_records`. Give such a
model its own section here, and add it to COVERED, when its rows deserve a better shape.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.utils import timezone

from apps.accounts.selectors import (
    subject_account,
    subject_mfa_devices,
    subject_token_families,
    user_find,
)
from apps.apikeys.selectors import subject_api_keys
from apps.audit.selectors import pseudonym_of, subject_audit_events
from apps.core.errors import NotFound
from apps.core.timestamps import iso
from apps.gdpr.relations import rows_elsewhere
from apps.incidents.selectors import subject_incidents
from apps.registry.selectors import subject_models, subject_predict_grants

if TYPE_CHECKING:
    from apps.accounts.models import User

FORMAT_VERSION = 1
# Models whose rows about the user a section below reads; every other relation to the user
# is exported by the generic section.
COVERED = frozenset(
    {
        "accounts.user",
        "accounts.tokenfamily",
        "apikeys.apikey",
        "audit.actorpseudonym",
        "accounts.totpdevice",
        "accounts.recoverycodedevice",
        "registry.registeredmodel",
        "registry.modelversion",
        "registry.predictgrant",
        "incidents.incident",
        "incidents.actionitem",
        "admin.logentry",
    }
)


def subject_get(*, username: str) -> User:
    """The user with exactly this username; NotFound (404) if there is none."""
    user = user_find(username)
    if user is None:
        raise NotFound("No user with this username.")
    return user


def subject_data(*, user: User) -> dict[str, Any]:
    """Everything held about `user`, by category (see the module docstring). Chains pending
    audit events first, so the events section is complete up to now."""
    pseudonym = pseudonym_of(user)
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generated_at": timezone.now().isoformat(),
        "account": subject_account(user),
        "audit_pseudonym": pseudonym,
        "mfa_devices": subject_mfa_devices(user),
        "token_families": subject_token_families(user),
        "api_keys": subject_api_keys(user),
        "predict_grants": subject_predict_grants(user),
        "models": subject_models(user),
        "incidents": subject_incidents(user, pseudonym),
        "admin_log": _admin_log(user),
        "audit_events": list(subject_audit_events(pseudonym)),
    }
    elsewhere = rows_elsewhere(user, covered=COVERED)
    if apps.is_installed("apps.compliance"):
        data["compliance"] = elsewhere.pop("compliance", [])
    data["other_records"] = [row for rows in elsewhere.values() for row in rows]
    return data


def _admin_log(user: User) -> dict[str, list[dict[str, Any]]]:
    def rows(entries: models.QuerySet[LogEntry]) -> list[dict[str, Any]]:
        return [
            {
                "at": iso(entry.action_time),
                "action": {1: "added", 2: "changed", 3: "deleted"}.get(entry.action_flag, "?"),
                "object_type": entry.content_type.model if entry.content_type else None,
                "object": entry.object_repr,
                "change": entry.get_change_message(),
            }
            for entry in entries.select_related("content_type").order_by("action_time")
        ]

    user_type = ContentType.objects.get_for_model(get_user_model())
    return {
        "by_you": rows(LogEntry.objects.filter(user=user)),
        "about_you": rows(LogEntry.objects.filter(content_type=user_type, object_id=str(user.pk))),
    }
