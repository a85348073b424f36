"""Server-rendered account pages (session sign-in): enrolling, regenerating recovery codes
for, and removing TOTP MFA. Plain forms and full page loads: no JavaScript needed.

Every page here is `never_cache`: they show a TOTP secret or recovery codes, which must not
be kept by the browser's cache or any proxy. Recovery codes are rendered into the response
of the POST that made them and exist nowhere else readable: no redirect, no session copy.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.middleware.csrf import rotate_token
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from apps.accounts import mfa
from apps.accounts.forms import MfaConfirmForm, MfaRecoveryCodesForm, MfaRemoveForm
from apps.core.permissions import roles_of

# No site-wide LOGIN_URL yet: the admin's sign-in is the one session sign-in there is.
LOGIN_URL = "/admin/login/"


def _page(
    request: HttpRequest,
    *,
    confirm_form: forms.Form | None = None,
    recovery_form: forms.Form | None = None,
    remove_form: forms.Form | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    status_now = mfa.mfa_status_get(user=user)  # type: ignore[arg-type]
    context: dict[str, Any] = {
        "status": status_now,
        "required_by_role": bool(roles_of(user) & set(settings.MFA_REQUIRED_ROLES)),
    }
    if status_now.enabled:
        context["recovery_form"] = recovery_form or MfaRecoveryCodesForm()
        context["remove_form"] = remove_form or MfaRemoveForm()
    else:
        context["pending"] = mfa.totp_device_pending_get_or_create(user=user)  # type: ignore[arg-type]
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
            user=request.user,  # type: ignore[arg-type]
            code=form.cleaned_data["code"],
            request=request,
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
            user=request.user,  # type: ignore[arg-type]
            code=form.cleaned_data["code"],
            request=request,
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
            user=request.user,  # type: ignore[arg-type]
            code=form.cleaned_data["code"],
            request=request,
        )
    except mfa.MfaNotEnabled:
        return _redirect_to_page()
    except mfa.MfaCodeRejected as exc:
        form.add_error("code", str(exc))
        return _page(request, remove_form=form, status=400)
    messages.success(request, "Two-factor authentication is off: your app and codes are removed.")
    return _redirect_to_page()
