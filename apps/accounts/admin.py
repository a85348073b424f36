from typing import Any, cast

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import GroupAdmin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.contrib.auth.forms import AdminPasswordChangeForm, UserChangeForm
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from apps.accounts.credentials import Cause, credentials_revoke
from apps.accounts.mfa import mfa_reset, mfa_status_get
from apps.accounts.models import Role, TotpDevice, User
from apps.accounts.roles import RoleName
from apps.accounts.safety import (
    Change,
    access_change_check,
    access_change_refusal,
    is_administrator,
)
from apps.audit.admin_trail import admin_form_of
from apps.core.errors import ApplicationError
from apps.core.errors import PermissionDenied as AccessRefused
from apps.registry.selectors import predict_grants_of_group
from apps.registry.services import predict_grant_delete


class MfaEnabledFilter(admin.SimpleListFilter):
    title = "MFA"
    parameter_name = "mfa"

    def lookups(self, request, model_admin):
        return (("yes", "Enabled"), ("no", "Not enabled"))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(mfa_on=True)
        if self.value() == "no":
            return queryset.filter(mfa_on=False)
        return queryset


def access_stamp(user: User) -> str:
    """What the user's access was when a page showed it: a change made meanwhile (a
    containment, another administrator) makes the page's form stale."""
    return f"{user.is_active}:{user.is_staff}:{user.is_superuser}:{user.access_epoch}"


class UserAccessForm(UserChangeForm):
    """The admin's user form, holding the same safety rails as the API (apps.accounts.safety):
    no deactivating or demoting oneself or the last active administrator; superuser status
    is given and taken by superusers only, the admin role given by administrators only, and
    only superusers touch a superuser's access. A form opened before the user's access
    changed is refused rather than allowed to put the old access back."""

    access_stamp = forms.CharField(widget=forms.HiddenInput, required=True)

    actor: Any = None
    request: HttpRequest | None = None
    # What the change takes away, if anything: UserAdmin.save_related then ends the user's
    # credentials (apps.accounts.credentials) in the same transaction.
    access_cause: Cause | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None:
            self.fields["access_stamp"].initial = access_stamp(self.instance)

    def _access_lost(self, cleaned: dict[str, Any]) -> Cause | None:
        user = self.instance
        if user.is_active and not cleaned.get("is_active", user.is_active):
            return Cause.DEACTIVATED
        for flag in ("is_superuser", "is_staff"):
            if getattr(user, flag) and not cleaned.get(flag, True):
                return Cause.ROLE_LOST
        for relation in ("roles", "groups", "user_permissions"):
            if relation in cleaned and set(getattr(user, relation).all()) - set(cleaned[relation]):
                return Cause.ROLE_LOST
        return None

    def _changes(self, cleaned: dict[str, Any]) -> tuple[list[Change], bool]:
        """The rails' changes this form makes, and whether the user stays an administrator."""
        user = self.instance
        superuser_after = cleaned.get("is_superuser", user.is_superuser)
        staff_after = cleaned.get("is_staff", user.is_staff)
        active_after = cleaned.get("is_active", user.is_active)
        roles_before = set(user.roles.values_list("name", flat=True))
        roles_after = {role.name for role in cleaned.get("roles", user.roles.all())}
        administrator_after = bool(
            active_after and (superuser_after or RoleName.ADMIN in roles_after)
        )
        changes = []
        if superuser_after and not user.is_superuser:
            changes.append(Change.MAKE_SUPERUSER)
        if RoleName.ADMIN in roles_after - roles_before:
            changes.append(Change.PROMOTE)
        if user.is_active and not active_after:
            changes.append(Change.DEACTIVATE)
        elif (
            (user.is_superuser and not superuser_after)
            or (RoleName.ADMIN in roles_before - roles_after)
            or (user.is_staff and not staff_after and is_administrator(user))
        ):
            changes.append(Change.DEMOTE)
        elif user.is_superuser and not self.actor.is_superuser and self.has_changed():
            changes.append(Change.DEMOTE)  # any change to a superuser's access is theirs
        return changes, administrator_after

    def clean(self) -> dict[str, Any]:
        cleaned = cast(dict[str, Any], super().clean())  # ModelForm.clean: cleaned_data
        user = self.instance
        if user.pk is None or self.actor is None:
            return cleaned
        # The changeform's transaction is open: hold the row until it commits, and refuse a
        # form made from what the user's access was before someone changed it.
        current = User.objects.select_for_update().get(pk=user.pk)
        if cleaned.get("access_stamp") != access_stamp(current):
            raise forms.ValidationError(
                "This user's access changed while the page was open (another administrator, "
                "or a containment): reload the page and make your change again."
            )
        self.access_cause = self._access_lost(cleaned)
        changes, administrator_after = self._changes(cleaned)
        for change in changes:
            try:
                access_change_check(
                    actor=self.actor,
                    user=user,
                    change=change,
                    still_administrator=administrator_after,
                )
            except ApplicationError as exc:
                raise forms.ValidationError(exc.message) from None
        return cleaned


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    form = UserAccessForm
    list_display = (
        "username",
        "email",
        "is_active",
        "is_staff",
        "role_list",
        "mfa_enabled",
        "last_login",
    )
    list_filter = ("is_active", "is_staff", "roles", MfaEnabledFilter)
    filter_horizontal = ("roles", "groups", "user_permissions")
    fieldsets = (
        *cast(tuple[Any, ...], DjangoUserAdmin.fieldsets),
        ("Bulwark roles", {"fields": ("roles", "access_stamp")}),
        # Only the state: the TOTP secret and recovery codes are never shown in the admin.
        ("Two-factor authentication", {"fields": ("mfa_summary",)}),
    )
    readonly_fields = ("mfa_summary",)
    actions = ["reset_mfa"]  # apps.gdpr adds its erasure

    def get_form(self, request, obj=None, change=False, **kwargs):
        form = super().get_form(request, obj, change=change, **kwargs)
        if obj is None:
            return form
        # The rails need to know who is acting: a subclass per request carries it.
        return type(form.__name__, (form,), {"actor": request.user, "request": request})

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        cause = getattr(form, "access_cause", None)
        if change and cause is not None:  # the changeform's transaction is still open
            credentials_revoke(user=form.instance, cause=cause, actor=request.user, request=request)

    def user_change_password(
        self, request: HttpRequest, id: str, form_url: str = ""
    ) -> HttpResponse:
        # Only a superuser sets a superuser's password (a takeover otherwise): refused before
        # anything else, and audited when it is tried (POST).
        user = self.get_object(request, unquote(id))
        if user is not None:
            rails = {"actor": request.user, "user": user, "change": Change.SET_PASSWORD}
            try:
                if request.method == "POST":
                    access_change_check(**rails)
                elif refusal := access_change_refusal(**rails):
                    raise AccessRefused(refusal[1])
            except ApplicationError as exc:
                self.message_user(request, exc.message, messages.ERROR)
                return HttpResponseRedirect(reverse("admin:accounts_user_change", args=[user.pk]))
        # One transaction for the new password, its audit event and the end of every
        # credential made under the old one (log_change below).
        with transaction.atomic():
            return super().user_change_password(request, id, form_url)

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)
        if isinstance(admin_form_of(request), AdminPasswordChangeForm):
            # A password set by someone else (a reset) or by the user: nothing made with the
            # old one survives. Django then carries the actor's own session over, if it was
            # their password.
            credentials_revoke(
                user=obj, cause=Cause.PASSWORD_CHANGED, actor=request.user, request=request
            )
        return entry

    def has_delete_permission(self, request, obj=None) -> bool:
        # A user leaves only through erasure (apps.gdpr.admin): keys revoked, pseudonym
        # unlinked, tokens ended, audited. A plain delete would skip all of it (and API keys
        # PROTECT it anyway).
        return False

    def get_queryset(self, request):
        confirmed_totp = TotpDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
        return (
            super()
            .get_queryset(request)
            .prefetch_related("roles")
            .annotate(mfa_on=Exists(confirmed_totp))
        )

    @admin.display(description="MFA", boolean=True, ordering="mfa_on")
    def mfa_enabled(self, obj: User) -> bool:
        return bool(getattr(obj, "mfa_on", False))

    @admin.display(description="MFA")
    def mfa_summary(self, obj: User) -> str:
        if obj.pk is None:
            return "-"
        status = mfa_status_get(user=obj)
        if not status.enabled:
            return "Not enabled."
        return (
            f"Enabled (authenticator app); {status.recovery_codes_remaining} recovery codes "
            'left. Use the "Reset MFA" action on the user list to remove it.'
        )

    @admin.action(
        description="Reset MFA (remove authenticator and recovery codes)",
        permissions=["change"],
    )
    def reset_mfa(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        # One's own MFA is removed on /account/mfa/, with a current code: resetting it here
        # would skip that check and could lock an admin out of the admin mid-session.
        if queryset.filter(pk=cast(User, request.user).pk).exists():
            self.message_user(
                request,
                "You cannot reset your own MFA here; use the account page.",
                level=messages.ERROR,
            )
            return
        reset = 0
        for user in queryset:
            try:  # only a superuser resets a superuser's MFA (it ends all their credentials)
                access_change_check(actor=request.user, user=user, change=Change.RESET_MFA)
            except ApplicationError as exc:
                self.message_user(request, exc.message, level=messages.ERROR)
                continue
            reset += mfa_reset(actor=request.user, user=user, request=request)
        self.message_user(request, f"MFA reset for {reset} user(s).", level=messages.SUCCESS)

    @admin.display(description="roles")
    def role_list(self, obj: User) -> str:
        return ", ".join(sorted(role.name for role in obj.roles.all()))


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name",)

    def has_add_permission(self, request) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class GroupAccessAdmin(GroupAdmin):
    """Groups carry access (predict grants, a model's owner group, permissions): deleting one,
    or taking permissions from it, takes that access from its members. Their grants are
    withdrawn through the registry's service (each audited), and every member's credentials
    end (apps.accounts.credentials, cause role_lost), in the deletion's transaction; a model
    that named the group as owner keeps no owner group (SET_NULL), audited as the delete."""

    def _members_lose_access(self, request: HttpRequest, group: Group) -> list[User]:
        for grant in predict_grants_of_group(group):
            predict_grant_delete(actor=request.user, grant=grant)
        return list(User.objects.filter(groups=group))

    def _revoke(self, request: HttpRequest, members: list[User]) -> None:
        for member in members:
            credentials_revoke(
                user=member, cause=Cause.ROLE_LOST, actor=request.user, request=request
            )

    def delete_model(self, request: HttpRequest, obj: Group) -> None:
        with transaction.atomic():
            members = self._members_lose_access(request, obj)
            super().delete_model(request, obj)
            self._revoke(request, members)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Group]) -> None:
        with transaction.atomic():
            for group in queryset:
                self.delete_model(request, group)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        before = set(form.instance.permissions.all()) if change else set()
        super().save_related(request, form, formsets, change)
        if before - set(form.instance.permissions.all()):
            self._revoke(request, list(User.objects.filter(groups=form.instance)))


admin.site.unregister(Group)
admin.site.register(Group, GroupAccessAdmin)
