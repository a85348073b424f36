"""OpenAPI extensions for our own DRF classes (loaded by CoreConfig.ready)."""

from drf_spectacular.authentication import SessionScheme


class BulwarkSessionScheme(SessionScheme):
    target_class = "apps.core.authentication.SessionAuthentication"
    name = "session"
