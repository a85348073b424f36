from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import Exists, OuterRef, QuerySet
from django.http import HttpRequest
from django_otp.plugins.otp_totp.models import TOTPDevice

from apps.accounts.mfa import mfa_reset, mfa_status_get
from apps.accounts.models import Role, User


class MfaEnabledFilter(admin.SimpleListFilter):
    title = "MFA"
    parameter_name = "mfa"

    def lookups(self, request, model_admin):  # type: ignore[no-untyped-def]
        return (("yes", "Enabled"), ("no", "Not enabled"))

    def queryset(self, request, queryset):  # type: ignore[no-untyped-def]
        if self.value() == "yes":
            return queryset.filter(mfa_on=True)
        if self.value() == "no":
            return queryset.filter(mfa_on=False)
        return queryset


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
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
        *DjangoUserAdmin.fieldsets,
        ("Bulwark roles", {"fields": ("roles",)}),
        # Only the state: the TOTP secret and recovery codes are never shown in the admin.
        ("Two-factor authentication", {"fields": ("mfa_summary",)}),
    )
    readonly_fields = ("mfa_summary",)
    actions = ["reset_mfa"]

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        confirmed_totp = TOTPDevice.objects.filter(user=OuterRef("pk"), confirmed=True)
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
        if queryset.filter(pk=request.user.pk).exists():
            self.message_user(
                request,
                "You cannot reset your own MFA here; use the account page.",
                level=messages.ERROR,
            )
            return
        reset = sum(mfa_reset(actor=request.user, user=user, request=request) for user in queryset)
        self.message_user(request, f"MFA reset for {reset} user(s).", level=messages.SUCCESS)

    @admin.display(description="roles")
    def role_list(self, obj: User) -> str:
        return ", ".join(sorted(role.name for role in obj.roles.all()))


@admin.register(Role)
class RoleAdmin(admin.ModelAdmin):
    list_display = ("name", "description")
    search_fields = ("name",)

    def has_add_permission(self, request) -> bool:  # type: ignore[no-untyped-def]
        return False

    def has_delete_permission(self, request, obj=None) -> bool:  # type: ignore[no-untyped-def]
        return False
