"""Server-rendered account pages (session sign-in): signing in and out, MFA enrolment."""

from django.urls import path

from apps.accounts import web_views

urlpatterns = [
    path("login", web_views.login_page, name="account-login"),
    path("logout", web_views.logout_page, name="account-logout"),
    # The page keeps its trailing slash: the admin's sign-in page links to it as /account/mfa/.
    path("mfa/", web_views.mfa_page, name="account-mfa"),
    path("mfa/recovery-codes", web_views.mfa_recovery_codes, name="account-mfa-recovery-codes"),
    path("mfa/remove", web_views.mfa_remove, name="account-mfa-remove"),
]
