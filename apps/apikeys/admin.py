"""API keys in the admin: listed and viewed (never the hash or the sealed signing secret),
created, rotated and revoked only through the services, so every change is audited like one
made through the API. Admins and security officers choose the owner of a key they issue
(themselves or a service account: whoever issues a key sees its secret, so people issue their
own); anyone else issues keys for themselves. Rotate and revoke are
buttons on a key's page, each confirmed on a page of its own, besides the list's actions.

A new key is shown once, on the page the form redirects to (apps.apikeys.reveal): never
through the messages framework, which would keep it in a cookie or the session table."""

from __future__ import annotations

from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.cache import add_never_cache_headers

from apps.apikeys.forms import (
    EXPIRY_HELP,
    GRACE_CHOICES,
    NETWORKS_HELP,
    SCOPES_HELP,
    SIGNATURE_HELP,
    networks_clean,
    owner_clean,
    owner_field,
    owner_suggest,
    scopes_clean,
)
from apps.apikeys.keys import KEY_PREFIX, PUBLIC_ID_LENGTH
from apps.apikeys.models import ApiKey, ApiKeyStatus
from apps.apikeys.reveal import reveal_store, reveal_take
from apps.apikeys.services import (
    IssuedKey,
    api_key_issue_for,
    api_key_revoke,
    api_key_rotate_for_owner,
)
from apps.apikeys.validation import rotation_refusal, scopes_beyond_grants
from apps.core.errors import ApplicationError
from apps.core.permissions import may


class ApiKeyAddForm(forms.ModelForm):
    scopes = forms.CharField(help_text=SCOPES_HELP)
    expires_in_days = forms.IntegerField(
        min_value=1, max_value=365, initial=90, help_text=EXPIRY_HELP
    )
    allowed_ips = forms.CharField(required=False, help_text=NETWORKS_HELP)

    class Meta:
        model = ApiKey
        # The owner is chosen only by those who manage every key (ApiKeyAdmin.get_form adds
        # the field for them); for anyone else a key made here is their own, since its secret
        # is shown to whoever makes it.
        fields = [
            "name",
            "scopes",
            "expires_in_days",
            "rate_limit",
            "require_signature",
            "allowed_ips",
        ]
        help_texts = {"require_signature": SIGNATURE_HELP}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["rate_limit"].initial = "60/m"

    def clean_scopes(self) -> list[str]:
        return scopes_clean(self.cleaned_data["scopes"])

    def clean_allowed_ips(self) -> list[str]:
        return networks_clean(self.cleaned_data.get("allowed_ips") or "")

    def clean(self) -> dict[str, Any]:
        data = cast(dict[str, Any], super().clean())  # ModelForm.clean: cleaned_data
        owner = data.get("owner") if "owner" in self.fields else getattr(self, "actor", None)
        scopes = data.get("scopes")
        if owner is not None and scopes:
            beyond = scopes_beyond_grants(owner, scopes)
            if beyond:
                self.add_error("scopes", f"Beyond the owner's grants: {', '.join(beyond)}.")
        return data


class ApiKeyAddFormWithOwner(ApiKeyAddForm):
    """For holders of `apikeys.manage_all`: the owner by username, themselves or a service
    account (anyone else refused with the reason: apikeys.forms.owner_clean)."""

    owner = owner_field()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        owner_suggest(self.fields["owner"], getattr(self, "actor", None))

    def clean_owner(self) -> Any:
        return owner_clean(self.cleaned_data["owner"], actor=getattr(self, "actor", None))


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
        if self._chooses_owner(request):
            kwargs["form"] = ApiKeyAddFormWithOwner
        form = super().get_form(request, obj, **kwargs)
        # Who issues: the owner chosen must be one they may give a key; without an owner
        # field the key is theirs, its scopes checked against their grants.
        return type("ApiKeyAddFormForUser", (form,), {"actor": request.user})

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        initial = super().get_changeform_initial_data(request)
        if self._chooses_owner(request):
            initial.setdefault("owner", request.user.get_username())
        return initial

    @staticmethod
    def _chooses_owner(request: HttpRequest) -> bool:
        return may(request.user, "apikeys.manage_all")

    def get_fields(self, request: HttpRequest, obj: ApiKey | None = None) -> Any:
        if obj is not None:
            return self.fields
        return ["owner", *self.add_fields] if self._chooses_owner(request) else self.add_fields

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
        issued = api_key_issue_for(
            actor=request.user,
            owner=data.get("owner") or request.user,
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
        """POST/redirect/GET (apps.apikeys.reveal): the new secrets wait, sealed, in the
        session, and the browser is sent to the page that shows them once. The URL holds
        no secret; reloading that page shows nothing new and issues nothing."""
        reveal = reveal_store(request, issued, place="admin")
        return HttpResponseRedirect(
            reverse("admin:apikeys_apikey_issued", args=[reveal]), status=303
        )

    def get_urls(self) -> list[URLPattern]:
        def view(function: Any, name: str, route: str) -> URLPattern:
            return path(route, self.admin_site.admin_view(function), name=f"apikeys_apikey_{name}")

        return [
            view(self.issued_view, "issued", "issued/<str:reveal>/"),
            view(self.rotate_view, "rotate", "<path:object_id>/rotate/"),
            view(self.revoke_view, "revoke", "<path:object_id>/revoke/"),
            *super().get_urls(),
        ]

    def issued_view(self, request: HttpRequest, reveal: str) -> HttpResponse:
        """The secrets of one issue, once: taken out of the session as they are shown."""
        issued = reveal_take(request, reveal, place="admin")
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

    # --- rotate and revoke from a key's page, each confirmed on a page of its own -----------

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = dict(extra_context or {})
        api_key = self.get_object(request, unquote(object_id))
        if api_key is not None and self.has_manage_permission(request):
            status = api_key.status
            context["key_actions"] = {
                "rotate": status == ApiKeyStatus.ACTIVE,
                "revoke": status != ApiKeyStatus.REVOKED,
            }
        return super().change_view(request, object_id, form_url, context)

    def _managed_key(self, request: HttpRequest, object_id: str) -> ApiKey:
        if not self.has_manage_permission(request):
            raise PermissionDenied
        api_key = self.get_object(request, unquote(object_id))
        if api_key is None:
            raise Http404("No API key with this id.")
        return api_key

    def _confirm_page(
        self,
        request: HttpRequest,
        api_key: ApiKey,
        action: str,
        *,
        error: str = "",
        status: int = 200,
    ) -> HttpResponse:
        response = TemplateResponse(
            request,
            "admin/apikeys/apikey/confirm_action.html",
            {
                **self.admin_site.each_context(request),
                "title": f"{action.capitalize()} {api_key.prefix}?",
                "opts": self.model._meta,
                "original": api_key,
                "action": action,
                "error": error,
                "refusal": _refusal(request.user, api_key, action),
                "grace_choices": GRACE_CHOICES,
            },
            status=status,
        )
        add_never_cache_headers(response)
        return response

    def rotate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what a rotation will do; POST (from that page): rotate through the service
        and show the new secrets once."""
        api_key = self._managed_key(request, object_id)
        if request.method != "POST":
            refusal = _refusal(request.user, api_key, "rotate")
            return self._confirm_page(
                request, api_key, "rotate", status=refusal[1] if refusal else 200
            )
        try:
            grace = int(request.POST.get("grace_seconds", ""))
        except ValueError:
            grace = -1
        if grace not in dict(GRACE_CHOICES):
            return self._confirm_page(
                request, api_key, "rotate", error="Choose how long the old key keeps working.",
                status=400,
            )  # fmt: skip
        try:
            issued = api_key_rotate_for_owner(
                actor=request.user, api_key=api_key, grace_seconds=grace
            )
        except ApplicationError as exc:
            return self._confirm_page(
                request, api_key, "rotate", error=exc.message, status=exc.status_code
            )
        return self._show_once(request, [issued])

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """GET: what a revocation will do; POST (from that page): revoke through the service,
        then back to the key's page."""
        api_key = self._managed_key(request, object_id)
        if request.method != "POST":
            refusal = _refusal(request.user, api_key, "revoke")
            return self._confirm_page(
                request, api_key, "revoke", status=refusal[1] if refusal else 200
            )
        reason = request.POST.get("reason", "").strip()[:500] or "admin"
        try:
            api_key_revoke(actor=request.user, api_key=api_key, reason=reason)
        except ApplicationError as exc:
            return self._confirm_page(
                request, api_key, "revoke", error=exc.message, status=exc.status_code
            )
        self.message_user(request, f"Revoked {api_key.prefix}.", messages.SUCCESS)
        return HttpResponseRedirect(
            reverse("admin:apikeys_apikey_change", args=[api_key.pk]), status=303
        )

    @admin.action(description="Rotate selected keys (24 h grace period)", permissions=["manage"])
    def rotate_keys(self, request: HttpRequest, queryset: QuerySet[ApiKey]) -> HttpResponse | None:
        issued = []
        for api_key in queryset:
            try:
                issued.append(api_key_rotate_for_owner(actor=request.user, api_key=api_key))
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


def _refusal(user: Any, api_key: ApiKey, action: str) -> tuple[str, int] | None:
    """Why the service would refuse `action` on the key now, and with which status, for the
    confirmation page to say before anyone tries (the service decides on the POST)."""
    status = api_key.status_at(timezone.now())
    if action == "revoke":
        if status == ApiKeyStatus.REVOKED:
            return f"{api_key.prefix} is already revoked.", 409
        return None
    if status != ApiKeyStatus.ACTIVE:
        return f"{api_key.prefix} is {status}; only an active key can be rotated.", 409
    refusal = rotation_refusal(user, api_key.owner)
    if refusal:
        return refusal, 403
    return None
