"""Middleware shared by every endpoint: request ids and access log, trusted proxies,
security headers, and the cheap refusals of API.md's "Everywhere" (413, 415)."""

from __future__ import annotations

import ipaddress
import logging
import re
import time
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from apps.core.errors import InvalidInput, PayloadTooLarge, UnsupportedMediaType, error_response
from apps.core.request_context import current_request_id, request_id_from_header

access_logger = logging.getLogger("bulwark.access")

GetResponse = Callable[[HttpRequest], HttpResponse]


class RequestContextMiddleware:
    """Outermost: gives each request an id (X-Request-ID), puts it on every log line written
    during the request and on the response, and writes one access-log line per request."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from_header(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id  # type: ignore[attr-defined]
        token = current_request_id.set(request_id)
        started = time.perf_counter()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id
            # The path only: query strings can carry tokens and are not logged.
            access_logger.info(
                "request",
                extra={
                    "method": request.method,
                    "path": request.path,
                    "status": response.status_code,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    "client_ip": request.META.get("REMOTE_ADDR", ""),
                },
            )
            return response
        finally:
            current_request_id.reset(token)


class ProbeMiddleware:
    """Answers /healthz and /readyz before host validation, HTTPS redirect and sessions.

    Orchestrators probe over plain HTTP with the pod's address as Host (API.md: probes answer
    even where HTTPS is enforced); Django's ALLOWED_HOSTS check would refuse them with a 400.
    The probe views read nothing from the request, so skipping that check exposes nothing.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        from apps.core.views import HealthzApi, ReadyzApi

        self.probes: dict[str, Callable[[HttpRequest], HttpResponse]] = {
            "/healthz": HealthzApi.as_view(),
            "/readyz": ReadyzApi.as_view(),
        }

    def __call__(self, request: HttpRequest) -> HttpResponse:
        probe = self.probes.get(request.path_info)
        if probe is None:
            return self.get_response(request)
        response = probe(request)
        if hasattr(response, "render"):
            response.render()
        return response


def _in_networks(address: str, networks: tuple[ipaddress._BaseNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in networks)


class TrustedProxyMiddleware:
    """Believes X-Forwarded-For / X-Forwarded-Proto only from peers in TRUSTED_PROXIES.

    The client is the right-most X-Forwarded-For address that is not itself a trusted proxy
    (addresses to its left were written by the client and prove nothing). From anyone else
    the headers are deleted, so nothing downstream can be fooled by them.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.trusted = settings.TRUSTED_PROXIES

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        peer = meta.get("REMOTE_ADDR", "")
        forwarded_for = meta.pop("HTTP_X_FORWARDED_FOR", "")
        forwarded_proto = meta.pop("HTTP_X_FORWARDED_PROTO", "")
        if self.trusted and _in_networks(peer, self.trusted):
            hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
            client = peer
            for hop in reversed(hops):
                client = hop
                if not _in_networks(hop, self.trusted):
                    break
            if _valid_ip(client):
                meta["REMOTE_ADDR"] = client
            proto = forwarded_proto.split(",")[-1].strip().lower()
            if proto in {"http", "https"}:
                meta["wsgi.url_scheme"] = proto
        return self.get_response(request)


def _valid_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class SecurityHeadersMiddleware:
    """Headers Django 5.2 does not set itself: a strict Content-Security-Policy (no third-party
    origin anywhere: static files are ours) and a Permissions-Policy that turns off devices."""

    CSP = (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    PERMISSIONS = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", self.CSP)
        response.headers.setdefault("Permissions-Policy", self.PERMISSIONS)
        # Also set here (not only by XFrameOptionsMiddleware) so responses that short-circuit
        # the rest of the chain, such as the probes, carry it too.
        response.headers.setdefault("X-Frame-Options", "DENY")
        if request.path.startswith("/api/"):
            # API answers are per caller: never kept by shared caches.
            response.headers.setdefault("Cache-Control", "no-store")
        return response


JSON_TYPES = frozenset({"application/json"})
UPLOAD_TYPES = frozenset({"multipart/form-data"})
# Where a body may exceed the JSON limit: a multipart artifact upload (API.md "Models
# and versions"). Its own upload handler enforces the artifact limit byte by byte.
ARTIFACT_UPLOAD_PATH = re.compile(r"^/api/v1/models/[^/]+/versions$")
# Likewise a compliance evidence file (API.md "Compliance"), bounded by its own handler.
EVIDENCE_UPLOAD_PATH = re.compile(r"^/api/v1/compliance/items/[^/]+/evidence$")


class ApiRequestGuardMiddleware:
    """Cheap refusals before any routing, authentication or parsing, for every /api/ path.

    413 when Content-Length is over BULWARK_MAX_JSON_BODY (the body is never read), 415 when a
    body comes in anything but JSON (or multipart, which views accept only where they upload).
    Bodies sent without Content-Length are still bounded: DATA_UPLOAD_MAX_MEMORY_SIZE and the
    strict JSON parser stop reading at the limit.
    """

    BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.limit = settings.BULWARK_MAX_JSON_BODY
        # The artifact plus the other form fields (each bounded by the JSON limit as a whole).
        self.upload_limit = settings.BULWARK_MAX_ARTIFACT_BYTES + settings.BULWARK_MAX_JSON_BODY
        self.evidence_limit = (
            settings.COMPLIANCE_EVIDENCE_MAX_BYTES + settings.BULWARK_MAX_JSON_BODY
        )

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            refusal = self.refusal(request)
            if refusal is not None:
                return error_response(refusal, request)
        return self.get_response(request)

    def refusal(
        self, request: HttpRequest
    ) -> InvalidInput | PayloadTooLarge | UnsupportedMediaType | None:
        # NUL in a path or query value would reach PostgreSQL, which refuses it with a 500.
        if "\x00" in request.path or "%00" in request.META.get("QUERY_STRING", ""):
            return InvalidInput("The URL may not contain the NUL character (%00).")
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return InvalidInput("The Content-Length header is not a number.")
        if length < 0:
            return InvalidInput("The Content-Length header is negative.")
        media_type, _, params = request.META.get("CONTENT_TYPE", "").partition(";")
        media_type = media_type.strip().lower()
        limit = self.limit
        if request.method == "POST" and media_type in UPLOAD_TYPES:
            if ARTIFACT_UPLOAD_PATH.match(request.path):
                limit = self.upload_limit
            elif EVIDENCE_UPLOAD_PATH.match(request.path):
                limit = self.evidence_limit
        if length > limit:
            return PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit}.")
        chunked = "chunked" in request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
        if request.method in self.BODY_METHODS and (length > 0 or chunked):
            charset = _charset(params)
            if media_type not in JSON_TYPES | UPLOAD_TYPES:
                shown = media_type or "none"
                return UnsupportedMediaType(
                    f"Content-Type {shown} is not accepted; send application/json."
                )
            if media_type in JSON_TYPES and charset not in {None, "utf-8", "utf8"}:
                return UnsupportedMediaType(f"JSON must be UTF-8, not {charset}.")
        return None


def _charset(params: str) -> str | None:
    for param in params.split(";"):
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None
