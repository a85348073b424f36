"""The gate of every server-rendered page (incidents, compliance): signed in, MFA verified
where required, holding the page's capability; and the error page those pages show."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django.utils.cache import add_never_cache_headers
from django_otp import user_has_device

from apps.accounts.admin_site import mfa_required_for
from apps.core.error_pages import error_answer
from apps.core.errors import ApplicationError
from apps.core.permissions import may

View = Callable[..., HttpResponse]
MFA_ENROL = "That page needs a session verified with an authenticator: set one up here first."
MFA_VERIFY = "That page needs a session verified with your authenticator: sign in again with it."


def ui_view(capability: str | None, *, home: str, mfa: bool = False) -> Callable[[View], View]:
    """Signed in (else the sign-in page), MFA verified where required (else sign in again,
    or enrol), holding `capability` (else 403; None: any signed-in person). `home` is the URL
    name to come back to after signing in from a POST (whose address only answers POSTs).
    `mfa=True`: this page needs a session verified with an authenticator whatever the role
    (e.g. learning who is behind a pseudonym, downloading the audit trail)."""

    def decorator(view: View) -> View:
        @wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            user = request.user
            back = request.get_full_path() if request.method == "GET" else reverse(home)
            if not user.is_authenticated:
                return redirect_to_login(back)
            if (mfa or mfa_required_for(user)) and not user.is_verified():
                enrolled = user_has_device(user, confirmed=True)
                if mfa:
                    messages.info(request, MFA_VERIFY if enrolled else MFA_ENROL)
                if enrolled:
                    return redirect_to_login(back)
                return HttpResponseRedirect(reverse("account-mfa"))
            if capability is not None and not may(user, capability):
                raise PermissionDenied
            response = view(request, *args, **kwargs)
            # These pages are for this session only: no copy in the browser's cache (the back
            # button after signing out) or in any proxy.
            add_never_cache_headers(response)
            return response

        return guarded

    return decorator


def error_page(request: HttpRequest, error: ApplicationError) -> HttpResponse:
    """A service's refusal as a page, with its status, message and headers."""
    return error_answer(request, error)
