"""Server-rendered account pages (session sign-in): signing in and out, MFA enrolment."""

from django.urls import path

from apps.accounts.views import web

urlpatterns = [
    path("login", web.login_page, name="account-login"),
    path("logout", web.logout_page, name="account-logout"),
    # The page keeps its trailing slash: the admin's sign-in page links to it as /account/mfa/.
    path("mfa/", web.mfa_page, name="account-mfa"),
    path("mfa/recovery-codes", web.mfa_recovery_codes, name="account-mfa-recovery-codes"),
    path("mfa/remove", web.mfa_remove, name="account-mfa-remove"),
]
