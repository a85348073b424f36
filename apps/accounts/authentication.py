"""Bearer JWT authentication: simplejwt's verification (HS256 pinned, exp, iss, aud, type),
then the token's family and user checked against the cache in one round trip."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NoReturn

from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings
from rest_framework_simplejwt.tokens import AccessToken

from apps.accounts.errors import BAD_TIME, TokenInvalid, times_are_valid
from apps.accounts.user_cache import RecordsRead, lookup
from apps.core import ratelimit
from apps.core.auth_failures import failure_bucket, failure_limit
from apps.core.errors import RateLimited


class JwtAuthentication(JWTAuthentication):
    """`records_read`, given the token's user id once its signature holds, says how to read
    the user's record, family state and failure count: None for user_cache's MGET. Predict
    reads them in the round trip that counts the call (apps.serving.views)."""

    www_authenticate_realm = "bulwark"

    def __init__(self, records_read: Callable[[Any], RecordsRead | None] | None = None) -> None:
        super().__init__()
        self.records_read = records_read

    def authenticate(self, request: Request) -> tuple[Any, AccessToken] | None:
        header = self.get_header(request)
        if header is None:
            return None
        raw = self.get_raw_token(header)
        if raw is None:
            return None
        bucket = failure_bucket(request)
        try:
            token = AccessToken(raw)  # type: ignore[arg-type]  # simplejwt: the encoded token
        except (TokenError, InvalidToken, *BAD_TIME):
            self._fail(bucket)
        if not times_are_valid(token.payload):
            self._fail(bucket)
        user_id = token.get(api_settings.USER_ID_CLAIM)
        family_id = token.get("fam")
        if user_id is None or family_id is None:
            self._fail(bucket)
        read = self.records_read(user_id) if self.records_read is not None else None
        user, family_revoked, failures = lookup(user_id, family_id, bucket, read=read)
        limit, window = failure_limit()
        if failures >= limit:
            # This address has used up its failed attempts: refused even with a good token,
            # so a correct guess does not stand out from the wrong ones.
            raise RateLimited(retry_after=window)
        if family_revoked or user is None or not user.is_active:
            self._fail(bucket)
        if token.get("ep", 0) != user.access_epoch:
            # Issued before the user's access was taken away (apps.accounts.credentials).
            self._fail(bucket)
        return user, token

    @staticmethod
    def _fail(bucket: str) -> NoReturn:
        limit, window = failure_limit()
        state = ratelimit.hit(bucket, limit=limit, window=window)
        if not state.allowed:
            raise RateLimited(retry_after=state.reset_in)
        raise TokenInvalid()

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="bulwark"'
