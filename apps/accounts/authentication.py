"""Bearer JWT authentication: simplejwt's verification (HS256 pinned, exp, iss, aud, type),
then the token's family and user checked against the cache in one round trip."""

from __future__ import annotations

from typing import Any

from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.errors import TokenInvalid
from apps.accounts.user_cache import cached_user_and_family_revoked


class JwtAuthentication(JWTAuthentication):
    www_authenticate_realm = "bulwark"

    def authenticate(self, request: Request) -> tuple[Any, AccessToken] | None:
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None:
            return None
        try:
            token = AccessToken(raw)
        except (TokenError, InvalidToken):
            raise TokenInvalid() from None
        user_id = token.get(api_settings.USER_ID_CLAIM)
        family_id = token.get("fam")
        if user_id is None or family_id is None:
            raise TokenInvalid()
        user, family_revoked = cached_user_and_family_revoked(user_id, family_id)
        if family_revoked or user is None or not user.is_active:
            raise TokenInvalid()
        return user, token

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="bulwark"'
