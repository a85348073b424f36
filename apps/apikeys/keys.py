"""Key material: `bwk_<public id>_<secret>`. The public id finds the record; only a keyed hash
(HMAC-SHA256 under API_KEY_PEPPER) of the secret is stored, so a copy of the database alone
cannot be used to authenticate or to test guesses offline."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import string

from apps.core.secrets import get_secret

KEY_PREFIX = "bwk_"
PUBLIC_ID_LENGTH = 12
PUBLIC_ID_ALPHABET = string.ascii_lowercase + string.digits
PUBLIC_ID_PATTERN = rf"^[a-z0-9]{{{PUBLIC_ID_LENGTH}}}$"
SECRET_BYTES = 32  # 256 bits of entropy (docs/api.md: at least 256)
SECRET_LENGTH = 43  # len(token_urlsafe(32))

_KEY = re.compile(
    rf"^{KEY_PREFIX}([a-z0-9]{{{PUBLIC_ID_LENGTH}}})_([A-Za-z0-9_-]{{{SECRET_LENGTH}}})$"
)


def new_public_id() -> str:
    return "".join(secrets.choice(PUBLIC_ID_ALPHABET) for _ in range(PUBLIC_ID_LENGTH))


def new_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def format_key(public_id: str, secret: str) -> str:
    return f"{KEY_PREFIX}{public_id}_{secret}"


def parse_key(raw: str) -> tuple[str, str] | None:
    """(public id, secret) of a well-formed key, else None. The secret may contain `_`."""
    match = _KEY.match(raw)
    return (match.group(1), match.group(2)) if match else None


def pepper() -> bytes:
    return get_secret("API_KEY_PEPPER").encode()


def hash_secret(secret: str) -> str:
    return hmac.new(pepper(), secret.encode(), hashlib.sha256).hexdigest()


def secret_matches(secret: str, secret_hash: str) -> bool:
    # Constant-time: the time taken says nothing about how much of the hash matched.
    return hmac.compare_digest(hash_secret(secret), secret_hash)
