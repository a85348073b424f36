"""What a key may hold: scopes, a rate, an IP allow-list. Shared by the model (full_clean),
the API serializers and the admin form, so the three can never disagree."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from typing import Any

from django.core.exceptions import ValidationError

from apps.core.env import parse_rate
from apps.core.permissions import (
    ADMIN,
    API_CLIENT,
    AUDITOR,
    ML_ENGINEER,
    ROLE_MATRIX,
    SECURITY_OFFICER,
    may,
    roles_of,
)
from apps.registry.selectors import user_may_predict

SCOPE_ALL_MODELS = "predict:*"
# A model name is a slug (registry); `*` means every model.
_SCOPE = re.compile(r"^predict:(\*|[A-Za-z0-9_-]{1,64})$")
MAX_SCOPES = 100
MAX_ALLOWED_IPS = 100
# Keys only ever authenticate predict: the roles that predict (on every model, or on the
# models granted to them) are the roles that can use a key.
KEY_HOLDER_ROLES = ROLE_MATRIX["predict.all_models"] | {API_CLIENT}
# The roles of a person (any role but API client), as refusals name them. A service account
# holds the API client role and none of these.
PERSON_ROLE_LABELS: dict[str, str] = {
    ADMIN: "admin",
    ML_ENGINEER: "ML engineer",
    SECURITY_OFFICER: "security officer",
    AUDITOR: "auditor",
}


def scope_error(scope: object) -> str | None:
    if not isinstance(scope, str) or not _SCOPE.match(scope):
        return "must be predict:<model name> or predict:*"
    return None


def validate_scopes(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise ValidationError("Give at least one scope.")
    if len(value) > MAX_SCOPES:
        raise ValidationError(f"At most {MAX_SCOPES} scopes.")
    for scope in value:
        error = scope_error(scope)
        if error:
            raise ValidationError(f"{scope!r} {error}.")


def validate_rate_limit(value: Any) -> None:
    try:
        parse_rate(str(value))
    except ValueError as exc:
        raise ValidationError(str(exc)) from None


def cidr_error(value: object) -> str | None:
    if not isinstance(value, str):
        return "must be a CIDR string such as 203.0.113.0/24"
    try:
        ipaddress.ip_network(value, strict=True)
    except ValueError:
        return f"{value!r} is not a network such as 203.0.113.0/24 (no host bits set)"
    return None


def canonical_cidrs(values: Iterable[str]) -> list[str]:
    """Each network in its canonical text (a bare address becomes /32 or /128), deduplicated."""
    return list(dict.fromkeys(str(ipaddress.ip_network(value, strict=True)) for value in values))


def validate_allowed_ips(value: Any) -> None:
    if not isinstance(value, list):
        raise ValidationError("Give a list of CIDRs.")
    if len(value) > MAX_ALLOWED_IPS:
        raise ValidationError(f"At most {MAX_ALLOWED_IPS} networks.")
    for item in value:
        error = cidr_error(item)
        if error:
            raise ValidationError(error[0].upper() + error[1:] + ".")


def scopes_beyond_grants(user: Any, scopes: Iterable[str]) -> list[str]:
    """The scopes `user` could not hold: `predict:*` needs `predict.all_models`; `predict:<name>`
    needs the `predict` grant on that model (a model that does not exist is granted to no one
    but the roles that predict on all models)."""
    beyond: list[str] = []
    for scope in scopes:
        if scope == SCOPE_ALL_MODELS:
            allowed = may(user, "predict.all_models")
        else:
            match = _SCOPE.match(scope)
            allowed = match is not None and user_may_predict(user, match.group(1))
        if not allowed:
            beyond.append(scope)
    return beyond


def person_role(user: Any) -> str | None:
    """The label of a role making `user` a person rather than a service account (the first of
    PERSON_ROLE_LABELS they hold), or None."""
    roles = roles_of(user)
    return next((label for role, label in PERSON_ROLE_LABELS.items() if role in roles), None)


def is_service_account(user: Any) -> bool:
    """A service account holds the API client role and no other role (apps.core.permissions:
    it predicts only on the models granted to it, and reads or manages nothing)."""
    return roles_of(user) == {API_CLIENT}


def owner_refusal(user: Any) -> str | None:
    """Why `user` may not be given a key by someone else (None if they may). Whoever issues a
    key for someone sees its secret and could act as its owner, so keys are issued for others
    only when the owner is an active service account (is_service_account): a person with any
    other role issues their own keys. Their scopes are checked against their grants as for
    anyone (scopes_beyond_grants)."""
    name = user.get_username()
    if not user.is_active:
        return f"{name} is deactivated: a deactivated account holds no key."
    role = person_role(user)
    if role:
        return (
            f"{name} is a person with the {role} role: whoever issues a key sees its secret, "
            "so they issue their own keys."
        )
    if not is_service_account(user):
        return (
            f"{name} is not a service account (the API client role): keys are issued for "
            "others only for service accounts."
        )
    return None


def rotation_refusal(actor: Any, owner: Any) -> str | None:
    """Why `actor` may not rotate a key of `owner` and receive its new secret (None if they
    may): anyone rotates their own keys; a holder of `apikeys.manage_all` also those of
    service accounts; a person's key is rotated only by that person (others revoke it)."""
    if getattr(owner, "pk", None) == getattr(actor, "pk", None):
        return None
    if not may(actor, "apikeys.manage_all"):
        return "Only the key's owner may rotate it; revoke it instead."
    role = person_role(owner)
    if role:
        return (
            f"This key belongs to {owner.get_username()}, a person with the {role} role: "
            "whoever rotates a key sees its new secret, so they rotate their own keys; revoke "
            "it instead."
        )
    if not is_service_account(owner):
        return (
            f"This key belongs to {owner.get_username()}, who is not a service account (the "
            "API client role): only they rotate it; revoke it instead."
        )
    return None
