"""The console's key pages under /keys/ (docs/api.md "API keys": people do here what the API
does), for those who manage every key (`apikeys.manage_all`: admins, security officers): the
list, the issue form, a key's page, the confirmations of rotate and revoke, and the page that
shows a new key once.

Server-rendered; every action a plain POST form, working with JavaScript off. Each change is
one call of apps.apikeys.services, so it is checked and audited as through the API. A new
key's secrets are shown once, after a redirect (apps.apikeys.reveal): the URL carries no
secret, a reload of that page answers 410 "Already shown" and issues nothing, and no other
page ever shows them. The issue form carries a one-time id: the same form sent twice issues
one key. A refusal is a page with the service's status and message (403, 404, 409; 400 on a
form).
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from django.contrib import messages
from django.core.cache import cache
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from apps.accounts.web_access import error_page, ui_view
from apps.apikeys.forms import ApiKeyIssueForm
from apps.apikeys.keys import KEY_PREFIX
from apps.apikeys.reveal import reveal_store, reveal_take
from apps.apikeys.selectors import (
    KEY_STATUS_LABELS,
    api_key_get,
    api_key_rotation_links,
    api_key_rotation_refusal,
    api_key_search,
)
from apps.apikeys.services import api_key_issue_for, api_key_revoke, api_key_rotate_for_owner
from apps.apikeys.validation import owner_refusal
from apps.console.keys_forms import STATE_LABELS, KeyFilterForm, RevokeForm, RotateForm
from apps.console.selectors import KEYS_HORIZON
from apps.core.errors import ApplicationError, Conflict, InvalidInput, NotFound
from apps.core.pasted_keys import key_cut

if TYPE_CHECKING:
    from apps.apikeys.models import ApiKey

MANAGE = "apikeys.manage_all"
ACTIVE, REVOKED = "active", "revoked"  # two of a key's statuses (ApiKey.status_at)
HOME = "keys-list"
PAGE_SIZE = 50
SCOPES_SHOWN = 3  # in the list; the key's page shows them all
TEMPLATES = "console/keys/"
PLACE = "console"  # the reveal's place (apps.apikeys.reveal)
# The issue form's one-time ids, in the session: `<prefix><id>` → when the form was shown.
FORM_PREFIX = "bulwark:key-form:"
FORM_SECONDS = 3600
FORMS_KEPT = 20
CLAIM_PREFIX = "bulwark:key-form-claimed:"
ALREADY_SENT = (
    "This form was already sent, or has expired: nothing was issued now. "
    "Check the list of keys before issuing again."
)
logger = logging.getLogger("bulwark.console")


def _sentence(text: str) -> str:
    if not text.startswith(KEY_PREFIX):  # a key's prefix is written as it is
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _key(request: HttpRequest, key_id: str) -> ApiKey:
    """The key, or NotFound (absent and malformed ids alike)."""
    try:
        parsed = uuid.UUID(key_id)
    except ValueError:
        raise NotFound("No API key with this id.") from None
    return api_key_get(actor=request.user, key_id=parsed)


# --- the list ----------------------------------------------------------------------------


def _when(moment: datetime | None, *, with_time: bool = False) -> dict[str, str] | None:
    """A time as the list shows it: the day (and minute), ISO 8601 for <time>, and in full."""
    if moment is None:
        return None
    moment = moment.astimezone(UTC)
    return {
        "iso": moment.isoformat(),
        "full": moment.strftime("%Y-%m-%d %H:%M UTC"),
        "shown": moment.strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d"),
    }


@require_GET
@ui_view(MANAGE, home=HOME)
def key_list_page(request: HttpRequest) -> HttpResponse:
    # A whole key pasted into a filter would be echoed in the page and kept in the URL
    # (history, proxy logs): filter by its prefix instead, at a URL without the secret.
    # (A key pasted into the owner box is moved to the key box.)
    query, pasted = request.GET.copy(), False
    for name in ("key", "owner"):
        prefix = key_cut(query.get(name, "").strip())
        if prefix:
            query.pop(name)
            query["key"], pasted = prefix, True
    if pasted:
        return HttpResponseRedirect(f"{request.path}?{query.urlencode()}")
    form = KeyFilterForm(request.GET)
    filters = form.filters()
    now = timezone.now()
    error, status = None, 200
    try:
        keys = api_key_search(
            actor=request.user,
            now=now,
            owner=filters["owner"],
            state=filters["state"],
            key=filters["key"],
            expiring_days=KEYS_HORIZON.days,
        )
    except InvalidInput as exc:
        error, status = _sentence(exc.message), exc.status_code
        filters = {**filters, "state": ""}
        keys = api_key_search(
            actor=request.user, now=now, owner=filters["owner"], key=filters["key"]
        )
    page = Paginator(keys, PAGE_SIZE).get_page(request.GET.get("page"))
    horizon = now + KEYS_HORIZON
    home = reverse(HOME)  # a key's page is `<home><id>` (keys_urls): one reverse, not fifty
    rows = []
    for api_key in page:
        state = api_key.status_at(now)
        rows.append(
            {
                "key": api_key,
                "url": f"{home}{api_key.pk}",
                "state": state,
                "state_label": KEY_STATUS_LABELS[state],
                "expiring": state == ACTIVE and api_key.expires_at <= horizon,
                # Dates written here, not by the template's date filter (a fifth of the
                # page's time for 50 rows); every time is UTC (settings.TIME_ZONE).
                "created": _when(api_key.created_at),
                "last_used": _when(api_key.last_used_at, with_time=True),
                "expires": _when(api_key.expires_at),
                "scopes": api_key.scopes[:SCOPES_SHOWN],
                "more_scopes": max(len(api_key.scopes) - SCOPES_SHOWN, 0),
            }
        )
    keep = request.GET.copy()
    keep.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "rows": rows,
        "error": error,
        "filtered": any(filters.values()),
        "state_label": STATE_LABELS.get(filters["state"], ""),
        "querystring": keep.urlencode(),
        "horizon_days": KEYS_HORIZON.days,
    }
    return render(request, TEMPLATES + "list.html", context, status=status)


# --- issuing -----------------------------------------------------------------------------


def _form_id(request: HttpRequest) -> str:
    """A new one-time id for an issue form, kept in the session (the oldest dropped)."""
    now = time.time()
    names = [name for name in list(request.session.keys()) if name.startswith(FORM_PREFIX)]
    kept = sorted(((request.session[name], name) for name in names), reverse=True)
    stale = [name for _, name in kept[FORMS_KEPT - 1 :]]
    stale += [name for at, name in kept if now - at >= FORM_SECONDS]
    for name in stale:
        request.session.pop(name, None)
    form_id = secrets.token_urlsafe(16)
    request.session[FORM_PREFIX + form_id] = now
    return form_id


def _form_id_known(request: HttpRequest, form_id: str) -> bool:
    at = request.session.get(FORM_PREFIX + form_id) if form_id else None
    return isinstance(at, float | int) and time.time() - at < FORM_SECONDS


def _form_id_claim(form_id: str) -> bool:
    """Whether this request is the first to issue with the form `form_id`. The session says
    which forms were shown, but two requests sent at once (a double click) both read it before
    either saves: the claim is one atomic add in the shared cache (Redis). Without the cache
    the session's check stands alone (a duplicate key is the worst it lets through)."""
    try:
        return bool(cache.add(CLAIM_PREFIX + form_id, 1, timeout=FORM_SECONDS))
    except Exception:  # the cache is down: said in the log, the session still checks
        logger.warning("key form claim skipped: cache unavailable", exc_info=True)
        return True


def _form_id_release(form_id: str) -> None:
    with contextlib.suppress(Exception):
        cache.delete(CLAIM_PREFIX + form_id)


@require_http_methods(["GET", "POST"])
@ui_view(MANAGE, home=HOME)
def key_new_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    if request.method != "POST":
        form = ApiKeyIssueForm(
            actor=user,
            initial={"owner": request.GET.get("owner", "")[:150], "once": _form_id(request)},
        )
        return render(request, TEMPLATES + "new.html", {"form": form})
    form = ApiKeyIssueForm(request.POST, actor=user)
    form_id = str(request.POST.get("once", ""))
    if not _form_id_known(request, form_id):
        # Sent before (a double click, a replayed request) or never shown by this session.
        return error_page(request, Conflict(ALREADY_SENT))
    if form.is_valid():
        data = form.cleaned_data
        if not _form_id_claim(form_id):
            return error_page(request, Conflict(ALREADY_SENT))
        try:
            issued = api_key_issue_for(
                actor=user,
                owner=data["owner"],
                name=data["name"],
                scopes=data["scopes"],
                expires_in_days=data["expires_in_days"],
                rate_limit=data["rate_limit"],
                require_signature=data["require_signature"],
                allowed_ips=data["allowed_ips"],
            )
        except ApplicationError as exc:
            _form_id_release(form_id)  # nothing issued: the corrected form may be sent
            field = exc.details[0]["path"].split("/")[0] if exc.details else None
            message = exc.details[0]["message"] if exc.details else exc.message
            form.add_error(field if field in form.fields else None, _sentence(message))
        else:
            request.session.pop(FORM_PREFIX + form_id, None)
            reveal = reveal_store(request, [issued], place=PLACE)
            return HttpResponseRedirect(reverse("keys-issued", args=[reveal]), status=303)
    return render(request, TEMPLATES + "new.html", {"form": form}, status=400)


@require_GET
@ui_view(MANAGE, home=HOME)
def key_issued_page(request: HttpRequest, reveal: str) -> HttpResponse:
    """The secrets of one issue or rotation, once (ui_view adds no-store: no copy in any cache
    or in the browser's history)."""
    issued = reveal_take(request, reveal, place=PLACE)
    return render(
        request,
        TEMPLATES + "issued.html",
        {"issued": issued},
        status=200 if issued else 410,
    )


# --- one key -----------------------------------------------------------------------------


def _refusal(user: Any, api_key: ApiKey, action: str) -> tuple[str, int]:
    """What the service would refuse now and with which status, said before anyone tries
    (the POST decides); ("", 200) when nothing would be."""
    status = api_key.status
    if action == "revoke" and status == REVOKED:
        return f"{api_key.prefix} is already revoked.", 409
    if action == "rotate":
        if status != ACTIVE:
            return f"{api_key.prefix} is {status}; only an active key can be rotated.", 409
        # A person's key is rotated only by its owner: the new secret is theirs alone.
        refusal = api_key_rotation_refusal(actor=user, api_key=api_key)
        if refusal:
            return refusal, 403
    return "", 200


@require_GET
@ui_view(MANAGE, home=HOME)
def key_detail_page(request: HttpRequest, key_id: str) -> HttpResponse:
    try:
        api_key = _key(request, key_id)
    except NotFound as exc:
        return error_page(request, exc)
    now = timezone.now()
    status = api_key.status_at(now)
    rotated_from, rotated_to = api_key_rotation_links(api_key)
    rotate_refusal = _refusal(request.user, api_key, "rotate")[0]
    context = {
        "key": api_key,
        "state": status,
        "state_label": KEY_STATUS_LABELS[status],
        "expiring": status == ACTIVE and api_key.expires_at <= now + KEYS_HORIZON,
        "rotated_from": rotated_from,
        "rotated_to": rotated_to,
        "can_rotate": not rotate_refusal,
        "rotate_refusal": rotate_refusal if status == ACTIVE else "",
        "can_revoke": not _refusal(request.user, api_key, "revoke")[0],
        # A new key for the owner is this page's to offer only when this person may issue it.
        "can_issue_for_owner": api_key.owner_id == request.user.pk
        or owner_refusal(api_key.owner) is None,
    }
    return render(request, TEMPLATES + "detail.html", context)


def _confirm(
    request: HttpRequest,
    api_key: ApiKey,
    action: str,
    form: RotateForm | RevokeForm,
    *,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    refusal, refusal_status = _refusal(request.user, api_key, action)
    return render(
        request,
        TEMPLATES + "confirm.html",
        {
            "key": api_key,
            "action": action,
            "form": form,
            "error": error or refusal,
            "refused": bool(refusal),
        },
        status=status if error else refusal_status,
    )


@require_http_methods(["GET", "POST"])
@ui_view(MANAGE, home=HOME)
def key_rotate_page(request: HttpRequest, key_id: str) -> HttpResponse:
    """GET: what a rotation will do. POST (from that page): rotate, then show the new key
    once. Sent again, the POST finds the key rotating: 409, nothing issued."""
    try:
        api_key = _key(request, key_id)
    except NotFound as exc:
        return error_page(request, exc)
    if request.method != "POST":
        return _confirm(request, api_key, "rotate", RotateForm(auto_id="rotate_%s"))
    form = RotateForm(request.POST, auto_id="rotate_%s")
    if not form.is_valid():
        return _confirm(
            request, api_key, "rotate", form, error="Choose how long the old key keeps working.",
            status=400,
        )  # fmt: skip
    try:
        issued = api_key_rotate_for_owner(
            actor=request.user,
            api_key=api_key,
            grace_seconds=form.cleaned_data["grace_seconds"],
        )
    except ApplicationError as exc:
        api_key.refresh_from_db()
        return _confirm(
            request, api_key, "rotate", form, error=_sentence(exc.message),
            status=exc.status_code,
        )  # fmt: skip
    reveal = reveal_store(request, [issued], place=PLACE)
    return HttpResponseRedirect(reverse("keys-issued", args=[reveal]), status=303)


@require_http_methods(["GET", "POST"])
@ui_view(MANAGE, home=HOME)
def key_revoke_page(request: HttpRequest, key_id: str) -> HttpResponse:
    """GET: what a revocation will do. POST (from that page): revoke, then back to the key's
    page. Sent again, the POST finds the key revoked: 409, said plainly."""
    try:
        api_key = _key(request, key_id)
    except NotFound as exc:
        return error_page(request, exc)
    if request.method != "POST":
        return _confirm(request, api_key, "revoke", RevokeForm(auto_id="revoke_%s"))
    form = RevokeForm(request.POST, auto_id="revoke_%s")
    if not form.is_valid():
        return _confirm(
            request, api_key, "revoke", form, error="A reason is at most 500 characters.",
            status=400,
        )  # fmt: skip
    try:
        api_key_revoke(
            actor=request.user,
            api_key=api_key,
            reason=form.cleaned_data["reason"].strip() or "console",
        )
    except ApplicationError as exc:
        api_key.refresh_from_db()
        return _confirm(
            request, api_key, "revoke", form, error=_sentence(exc.message),
            status=exc.status_code,
        )  # fmt: skip
    messages.success(request, f"Revoked {api_key.prefix}: it is refused from its next request on.")
    return HttpResponseRedirect(reverse("keys-detail", args=[api_key.pk]), status=303)
