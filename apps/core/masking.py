"""Masking of secrets and personal data in anything we write down: log records, audit
details, exports.

One module, used by all of them, so a rule added here protects every channel at once.
Two kinds of rule, each for secrets and for personal data (PII):
- by name: a value under a key that names a secret (password, token, api_key, authorization,
  signature, cookie, ...) is replaced whole by `[MASKED]`, whatever it looks like; a value under
  a key that names personal data (email, phone, ssn, national_id, passport, iban, address,
  date_of_birth, first_name, ...) by `[PII]` (None and booleans stay: they say nothing);
- by shape: anywhere in any string, JWTs, `bwk_` key secrets, bearer/basic credentials,
  `password=...`-style pairs and PEM private keys are masked, and so is personal data of a
  recognisable shape (apps.core.pii): e-mail addresses, phone numbers, payment cards
  (Luhn), IBANs (mod-97), US SSNs, UK NINOs, Spanish DNI/NIE; `email=...`-style pairs too.

Masking is idempotent: a string is masked until masking no longer changes it, so masked text
never holds something that masking would still take.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from apps.core import pii

MASK = "[MASKED]"
PII_MASK = "[PII]"
MAX_DEPTH = 64
# Masking a string again until it no longer changes ends in one pass for clean text, two for
# text with something masked; the bound only guards against a pathological input.
MAX_PASSES = 8

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
_MARKER = re.compile(r"\[[A-Z_]+\]")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


# Whole components of a key name that name personal data.
_PII_WORDS = frozenset(
    {
        "email",
        "emails",
        "phone",
        "phones",
        "telephone",
        "mobile",
        "msisdn",
        "ssn",
        "nino",
        "passport",
        "iban",
        "dob",
        "birthdate",
        "birthday",
        "surname",
        "postcode",
        "zipcode",
    }
)
# Multi-word names, matched as whole components of the underscore-joined form
# (`customerDateOfBirth` → customer_date_of_birth), so `syntax_id` is not a `tax_id`.
_PII_COMPOUNDS = (
    "e_mail",
    "phone_number",
    "national_id",
    "national_identity",
    "id_number",
    "identity_number",
    "social_security",
    "tax_id",
    "date_of_birth",
    "birth_date",
    "first_name",
    "last_name",
    "full_name",
    "given_name",
    "family_name",
    "maiden_name",
    "postal_code",
    "zip_code",
    "driving_licence",
    "driver_license",
    "drivers_license",
    "street_address",
    "home_address",
    "postal_address",
    "mailing_address",
    "billing_address",
    "shipping_address",
    "email_address",
)
# "address" alone or as the last word names a postal address unless a network word precedes
# it (ip_address, remote_address, mac_address stay readable: networks are not people).
_ADDRESS_NETWORK_WORDS = frozenset(
    {"ip", "ipv4", "ipv6", "remote", "client", "server", "mac", "bind", "listen", "peer", "host"}
)


def _normalized(name: str) -> str:
    return _NON_ALNUM.sub("_", _CAMEL.sub("_", name).lower()).strip("_")


def is_pii_key(name: object) -> bool:
    """Whether a mapping key names personal data (see the module docstring). A marker (a key
    that was itself masked, like `[EMAIL]`) names nothing: masking stays idempotent."""
    return isinstance(name, str) and _is_pii_name(name)


# Key names repeat (the same few in every event and log line): their verdicts are cached.
@lru_cache(maxsize=4096)
def _is_pii_name(name: str) -> bool:
    if _MARKER.fullmatch(name):
        return False
    normalized = _normalized(name)
    words = normalized.split("_")
    if any(word in _PII_WORDS for word in words):
        return True
    padded = f"_{normalized}_"
    if any(f"_{compound}_" in padded for compound in _PII_COMPOUNDS):
        return True
    if words[-1] in {"address", "addresses", "street"}:
        return not _ADDRESS_NETWORK_WORDS & set(words[:-1])
    return False


def is_secret_key(name: object) -> bool:
    """Whether a mapping key names a secret value."""
    return isinstance(name, str) and _is_secret_name(name)


@lru_cache(maxsize=4096)
def _is_secret_name(name: str) -> bool:
    normalized = _normalized(name)
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
# Personal data by name in text (`"date_of_birth": "1990-01-01"`, `phone=...`): the values
# with no shape of their own. Not "address" (mostly network addresses in our text).
_PII_NAME_RE = (
    r"(?:[a-z0-9]+[_-])*(?:e[_-]?mail|phone(?:[_-]?number)?|telephone|msisdn|ssn|nino|passport|"
    r"iban|dob|date[_-]of[_-]birth|birth[_-]?date|national[_-]id)(?:[_-][a-z0-9]+)*"
)
_PII_QUOTED_PAIR = re.compile(
    rf"(?i)\b({_PII_NAME_RE})([\"']?\s*[:=]\s*)([\"'])(?!\[\w+\]\3)((?:\\.|(?!\3).)*)\3"
)
_PII_PAIR = re.compile(rf"(?i)\b({_PII_NAME_RE})([\"']?\s*[:=]\s*)(?![\[\"'])([^\s&\"',;}}\]]+)")


# Cheap tests that let most text skip the costlier pair patterns (every audited request and
# every log line passes here): a pair needs a `:` or `=`, a PII pair one of these stems.
_PAIR_HINT = re.compile(r"[:=]")
_PII_NAME_HINT = re.compile(
    r"(?i)mail|phone|telephone|msisdn|ssn|nino|passport|iban|dob|birth|national"
)


def _mask_once(text: str) -> str:
    text = _PEM_PRIVATE.sub(MASK, text)
    text = _JWT.sub(MASK, text)
    text = _API_KEY.sub(rf"\1_{MASK}", text)
    text = _AUTH_SCHEME.sub(rf"\1 {MASK}", text)
    if _PAIR_HINT.search(text):
        text = _QUOTED_PAIR.sub(rf"\1\2\3{MASK}\3", text)
        text = _PAIR.sub(rf"\1\2{MASK}", text)
        if _PII_NAME_HINT.search(text):
            text = _PII_QUOTED_PAIR.sub(rf"\1\2\3{PII_MASK}\3", text)
            text = _PII_PAIR.sub(rf"\1\2{PII_MASK}", text)
    return pii.scrub(text)


def mask_text(text: str) -> str:
    """Replace every secret-shaped and PII-shaped substring of `text`. Never raises."""
    if not text:
        return text
    for _ in range(MAX_PASSES):
        masked = _mask_once(text)
        if masked == text:
            break
        text = masked
    return text


@dataclass(frozen=True)
class Public:
    """Wraps a value known to hold no secret, such as a published Ed25519 signature, so that
    masking passes it through whole. An explicit, greppable exception to the name rules."""

    value: Any


@lru_cache(maxsize=4096)
def _mask_key(key: str) -> str:
    return mask_text(key)


SHORT = 256  # short values (names, codes, actions) recur from call to call: remembered


@lru_cache(maxsize=4096)
def _mask_short(text: str) -> str:
    return mask_text(text)


def mask_field(name: object, value: Any, *, _depth: int = 0) -> Any:
    """`value` as it may be written under the key `name`: `[MASKED]` under a secret's name,
    `[PII]` under a personal datum's (None and booleans kept), else `mask(value)`."""
    if is_secret_key(name):
        return MASK
    if is_pii_key(name) and not (value is None or isinstance(value, bool | Public)):
        return PII_MASK
    return mask(value, _depth=_depth)


def mask(value: Any, *, _depth: int = 0) -> Any:
    """A copy of `value` (dicts, lists, tuples, strings, nested) with every secret and every
    personal datum masked, keys included (a key that masks to the same text as another one
    replaces it). Numbers, booleans and None pass through; anything else is masked as its
    string form. Never raises."""
    if _depth > MAX_DEPTH:
        return "[TOO_DEEP]"
    if isinstance(value, Public):
        return value.value
    if isinstance(value, str):
        return _mask_short(value) if len(value) <= SHORT else mask_text(value)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return {
            (_mask_key(key) if isinstance(key, str) else key): mask_field(
                key, item, _depth=_depth + 1
            )
            for key, item in value.items()
        }
    if isinstance(value, list | tuple | set | frozenset):
        return [mask(item, _depth=_depth + 1) for item in value]
    if isinstance(value, bytes):
        return mask_text(value.decode("utf-8", errors="replace"))
    return mask_text(str(value))
