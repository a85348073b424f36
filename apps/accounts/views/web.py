"""Server-rendered account pages (session sign-in): signing in and out of the UI, enrolling,
regenerating recovery codes for, and removing TOTP MFA. Plain forms and full page loads: no
JavaScript needed.

Every page here is `never_cache`: they show a TOTP secret or recovery codes, which must not
be kept by the browser's cache or any proxy. Recovery codes are rendered into the response
of the POST that made them and exist nowhere else readable: no redirect, no session copy.
"""

from __future__ import annotations

from typing import Any

import segno
from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login as auth_login
from django.contrib.auth import logout as auth_logout
from django.contrib.auth.decorators import login_required
from django.core.exceptions import NON_FIELD_ERRORS
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import rotate_token
from django.shortcuts import render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.safestring import SafeString, mark_safe
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_protect
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login
from django_otp import user_has_device

from apps.accounts import mfa
from apps.accounts.admin_site import mfa_required_for
from apps.accounts.forms import (
    MfaConfirmForm,
    MfaRecoveryCodesForm,
    MfaRemoveForm,
    SessionLoginForm,
)
from apps.audit.services import audit_event_record
from apps.core.permissions import may, roles_of

# The MFA pages send visitors to the UI's sign-in (settings.LOGIN_URL), which, unlike the
# admin's, also admits people who are not staff (security officers, auditors).
LOGIN_URL = settings.LOGIN_URL
QR_SCALE = 5  # pixels per module: about 250 px for an otpauth URI, easy for a phone's camera


def _qr_svg(uri: str) -> SafeString:
    """The otpauth:// URI as a QR code in inline SVG, made here: the secret goes into this
    no-store page only, never into an image URL a browser, proxy or log could keep. Black on
    white with the standard quiet zone (4 modules), so cameras read it on any theme; its
    <title> and <desc> are the text alternative (segno escapes them)."""
    svg = segno.make(uri, error="m").svg_inline(
        scale=QR_SCALE,
        border=4,
        dark="#000",
        light="#fff",
        svgclass="qr-code",
        lineclass=None,
        svgid="mfa-qr",
        title="QR code that adds Bulwark to your authenticator app",
        desc="It holds the same key as the one written out for entering by hand.",
    )
    # segno's output has no role; role="img" makes screen readers announce the title.
    svg = svg.replace("<svg ", '<svg role="img" aria-labelledby="mfa-qr-title" ', 1)
    svg = svg.replace("<title>", '<title id="mfa-qr-title">', 1)
    return mark_safe(svg)  # noqa: S308  # segno's own markup; its only text (title) is escaped


def _page(
    request: HttpRequest,
    *,
    confirm_form: forms.Form | None = None,
    recovery_form: forms.Form | None = None,
    remove_form: forms.Form | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    status_now = mfa.mfa_status_get(user=user)  # type: ignore[arg-type]  # signed in: a User
    context: dict[str, Any] = {
        "status": status_now,
        "required_by_role": bool(roles_of(user) & set(settings.MFA_REQUIRED_ROLES)),
    }
    if status_now.enabled:
        context["recovery_form"] = recovery_form or MfaRecoveryCodesForm()
        context["remove_form"] = remove_form or MfaRemoveForm()
    else:
        pending = mfa.totp_device_pending_get_or_create(user=user)  # type: ignore[arg-type]  # a User
        context["pending"] = pending
        context["qr_svg"] = _qr_svg(pending.config_url)
        context["confirm_form"] = confirm_form or MfaConfirmForm()
    return render(request, "accounts/mfa.html", context, status=status)


def _codes_page(request: HttpRequest, codes: list[str], *, first_time: bool) -> HttpResponse:
    return render(
        request, "accounts/mfa_recovery_codes.html", {"codes": codes, "first_time": first_time}
    )


def _redirect_to_page() -> HttpResponseRedirect:
    return HttpResponseRedirect(reverse("account-mfa"))


@never_cache
@login_required(login_url=LOGIN_URL)
@require_http_methods(["GET", "POST"])
def mfa_page(request: HttpRequest) -> HttpResponse:
    """GET: the state, and for a user without MFA the secret to add to their app.
    POST: confirm the app with a code from it; answers with the recovery codes, once."""
    if request.method == "GET":
        try:
            return _page(request)
        except mfa.MfaAlreadyEnabled:  # enabled between the two reads: show the new state
            return _redirect_to_page()
    form = MfaConfirmForm(request.POST)
    if not form.is_valid():
        return _page(request, confirm_form=form, status=400)
    try:
        device, codes = mfa.mfa_enrol_confirm(
            user=request.user,  # type: ignore[arg-type]  # signed in: a User
            code=form.cleaned_data["code"],
        )
    except (mfa.MfaAlreadyEnabled, mfa.MfaNotEnabled):
        # A second tab confirmed first, or the page was never loaded: show what is true now.
        return _redirect_to_page()
    except mfa.MfaCodeRejected as exc:
        form.add_error("code", str(exc))
        return _page(request, confirm_form=form, status=400)
    # The session is now verified by the device it just proved; a new session key (and CSRF
    # token) for the raised privilege, as django.contrib.auth.login does on sign-in.
    request.session.cycle_key()
    rotate_token(request)
    otp_login(request, device)
    return _codes_page(request, codes, first_time=True)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_POST
def mfa_recovery_codes(request: HttpRequest) -> HttpResponse:
    """A new set of recovery codes for a current app code; the old set stops working."""
    form = MfaRecoveryCodesForm(request.POST)
    if not form.is_valid():
        return _page(request, recovery_form=form, status=400)
    try:
        codes = mfa.mfa_recovery_codes_regenerate(
            user=request.user,  # type: ignore[arg-type]  # signed in: a User
            code=form.cleaned_data["code"],
        )
    except mfa.MfaNotEnabled:
        return _redirect_to_page()
    except mfa.MfaCodeRejected as exc:
        form.add_error("code", str(exc))
        return _page(request, recovery_form=form, status=400)
    return _codes_page(request, codes, first_time=False)


@never_cache
@login_required(login_url=LOGIN_URL)
@require_POST
def mfa_remove(request: HttpRequest) -> HttpResponse:
    """Turn MFA off, for a current code; back to the page, which offers enrolment again."""
    form = MfaRemoveForm(request.POST)
    if not form.is_valid():
        return _page(request, remove_form=form, status=400)
    try:
        mfa.mfa_remove(
            user=request.user,  # type: ignore[arg-type]  # signed in: a User
            code=form.cleaned_data["code"],
        )
    except mfa.MfaNotEnabled:
        return _redirect_to_page()
    except mfa.MfaCodeRejected as exc:
        form.add_error("code", str(exc))
        return _page(request, remove_form=form, status=400)
    messages.success(request, "Two-factor authentication is off: your app and codes are removed.")
    return _redirect_to_page()


# --- Sign-in and sign-out of the UI (settings.LOGIN_URL) ------------------------------------


def _safe_next(request: HttpRequest) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return "/incidents/" if may(request.user, "incidents.read") else "/"


def _login_state(request: HttpRequest) -> str | None:
    """Why a signed-in user sees the sign-in page: "verify" (they have an authenticator this
    session never checked) or "enrol" (their role requires one they do not have)."""
    user = request.user
    if not user.is_authenticated or not mfa_required_for(user):
        return None
    if user.is_verified():
        return None
    return "verify" if user_has_device(user, confirmed=True) else "enrol"


@sensitive_post_parameters("password", "otp_token")
@csrf_protect
@never_cache
@require_http_methods(["GET", "POST"])
def login_page(request: HttpRequest) -> HttpResponse:
    """Username, password and, for users with an authenticator, its code, in one form.

    Success rotates the session (django.contrib.auth.login) and marks it verified by the
    device that accepted the code. A member of MFA_REQUIRED_ROLES without a device is signed
    in with the password only and sent to enrol at /account/mfa/: every page that needs MFA
    refuses that session until the enrolment verifies it."""
    state = _login_state(request)
    if request.method == "GET" and request.user.is_authenticated and state is None:
        return HttpResponseRedirect(_safe_next(request))
    form = SessionLoginForm(request, data=request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user = form.get_user()
        verified = hasattr(user, "otp_device")
        auth_login(request, user)  # new session key and CSRF token; django-otp's receiver
        audit_event_record(  # marks the session verified when a device accepted the code
            "auth.session.started",
            actor=user,
            target=user,
            details={"method": "password+otp" if verified else "password"},
        )
        if not verified and mfa_required_for(user):
            messages.info(
                request,
                "Your role requires two-factor authentication: add Bulwark to your "
                "authenticator app to continue.",
            )
            return HttpResponseRedirect(reverse("account-mfa"))
        return HttpResponseRedirect(_safe_next(request))
    status = 200
    if form.is_bound:
        status = 429 if form.has_error(NON_FIELD_ERRORS, "locked") else 400
    context = {"form": form, "next": request.POST.get("next") or request.GET.get("next", "")}
    context["mfa_state"] = state
    return render(request, "accounts/login.html", context, status=status)


@require_POST
def logout_page(request: HttpRequest) -> HttpResponse:
    """Sign out (POST only, with the CSRF token: a link or an image cannot sign anyone out)."""
    if request.user.is_authenticated:
        audit_event_record("auth.session.ended", actor=request.user, target=request.user)
    auth_logout(request)
    messages.info(request, "You are signed out.")
    return HttpResponseRedirect(reverse("account-login"))
