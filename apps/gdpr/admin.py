"""Erasure in the admin: the user admin of apps.accounts, with the "Erase (GDPR)…" action and
its confirmation page. Registered here, above accounts, so that identity does not depend on
GDPR (docs/architecture.md): this app replaces the user admin with one that can erase."""

from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse

from apps.accounts.admin import UserAdmin
from apps.accounts.safety import Change, access_change_check
from apps.core.errors import ApplicationError
from apps.core.permissions import may
from apps.gdpr.services import subject_erase

if TYPE_CHECKING:
    from apps.accounts.models import User

ERASE_TEMPLATE = "admin/accounts/user/erase.html"


def may_erase(user: Any) -> bool:
    """Holders of `privacy.manage` (as on the API), and superusers, who hold every right here."""
    return bool(getattr(user, "is_superuser", False)) or may(user, "privacy.manage")


class ErasureConfirmForm(forms.Form):
    """Erasure cannot be undone: the person's username must be typed, not just clicked."""

    username = forms.CharField(
        label="Type the username to confirm",
        max_length=150,
        strip=False,
        widget=forms.TextInput(attrs={"autocomplete": "off", "autofocus": True}),
    )

    def __init__(self, *args: Any, expected: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.expected = expected

    def clean_username(self) -> str:
        typed = self.cleaned_data["username"]
        if typed != self.expected:
            raise forms.ValidationError("This is not the username of the user being erased.")
        return typed


class ErasableUserAdmin(UserAdmin):
    actions = [*UserAdmin.actions, "erase_gdpr"]

    def get_urls(self) -> list[URLPattern]:
        erase = self.admin_site.admin_view(self.erase_view)
        return [
            path("<path:object_id>/erase/", erase, name="accounts_user_erase"),
            *super().get_urls(),
        ]

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        context = {"can_erase": self.has_erase_permission(request), **(extra_context or {})}
        return super().change_view(request, object_id, form_url, extra_context=context)

    def has_erase_permission(self, request: HttpRequest) -> bool:
        return may_erase(request.user)

    @admin.action(description="Erase (GDPR)…", permissions=["erase"])
    def erase_gdpr(self, request: HttpRequest, queryset: QuerySet[Any]) -> HttpResponse | None:
        # One person at a time, each confirmed by typing their username on the next page.
        if queryset.count() != 1:
            self.message_user(request, "Select exactly one user to erase.", level=messages.ERROR)
            return None
        user = queryset.get()
        return HttpResponseRedirect(reverse("admin:accounts_user_erase", args=[user.pk]))

    def erase_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The confirmation page: type the username, then the same service as the API erases
        (apps.gdpr.services.subject_erase), audited the same way."""
        if not self.has_erase_permission(request):
            raise PermissionDenied
        user = self.get_object(request, unquote(object_id))
        if user is None:
            redirect = self._get_obj_does_not_exist_redirect  # type: ignore[attr-defined]  # ModelAdmin's, not in the stubs
            return redirect(request, self.opts, object_id)
        form = ErasureConfirmForm(
            request.POST if request.method == "POST" else None, expected=user.username
        )
        if request.method == "POST" and form.is_valid():
            try:
                access_change_check(actor=request.user, user=user, change=Change.ERASE)
                actor = cast("User", request.user)  # the admin lets only staff in
                receipt = subject_erase(actor=actor, user=user)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"The user was erased. Reference {receipt.reference}: keep it with the "
                    "request (no record in Bulwark names the person).",
                    messages.SUCCESS,
                )
                if receipt.mentions:
                    rows = "; ".join(
                        f"{row['model']} {row['id']} ({row['field']})" for row in receipt.mentions
                    )
                    self.message_user(
                        request,
                        f"Free text written by people still mentions them; review: {rows}",
                        messages.WARNING,
                    )
                return HttpResponseRedirect(reverse("admin:accounts_user_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": user,
            "form": form,
            "title": f"Erase {user.username} (GDPR)",
        }
        return TemplateResponse(request, ERASE_TEMPLATE, context)


admin.site.unregister(get_user_model())
admin.site.register(get_user_model(), ErasableUserAdmin)
