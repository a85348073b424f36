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

from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from django.apps import apps
from django.contrib.admin.models import LogEntry
from django.contrib.contenttypes.models import ContentType
from django.db import models
from django.db.models import Q
from django.utils import timezone

from apps.accounts.models import (
    IssuedRefreshToken,
    RecoveryCode,
    RecoveryCodeDevice,
    TokenFamily,
    TotpDevice,
    User,
)
from apps.apikeys.models import ApiKey
from apps.audit.models import ActorPseudonym, AuditEvent
from apps.audit.selectors import event_as_dict
from apps.audit.services import audit_chain_pending
from apps.core.errors import NotFound
from apps.gdpr.relations import rows_elsewhere
from apps.incidents.models import ActionItem, Incident, LinkedResource, ResourceKind, TimelineEntry
from apps.registry.models import ModelVersion, PredictGrant, RegisteredModel

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


def _iso(value: datetime | date | None) -> str | None:
    return value.isoformat() if value is not None else None


def subject_get(*, username: str) -> User:
    """The user with exactly this username; NotFound (404) if there is none."""
    user = User.objects.filter(username=username).first()
    if user is None:
        raise NotFound("No user with this username.")
    return user


def pseudonym_of(user: User) -> str | None:
    """The user's audit pseudonym, if one was ever made (reading never makes one)."""
    return (
        ActorPseudonym.objects.filter(user_id=user.pk).values_list("pseudonym", flat=True).first()
    )


def subject_data(*, user: User) -> dict[str, Any]:
    """Everything held about `user`, by category (see the module docstring). Chains pending
    audit events first, so the events section is complete up to now."""
    pseudonym = pseudonym_of(user)
    data: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "generated_at": timezone.now().isoformat(),
        "account": _account(user),
        "audit_pseudonym": pseudonym,
        "mfa_devices": _mfa_devices(user),
        "token_families": _token_families(user),
        "api_keys": _api_keys(user),
        "predict_grants": _predict_grants(user),
        "models": _models(user),
        "incidents": _incidents(user, pseudonym),
        "admin_log": _admin_log(user),
        "audit_events": list(_audit_events(pseudonym)),
    }
    elsewhere = rows_elsewhere(user, covered=COVERED)
    if apps.is_installed("apps.compliance"):
        data["compliance"] = elsewhere.pop("compliance", [])
    data["other_records"] = [row for rows in elsewhere.values() for row in rows]
    return data


def _account(user: User) -> dict[str, Any]:
    return {
        "id": str(user.pk),
        "username": user.username,
        "email": user.email,
        "first_name": user.first_name,
        "last_name": user.last_name,
        "date_joined": _iso(user.date_joined),
        "last_login": _iso(user.last_login),
        "is_active": user.is_active,
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "roles": sorted(user.roles.values_list("name", flat=True)),
        "groups": sorted(user.groups.values_list("name", flat=True)),
    }


def _mfa_devices(user: User) -> list[dict[str, Any]]:
    # Names, states and dates only: never a seed, a recovery code, a code hash or a sealed key.
    devices: list[dict[str, Any]] = [
        {
            "type": "totp",
            "name": name,
            "confirmed": confirmed,
            "created_at": _iso(created),
            "last_used_at": _iso(used),
        }
        for name, confirmed, created, used in TotpDevice.objects.filter(user=user)
        .order_by("pk")
        .values_list("name", "confirmed", "created_at", "last_used_at")
    ]
    for pk, name, confirmed, created, used in (
        RecoveryCodeDevice.objects.filter(user=user)
        .order_by("pk")
        .values_list("pk", "name", "confirmed", "created_at", "last_used_at")
    ):
        devices.append(
            {
                "type": "recovery_codes",
                "name": name,
                "confirmed": confirmed,
                "created_at": _iso(created),
                "last_used_at": _iso(used),
                "codes_remaining": RecoveryCode.objects.filter(device_id=pk).count(),
            }
        )
    return devices


def _token_families(user: User) -> list[dict[str, Any]]:
    families = list(
        TokenFamily.objects.filter(user=user)
        .order_by("created_at")
        .values_list("id", "created_at", "revoked_at", "revoked_reason")
    )
    refresh: dict[Any, list[dict[str, Any]]] = {}
    # Dates only: the jti is part of the token, so it is not shown (as no token value is).
    for family_id, created, expires, used in (
        IssuedRefreshToken.objects.filter(family__user=user)
        .order_by("created_at")
        .values_list("family_id", "created_at", "expires_at", "used_at")
    ):
        refresh.setdefault(family_id, []).append(
            {"issued_at": _iso(created), "expires_at": _iso(expires), "used_at": _iso(used)}
        )
    return [
        {
            "id": str(family_id),
            "created_at": _iso(created),
            "revoked": revoked is not None,
            "revoked_at": _iso(revoked),
            "revoked_reason": reason,
            "refresh_tokens": refresh.get(family_id, []),
        }
        for family_id, created, revoked, reason in families
    ]


def _api_keys(user: User) -> list[dict[str, Any]]:
    # Never secret_hash nor signing_secret_sealed: `.only()` keeps them out of the query.
    keys = (
        ApiKey.objects.filter(owner=user)
        .select_related("rotated_to")
        .only(
            "id",
            "public_id",
            "name",
            "scopes",
            "expires_at",
            "rate_limit",
            "require_signature",
            "allowed_ips",
            "revoked_at",
            "grace_ends_at",
            "last_used_at",
            "created_at",
            "updated_at",
            "expired_at",
            "rotated_to__public_id",
        )
        .order_by("created_at")
    )
    now = timezone.now()
    return [
        {
            "id": str(key.pk),
            "prefix": key.prefix,
            "name": key.name,
            "scopes": key.scopes,
            "status": key.status_at(now),
            "created_at": _iso(key.created_at),
            "expires_at": _iso(key.expires_at),
            "last_used_at": _iso(key.last_used_at),
            "revoked_at": _iso(key.revoked_at),
            "rotated_to": key.rotated_to.prefix if key.rotated_to is not None else None,
            "grace_ends_at": _iso(key.grace_ends_at),
            "rate_limit": key.rate_limit,
            "require_signature": key.require_signature,
            "allowed_ips": key.allowed_ips,
        }
        for key in keys
    ]


def _predict_grants(user: User) -> list[dict[str, Any]]:
    grants = (
        PredictGrant.objects.filter(Q(user=user) | Q(granted_by=user))
        .select_related("model", "group")
        .order_by("created_at")
    )
    return [
        {
            "model": grant.model.name,
            "created_at": _iso(grant.created_at),
            "you_are": [
                role
                for role, held in (
                    ("grantee", grant.user_id == user.pk),
                    ("granted_by", grant.granted_by_id == user.pk),
                )
                if held
            ],
            "grantee_group": grant.group.name if grant.group is not None else None,
        }
        for grant in grants
    ]


def _models(user: User) -> dict[str, list[dict[str, Any]]]:
    return {
        "owned": [
            {"name": name, "description": description, "created_at": _iso(created)}
            for name, description, created in RegisteredModel.objects.filter(owners=user)
            .order_by("name")
            .values_list("name", "description", "created_at")
        ],
        "registered": [
            {"name": name, "created_at": _iso(created)}
            for name, created in RegisteredModel.objects.filter(created_by=user)
            .order_by("name")
            .values_list("name", "created_at")
        ],
        "versions_uploaded": [
            {"model": name, "version": number, "stage": stage, "created_at": _iso(created)}
            for name, number, stage, created in ModelVersion.objects.filter(created_by=user)
            .order_by("model__name", "number")
            .values_list("model__name", "number", "stage", "created_at")
        ],
    }


def _incidents(user: User, pseudonym: str | None) -> dict[str, list[dict[str, Any]]]:
    linked: set[Any] = set()
    if pseudonym is not None:
        linked = set(
            LinkedResource.objects.filter(kind=ResourceKind.USER, ref=pseudonym).values_list(
                "incident_id", flat=True
            )
        )
    incidents = Incident.objects.filter(
        Q(assignee=user) | Q(reported_by=user) | Q(pk__in=linked)
    ).order_by("detected_at")
    entries: list[TimelineEntry] = []
    if pseudonym is not None:
        entries = list(
            TimelineEntry.objects.filter(actor_type="user", actor_ref=pseudonym).order_by(
                "created_at"
            )
        )
    return {
        "involved_in": [
            {
                "id": str(incident.pk),
                "title": incident.title,
                "severity": incident.severity,
                "status": incident.status,
                "detected_at": _iso(incident.detected_at),
                "closed_at": _iso(incident.closed_at),
                "you_are": [
                    role
                    for role, held in (
                        ("assignee", incident.assignee_id == user.pk),
                        ("reporter", incident.reported_by_id == user.pk),
                        ("linked_resource", incident.pk in linked),
                    )
                    if held
                ],
            }
            for incident in incidents
        ],
        "action_items": [
            {
                "incident": str(item.incident_id),
                "description": item.description,
                "due_date": _iso(item.due_date),
                "done": item.done,
            }
            for item in ActionItem.objects.filter(owner=user).order_by("due_date")
        ],
        "timeline_entries_by_you": [
            {
                "incident": str(entry.incident_id),
                "kind": entry.kind,
                "text": entry.text,
                "created_at": _iso(entry.created_at),
            }
            for entry in entries
        ],
    }


def _admin_log(user: User) -> dict[str, list[dict[str, Any]]]:
    def rows(entries: models.QuerySet[LogEntry]) -> list[dict[str, Any]]:
        return [
            {
                "at": _iso(entry.action_time),
                "action": {1: "added", 2: "changed", 3: "deleted"}.get(entry.action_flag, "?"),
                "object_type": entry.content_type.model if entry.content_type else None,
                "object": entry.object_repr,
                "change": entry.get_change_message(),
            }
            for entry in entries.select_related("content_type").order_by("action_time")
        ]

    user_type = ContentType.objects.get_for_model(User)
    return {
        "by_you": rows(LogEntry.objects.filter(user=user)),
        "about_you": rows(LogEntry.objects.filter(content_type=user_type, object_id=str(user.pk))),
    }


def _audit_events(pseudonym: str | None) -> Iterator[dict[str, Any]]:
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
