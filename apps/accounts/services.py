from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction

from apps.accounts.models import Role, User
from apps.accounts.roles import RoleName
from apps.core.errors import Conflict, InvalidInput


@transaction.atomic
def user_create(
    *,
    username: str,
    password: str,
    roles: Iterable[str],
    email: str = "",
    is_staff: bool = False,
    is_superuser: bool = False,
) -> User:
    """Create a user with roles. Raises Conflict for a taken username, InvalidInput for an
    unknown role or a password the validators refuse."""
    from django.contrib.auth.password_validation import validate_password
    from django.core.exceptions import ValidationError

    role_names = set(roles)
    unknown = role_names - set(RoleName.values)
    if unknown:
        raise InvalidInput(f"Unknown role(s): {', '.join(sorted(unknown))}.")
    if User.objects.filter(username__iexact=username).exists():
        raise Conflict(f"A user named {username!r} already exists.")
    user = User(username=username, email=email, is_staff=is_staff, is_superuser=is_superuser)
    try:
        validate_password(password, user)
    except ValidationError as exc:
        raise InvalidInput(" ".join(exc.messages)) from None
    user.set_password(password)
    user.full_clean()
    user.save()
    user.roles.set(Role.objects.filter(name__in=role_names))
    return user
