"""The audit pages (server-rendered, every action a plain form: no JavaScript needed).

Everyone who holds `audit.read` (admins, security officers, auditors) reads the events, one
event with its hash links, the chain's state and checkpoints, runs a bounded verification,
downloads exports and verifies one by upload: none of that changes anything but the trail
itself (an export is `audit.exported`). Learning who is behind a pseudonym, from the lookup
or the list's search by username (POSTs; a GET never looks anyone up), is for holders of
`audit.identify` (admins, security officers and auditors, who must follow a person through
the trail); each such lookup is itself an event (`audit.pseudonym_lookup`, naming the
pseudonym, never the username), and anyone else's attempt is refused with the 403 page and
recorded as denied. Those pages and the export's download need a session verified with an
authenticator, whatever the role (ui_view's mfa=True): a reader without one is sent to enrol.

Every read is bounded: a keyset page (no count over a million rows), each filter served by an
index (apps/audit/migrations/0004_console_filter_indexes.py), a verification capped at
VERIFY_RECENT_MAX events, an upload capped at VERIFY_UPLOAD_MAX bytes before it is read.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from itertools import chain
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.http import (
    HttpRequest,
    HttpResponse,
    HttpResponseRedirect,
    QueryDict,
    StreamingHttpResponse,
)
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.web_access import error_page, ui_view
from apps.audit.selectors import (
    FILTER_VALUE_MAX,
    VERIFY_RECENT_MAX,
    EventPage,
    chain_overview,
    chain_verify_recent,
    checkpoint_page,
    event_detail,
    event_page,
    export_check,
    export_stream,
    public_key,
)
from apps.audit.services import (
    DEPSEUDONYMISE,
    PSEUDONYM_SHAPE,
    audit_export_begin,
    pseudonym_lookup,
)
from apps.console.audit_forms import (
    EventFilterForm,
    ExportForm,
    PseudonymLookupForm,
    UsernameSearchForm,
    VerifyUploadForm,
    utc_text,
)
from apps.core.errors import (
    ApplicationError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
)
from apps.core.pasted_keys import key_cut, pasted_key_redirect
from apps.core.permissions import may

READ = "audit.read"
PAGE_SIZE = 50
CHECKPOINTS_PAGE = 20
# An export uploaded for verification is read whole (about 2,000 events a megabyte); larger
# ones are checked offline with `manage.py audit_verify_export`, which streams.
VERIFY_UPLOAD_MAX = 32 * 1024 * 1024
ACTIONS = (
    "admin.action", "admin.add", "admin.change", "admin.delete", "apikey.created",
    "apikey.expired", "apikey.rejected", "apikey.revoked", "apikey.rotated",
    "audit.exported", "audit.hmac_key.rotated", "audit.pseudonym_lookup",
    "auth.mfa.confirmed", "auth.session.ended", "auth.session.failed", "auth.session.started",
    "auth.token.failed", "auth.token.issued", "auth.token.revoked",
    "compliance.checks.completed", "compliance.item.updated", "incident.containment",
    "incident.created", "incident.transitioned", "masterkey.rotated", "model.created",
    "model.version.created", "model.version.quarantined", "model.version.staged",
    "predict.rejected", "predict.succeeded", "privacy.erasure", "privacy.subject_access",
    "user.created", "user.credentials_revoked", "user.deactivated",
)  # fmt: skip
NO_PSEUDONYM_LOOKUP = (
    "Only admins, security officers and auditors may learn who is behind a pseudonym, or a "
    "person's pseudonym (they hold audit.identify); each lookup is recorded in the audit trail."
)


def _seq(value: str | None, name: str) -> int | None:
    if value in (None, ""):
        return None
    if not value.isdigit() or len(value) > 18:
        raise InvalidInput(f"“{name}” must be an event number.")
    return int(value)


def _literal_actor(value: str) -> bool:
    """An actor reference as events write it: a pseudonym, an API key's prefix, or anything
    written with a leading "=" (a system component's name, taken as it is)."""
    return bool(PSEUDONYM_SHAPE.match(value)) or value.startswith("bwk_")


def _actor_for(request: HttpRequest, value: str) -> tuple[str | None, HttpResponse | None]:
    """The actor reference to filter on. A GET never looks anyone up (a link on another site
    could make a signed-in reader record a lookup): a username typed here is matched as the
    literal reference it would be, and the page points to the search by username, a POST
    (audit_search_page)."""
    if not value or _literal_actor(value):
        return value, None
    if value.startswith("="):
        return value[1:], None
    if not may(request.user, DEPSEUDONYMISE):
        messages.info(
            request,
            f"Searching by username is for admins, security officers and auditors: “{value}” was "
            "matched as an actor reference (a pseudonym, a key prefix or a system name).",
        )
        return value, None
    messages.info(
        request,
        f"“{value}” was matched as an actor reference (a pseudonym, a key prefix or a system "
        "name), not looked up: an address never looks a person up. To see a person's events, "
        "use “Search by username” below (the lookup is recorded in the audit trail).",
    )
    return value, None


SEARCH_KEPT = ("action", "outcome", "target", "request_id", "since", "until")


def _search_kept(data: QueryDict) -> dict[str, str]:
    """The list's other filters, carried through the search (the list checks them again)."""
    return {name: str(data.get(name))[:FILTER_VALUE_MAX] for name in SEARCH_KEPT if data.get(name)}


@require_POST
@ui_view(READ, home="audit-list", mfa=True)
def audit_search_page(request: HttpRequest) -> HttpResponse:
    """The list's search by username: a POST (CSRF-checked, never a link), one audited lookup,
    then 303 to the list filtered by the pseudonym (and the other filters kept), so that the
    address, a reload and the next page hold the pseudonym, never the username."""
    # A whole key pasted in goes on to the list's address cut to its prefix, as there.
    kept = {name: key_cut(value) or value for name, value in _search_kept(request.POST).items()}
    form = UsernameSearchForm(request.POST)
    if not form.is_valid():
        if not may(request.user, DEPSEUDONYMISE):
            return error_page(request, _refused())
        return error_page(request, InvalidInput(str(form.errors["username"][0])))
    value = form.cleaned_data["username"].strip()
    value = key_cut(value) or value
    if _literal_actor(value) or value.startswith("="):  # already a reference: nothing to learn
        return _to_list({**kept, "actor": value})
    try:
        found = pseudonym_lookup(actor=request.user, username=value, via="filter")
    except ApplicationError as exc:
        return error_page(request, _refused() if exc.status_code == 403 else exc)
    recorded = "(This lookup is recorded in the audit trail.)"
    if found.pseudonym is not None:
        messages.success(request, f"{value} is {found.pseudonym}: showing their events. {recorded}")
        return _to_list({**kept, "actor": found.pseudonym})
    if found.known_user:
        messages.info(
            request,
            f"{value} has no pseudonym: they have not appeared in the audit trail, so no event "
            f"names them (the list is not filtered by actor). {recorded}",
        )
    else:
        messages.info(
            request,
            f"No user is named {value} (the list is not filtered by actor); a system "
            f"component's name goes in the actor filter as ={value}. {recorded}",
        )
    return _to_list(kept)


def _to_list(query: dict[str, str]) -> HttpResponse:
    address = reverse("audit-list") + (f"?{urlencode(query)}" if query else "")
    response = HttpResponseRedirect(address)
    response.status_code = 303  # the POST's answer is to GET the list
    return response


def _username_typed(value: str) -> str:
    """The actor filter's value when it is no actor reference (maybe a username): what the
    search by username offers to look up, on a click that POSTs."""
    value = value.strip()[:FILTER_VALUE_MAX]
    return "" if not value or _literal_actor(value) or value.startswith("=") else value


def _summary(details: dict[str, Any]) -> str:
    text = json.dumps(details, ensure_ascii=False, sort_keys=True, separators=(", ", ": "))
    return text if len(text) <= 90 else text[:89] + "…"


def _row(event: dict[str, Any]) -> dict[str, Any]:
    target = event.get("target") or {}
    return {
        **event,
        "ts_text": event["ts"][:19].replace("T", " "),
        "target_text": f"{target.get('type')}:{target.get('id')}" if target.get("id") else "",
        "details_text": _summary(event.get("details") or {}),
    }


def _query_without(query: QueryDict, *names: str) -> str:
    kept = query.copy()
    for name in names:
        kept.pop(name, None)
    return kept.urlencode()


@require_GET
@ui_view(READ, home="audit-list")
def audit_list_page(request: HttpRequest) -> HttpResponse:
    # A whole API key pasted into a filter (actor, target…) would be echoed in the page and
    # kept in the URL: the same query again, the key cut to its prefix (an actor or target
    # reference is the prefix anyway).
    pasted = pasted_key_redirect(request)
    if pasted is not None:
        return pasted
    form = EventFilterForm(request.GET)
    status, page, invalid = 200, None, False
    try:
        before = _seq(request.GET.get("before"), "before")
        after = _seq(request.GET.get("after"), "after")
    except InvalidInput as exc:
        form.is_valid()
        return _list(request, form, None, error=exc.message, status=exc.status_code)
    if not form.is_valid():
        invalid, status = True, 400
    else:
        actor, redirect = _actor_for(request, form.cleaned_data["actor"].strip())
        if redirect is not None:
            return redirect
        try:
            page = (
                EventPage([], None, None)
                if actor is None
                else event_page(
                    form.filters(actor=actor), before=before, after=after, limit=PAGE_SIZE
                )
            )
        except ApplicationError as exc:
            return _list(request, form, None, error=exc.message, status=exc.status_code)
    return _list(request, form, page, invalid=invalid, status=status)


def _list(
    request: HttpRequest,
    form: EventFilterForm,
    page: Any,
    *,
    error: str | None = None,
    invalid: bool = False,
    status: int = 200,
) -> HttpResponse:
    query = _query_without(request.GET, "before", "after")
    filtered = any(
        request.GET.get(name)
        for name in ("action", "outcome", "actor", "target", "request_id", "since", "until")
    )
    since = form.cleaned_data.get("since") if form.is_bound and not invalid else None
    until = form.cleaned_data.get("until") if form.is_bound and not invalid else None
    export_query = urlencode(
        {name: utc_text(value) for name, value in (("since", since), ("until", until)) if value}
    )
    context = {
        "form": form,
        "page": page,
        "rows": [_row(event) for event in page.events] if page else [],
        "query": query,
        "filtered": filtered,
        "error": error or ("Not filtered: correct the fields marked below." if invalid else None),
        "actions": ACTIONS,
        "can_lookup": may(request.user, DEPSEUDONYMISE),
        "export_query": export_query,
        "search_kept": _search_kept(request.GET).items(),
        "search_username": _username_typed(request.GET.get("actor", "")),
    }
    return render(request, "console/audit/list.html", context, status=status)


@require_GET
@ui_view(READ, home="audit-list")
def audit_event_page(request: HttpRequest, seq: int) -> HttpResponse:
    detail = event_detail(seq)
    if detail is None:
        return error_page(request, NotFound(f"No audit event #{seq}: the chain has no such seq."))
    event = detail.event
    target_id = (event.get("target") or {}).get("id") or ""
    context = {
        "detail": detail,
        "event": _row(event),
        "details_json": json.dumps(event.get("details") or {}, indent=2, ensure_ascii=False),
        "genesis": event["seq"] == 1,
        "can_lookup": may(request.user, DEPSEUDONYMISE),
        "actor_is_person": bool(PSEUDONYM_SHAPE.match(event["actor"]["ref"] or "")),
        "target_is_person": bool(PSEUDONYM_SHAPE.match(target_id)),
    }
    return render(request, "console/audit/event.html", context)


# --- the chain -------------------------------------------------------------------------


def _chain(request: HttpRequest, *, check: Any = None, status: int = 200) -> HttpResponse:
    try:
        before = _seq(request.GET.get("before"), "before")
    except InvalidInput as exc:
        return error_page(request, exc)
    checkpoints, older = checkpoint_page(before=before, limit=CHECKPOINTS_PAGE)
    overview = chain_overview()
    context = {
        "overview": overview,
        "unverified": max(overview.head_seq - overview.verified_seq, 0)
        if overview.verified_at
        else 0,
        "verify_max": f"{VERIFY_RECENT_MAX:,}",
        "can_lookup": may(request.user, DEPSEUDONYMISE),
        "checkpoints": checkpoints,
        "older": older,
        "paged": before is not None,
        "check": check,
    }
    return render(request, "console/audit/chain.html", context, status=status)


@require_GET
@ui_view(READ, home="audit-chain")
def audit_chain_page(request: HttpRequest) -> HttpResponse:
    return _chain(request)


@require_POST
@ui_view(READ, home="audit-chain")
def audit_chain_verify_page(request: HttpRequest) -> HttpResponse:
    """Verify the newest events now (bounded; nothing is written). The answer is the page
    itself: a reload verifies again, which is harmless."""
    return _chain(request, check=chain_verify_recent())


# --- export and its verification ----------------------------------------------------------


def _export_page(
    request: HttpRequest,
    *,
    form: ExportForm | None = None,
    upload: VerifyUploadForm | None = None,
    result: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    context = {
        "form": form or ExportForm(initial=_range_initial(request.GET)),
        "upload": upload or VerifyUploadForm(),
        "result": result,
        "max_upload_mb": VERIFY_UPLOAD_MAX // (1024 * 1024),
        "can_lookup": may(request.user, DEPSEUDONYMISE),
    }
    return render(request, "console/audit/export.html", context, status=status)


def _range_initial(query: QueryDict) -> dict[str, Any]:
    ranged = ExportForm(query)
    ranged.is_valid()
    cleaned = getattr(ranged, "cleaned_data", {})
    return {name: cleaned[name] for name in ("since", "until") if cleaned.get(name)}


@require_http_methods(["GET", "POST"])
@ui_view(READ, home="audit-export")
def audit_export_page(request: HttpRequest) -> HttpResponse:
    """GET: the export and verification forms. POST: the download, through the services the
    API's export uses (`audit.exported`, a checkpoint, then the stream)."""
    if request.method == "GET":
        return _export_page(request)
    return _export_download(request)


@ui_view(READ, home="audit-export", mfa=True)
def _export_download(request: HttpRequest) -> HttpResponse:
    """The whole trail leaves the system: only from a session verified with an authenticator,
    whatever the role (auditors need none to sign in)."""
    form = ExportForm(request.POST)
    if not form.is_valid():
        return _export_page(request, form=form, status=400)
    since, until = form.cleaned_data["since"], form.cleaned_data["until"]
    export_format = form.cleaned_data["format"]
    last_seq = audit_export_begin(
        actor=request.user, export_format=export_format, since=since, until=until
    )
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    response = StreamingHttpResponse(
        export_stream(export_format=export_format, since=since, until=until, last_seq=last_seq),
        content_type="text/csv" if export_format == "csv" else "application/x-ndjson",
    )
    response["Content-Disposition"] = (
        f'attachment; filename="bulwark-audit-{stamp}.{export_format}"'
    )
    return response  # type: ignore[return-value]  # streamed; ui_view types views by HttpResponse


@require_GET
@ui_view(READ, home="audit-export")
def audit_public_key_page(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(public_key(), content_type="application/x-pem-file")
    response["Content-Disposition"] = 'attachment; filename="bulwark-audit-public.pem"'
    return response


def _upload_lines(request: HttpRequest, upload: VerifyUploadForm) -> Iterator[bytes]:
    files = [upload.cleaned_data["export"], upload.cleaned_data.get("manifest")]
    streams = []
    for uploaded in files:
        if uploaded is None:
            continue
        uploaded.seek(0)
        streams.append(iter(uploaded.file))  # the raw file: lines end at b"\n" only
    return chain.from_iterable(streams)


@csrf_protect
def _verify_upload(request: HttpRequest) -> HttpResponse:
    upload = VerifyUploadForm(request.POST, request.FILES)
    if not upload.is_valid():
        return _export_page(request, upload=upload, status=400)
    check, key_runs = export_check(_upload_lines(request, upload))
    name = upload.cleaned_data["export"].name or "the export"
    result: dict[str, Any] = {
        "ok": check.ok,
        "count": check.count,
        "reason": check.reason,
        "line": check.line,
        "key_runs": key_runs,
        "name": name,
        "csv": name.lower().endswith(".csv") and not check.ok,
    }
    return _export_page(request, result=result)


@csrf_exempt  # checked by _verify_upload, once the body is known to be within bounds
@require_POST
@ui_view(READ, home="audit-export")
def audit_export_verify_page(request: HttpRequest) -> HttpResponse:
    """Run the offline verifier (`manage.py audit_verify_export`'s) on an uploaded export. The
    declared length is checked before any byte is read (CSRF's check would read the whole
    multipart body first; it runs after); a body without a length is already bounded to the
    JSON limit by InputHardeningMiddleware."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = -1
    if length < 0:
        return error_page(request, InvalidInput("The Content-Length header is not a number."))
    if length > VERIFY_UPLOAD_MAX:
        return error_page(
            request,
            PayloadTooLarge(
                f"The upload is {length:,} bytes; this page verifies exports of at most "
                f"{VERIFY_UPLOAD_MAX // (1024 * 1024)} MiB. Verify a larger one offline: "
                "python manage.py audit_verify_export FILE --public-key bulwark-audit-public.pem"
            ),
        )
    if request.content_type != "multipart/form-data":
        return error_page(
            request, InvalidInput("Send the export with the page's upload form (multipart).")
        )
    return _verify_upload(request)


# --- who is this pseudonym? ---------------------------------------------------------------


@require_http_methods(["GET", "POST"])
@ui_view(READ, home="audit-pseudonyms", mfa=True)
def audit_pseudonym_page(request: HttpRequest) -> HttpResponse:
    """Both directions: a username to its pseudonym, a pseudonym to its username. The answer
    is the POST's page (never in an address); each POST is one audited lookup."""
    if request.method == "GET":
        if not may(request.user, DEPSEUDONYMISE):
            return error_page(request, _refused())
        pasted = pasted_key_redirect(request)
        if pasted is not None:
            return pasted
        initial = {"query": request.GET.get("q", "")[:200]}
        return _lookup(request, PseudonymLookupForm(initial=initial))
    form = PseudonymLookupForm(request.POST)
    if not form.is_valid():
        if not may(request.user, DEPSEUDONYMISE):
            return error_page(request, _refused())
        return _lookup(request, form, status=400)
    query = form.cleaned_data["query"].strip()
    as_pseudonym = query.startswith("p_") and len(query) == 22
    try:
        found = pseudonym_lookup(
            actor=request.user,
            username="" if as_pseudonym else query,
            pseudonym=query if as_pseudonym else "",
        )
    except ApplicationError as exc:
        if exc.status_code == 403:
            return error_page(request, _refused())
        form.add_error("query", exc.message)
        return _lookup(request, form, status=exc.status_code)
    result = {"query": query, "as_pseudonym": as_pseudonym, "found": found}
    return _lookup(request, PseudonymLookupForm(initial={"query": query}), result=result)


def _refused() -> ApplicationError:
    return PermissionDenied(NO_PSEUDONYM_LOOKUP)


def _lookup(
    request: HttpRequest,
    form: PseudonymLookupForm,
    *,
    result: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    return render(
        request, "console/audit/pseudonyms.html", {"form": form, "result": result}, status=status
    )
