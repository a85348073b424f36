"""Forms of the server-rendered account pages and of the admin sign-in (TOTP-aware)."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm
from django.http import HttpRequest
from django_otp import user_has_device

from apps.accounts import login, mfa
from apps.accounts.errors import LoginLocked
from apps.accounts.models import User

SESSION_FAILED = "auth.session.failed"
_CODE_ATTRS = {
    "autocomplete": "one-time-code",
    "autocapitalize": "off",
    "spellcheck": "false",
    "class": "code-input",
}


class CodeInput(forms.TextInput):
    """A text box for a one-time code that never writes back what was typed: a refused code is
    useless to retype (a TOTP moves on, a recovery code is a secret that must not be echoed
    into a page), so every re-rendered form asks for a fresh one."""

    def format_value(self, value: Any) -> str | None:
        return None


class _CodeForm(forms.Form):
    code = forms.CharField(max_length=32, strip=True, widget=CodeInput)

    field_label = "Code"
    field_help = ""
    numeric = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["code"]
        field.label = self.field_label
        field.help_text = self.field_help
        attrs = dict(_CODE_ATTRS)
        if self.numeric:
            attrs["inputmode"] = "numeric"
        field.widget.attrs.update(attrs)


class MfaConfirmForm(_CodeForm):
    field_label = "Code from your authenticator app"
    field_help = "The 6-digit code the app shows now for Bulwark."
    numeric = True


class MfaRecoveryCodesForm(_CodeForm):
    field_label = "Current code from your authenticator app"
    field_help = "New recovery codes replace the old ones, which stop working."
    numeric = True


class MfaRemoveForm(_CodeForm):
    field_label = "Current code from your app, or a recovery code"
    field_help = "This removes your authenticator and all your recovery codes."


class BulwarkAdminAuthenticationForm(AdminAuthenticationForm):
    """The admin's sign-in: password, then (for a user with a confirmed authenticator) a
    code from the app or a recovery code, in one submission.

    Unlike django-otp's OTPAdminAuthenticationForm it lets a staff user without any device
    sign in with the password alone: whether the admin then lets them in is
    BulwarkAdminSite.has_permission's decision (members of MFA_REQUIRED_ROLES are sent to
    enrol), and enrolling needs that signed-in session. It also needs no device chooser: the
    code's shape says whether it is a TOTP or a recovery code (see mfa.mfa_code_verify).
    """

    otp_token = forms.CharField(
        label="Authenticator code",
        required=False,
        max_length=32,
        strip=True,
        help_text="From your authenticator app, or one of your recovery codes. "
        "Leave empty if you have not set up two-factor authentication.",
        widget=CodeInput(attrs=dict(_CODE_ATTRS)),
    )

    error_messages = {
        **AdminAuthenticationForm.error_messages,
        "otp_required": "This account uses two-factor authentication: enter the code from "
        "your authenticator app, or a recovery code.",
    }

    request: HttpRequest | None

    def keep_password(self) -> None:
        """Render the typed password back into the re-shown form. Only for a right password
        with a missing or refused code: the page is sent with no-store (never_cache), and it
        tells no more than its error already does (that the password was right)."""
        cast(forms.PasswordInput, self.fields["password"].widget).render_value = True

    def clean(self) -> dict[str, Any]:
        # The token endpoint's throttle guards this door too: 5 attempts per username (and a
        # limit per address) in 15 minutes, counted before the password is checked and
        # shared by every process; a success gives its attempt back.
        username = self.data.get("username", "") if self.data else ""
        counted = self.request is not None and bool(username)
        request = cast(HttpRequest, self.request)  # used only when counted: never None then
        if counted:
            try:
                login.begin_attempt(request, username)
            except LoginLocked:
                raise forms.ValidationError(
                    "Too many failed sign-ins for this account or address; try again later.",
                    code="locked",
                ) from None
        try:
            cleaned = super().clean()  # password, then is_active and is_staff
        except forms.ValidationError:
            if counted:
                known = User.objects.filter(username=username).first()
                login.record_failure(
                    request, username, known, "bad_credentials", action=SESSION_FAILED
                )
            raise
        user = self.get_user()
        if user is None or not user_has_device(user, confirmed=True):
            if counted:
                login.attempt_succeeded(request, username)
            return cleaned
        # From here on the password was right: if the code is missing or refused, the form
        # comes back with the password still in it (keep_password), so that only the code
        # has to be typed again. A wrong password is never written back.
        code = cleaned.get("otp_token") or ""
        if not code:
            if counted:
                login.attempt_not_counted(request, username)
            self.keep_password()
            raise forms.ValidationError(self.error_messages["otp_required"], code="otp_required")
        try:
            device = mfa.mfa_code_verify(user=user, code=code)
        except mfa.MfaCodeRejected as exc:
            self.keep_password()
            if self.request is not None:
                login.record_failure(self.request, username, user, "bad_otp", action=SESSION_FAILED)
            raise forms.ValidationError(str(exc), code="otp_invalid") from None
        if counted:
            login.attempt_succeeded(request, username)
        # django-otp's user_logged_in receiver reads this and marks the session verified.
        user.otp_device = device
        return cleaned


class SessionLoginForm(BulwarkAdminAuthenticationForm):
    """The admin's sign-in form (throttling, TOTP or recovery code, audited failures: see
    BulwarkAdminAuthenticationForm.clean) for everyone who may sign in, staff or not: the
    UI's pages check roles themselves."""

    error_messages = {
        **BulwarkAdminAuthenticationForm.error_messages,
        "invalid_login": "The username or password is wrong.",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.fields["username"].widget.attrs.update({"autocomplete": "username"})
        self.fields["password"].widget.attrs.update({"autocomplete": "current-password"})
        self.fields["otp_token"].help_text = (
            "The 6-digit code from your authenticator app, or one of your recovery codes. "
            "Leave empty only if you have not set up two-factor authentication."
        )

    def confirm_login_allowed(self, user: Any) -> None:
        # Active accounts only (Django's rule), without the admin's is_staff requirement.
        AuthenticationForm.confirm_login_allowed(self, user)
