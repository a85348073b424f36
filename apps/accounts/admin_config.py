"""django.contrib.admin, with Bulwark's TOTP-aware site as the default site. Kept apart from
admin_site.py: this module is imported while apps load, before models may be."""

from django.contrib.admin.apps import AdminConfig


class BulwarkAdminConfig(AdminConfig):
    default_site = "apps.accounts.admin_site.BulwarkAdminSite"
