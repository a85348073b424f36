"""Middleware shared by every endpoint: request ids and access log, trusted proxies,
security headers, input hardening for pages and API alike (NUL and invalid UTF-8 in URLs and
forms, chunked bodies), and the cheap refusals of docs/api.md's "Everywhere" (413, 415)."""

from __future__ import annotations

import io
import ipaddress
import logging
import re
import time
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.core.handlers.wsgi import LimitedStream
from django.http import HttpRequest, HttpResponse

from apps.core.error_pages import error_answer
from apps.core.errors import (
    ApplicationError,
    InvalidInput,
    PayloadTooLarge,
    UnsupportedMediaType,
    error_response,
)
from apps.core.request_context import (
    current_client_ip,
    current_request_id,
    request_id_from_header,
)
from apps.core.views import HealthzApi, ReadyzApi

access_logger = logging.getLogger("bulwark.access")

GetResponse = Callable[[HttpRequest], HttpResponse]


class RequestContextMiddleware:
    """Outermost: gives each request an id (X-Request-ID), puts it on every log line written
    during the request and on the response, and writes one access-log line per request."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_from_header(request.META.get("HTTP_X_REQUEST_ID"))
        request.request_id = request_id  # type: ignore[attr-defined]  # ours, on every request
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

    Orchestrators probe over plain HTTP with the pod's address as Host (docs/api.md: probes answer
    even where HTTPS is enforced); Django's ALLOWED_HOSTS check would refuse them with a 400.
    The probe views read nothing from the request, so skipping that check exposes nothing.
    """

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
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


@lru_cache(maxsize=4096)  # a pure function of the peer (the networks are the settings')
def _in_networks(
    address: str, networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]
) -> bool:
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
        self.trusted = tuple(settings.TRUSTED_PROXIES)

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
        # The client as now known, for the audit trail of whatever this request changes
        # (apps.core.request_context): services take an actor, not the request.
        token = current_client_ip.set(meta.get("REMOTE_ADDR") or None)
        try:
            return self.get_response(request)
        finally:
            current_client_ip.reset(token)


@lru_cache(maxsize=4096)
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


def body_limit(request: HttpRequest) -> int:
    """The most bytes a request body may hold: the JSON limit, or an artifact's or an
    evidence file's (plus the form's other fields) on the two multipart upload paths."""
    media_type = request.META.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if request.method == "POST" and media_type in UPLOAD_TYPES:
        if ARTIFACT_UPLOAD_PATH.match(request.path):
            return settings.BULWARK_MAX_ARTIFACT_BYTES + settings.BULWARK_MAX_JSON_BODY
        if EVIDENCE_UPLOAD_PATH.match(request.path):
            return settings.COMPLIANCE_EVIDENCE_MAX_BYTES + settings.BULWARK_MAX_JSON_BODY
    return int(settings.BULWARK_MAX_JSON_BODY)


class InputHardeningMiddleware:
    """What no page, form or endpoint should ever see, refused before any of them runs, with
    the error page for pages and the JSON envelope for the API:

    - NUL (raw or `%00`) in the path or the query string, or a query string whose escapes do
      not decode to UTF-8: 400 (PostgreSQL refuses NUL with an error that would be a 500);
    - the same in an `application/x-www-form-urlencoded` body (the admin's and the pages'
      forms); multipart fields are each form field's to validate (Django's refuse NUL);
    - a body sent with `Transfer-Encoding: chunked` and no Content-Length is read here, at
      most to the JSON limit (413 past it, on every path, uploads included: this runs before
      anyone is authenticated, so what an anonymous client can make a process hold is
      bounded by that limit), and handed on with its length: Django would otherwise read it
      as empty. Larger uploads send Content-Length, and their own handlers bound them.
    """

    FORM_TYPES = frozenset({"application/x-www-form-urlencoded"})

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response
        self.error_answer = error_answer

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self.refusal(request)
        if refusal is not None:
            return self.error_answer(request, refusal)
        return self.get_response(request)

    def refusal(self, request: HttpRequest) -> InvalidInput | PayloadTooLarge | None:
        query = request.META.get("QUERY_STRING", "")
        if "\x00" in request.path or not _clean_text(query):
            return InvalidInput(
                "The URL may not contain the NUL character (%00) or bytes that are not UTF-8."
            )
        if _is_chunked(request):
            refused = self._read_chunked(request)
            if refused is not None:
                return refused
        media_type = request.META.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
        if (
            request.method == "POST"
            and media_type in self.FORM_TYPES
            and not request.path.startswith("/api/")
        ):
            try:
                body = request.body.decode("latin-1")  # escapes decoded below, as bytes
            except Exception:  # RequestDataTooBig: Django's own limit, answered by its handler
                return None
            if not _clean_text(body):
                return InvalidInput(
                    "A form field may not contain the NUL character or bytes that are not UTF-8."
                )
        return None

    def _read_chunked(self, request: HttpRequest) -> PayloadTooLarge | None:
        environ = getattr(request, "environ", None)
        if environ is None:
            return None  # ASGI: the server hands Django the whole body, chunked or not
        limit = min(body_limit(request), int(settings.BULWARK_MAX_JSON_BODY))
        stream = environ["wsgi.input"]
        buffer = io.BytesIO()
        while buffer.tell() <= limit:
            part = stream.read(min(1 << 16, limit + 1 - buffer.tell()))
            if not part:
                break
            buffer.write(part)
        if buffer.tell() > limit:
            return PayloadTooLarge(
                f"A body sent without Content-Length (chunked) may be at most {limit} bytes; "
                "send Content-Length for a larger upload."
            )
        body = buffer.getvalue()
        request.META["CONTENT_LENGTH"] = str(len(body))
        request.META.pop("HTTP_TRANSFER_ENCODING", None)
        # Django read its stream's length from CONTENT_LENGTH when the request was made (0 here).
        request._stream = LimitedStream(io.BytesIO(body), len(body))  # type: ignore[assignment]  # a BinaryIO in the stubs
        return None


def _is_chunked(request: HttpRequest) -> bool:
    encoding = request.META.get("HTTP_TRANSFER_ENCODING", "").lower()
    return "chunked" in encoding and not request.META.get("CONTENT_LENGTH")


def _clean_text(encoded: str) -> bool:
    """Whether a URL-encoded string (a query string, a form body) holds no NUL and decodes to
    UTF-8 once its escapes are undone."""
    if not encoded:
        return True
    raw = unquote_to_bytes(encoded.replace("+", " "))
    if b"\x00" in raw:
        return False
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


JSON_TYPES = frozenset({"application/json"})
UPLOAD_TYPES = frozenset({"multipart/form-data"})
# Where a body may exceed the JSON limit: a multipart artifact upload (docs/api.md "Models
# and versions"). Its own upload handler enforces the artifact limit byte by byte.
ARTIFACT_UPLOAD_PATH = re.compile(r"^/api/v1/models/[^/]+/versions$")
# Likewise a compliance evidence file (docs/api.md "Compliance"), bounded by its own handler.
EVIDENCE_UPLOAD_PATH = re.compile(r"^/api/v1/compliance/items/[^/]+/evidence$")


class ApiRequestGuardMiddleware:
    """Cheap refusals before any routing, authentication or parsing, for every /api/ path.

    413 when Content-Length is over BULWARK_MAX_JSON_BODY (the body is never read), 415 when a
    body comes in anything but JSON (or multipart, which views accept only where they upload).
    A chunked body has been read and given its length by InputHardeningMiddleware already.
    """

    BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            refusal = self.refusal(request)
            if refusal is not None:
                return error_response(refusal, request)
        return self.get_response(request)

    def refusal(
        self, request: HttpRequest
    ) -> InvalidInput | PayloadTooLarge | UnsupportedMediaType | None:
        raw_length = request.META.get("CONTENT_LENGTH") or "0"
        try:
            length = int(raw_length)
        except ValueError:
            return InvalidInput("The Content-Length header is not a number.")
        if length < 0:
            return InvalidInput("The Content-Length header is negative.")
        media_type, _, params = request.META.get("CONTENT_TYPE", "").partition(";")
        media_type = media_type.strip().lower()
        limit = body_limit(request)
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


class PageErrorMiddleware:
    """A refusal raised by a page's view (the admin's included), not only by the API's: an
    ApplicationError that escapes a view is answered with its status and message on the error
    page (a 503 with Retry-After when the audit trail cannot record a change) instead of a
    500. The API's views answer their own errors (the DRF exception handler)."""

    def __init__(self, get_response: GetResponse) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, ApplicationError):
            return error_answer(request, exception)
        return None
