"""The admin site, with TOTP: staff who have a confirmed device must have verified it in
this session, and members of MFA_REQUIRED_ROLES must always have (settable)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.contrib import admin
from django.db.models import Model
from django.db.models.base import ModelBase
from django.http import HttpRequest, HttpResponse
from django_otp import user_has_device

from apps.accounts.forms import BulwarkAdminAuthenticationForm
from apps.core.permissions import roles_of

# Models whose admin pages would show TOTP secrets, recovery codes or what protects them (sealed
# seeds, code hashes, sealed hash keys). They are never registered here; MFA is shown and reset
# from the user's page instead (apps/accounts/admin.py). django-otp's plugin models stay listed
# in case a plugin is ever installed again (their admin modules register on this site).
SECRET_BEARING_MODELS = frozenset(
    {
        "accounts.totpdevice",
        "accounts.recoverycodedevice",
        "accounts.recoverycode",
        "otp_totp.totpdevice",
        "otp_static.staticdevice",
        "otp_static.statictoken",
    }
)


def mfa_required_for(user: object) -> bool:
    """Anyone with a confirmed device, every superuser, and members of MFA_REQUIRED_ROLES."""
    return (
        user_has_device(user, confirmed=True)
        or bool(getattr(user, "is_superuser", False))
        or bool(roles_of(user) & set(settings.MFA_REQUIRED_ROLES))
    )


def _mfa_login_state(request: HttpRequest) -> str | None:
    """Why a signed-in user sees the login page again: "enrol" (their role requires an
    authenticator they do not have), "verify" (they have one, but this session never
    checked it), or None (some other reason, e.g. not staff)."""
    user = request.user
    if not (user.is_authenticated and user.is_active and user.is_staff):
        return None
    if user_has_device(user, confirmed=True):
        return None if user.is_verified() else "verify"  # type: ignore[union-attr]
    if user.is_superuser or roles_of(user) & set(settings.MFA_REQUIRED_ROLES):
        return "enrol"
    return None


class BulwarkAdminSite(admin.AdminSite):
    site_header = "Bulwark administration"
    site_title = "Bulwark"
    login_form = BulwarkAdminAuthenticationForm
    login_template = "admin/bulwark_login.html"

    def has_permission(self, request: HttpRequest) -> bool:
        if not super().has_permission(request):
            return False
        if mfa_required_for(request.user):
            return bool(getattr(request.user, "is_verified", lambda: False)())
        return True

    def login(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        context = {"mfa_state": _mfa_login_state(request), **(extra_context or {})}
        return super().login(request, extra_context=context)

    def register(
        self,
        model_or_iterable: ModelBase | Iterable[type[Model]],
        admin_class: Any = None,
        **options: Any,
    ) -> None:
        models = (
            [model_or_iterable]
            if isinstance(model_or_iterable, ModelBase)
            else list(model_or_iterable)
        )
        allowed = [
            model for model in models if model._meta.label_lower not in SECRET_BEARING_MODELS
        ]
        if allowed:
            super().register(allowed, admin_class, **options)
