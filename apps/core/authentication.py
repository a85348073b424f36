from __future__ import annotations

from rest_framework import authentication
from rest_framework.request import Request


class SessionAuthentication(authentication.SessionAuthentication):
    """DRF's session authentication (CSRF enforced), answering 401 rather than 403 when
    nobody is signed in: it names a scheme, so clients learn how to authenticate."""

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="bulwark"'
