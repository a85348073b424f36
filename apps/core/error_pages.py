"""A refusal answered as its caller expects: the JSON envelope for the API and the probes, the
error page for a person. Used by the error handlers, the middleware and the pages' access
checks of every app (a module of its own, so nobody imports another app's views for it)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from apps.core import errors


def _is_api(request: HttpRequest) -> bool:
    return request.path.startswith("/api/") or request.path in {"/healthz", "/readyz"}


def error_answer(request: HttpRequest, error: errors.ApplicationError) -> HttpResponse:
    """A refusal as the caller expects it: the JSON envelope for the API and the probes,
    the error page (status, message, request id) for everything else."""
    if _is_api(request):
        return errors.error_response(error, request)
    response = render(
        request,
        "error.html",
        {
            "status": error.status_code,
            "message": error.message,
            "request_id": errors.request_id_of(request),
        },
        status=error.status_code,
    )
    for name, value in error.headers.items():
        response[name] = value
    return response
