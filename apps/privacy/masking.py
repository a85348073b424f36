"""Masking of secrets in anything we write down: log records, audit details, exports.

One module, used by all of them, so a rule added here protects every channel at once.
Two kinds of rule:
- by name: a value under a key that names a secret (password, token, api_key, authorization,
  signature, cookie, ...) is replaced whole, whatever it looks like;
- by shape: anywhere in any string, JWTs, `bwk_` key secrets, bearer/basic credentials,
  `password=...`-style pairs, PEM private keys, e-mail addresses and card numbers
  (Luhn-checked) are replaced.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MASK = "[MASKED]"
MAX_DEPTH = 64

# Whole components of a key name (split on anything not a letter or digit) that name a secret.
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pwd",
        "secret",
        "secrets",
        "token",
        "tokens",
        "apikey",
        "authorization",
        "cookie",
        "cookies",
        "signature",
        "pepper",
        "otp",
        "credential",
        "credentials",
        "csrfmiddlewaretoken",
        "sessionid",
        "jwt",
    }
)
# Multi-word names, matched on the underscore-joined form (x-api-key → x_api_key).
_SECRET_COMPOUNDS = (
    "api_key",
    "private_key",
    "signing_key",
    "secret_key",
    "master_key",
    "data_key",
    "hmac_key",
    "access_key",
    "set_cookie",
)
# Names that are secrets on their own (token responses, key creation responses).
_SECRET_NAMES = frozenset({"key", "keys", "access", "refresh", "otp_token"})

_NON_ALNUM = re.compile(r"[^a-z0-9]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def is_secret_key(name: object) -> bool:
    """Whether a mapping key names a secret value."""
    if not isinstance(name, str):
        return False
    normalized = _NON_ALNUM.sub("_", _CAMEL.sub("_", name).lower()).strip("_")
    if normalized in _SECRET_NAMES:
        return True
    if any(word in _SECRET_WORDS for word in normalized.split("_")):
        return True
    return any(compound in normalized for compound in _SECRET_COMPOUNDS)


_PEM_PRIVATE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|$)", re.S
)
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*")
_API_KEY = re.compile(r"\b(bwk_[A-Za-z0-9]+)_[A-Za-z0-9_-]+")
_AUTH_SCHEME = re.compile(r"\b(Bearer|Basic|Token|Digest|ApiKey)\s+[A-Za-z0-9._~+/=:-]{4,}", re.I)
_SENSITIVE_NAME_RE = (
    r"(?:[a-z0-9]+[_-])*(?:password|passwd|passphrase|secret|token|api[_-]?key|apikey|"
    r"signature|authorization|pepper|otp|private[_-]?key|signing[_-]?key|cookie|sessionid)"
    r"(?:[_-][a-z0-9]+)*"
)
# `password: 'x y&z'` or `"token": "..."`: a quoted value is masked up to its closing quote.
_QUOTED_PAIR = re.compile(
    rf"(?i)\b({_SENSITIVE_NAME_RE})([\"']?\s*[:=]\s*)([\"'])(?!\[MASKED\]\3)((?:\\.|(?!\3).)*)\3"
)
# `password=x` in query strings, form bodies and free text: masked up to a delimiter.
_PAIR = re.compile(rf"(?i)\b({_SENSITIVE_NAME_RE})([\"']?\s*[:=]\s*)(?!\[MASKED)([^\s&\"',;}}]+)")
# Personal data too: an e-mail address names a person (API.md: people appear only as pseudonyms).
_EMAIL = re.compile(
    r"(?<![\w.+-])[\w.+-]{1,64}@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,24}\b"
)
_CARD = re.compile(r"(?<![\d-])(?:\d[ -]?){12,18}\d(?![\d-])")


def _luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _mask_card(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return "[MASKED_CARD]" if 13 <= len(digits) <= 19 and _luhn_valid(digits) else match.group(0)


def mask_text(text: str) -> str:
    """Replace every secret-shaped substring of `text`."""
    if not text:
        return text
    text = _PEM_PRIVATE.sub(MASK, text)
    text = _JWT.sub(MASK, text)
    text = _API_KEY.sub(rf"\1_{MASK}", text)
    text = _AUTH_SCHEME.sub(rf"\1 {MASK}", text)
    text = _QUOTED_PAIR.sub(rf"\1\2\3{MASK}\3", text)
    text = _PAIR.sub(rf"\1\2{MASK}", text)
    text = _EMAIL.sub("[EMAIL]", text)
    return _CARD.sub(_mask_card, text)


@dataclass(frozen=True)
class Public:
    """Wraps a value known to hold no secret, such as a published Ed25519 signature, so that
    masking passes it through whole. An explicit, greppable exception to the name rules."""

    value: Any


def mask(value: Any, *, _depth: int = 0) -> Any:
    """A copy of `value` (dicts, lists, tuples, strings, nested) with every secret masked.
    Numbers, booleans and None pass through; anything else is masked as its string form."""
    if _depth > MAX_DEPTH:
        return "[TOO_DEEP]"
    if isinstance(value, Public):
        return value.value
    if isinstance(value, str):
        return mask_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            key: (MASK if is_secret_key(key) else mask(item, _depth=_depth + 1))
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [mask(item, _depth=_depth + 1) for item in value]
    if isinstance(value, bytes):
        return mask_text(value.decode("utf-8", errors="replace"))
    return mask_text(str(value))
