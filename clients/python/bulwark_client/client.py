"""`Bulwark`: the HTTP API v1 (docs/api.md) from Python, over the standard library's urllib."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import IO, Any

from bulwark_client.errors import (
    BulwarkError,
    ConnectionFailed,
    TokenInvalid,
    error_from_response,
)
from bulwark_client.signing import signature_header

RETRY_STATUSES = frozenset({429, 503})
REFRESH_MARGIN = 10.0  # seconds: refresh an access token this long before it expires
CHUNK = 64 * 1024


def _cut_short(failed: OSError) -> ConnectionFailed:
    return ConnectionFailed(
        f"the answer was cut short: {failed}", code="connection_failed", status=0
    )


def _json_bytes(body: Any) -> bytes:
    try:
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
    except ValueError:
        raise ValueError(
            "the body holds NaN or Infinity, which JSON cannot carry (the server refuses them)"
        ) from None


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Redirects are not followed: urllib would resend the API key or token to wherever the
    Location points. A 3xx is raised as `BulwarkError` (code `http_3xx`): fix the URL."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


class _Response:
    def __init__(self, status: int, headers: Mapping[str, str], stream: Any) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self._stream = stream

    def read(self) -> bytes:
        try:
            return bytes(self._stream.read())
        except OSError as failed:
            raise _cut_short(failed) from None
        finally:
            self._stream.close()

    def chunks(self) -> Iterator[bytes]:
        try:
            while chunk := self._stream.read(CHUNK):
                yield bytes(chunk)
        except OSError as failed:
            raise _cut_short(failed) from None
        finally:
            self._stream.close()

    def json(self) -> Any:
        body = self.read()
        return json.loads(body) if body else None


class Bulwark:
    """A Bulwark server at `url` (e.g. "https://bulwark.example.com").

    `api_key` authenticates `predict` (the only call that accepts X-API-Key); when the key
    requires signed requests, give its `signing_secret` and every call is signed as the server
    verifies it. Operators sign in with `Bulwark.sign_in` for everything else (keys, audit).

    Retries: a 429 or 503 answer is retried after the server's Retry-After (or 1, 2, 4 ...
    seconds when it sent none), at most `max_retries` times and only while the waits add up to
    at most `max_wait` seconds; a Retry-After beyond what is left raises at once. No other
    status is retried, and neither is a failed connection (the server may have acted).
    """

    def __init__(
        self,
        url: str,
        api_key: str | None = None,
        signing_secret: str | Sequence[str] | None = None,
        *,
        timeout: float = 10,
        max_retries: int = 3,
        max_wait: float = 30.0,
        access_token: str | None = None,
        refresh_token: str | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("url must be http(s)://host[:port][/prefix]")
        self.url = url.rstrip("/")
        self.api_key = api_key
        self.signing_secret = signing_secret
        self.timeout = timeout
        self.max_retries = max_retries
        self.max_wait = max_wait
        self.access_token = access_token
        self.refresh_token = refresh_token
        self.access_expires_at: float | None = None
        self._sleep = sleep
        self._signed: dict[bytes, int] = {}  # request digest -> second it was signed in
        self.keys = Keys(self)
        self.audit = Audit(self)

    def __repr__(self) -> str:  # never the key, secret or tokens
        return f"Bulwark({self.url!r})"

    # --- People: JWT ------------------------------------------------------------------------

    @classmethod
    def sign_in(
        cls, url: str, username: str, password: str, otp: str | None = None, **options: Any
    ) -> Bulwark:
        """A client signed in as a person (`POST /api/v1/auth/token`). Raises
        InvalidCredentials, MfaRequired (give `otp`) or RateLimited."""
        client = cls(url, **options)
        client.login(username, password, otp)
        return client

    def login(self, username: str, password: str, otp: str | None = None) -> None:
        body: dict[str, Any] = {"username": username, "password": password}
        if otp is not None:
            body["otp"] = otp
        tokens = self._call("POST", "/api/v1/auth/token", body=body, auth=None).json()
        self._keep_tokens(tokens)

    def refresh(self) -> None:
        """Trade the refresh token for a new pair (the old refresh token dies)."""
        if not self.refresh_token:
            raise TokenInvalid("no refresh token: sign in again", code="token_invalid", status=401)
        tokens = self._call(
            "POST", "/api/v1/auth/token/refresh", body={"refresh": self.refresh_token}, auth=None
        ).json()
        self._keep_tokens(tokens)

    def sign_out(self) -> None:
        """Revoke the refresh token (and the access tokens issued from it)."""
        if self.refresh_token:
            self._call(
                "POST", "/api/v1/auth/token/revoke", body={"refresh": self.refresh_token}, auth=None
            ).read()
        self.access_token = self.refresh_token = self.access_expires_at = None

    def me(self) -> dict[str, Any]:
        result: dict[str, Any] = self.request("GET", "/api/v1/auth/me")
        return result

    def _keep_tokens(self, tokens: Mapping[str, Any]) -> None:
        self.access_token = str(tokens["access"])
        self.refresh_token = str(tokens.get("refresh") or self.refresh_token or "") or None
        lifetime = tokens.get("access_expires_in")
        self.access_expires_at = (
            time.monotonic() + float(lifetime) if isinstance(lifetime, int | float) else None
        )

    # --- Predict ----------------------------------------------------------------------------

    def predict(
        self, model: str, rows: Sequence[Mapping[str, Any]], version: int | None = None
    ) -> dict[str, Any]:
        """`POST /api/v1/models/{model}/predict[?version=n]` with `{"inputs": rows}`; the answer
        `{"model", "version", "predictions", "request_id", "privacy"?}`.

        Authenticated by the API key when one was given (signed when a signing secret was
        given), else by the signed-in person's access token. Retried only on 429 and 503:
        a 429 (rate limit, privacy budget) is refused before anything runs, and a 503 means
        a dependency or the model's runner failed and no prediction was returned; every
        other answer, and a connection that fails midway, is raised as it is, since the
        prediction may have been made (and audited, and its privacy budget spent). Each
        attempt is signed anew: the server accepts a signature once."""
        path = f"/api/v1/models/{urllib.parse.quote(model, safe='')}/predict"
        if version is not None:
            path += f"?version={int(version)}"
        result: dict[str, Any] = self._call(
            "POST", path, body={"inputs": list(rows)}, auth="key" if self.api_key else "bearer"
        ).json()
        return result

    # --- Plumbing ---------------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
    ) -> Any:
        """Any JSON call as the signed-in person: the decoded answer (None for 204)."""
        return self._call(method, path, body=body, query=query, auth="bearer").json()

    def _call(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        auth: str | None,
        accept: str = "application/json",
    ) -> _Response:
        if query:
            kept = {k: v for k, v in query.items() if v is not None}
            if kept:
                path += ("&" if "?" in path else "?") + urllib.parse.urlencode(kept)
        raw = b"" if body is None else _json_bytes(body)
        refreshed = False
        if auth == "bearer" and self._access_expired() and self.refresh_token:
            self.refresh()
            refreshed = True
        try:
            return self._with_retries(method, path, raw, auth, accept)
        except TokenInvalid:
            # An access token that expired or was ended: one refresh, one more try.
            if auth != "bearer" or refreshed or not self.refresh_token:
                raise
            self.refresh()
            return self._with_retries(method, path, raw, auth, accept)

    def _access_expired(self) -> bool:
        return (
            self.access_expires_at is not None
            and time.monotonic() >= self.access_expires_at - REFRESH_MARGIN
        )

    def _with_retries(
        self, method: str, path: str, raw: bytes, auth: str | None, accept: str
    ) -> _Response:
        waited = 0.0
        attempt = 0
        while True:
            response = self._send(method, path, raw, auth, accept)
            if 200 <= response.status < 300:
                return response
            error = error_from_response(response.status, response.read(), response.headers)
            if response.status not in RETRY_STATUSES or attempt >= self.max_retries:
                raise error
            delay = error.retry_after
            if delay is None:
                delay = float(2**attempt)
            if auth == "key" and self.signing_secret is not None:
                delay = max(delay, 1.0)  # a new second, so a new signature
            if waited + delay > self.max_wait:
                raise error
            self._sleep(delay)
            waited += delay
            attempt += 1

    def _headers(self, method: str, target: str, raw: bytes, auth: str | None) -> dict[str, str]:
        headers = {"User-Agent": "bulwark-client/0.1"}
        if raw:
            headers["Content-Type"] = "application/json"
        if auth == "key":
            if not self.api_key:
                raise ValueError("this call needs an API key")
            headers["X-API-Key"] = self.api_key
            if self.signing_secret is not None:
                timestamp = self._fresh_second(method, target, raw)
                headers["X-Signature"] = signature_header(
                    self.signing_secret, method, target, raw, timestamp=timestamp
                )
        elif auth == "bearer":
            if not self.access_token:
                raise ValueError("this call needs a signed-in person: use Bulwark.sign_in")
            headers["Authorization"] = f"Bearer {self.access_token}"
        return headers

    def _fresh_second(self, method: str, target: str, raw: bytes) -> int:
        """The timestamp to sign with. The server accepts a `(key, t, v1)` once, so the same
        request sent twice within one second would be refused as a replay: wait for the next
        second instead (only identical requests ever wait)."""
        digest = hashlib.sha256(f"{method} {target} ".encode() + raw).digest()
        now = int(time.time())
        if self._signed.get(digest) == now:
            while (current := time.time()) < now + 1:
                time.sleep(now + 1 - current)
            now = int(time.time())
        self._signed = {d: t for d, t in self._signed.items() if t >= now}
        self._signed[digest] = now
        return now

    def _send(self, method: str, path: str, raw: bytes, auth: str | None, accept: str) -> _Response:
        url = self.url + path
        target = urllib.parse.urlsplit(url)
        sent_path = target.path + (f"?{target.query}" if target.query else "")
        headers = self._headers(method, sent_path, raw, auth)
        headers["Accept"] = accept
        request = urllib.request.Request(  # noqa: S310  # the scheme is checked in __init__
            url, data=raw if method not in ("GET", "HEAD") else None, headers=headers, method=method
        )
        try:
            answer = _OPENER.open(request, timeout=self.timeout)
        except urllib.error.HTTPError as refused:
            return _Response(refused.code, dict(refused.headers.items()), refused)
        except (urllib.error.URLError, OSError) as failed:
            reason = getattr(failed, "reason", failed)
            raise ConnectionFailed(
                f"no answer from {self.url}: {reason}", code="connection_failed", status=0
            ) from None
        return _Response(answer.status, dict(answer.headers.items()), answer)


class Keys:
    """API keys (`/api/v1/api-keys`), as the signed-in person."""

    def __init__(self, client: Bulwark) -> None:
        self._client = client

    def create(
        self,
        name: str,
        scopes: Sequence[str],
        *,
        expires_in_days: int | None = None,
        rate_limit: str | None = None,
        require_signature: bool | None = None,
        allowed_ips: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """A new key for oneself. The answer holds `key` (and `signing_secret`) this once."""
        body: dict[str, Any] = {"name": name, "scopes": list(scopes)}
        optional = {
            "expires_in_days": expires_in_days,
            "rate_limit": rate_limit,
            "require_signature": require_signature,
            "allowed_ips": list(allowed_ips) if allowed_ips is not None else None,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        result: dict[str, Any] = self._client.request("POST", "/api/v1/api-keys", body=body)
        return result

    def list(self, cursor: str | None = None) -> dict[str, Any]:
        """One page `{"results": [...], "next": cursor | None}`; never a secret."""
        result: dict[str, Any] = self._client.request(
            "GET", "/api/v1/api-keys", query={"cursor": cursor}
        )
        return result

    def iterate(self) -> Iterator[dict[str, Any]]:
        """Every key, page after page."""
        cursor: str | None = None
        while True:
            page = self.list(cursor)
            yield from page["results"]
            cursor = page.get("next")
            if not cursor:
                return

    def rotate(self, key_id: str, grace_seconds: int | None = None) -> dict[str, Any]:
        """The new key object (with `key`, shown this once); the old one works for the grace."""
        body = {} if grace_seconds is None else {"grace_seconds": grace_seconds}
        result: dict[str, Any] = self._client.request(
            "POST", f"/api/v1/api-keys/{urllib.parse.quote(str(key_id), safe='')}/rotate", body=body
        )
        return result

    def revoke(self, key_id: str) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request(
            "POST", f"/api/v1/api-keys/{urllib.parse.quote(str(key_id), safe='')}/revoke", body={}
        )
        return result


class Audit:
    """The audit trail (`/api/v1/audit/...`): auditors, security officers, admins."""

    def __init__(self, client: Bulwark) -> None:
        self._client = client

    def public_key(self) -> str:
        """The PEM of the Ed25519 key that signs export manifests and checkpoints."""
        return str(self._client.request("GET", "/api/v1/audit/public-key")["public_key_pem"])

    def events(self, **filters: Any) -> dict[str, Any]:
        """One page of events; filters: since, until, action, actor, outcome, cursor."""
        result: dict[str, Any] = self._client.request("GET", "/api/v1/audit/events", query=filters)
        return result

    def verify(self) -> dict[str, Any]:
        result: dict[str, Any] = self._client.request("GET", "/api/v1/audit/verify")
        return result

    def export(
        self,
        to: IO[bytes] | None = None,
        *,
        since: str | None = None,
        until: str | None = None,
        format: str = "jsonl",
    ) -> bytes | None:
        """`GET /api/v1/audit/export` (recorded `audit.exported`). Streams into `to` when
        given (returns None), else returns the whole download. JSONL ends with the signed
        manifest: check it offline with `bulwark_client.verify.verify_export`."""
        accept = "text/csv" if format == "csv" else "application/x-ndjson"
        response = self._client._call(
            "GET",
            "/api/v1/audit/export",
            query={"since": since, "until": until, "format": format},
            auth="bearer",
            accept=f"{accept}, application/json",
        )
        if to is None:
            return response.read()
        for chunk in response.chunks():
            to.write(chunk)
        return None


__all__ = ["Audit", "Bulwark", "BulwarkError", "Keys"]
