"""The admin site, with TOTP: staff who have a confirmed device must have verified it in
this session, and members of MFA_REQUIRED_ROLES must always have (settable)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, cast

from django.conf import settings
from django.contrib import admin
from django.db.models import Model
from django.db.models.base import ModelBase
from django.http import HttpRequest, HttpResponse
from django_otp import user_has_device

from apps.accounts.forms import BulwarkAdminAuthenticationForm
from apps.audit.admin_trail import audited_admin
from apps.audit.services import audit_event_record
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
        return None if user.is_verified() else "verify"
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
        """Django's sign-in view, audited like the UI's (/account/login): a refusal is
        `auth.session.failed` (recorded by the form, which sees why), a success that starts a
        new session `auth.session.started`."""
        context = {"mfa_state": _mfa_login_state(request), **(extra_context or {})}
        session_before = request.session.session_key
        response = super().login(request, extra_context=context)
        user = request.user
        started = (
            request.method == "POST"
            and response.status_code == 302
            and user.is_authenticated
            and request.session.session_key != session_before  # login() cycles the key
        )
        if started:
            audit_event_record(
                "auth.session.started",
                actor=user,
                target=user,
                details={
                    "method": "password+otp" if hasattr(user, "otp_device") else "password",
                    "site": "admin",
                },
            )
        return response

    def logout(  # type: ignore[override]  # a redirect too, not only the stubs' TemplateResponse
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        user = request.user
        response = super().logout(request, extra_context=extra_context)
        if user.is_authenticated and not request.user.is_authenticated:  # it did sign out
            audit_event_record(
                "auth.session.ended",
                actor=user,
                target=user,
                details={"site": "admin"},
            )
        return response

    def register(
        self,
        model_or_iterable: ModelBase | Iterable[type[Model]],
        admin_class: Any = None,
        **options: Any,
    ) -> None:
        models = (
            [cast("type[Model]", model_or_iterable)]
            if isinstance(model_or_iterable, ModelBase)
            else list(model_or_iterable)
        )
        allowed = [
            model for model in models if model._meta.label_lower not in SECRET_BEARING_MODELS
        ]
        if allowed:
            # Every write and action of every model's admin goes to the audit chain.
            audited = audited_admin(admin_class or admin.ModelAdmin)
            super().register(allowed, audited, **options)
