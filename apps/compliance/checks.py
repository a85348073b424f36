"""Automated checks: each reads the live system (database, settings, secrets backend) and
answers pass or fail with one sentence of evidence.

A sentence names configuration, counts, key prefixes and model versions; never a secret's
value and never a person (people are counted, not named: the results reach reports).
A check that cannot run fails (fail closed), saying why in general terms.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.files.storage import default_storage
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from apps.accounts.selectors import privileged_users_without_mfa
from apps.apikeys.selectors import api_keys_live_count, api_keys_outliving, api_keys_unused_since
from apps.audit.selectors import events_since_count
from apps.audit.services import audit_chain_pending
from apps.audit.verification import audit_chain_verify
from apps.compliance.models import Category, ChecklistItem
from apps.core.env import parse_rate
from apps.core.secrets import REQUIRED_SECRETS, SecretMissing, get_secret
from apps.registry.envelope import MAGIC, master_keys_from_secrets
from apps.registry.selectors import model_versions_stored, production_versions_verified_since
from apps.serving.selectors import path_is_rate_limited_predict

logger = logging.getLogger("bulwark.compliance")

PRIVILEGED_ROLES = ("admin", "security_officer")
ACCESS_TOKEN_MAX = timedelta(minutes=15)
REFRESH_TOKEN_MAX = timedelta(days=1)
HSTS_MIN_SECONDS = 31_536_000  # one year: what HSTS preload lists require
API_KEY_MAX_LIFETIME = timedelta(days=365)  # docs/api.md: expires_in_days is 1..365
# Issue and creation times are taken microseconds apart; a key is not "too long" for that.
API_KEY_LIFETIME_SLACK = timedelta(hours=1)
API_KEY_UNUSED_DAYS = 90
# The checks' own events do not count as "the trail is receiving events".
OWN_ACTIONS = ("compliance.checks.completed", "compliance.check.regressed")


@dataclass(frozen=True)
class Outcome:
    passed: bool
    detail: str


@dataclass(frozen=True)
class Check:
    name: str
    title: str
    run: Callable[[], Outcome]


CHECKS: dict[str, Check] = {}


def check(name: str, title: str) -> Callable[[Callable[[], Outcome]], Callable[[], Outcome]]:
    def register(function: Callable[[], Outcome]) -> Callable[[], Outcome]:
        CHECKS[name] = Check(name, title, function)
        return function

    return register


def check_run(name: str) -> Outcome:
    """Run one check; an error inside it is a failure, never a pass."""
    try:
        return CHECKS[name].run()
    except Exception as exc:
        logger.exception("compliance check failed to run", extra={"check": name})
        return Outcome(
            False, f"The check could not run ({type(exc).__name__}), so it counts as failed."
        )


def _listing(names: Sequence[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _each(count: int, singular: str, *, start: bool = False) -> str:
    """'the one live API key' or 'each of the 3 live API keys' (capitalised at the start)."""
    text = f"the one {singular}" if count == 1 else f"each of the {count} {singular}s"
    return text[:1].upper() + text[1:] if start else text


def _duration(value: timedelta) -> str:
    minutes = int(value.total_seconds() // 60)
    if minutes % 1440 == 0:
        return _plural(minutes // 1440, "day")
    if minutes % 60 == 0:
        return _plural(minutes // 60, "hour")
    return _plural(minutes, "minute")


# --- Model security --------------------------------------------------------------------------


def _stored_as_ciphertext(name: str) -> bool:
    try:
        with default_storage.open(name, "rb") as handle:
            return bool(handle.read(len(MAGIC)) == MAGIC)
    except OSError:
        return False


@check("model_versions_encrypted", "Every model version encrypted under the current master key")
def model_versions_encrypted() -> Outcome:
    current_id = master_keys_from_secrets()[0][0]
    total, clear, stale = 0, [], []
    for version in model_versions_stored():
        total += 1
        label = f"{version.model.name} v{version.number}"
        if not bytes(version.wrapped_data_key) or not _stored_as_ciphertext(version.artifact):
            clear.append(label)
        elif version.master_key_id != current_id:
            stale.append(f"{label} ({version.master_key_id})")
    if total == 0:
        return Outcome(True, "No model version is registered, so none is stored unencrypted.")
    problems = []
    if clear:
        problems.append(
            f"{_listing(clear)} {'is' if len(clear) == 1 else 'are'} not stored as Bulwark "
            "ciphertext (or missing)"
        )
    if stale:
        problems.append(
            f"{_listing(stale)} {'is' if len(stale) == 1 else 'are'} wrapped under an older "
            f"master key than the current {current_id}: run rotate_master_key"
        )
    if problems:
        return Outcome(False, f"Of {_plural(total, 'model version')}, " + "; ".join(problems) + ".")
    subject = "The one model version is" if total == 1 else f"All {total} model versions are"
    return Outcome(
        True,
        f"{subject} stored encrypted, data keys wrapped under the current master key {current_id}.",
    )


@check("watermark_recent", "Watermark of every production version verified recently")
def watermark_recent() -> Outcome:
    days = settings.COMPLIANCE_WATERMARK_MAX_AGE_DAYS
    since = timezone.now() - timedelta(days=days)
    production = production_versions_verified_since(since)
    if not production:
        return Outcome(True, "No model version is in production, so none needs a watermark.")
    unmarked = [f"{v.model.name} v{v.number}" for v, _ in production if not v.watermark_sealed]
    unverified = [
        f"{v.model.name} v{v.number}"
        for v, verified in production
        if v.watermark_sealed and not verified
    ]
    problems = []
    if unmarked:
        problems.append(f"{_listing(unmarked)} carry no watermark set")
    if unverified:
        problems.append(
            f"{_listing(unverified)} had no successful watermark verification in the last "
            f"{_plural(days, 'day')}"
        )
    if problems:
        return Outcome(False, "In production, " + "; ".join(problems) + ".")
    return Outcome(
        True,
        f"The watermark of {_each(len(production), 'production version')} was verified "
        f"successfully in the last {_plural(days, 'day')}.",
    )


# --- Input security ---------------------------------------------------------------------------


@check("predict_rate_limit", "Rate limiting configured on predict")
def predict_rate_limit() -> Outcome:
    try:
        path = reverse("v1:predict", kwargs={"name": "model"})
    except NoReverseMatch:
        return Outcome(False, "No predict endpoint is routed, so its rate limit cannot apply.")
    if not path_is_rate_limited_predict(path):
        return Outcome(False, f"{path} is not served by the rate-limited predict view.")
    rate = getattr(settings, "PREDICT_USER_RATE_LIMIT", "") or ""
    if not rate:
        return Outcome(False, "PREDICT_USER_RATE_LIMIT is not set: JWT callers are unlimited.")
    try:
        parse_rate(rate)
    except ValueError:
        return Outcome(False, f"PREDICT_USER_RATE_LIMIT {rate!r} is not a rate like 60/m.")
    return Outcome(
        True,
        f"Predict ({path.replace('/model/', '/{name}/')}) is rate limited: {rate} per JWT "
        "user, and each API key at its own rate.",
    )


# --- Authentication ----------------------------------------------------------------------------


@check("jwt_lifetimes", "JWT lifetimes within policy")
def jwt_lifetimes() -> Outcome:
    access = settings.SIMPLE_JWT["ACCESS_TOKEN_LIFETIME"]
    refresh = settings.SIMPLE_JWT["REFRESH_TOKEN_LIFETIME"]
    problems = []
    if access > ACCESS_TOKEN_MAX:
        problems.append(f"access tokens live {_duration(access)} (policy: at most 15 minutes)")
    if refresh > REFRESH_TOKEN_MAX:
        problems.append(f"refresh tokens live {_duration(refresh)} (policy: at most 1 day)")
    if problems:
        return Outcome(False, "Too long: " + "; ".join(problems) + ".")
    return Outcome(
        True,
        f"Access tokens live {_duration(access)} and refresh tokens {_duration(refresh)}, "
        "within the policy of 15 minutes and 1 day.",
    )


@check("mfa_privileged", "MFA enforced for privileged roles")
def mfa_privileged() -> Outcome:
    required = set(settings.MFA_REQUIRED_ROLES)
    uncovered = [role for role in PRIVILEGED_ROLES if role not in required]
    if uncovered:
        return Outcome(
            False,
            f"MFA_REQUIRED_ROLES does not include {', '.join(uncovered)}, so members of "
            f"{'that role' if len(uncovered) == 1 else 'those roles'} may sign in without MFA.",
        )
    total, without = privileged_users_without_mfa(PRIVILEGED_ROLES)
    if without:
        return Outcome(
            False,
            f"{without} of {_plural(total, 'active privileged user')} (admin, security officer "
            "or superuser) have no confirmed TOTP device; the admin's user list shows who.",
        )
    holders = (
        "no active user holds them yet"
        if total == 0
        else f"{_each(total, 'active privileged user')} has a confirmed TOTP device"
    )
    return Outcome(True, f"MFA_REQUIRED_ROLES covers admin and security_officer, and {holders}.")


@check("api_keys_unused", "No API key unused for 90 days")
def api_keys_unused() -> Outcome:
    now = timezone.now()
    cutoff = now - timedelta(days=API_KEY_UNUSED_DAYS)
    prefixes = api_keys_unused_since(now=now, cutoff=cutoff)
    if prefixes:
        return Outcome(
            False,
            f"{_plural(len(prefixes), 'live API key')} went unused for {API_KEY_UNUSED_DAYS} "
            f"days or more; revoke or explain: {_listing(prefixes)}.",
        )
    count = api_keys_live_count(now=now)
    if count == 0:
        return Outcome(True, "No live API key exists, so none lies unused.")
    return Outcome(
        True,
        f"{_each(count, 'live API key', start=True)} was used (or issued) in the last "
        f"{API_KEY_UNUSED_DAYS} days.",
    )


# --- Secrets ------------------------------------------------------------------------------------


@check("api_keys_expiry", "Every API key expires")
def api_keys_expiry() -> Outcome:
    now = timezone.now()
    prefixes = api_keys_outliving(now=now, lifetime=API_KEY_MAX_LIFETIME + API_KEY_LIFETIME_SLACK)
    if prefixes:
        return Outcome(
            False,
            f"{_plural(len(prefixes), 'live API key')} {'has' if len(prefixes) == 1 else 'have'} "
            f"no expiry within 365 days of issue: {_listing(prefixes)}.",
        )
    count = api_keys_live_count(now=now)
    if count == 0:
        return Outcome(True, "No live API key exists, so none lacks an expiry.")
    return Outcome(
        True,
        f"{_each(count, 'live API key', start=True)} expires, none later than 365 days "
        "after issue.",
    )


@check("secrets_strength", "No default or short secrets")
def secrets_strength() -> Outcome:
    # Only names and the kind of problem are reported, never a value (the specs' sentences
    # name at most a master key's id).
    problems = []
    for spec in REQUIRED_SECRETS:
        try:
            value = get_secret(spec.name)
        except SecretMissing:
            problems.append(f"{spec.name} is not set")
            continue
        problem = spec.check(value)
        if problem is not None:
            problems.append(f"{spec.name} {problem}")
    if problems:
        return Outcome(False, "Weak secrets: " + "; ".join(problems) + ".")
    names = ", ".join(spec.name for spec in REQUIRED_SECRETS)
    return Outcome(
        True,
        f"All {len(REQUIRED_SECRETS)} required secrets ({names}) are set, long enough and "
        "neither defaults nor placeholders.",
    )


@check("secrets_vault", "Secrets backend is a vault in production")
def secrets_vault() -> Outcome:
    backend = settings.SECRETS_BACKEND
    if backend == "azure-keyvault":
        return Outcome(
            True, "Secrets are read from Azure Key Vault (SECRETS_BACKEND=azure-keyvault)."
        )
    if settings.BULWARK_ENV != "production":
        return Outcome(
            False,
            f"Not production: secrets come from the environment (SECRETS_BACKEND={backend}), "
            "which is meant for development only.",
        )
    return Outcome(
        False,
        f"Production reads its secrets from the environment (SECRETS_BACKEND={backend}), not "
        "a key vault; set SECRETS_BACKEND=azure-keyvault.",
    )


# --- Infrastructure ------------------------------------------------------------------------------


@check("https_production", "HTTPS settings on in production")
def https_production() -> Outcome:
    if settings.BULWARK_ENV != "production":
        return Outcome(
            False,
            f"Not production (BULWARK_ENV={settings.BULWARK_ENV}): HTTPS redirect, HSTS and "
            "secure cookies are only turned on in production.",
        )
    problems = []
    if not getattr(settings, "SECURE_SSL_REDIRECT", False):
        problems.append("SECURE_SSL_REDIRECT is off")
    hsts = int(getattr(settings, "SECURE_HSTS_SECONDS", 0) or 0)
    if hsts < HSTS_MIN_SECONDS:
        problems.append(f"HSTS max-age is {hsts} s, under one year")
    for name in ("SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE"):
        if not getattr(settings, name, False):
            problems.append(f"{name} is off")
    if problems:
        return Outcome(False, "In production, " + "; ".join(problems) + ".")
    return Outcome(
        True,
        f"Production redirects every request to HTTPS, sends HSTS for {hsts} s, and its "
        "session and CSRF cookies are secure-only.",
    )


# --- Monitoring and auditing --------------------------------------------------------------------


@check("audit_chain", "Audit chain verifies")
def audit_chain() -> Outcome:
    result = audit_chain_verify()
    if not result.ok:
        return Outcome(
            False, f"The audit chain breaks at seq {result.first_bad_seq}: {result.reason}."
        )
    return Outcome(
        True,
        f"The audit chain verifies: {_plural(result.checked, 'event')}, every link and hash "
        f"intact, head {result.head[:16]}.",
    )


@check("audit_recent_events", "Audit events in the last 24 hours")
def audit_recent_events() -> Outcome:
    audit_chain_pending(wait=True)
    count = events_since_count(since=timezone.now() - timedelta(hours=24), excluding=OWN_ACTIONS)
    if count == 0:
        return Outcome(
            False,
            "No audit event was recorded in the last 24 hours: nothing is reaching the trail, "
            "or nothing is happening.",
        )
    return Outcome(True, f"{_plural(count, 'audit event')} recorded in the last 24 hours.")


@check("incident_plan_owners", "Incident response plan phases have owners")
def incident_plan_owners() -> Outcome:
    phases = list(
        ChecklistItem.objects.filter(category=Category.INCIDENT_RESPONSE).select_related("owner")
    )
    if not phases:
        return Outcome(False, "The checklist holds no incident-response phase.")
    missing = [item.title for item in phases if item.owner is None or not item.owner.is_active]
    if missing:
        return Outcome(
            False,
            f"{len(missing)} of the {len(phases)} incident-response phases have no active "
            f"owner: {_listing(missing)}.",
        )
    return Outcome(True, f"Each of the {len(phases)} incident-response phases has an owner.")
