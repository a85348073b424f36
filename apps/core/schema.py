"""OpenAPI extensions for our own DRF classes (loaded by CoreConfig.ready)."""

from drf_spectacular.authentication import SessionScheme
from drf_spectacular.contrib.rest_framework_simplejwt import SimpleJWTScheme


class BulwarkSessionScheme(SessionScheme):  # type: ignore[no-untyped-call]  # untyped __init_subclass__
    target_class = "apps.core.authentication.SessionAuthentication"
    name = "session"


class BulwarkJwtScheme(SimpleJWTScheme):  # type: ignore[no-untyped-call]  # untyped __init_subclass__
    target_class = "apps.accounts.authentication.JwtAuthentication"
    name = "jwtAuth"
