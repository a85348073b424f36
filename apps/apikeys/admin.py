"""API keys in the admin: listed and viewed (never the hash or the sealed signing secret),
created, rotated and revoked only through the services, so every change is audited like one
made through the API. A new key is shown once, on the response page itself: never through
the messages framework, which would keep it in a cookie or the session table."""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import time
from datetime import datetime
from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils.cache import add_never_cache_headers

from apps.apikeys.keys import KEY_PREFIX, PUBLIC_ID_LENGTH
from apps.apikeys.models import ApiKey
from apps.apikeys.services import IssuedKey, api_key_issue, api_key_revoke, api_key_rotate
from apps.apikeys.validation import (
    canonical_cidrs,
    cidr_error,
    scope_error,
    scopes_beyond_grants,
)
from apps.core.errors import ApplicationError
from apps.core.sealing import SealError, seal, unseal

_SPLIT = re.compile(r"[\s,]+")

# The secrets of a key just issued wait, sealed, in the issuer's session for the page that
# shows them (ApiKeyAdmin._show_once): at most this long, and only until that page is shown.
REVEAL_PREFIX = "bulwark:issued-key:"
REVEAL_PURPOSE = "admin-issued-key-reveal"
REVEAL_SECONDS = 600


def _items(text: str) -> list[str]:
    return [item for item in _SPLIT.split(text.strip()) if item]


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.CharField(help_text="Comma-separated: predict:<model name> or predict:*.")
    expires_in_days = forms.IntegerField(min_value=1, max_value=365, initial=90)
    allowed_ips = forms.CharField(
        required=False, help_text="Comma-separated CIDRs the key may be used from; empty: any."
    )

    class Meta:
        model = ApiKey
        # No owner field: a key made in the admin belongs to whoever makes it, since its secret
        # is shown to them (a key for someone else would be a credential in the wrong hands).
        fields = [
            "name",
            "scopes",
            "expires_in_days",
            "rate_limit",
            "require_signature",
            "allowed_ips",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rate_limit"].initial = "60/m"

    def clean_scopes(self) -> list[str]:
        scopes = list(dict.fromkeys(_items(self.cleaned_data["scopes"])))
        errors = [f"{scope}: {scope_error(scope)}" for scope in scopes if scope_error(scope)]
        if errors or not scopes:
            raise forms.ValidationError(errors or ["Give at least one scope."])
        return scopes

    def clean_allowed_ips(self) -> list[str]:
        networks = _items(self.cleaned_data.get("allowed_ips") or "")
        errors = [cidr_error(network) for network in networks if cidr_error(network)]
        if errors:
            raise forms.ValidationError(errors)
        return canonical_cidrs(networks)

    def clean(self) -> dict[str, Any]:
        data = cast(dict[str, Any], super().clean())  # ModelForm.clean: cleaned_data
        owner, scopes = getattr(self, "owner", None), data.get("scopes")
        if owner is not None and scopes:
            beyond = scopes_beyond_grants(owner, scopes)
            if beyond:
                self.add_error("scopes", f"Beyond the owner's grants: {', '.join(beyond)}.")
        return data


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    list_display = ("prefix", "name", "owner", "status", "expires_at", "last_used_at")
    list_select_related = ("owner",)
    search_fields = ("public_id", "name", "owner__username")
    autocomplete_fields = ("owner",)
    ordering = ("-created_at",)
    actions = ["rotate_keys", "revoke_keys"]
    form = ApiKeyAddForm
    add_fields = ApiKeyAddForm.Meta.fields
    # What a key shows once it exists: everything but its hash and sealed signing secret.
    fields = (
        "prefix",
        "name",
        "owner",
        "status",
        "scopes",
        "expires_at",
        "rate_limit",
        "require_signature",
        "allowed_ips",
        "last_used_at",
        "created_at",
        "revoked_at",
        "rotated_to",
        "grace_ends_at",
        "expired_at",
        "expiry_warned_at",
    )
    readonly_fields = fields

    @admin.display(description="prefix", ordering="public_id")
    def prefix(self, obj: ApiKey) -> str:
        return obj.prefix

    @admin.display(description="status")
    def status(self, obj: ApiKey) -> str:
        return obj.status

    def get_form(self, request: HttpRequest, obj: ApiKey | None = None, **kwargs: Any) -> Any:  # type: ignore[override]  # `change` comes in kwargs
        if obj is not None:  # the read-only view of an existing key: no add-form fields
            kwargs["form"] = forms.ModelForm
            return super().get_form(request, obj, **kwargs)
        form = super().get_form(request, obj, **kwargs)
        # The key will be the signed-in user's: its scopes are checked against their grants.
        return type("ApiKeyAddFormForUser", (form,), {"owner": request.user})

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return self.add_fields if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        return () if obj is None else self.readonly_fields

    # Keys are never edited or deleted in place: rotate or revoke them (actions below).
    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_manage_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("apikeys.change_apikey")

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        # A whole key pasted into the search box would be echoed in the page and kept in the
        # URL (history, proxy logs): search by its prefix instead, at a URL without the secret.
        term = request.GET.get("q", "").strip()
        prefix_length = len(KEY_PREFIX) + PUBLIC_ID_LENGTH
        if term.startswith(KEY_PREFIX) and len(term) > prefix_length:
            query = request.GET.copy()
            query["q"] = term[:prefix_length]
            return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
        return super().changelist_view(request, extra_context)

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[ApiKey], search_term: str
    ) -> tuple[QuerySet[ApiKey], bool]:
        # A prefix searches by its public id.
        term = search_term.strip()
        if term.startswith(KEY_PREFIX):
            term = term[len(KEY_PREFIX) :]
        return super().get_search_results(request, queryset, term)

    def save_model(self, request: HttpRequest, obj: ApiKey, form: Any, change: bool) -> None:
        data = form.cleaned_data
        issued = api_key_issue(
            actor=request.user,
            owner=request.user,
            name=data["name"],
            scopes=data["scopes"],
            expires_in_days=data["expires_in_days"],
            rate_limit=data["rate_limit"],
            require_signature=data["require_signature"],
            allowed_ips=data["allowed_ips"],
        )
        # The admin's own bookkeeping (its log entry) needs the saved object's identity.
        obj.pk, obj.public_id = issued.api_key.pk, issued.api_key.public_id
        obj._state.adding = False
        request._bulwark_issued = [issued]  # type: ignore[attr-defined]  # for response_add

    def response_add(
        self, request: HttpRequest, obj: ApiKey, post_url_continue: str | None = None
    ) -> HttpResponse:
        return self._show_once(request, request._bulwark_issued)  # type: ignore[attr-defined]  # save_model's

    def _show_once(self, request: HttpRequest, issued: list[IssuedKey]) -> HttpResponse:
        """POST/redirect/GET: the new secrets go, sealed, into the session under a one-time
        id, and the browser is sent to the page that shows them. Reloading that page shows
        nothing new and issues nothing (the POST is not repeated); the session never holds a
        secret in the clear, and the URL holds none at all."""
        reveal = secrets.token_urlsafe(16)
        payload = [
            {
                "prefix": item.api_key.prefix,
                "name": item.api_key.name,
                "key": item.key,
                "signing_secret": item.signing_secret,
                "expires_at": item.api_key.expires_at.isoformat(),
            }
            for item in issued
        ]
        request.session[REVEAL_PREFIX + reveal] = {
            "sealed": seal(json.dumps(payload), purpose=REVEAL_PURPOSE),
            "at": time.time(),
        }
        return HttpResponseRedirect(
            reverse("admin:apikeys_apikey_issued", args=[reveal]), status=303
        )

    def get_urls(self) -> list[URLPattern]:
        issued = path(
            "issued/<str:reveal>/",
            self.admin_site.admin_view(self.issued_view),
            name="apikeys_apikey_issued",
        )
        return [issued, *super().get_urls()]

    def issued_view(self, request: HttpRequest, reveal: str) -> HttpResponse:
        """The secrets of one issue, once: taken out of the session as they are shown."""
        kept = request.session.pop(REVEAL_PREFIX + reveal, None)
        issued: list[dict[str, Any]] = []
        if isinstance(kept, dict) and time.time() - kept.get("at", 0) < REVEAL_SECONDS:
            with contextlib.suppress(SealError):  # sealed under a master key since retired
                issued = json.loads(unseal(kept["sealed"], purpose=REVEAL_PURPOSE))
        for item in issued:
            item["expires_at"] = datetime.fromisoformat(item["expires_at"])
        response = TemplateResponse(
            request,
            "admin/apikeys/apikey/key_issued.html",
            {
                **self.admin_site.each_context(request),
                "title": "API key issued" if issued else "Already shown",
                "opts": self.model._meta,
                "issued": issued,
            },
            status=200 if issued else 410,
        )
        add_never_cache_headers(response)  # no-store: not in any cache, not in history
        return response

    @admin.action(description="Rotate selected keys (24 h grace period)", permissions=["manage"])
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        issued = []
        for api_key in queryset:
            try:
                issued.append(api_key_rotate(actor=request.user, api_key=api_key))
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        return self._show_once(request, issued) if issued else None

    @admin.action(description="Revoke selected keys", permissions=["manage"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> None:
        revoked = 0
        for api_key in queryset:
            try:
                api_key_revoke(actor=request.user, api_key=api_key, reason="admin")
                revoked += 1
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.WARNING)
        if revoked:
            self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)
