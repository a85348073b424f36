"""Show a new key's secrets once, after a redirect (POST/redirect/GET), in the admin and in the
console alike.

The page that issues (or rotates) seals the secrets into the issuer's session under a random
one-time id and redirects to the page that shows them, whose URL carries that id and nothing
secret. That page takes them out of the session as it shows them: a reload finds nothing
(410 "Already shown") and issues nothing, since the POST is not repeated. The session never
holds a secret in the clear, only for REVEAL_SECONDS, and only until it is shown.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from datetime import datetime
from typing import Any

from django.http import HttpRequest

from apps.apikeys.services import IssuedKey
from apps.core.sealing import SealError, seal, unseal

REVEAL_PREFIX = "bulwark:issued-key:"
REVEAL_PURPOSE = "issued-key-reveal"
REVEAL_SECONDS = 600
# An id as reveal_store makes it (token_urlsafe(16): 22 characters of [A-Za-z0-9_-]).
_ID_LENGTH = 22


def _key(place: str, reveal: str) -> str:
    return f"{REVEAL_PREFIX}{place}:{reveal}"


def reveal_store(request: HttpRequest, issued: list[IssuedKey], *, place: str) -> str:
    """Seal the secrets of `issued` into the session for the page of `place` ("admin",
    "console"); returns the one-time id for that page's URL. Reveals left unshown past their
    time are dropped here, so a session never collects them."""
    now = time.time()
    stored = list(request.session.keys())  # a session has no __iter__
    for name in [name for name in stored if name.startswith(REVEAL_PREFIX)]:
        kept = request.session.get(name)
        if not isinstance(kept, dict) or now - kept.get("at", 0) >= REVEAL_SECONDS:
            del request.session[name]
    reveal = secrets.token_urlsafe(16)
    payload = [
        {
            "id": str(item.api_key.pk),
            "prefix": item.api_key.prefix,
            "name": item.api_key.name,
            "owner": item.api_key.owner.get_username(),
            "key": item.key,
            "signing_secret": item.signing_secret,
            "expires_at": item.api_key.expires_at.isoformat(),
        }
        for item in issued
    ]
    request.session[_key(place, reveal)] = {
        "sealed": seal(json.dumps(payload), purpose=REVEAL_PURPOSE),
        "at": now,
    }
    return reveal


def reveal_take(request: HttpRequest, reveal: str, *, place: str) -> list[dict[str, Any]]:
    """The secrets stored under `reveal` for `place`, taken out of the session: the first call
    gets them, every later one (or one with a made-up, expired or another session's id) an
    empty list."""
    if len(reveal) != _ID_LENGTH:
        return []
    kept = request.session.pop(_key(place, reveal), None)
    issued: list[dict[str, Any]] = []
    if isinstance(kept, dict) and time.time() - kept.get("at", 0) < REVEAL_SECONDS:
        with contextlib.suppress(SealError):  # sealed under a master key since retired
            issued = json.loads(unseal(kept["sealed"], purpose=REVEAL_PURPOSE))
    for item in issued:
        item["expires_at"] = datetime.fromisoformat(item["expires_at"])
    return issued
