from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from apps.accounts.models import Role, User


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    list_display = ("username", "email", "is_active", "is_staff", "role_list", "last_login")
    list_filter = ("is_active", "is_staff", "roles")
    filter_horizontal = ("roles", "groups", "user_permissions")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Bulwark roles", {"fields": ("roles",)}),
    )

    def get_queryset(self, request):  # type: ignore[no-untyped-def]
        return super().get_queryset(request).prefetch_related("roles")

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
