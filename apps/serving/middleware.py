"""Predict's short way through the middleware (docs/architecture.md "A predict request").

Predict is answered right after the middleware it needs: request id and access log, trusted
proxies, security headers, input hardening and the API's size and type guard. What follows
them in settings.MIDDLEWARE serves pages and the session-authenticated API (sessions, CSRF,
the session user, OTP, messages, page errors) and would only cost predict time; URL
resolution is a regular expression instead of a walk through every pattern of the project.

What those layers would have done for predict is done here: the Host header is checked
against ALLOWED_HOSTS (CommonMiddleware), the response is rendered and given its
Content-Length (the handler and CommonMiddleware). Predict accepts neither sessions nor
cookies, and its view is CSRF-exempt, so nothing else of theirs applies; a test compares
both ways, refusal by refusal (tests/serving/test_predict_shortcut.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from apps.serving.views import PredictApi

# The `models/<str:name>/predict` route of apps.serving.urls under controlplane.urls's
# `api/v1/`: <str:...> is one or more characters other than "/".
PREDICT_PATH = re.compile(r"/api/v1/models/(?P<name>[^/]+)/predict")


class PredictShortcutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.view: Callable[..., Any] = PredictApi.as_view()

    def __call__(self, request: HttpRequest) -> HttpResponse:
        match = PREDICT_PATH.fullmatch(request.path_info)
        if match is None:
            return self.get_response(request)
        request.get_host()  # DisallowedHost (400) for a host not in ALLOWED_HOSTS
        response = self.view(request, name=match["name"])
        response.render()
        if not response.has_header("Content-Length"):
            response["Content-Length"] = str(len(response.content))
        return response
