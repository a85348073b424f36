"""Taking access away as people do: a containment action through the API, and the admin's
user pages driven as a staff member would (signed in with a verified TOTP device, as the
admin requires; the change form posted with some fields changed)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import Permission

from apps.accounts.admin import access_stamp
from apps.accounts.models import User


def admin_client(client: Any, user: Any, verified_login: Any, *, superuser: bool = False) -> Any:
    user.is_staff = True
    user.is_superuser = superuser
    user.save()
    if not superuser:  # staff who were given the user pages, as a team might
        user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="accounts", codename__in=["view_user", "change_user"]
            )
        )
    return verified_login(client, user)


def change_form(user: Any, **overrides: Any) -> dict[str, Any]:
    data = {
        "username": user.username,
        "email": user.email,
        "first_name": "",
        "last_name": "",
        "is_active": "on" if user.is_active else "",
        "is_staff": "on" if user.is_staff else "",
        "is_superuser": "on" if user.is_superuser else "",
        "roles": [role.pk for role in user.roles.all()],
        "groups": [],
        "user_permissions": [],
        "date_joined_0": "2026-01-01",
        "date_joined_1": "00:00:00",
        "last_login_0": "",
        "last_login_1": "",
        # What the page showed of the user's access (the form refuses a stale one).
        "access_stamp": access_stamp(User.objects.get(pk=user.pk)),
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value not in ("", None)}


def post_change(client: Any, user: Any, **overrides: Any) -> Any:
    return client.post(f"/admin/accounts/user/{user.pk}/change/", change_form(user, **overrides))


def contain(client: Any, actor: Any, username: str) -> Any:
    client.force_authenticate(actor)
    opened = client.post(
        "/api/v1/incidents", {"title": "stolen token", "severity": "sev2"}, format="json"
    )
    assert opened.status_code == 201, opened.content
    return client.post(
        f"/api/v1/incidents/{opened.json()['id']}/actions",
        {"action": "deactivate_user", "target": username},
        format="json",
    )
