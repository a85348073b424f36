"""The compliance UI under /compliance/ (server-rendered, every action a plain form: no
JavaScript needed).

- `/compliance/`: progress per framework (each linking to its page), the automated checks'
  latest tally, and the checklist as one collapsed section per category (`?category=` shows
  one, `?framework=` the items of one framework), one compact row per item.
- `/compliance/frameworks/<key>`: a framework's controls, each listing the items serving it.
- `/compliance/items/<id>`: one item with its checks and evidence; for writers, its forms
  (POST to the same address saves the review, `…/evidence` adds evidence).

Readers (`compliance.read`: security officers, admins, auditors) see every page and download
reports; writers (`compliance.write`) also get the forms, and only they may POST (others get
the 403 page). A visitor who is not signed in goes to settings.LOGIN_URL; a session that has
not verified the authenticator its owner must use goes back to sign in (or to enrol), as in
the admin. Every change is one service call; its refusals are shown on the page with their
status.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from apps.accounts.web_access import error_page, ui_view
from apps.compliance.errors import EvidenceTooLarge
from apps.compliance.forms import EvidenceForm, FilterForm, ItemForm, ReportForm
from apps.compliance.models import Category, ChecklistItem, EvidenceKind
from apps.compliance.reports import check_data
from apps.compliance.selectors import (
    CHECKLIST,
    EVIDENCED,
    IMPLEMENTED,
    Progress,
    compliance_checks_last_run,
    compliance_framework_controls,
    compliance_framework_get,
    compliance_item_check_history,
    compliance_item_evidence,
    compliance_item_get,
    compliance_item_rows,
    compliance_owner_candidates,
    compliance_progress,
    evidence_get,
    framework_choices,
    item_counts_as,
)
from apps.compliance.services import compliance_checks_run, compliance_item_update, evidence_add
from apps.compliance.uploads import InMemoryEvidenceUploadHandler
from apps.compliance.views.downloads import evidence_file_response, report_response
from apps.core.errors import ApplicationError
from apps.core.permissions import may

READ = "compliance.read"
WRITE = "compliance.write"
# An item's page lists its evidence by pages of 10, each text cut at 600 characters and each
# link longer than 300 (its full text and link on the evidence's own page): with notes,
# description and check history at their limits it stays well under 150 KB.
EVIDENCE_PAGE_SIZE = 10
CHECK_HISTORY = 10


def _filters(source: Any, frameworks: list[tuple[str, str]] | None = None) -> dict[str, str]:
    """The overview's filters from a query or a form's hidden field, only known values."""
    known = {key for key, _ in (frameworks or framework_choices())}
    framework = source.get("framework") or ""
    category = source.get("category") or ""
    filters = {}
    if framework in known and framework != CHECKLIST:
        filters["framework"] = framework
    if category in Category.values:
        filters["category"] = category
    return filters


def _overview_url(filters: dict[str, str]) -> str:
    query = f"?{urlencode(filters)}" if filters else ""
    return f"{reverse('compliance-dashboard')}{query}"


def _item_url(item: ChecklistItem, anchor: str = "") -> str:
    return reverse("compliance-item", args=[item.id]) + (f"#{anchor}" if anchor else "")


def _row(item: ChecklistItem, last_run: Any) -> dict[str, Any]:
    """An item as one row of a list (the selectors' `compliance_item_rows` shape)."""
    result = getattr(item, "check_result", None)
    return {
        "item": item,
        "counts_as": item_counts_as(item, last_run=last_run),
        "check": (result or "not_run") if item.automated_check else "",
    }


def _tally(rows: list[dict[str, Any]]) -> dict[str, int]:
    return {
        "items": len(rows),
        IMPLEMENTED: sum(row["counts_as"] == IMPLEMENTED for row in rows),
        EVIDENCED: sum(row["counts_as"] == EVIDENCED for row in rows),
        "failing": sum(row["check"] == "fail" for row in rows),
        "applicable": sum(row["counts_as"] != "not_applicable" for row in rows),
    }


def _progress_rows(progress: list[Progress]) -> list[dict[str, Any]]:
    return [
        {
            "p": p,
            "url": None
            if p.key == CHECKLIST
            else reverse("compliance-framework", kwargs={"framework": p.key}),
        }
        for p in progress
    ]


@never_cache
@require_GET
@ui_view(READ, home="compliance-dashboard")
def dashboard_page(request: HttpRequest) -> HttpResponse:
    user = request.user
    frameworks = framework_choices()
    filters = _filters(request.GET, frameworks)
    last_run = compliance_checks_last_run(actor=user)
    rows = [
        _row(item, last_run)
        for item in compliance_item_rows(
            actor=user, framework=filters.get("framework"), category=filters.get("category")
        )
    ]
    groups = []
    for category, grouped in groupby(rows, key=lambda r: r["item"].category):
        rows_in = list(grouped)
        groups.append(
            {
                "key": category,
                "label": rows_in[0]["item"].get_category_display(),
                "rows": rows_in,
                "tally": _tally(rows_in),
            }
        )
    progress = compliance_progress(actor=user)
    context = {
        "progress": _progress_rows(progress),
        "checks": progress[0].checks,
        "last_run": last_run,
        "groups": groups,
        # One category asked for (or only one left): shown open.
        "open_groups": len(groups) == 1,
        "can_write": may(user, WRITE),
        "filters": filters,
        "filter_form": FilterForm(
            initial={"framework": filters.get("framework", CHECKLIST), **filters},
            frameworks=frameworks,
            categories=Category.choices,
        ),
        "report_form": ReportForm(
            initial={"framework": filters.get("framework", CHECKLIST), "format": "pdf"},
            frameworks=frameworks,
        ),
        "framework_name": dict(frameworks)[filters.get("framework", CHECKLIST)],
    }
    return render(request, "compliance/dashboard.html", context)


@never_cache
@require_GET
@ui_view(READ, home="compliance-dashboard")
def framework_page(request: HttpRequest, framework: str) -> HttpResponse:
    user = request.user
    try:
        chosen = compliance_framework_get(actor=user, key=framework)
    except ApplicationError as exc:
        return error_page(request, exc)
    progress = next(p for p in compliance_progress(actor=user) if p.key == chosen.key)
    last_run = compliance_checks_last_run(actor=user)
    controls: list[dict[str, Any]] = []
    for control in compliance_framework_controls(actor=user, framework=chosen):
        rows = [_row(item, last_run) for item in control.items.all()]
        controls.append({"control": control, "rows": rows, "tally": _tally(rows)})
    groups = [
        {"label": label, "controls": list(grouped)}
        for label, grouped in groupby(controls, key=lambda c: c["control"].group)
    ]
    context = {
        "framework": chosen,
        "progress": progress,
        "groups": groups,
        "controls_count": len(controls),
        "uncovered": sum(not c["rows"] for c in controls),
        "last_run": last_run,
        "report_query": urlencode({"framework": chosen.key, "format": "pdf"}),
    }
    return render(request, "compliance/framework.html", context)


@never_cache
@require_http_methods(["GET", "HEAD", "POST"])
def item_page(request: HttpRequest, item_id: Any) -> HttpResponse:
    """GET: the item's page (readers). POST: save its review (writers), the form's address
    since before the item had a page."""
    if request.method == "POST":
        return item_update_post(request, item_id)
    return item_detail_page(request, item_id)


@ui_view(READ, home="compliance-dashboard")
def item_detail_page(request: HttpRequest, item_id: Any) -> HttpResponse:
    try:
        item = compliance_item_get(actor=request.user, item_id=item_id, evidence=False)
    except ApplicationError as exc:
        return error_page(request, exc)
    return _item_page(request, item)


def _item_page(
    request: HttpRequest,
    item: ChecklistItem,
    *,
    edit: ItemForm | None = None,
    evidence_form: EvidenceForm | None = None,
    error: str = "",
    status: int = 200,
) -> HttpResponse:
    """The item's page; `edit` or `evidence_form` replaces a form by the one the user just
    sent (with their input and its errors) when the page answers a refused POST."""
    user = request.user
    can_write = may(user, WRITE)
    evidence_page = Paginator(
        compliance_item_evidence(actor=user, item=item), EVIDENCE_PAGE_SIZE
    ).get_page(request.GET.get("page"))
    controls = sorted(item.controls.all(), key=lambda c: (c.framework.position, c.position))
    context: dict[str, Any] = {
        "item": item,
        "check": check_data(item),
        "counts_as": item_counts_as(item, last_run=compliance_checks_last_run(actor=user)),
        "history": compliance_item_check_history(actor=user, item=item, limit=CHECK_HISTORY),
        "controls": [
            {"framework": key, "controls": list(grouped)}
            for key, grouped in groupby(controls, key=lambda c: c.framework)
        ],
        "evidence_page": evidence_page,
        "can_write": can_write,
        "error": error,
    }
    if can_write:
        owners = list(compliance_owner_candidates().values_list("username", flat=True))
        context["edit_form"] = edit or ItemForm(
            prefix=item.key,
            owners=owners,
            initial={
                "status": item.status,
                "owner": item.owner.username if item.owner else "",
                "notes": item.notes,
            },
        )
        context["evidence_form"] = evidence_form or EvidenceForm(prefix=f"{item.key}-evidence")
    return render(request, "compliance/item.html", context, status=status)


@ui_view(WRITE, home="compliance-dashboard")
def item_update_post(request: HttpRequest, item_id: Any) -> HttpResponse:
    try:
        item = compliance_item_get(actor=request.user, item_id=item_id, evidence=False)
    except ApplicationError as exc:
        return error_page(request, exc)
    owners = list(compliance_owner_candidates().values_list("username", flat=True))
    form = ItemForm(request.POST, prefix=item.key, owners=owners)
    if form.is_valid():
        try:
            compliance_item_update(
                actor=request.user,
                item=item,
                status=form.cleaned_data["status"],
                owner=form.cleaned_data["owner"] or None,
                notes=form.cleaned_data["notes"],
            )
        except ApplicationError as exc:
            form.add_error(_field_of(exc, form), _sentence(exc))
        else:
            messages.success(request, f"Saved “{item.title}”.")
            return HttpResponseRedirect(_item_url(item))
    return _item_page(request, item, edit=form, error=f"“{item.title}” was not saved.", status=400)


@csrf_exempt  # CSRF is checked by the inner view, once the upload handlers are in place
@never_cache
@require_POST
@ui_view(WRITE, home="compliance-dashboard")
def evidence_add_post(request: HttpRequest, item_id: Any) -> HttpResponse:
    # Set before anything reads the body (the CSRF check reads request.POST): files stay in
    # memory, bounded, never in a temporary file in plaintext.
    request.upload_handlers = [InMemoryEvidenceUploadHandler(request)]
    try:
        return _evidence_add(request, item_id)
    except EvidenceTooLarge as exc:
        return error_page(request, exc)


@csrf_protect
def _evidence_add(request: HttpRequest, item_id: Any) -> HttpResponse:
    try:
        item = compliance_item_get(actor=request.user, item_id=item_id, evidence=False)
    except ApplicationError as exc:
        return error_page(request, exc)
    form = EvidenceForm(request.POST, request.FILES, prefix=f"{item.key}-evidence")
    status = 400
    if form.is_valid():
        try:
            evidence_add(
                actor=request.user,
                item=item,
                url=form.cleaned_data["url"] or None,
                text=form.cleaned_data["text"] or None,
                file=form.cleaned_data["file"],
            )
        except ApplicationError as exc:
            form.add_error(_field_of(exc, form), _sentence(exc))
            status = exc.status_code
        else:
            messages.success(request, f"Evidence added to “{item.title}”.")
            return HttpResponseRedirect(_item_url(item, "evidence"))
    return _item_page(
        request,
        item,
        evidence_form=form,
        error=f"No evidence was added to “{item.title}”.",
        status=status,
    )


@never_cache
@require_POST
@ui_view(WRITE, home="compliance-dashboard")
def checks_run_post(request: HttpRequest) -> HttpResponse:
    try:
        results = compliance_checks_run(actor=request.user, trigger="ui")
    except ApplicationError as exc:
        return error_page(request, exc)
    outcomes = [result.result for result in results]
    passed, failed, manual = (
        outcomes.count("pass"),
        outcomes.count("fail"),
        outcomes.count("manual"),
    )
    text = f"Automated checks ran: {passed} passed, {failed} failed."
    if manual:
        text += f" {manual} could not run (no such check) and need a review by hand."
    # A run with any failure is news to act on, not a success.
    (messages.warning if failed or manual else messages.success)(request, text)
    return HttpResponseRedirect(_overview_url(_filters(request.POST)))


@never_cache
@require_GET
@ui_view(READ, home="compliance-dashboard")
def report_download(request: HttpRequest) -> HttpResponse:
    form = ReportForm(request.GET, frameworks=framework_choices())
    if not form.is_valid():
        field, errors = next(iter(form.errors.items()))
        return error_page(
            request,
            ApplicationError(f"{field}: {errors[0]} Choose one from the report form."),
        )
    try:
        return report_response(
            actor=request.user,
            framework=form.cleaned_data["framework"],
            format=form.cleaned_data["format"],
        )
    except ApplicationError as exc:
        return error_page(request, exc)


@never_cache
@require_GET
@ui_view(READ, home="compliance-dashboard")
def evidence_download(request: HttpRequest, evidence_id: Any) -> HttpResponse:
    """A file: the decrypted file as an attachment. A text or a link: a page showing it in
    full (the item's page shows long ones cut)."""
    try:
        evidence = evidence_get(actor=request.user, evidence_id=evidence_id)
        if evidence.kind == EvidenceKind.FILE:
            return evidence_file_response(actor=request.user, evidence_id=evidence.id)
    except ApplicationError as exc:
        return error_page(request, exc)
    return render(
        request, "compliance/evidence.html", {"evidence": evidence, "item": evidence.item}
    )


def _field_of(error: ApplicationError, form: Any) -> str | None:
    path = error.details[0]["path"] if error.details else ""
    return path if path in form.fields else None


def _sentence(error: ApplicationError) -> str:
    text = error.details[0]["message"] if error.details else error.message
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
