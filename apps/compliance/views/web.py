"""The compliance UI at /compliance/ (server-rendered, every action a plain form: no
JavaScript needed).

Readers (`compliance.read`: security officers, admins, auditors) see progress, items, check
results and evidence, and download reports; writers (`compliance.write`) also get the forms.
A visitor who is not signed in goes to settings.LOGIN_URL; a session that has not verified
the authenticator its owner must use goes back to sign in (or to enrol), as in the admin.
Every change is one service call; its refusals are shown on the page with their status.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.db.models import Max
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt, csrf_protect
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.web_access import error_page, ui_view
from apps.compliance.errors import EvidenceTooLarge
from apps.compliance.forms import EvidenceForm, FilterForm, ItemForm, ReportForm
from apps.compliance.models import Category, ChecklistItem, CheckResult
from apps.compliance.reports import check_data
from apps.compliance.selectors import (
    CHECKLIST,
    compliance_item_get,
    compliance_item_list,
    compliance_owner_candidates,
    compliance_progress,
    framework_choices,
)
from apps.compliance.services import compliance_checks_run, compliance_item_update, evidence_add
from apps.compliance.uploads import InMemoryEvidenceUploadHandler
from apps.compliance.views.downloads import evidence_file_response, report_response
from apps.core.errors import ApplicationError
from apps.core.permissions import may

READ = "compliance.read"
WRITE = "compliance.write"


def _filters(source: Any) -> dict[str, str]:
    """The dashboard's filters from a query or a form's hidden field, only known values."""
    frameworks = {key for key, _ in framework_choices()}
    framework = source.get("framework") or ""
    category = source.get("category") or ""
    filters = {}
    if framework in frameworks and framework != CHECKLIST:
        filters["framework"] = framework
    if category in Category.values:
        filters["category"] = category
    return filters


def _back_to(item: ChecklistItem | None, filters: dict[str, str]) -> HttpResponseRedirect:
    query = f"?{urlencode(filters)}" if filters else ""
    anchor = f"#item-{item.key}" if item is not None else ""
    return HttpResponseRedirect(f"{reverse('compliance-dashboard')}{query}{anchor}")


def _forms_for(
    item: ChecklistItem, owners: list[str], bound: dict[str, Any]
) -> tuple[ItemForm, EvidenceForm]:
    edit = bound.get("edit") if bound.get("item") == item.pk else None
    evidence = bound.get("evidence") if bound.get("item") == item.pk else None
    return (
        edit
        or ItemForm(
            prefix=item.key,
            owners=owners,
            initial={
                "status": item.status,
                "owner": item.owner.username if item.owner else "",
                "notes": item.notes,
            },
        ),
        evidence or EvidenceForm(prefix=f"{item.key}-evidence"),
    )


def _dashboard(
    request: HttpRequest,
    *,
    filters: dict[str, str],
    bound: dict[str, Any] | None = None,
    status: int = 200,
) -> HttpResponse:
    bound = bound or {}
    user = request.user
    can_write = may(user, WRITE)
    frameworks = framework_choices()
    items = list(
        compliance_item_list(
            actor=user, framework=filters.get("framework"), category=filters.get("category")
        )
    )
    owners = list(compliance_owner_candidates().values_list("username", flat=True))
    rows = []
    for item in items:
        row: dict[str, Any] = {"item": item, "check": check_data(item)}
        if can_write:
            row["edit_form"], row["evidence_form"] = _forms_for(item, owners, bound)
            row["open"] = bound.get("item") == item.pk
        rows.append(row)
    groups = [
        {"label": label, "key": rows_in[0]["item"].category, "rows": rows_in}
        for label, rows_in in (
            (label, list(grouped))
            for label, grouped in groupby(rows, key=lambda r: r["item"].get_category_display())
        )
    ]
    results = [row["check"]["result"] for row in rows if row["item"].automated_check]
    context = {
        "progress": compliance_progress(actor=user),
        "groups": groups,
        "can_write": can_write,
        "filters": filters,
        "filter_query": urlencode(filters),
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
        "checks": {
            "pass": results.count("pass"),
            "fail": results.count("fail"),
            "pending": results.count("manual"),
            "last_run": CheckResult.objects.aggregate(last=Max("checked_at"))["last"],
        },
        "error": bound.get("error"),
    }
    return render(request, "compliance/dashboard.html", context, status=status)


@never_cache
@require_GET
@ui_view(READ, home="compliance-dashboard")
def dashboard_page(request: HttpRequest) -> HttpResponse:
    return _dashboard(request, filters=_filters(request.GET))


@never_cache
@require_POST
@ui_view(WRITE, home="compliance-dashboard")
def item_update_post(request: HttpRequest, item_id: Any) -> HttpResponse:
    filters = _filters(request.POST)
    try:
        item = compliance_item_get(actor=request.user, item_id=item_id)
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
            return _back_to(item, filters)
    bound = {"item": item.pk, "edit": form, "error": f"“{item.title}” was not saved."}
    return _dashboard(request, filters=filters, bound=bound, status=400)


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
    filters = _filters(request.POST)
    try:
        item = compliance_item_get(actor=request.user, item_id=item_id)
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
            return _back_to(item, filters)
    bound = {
        "item": item.pk,
        "evidence": form,
        "error": f"No evidence was added to “{item.title}”.",
    }
    return _dashboard(request, filters=filters, bound=bound, status=status)


@never_cache
@require_POST
@ui_view(WRITE, home="compliance-dashboard")
def checks_run_post(request: HttpRequest) -> HttpResponse:
    try:
        results = compliance_checks_run(actor=request.user, trigger="ui")
    except ApplicationError as exc:
        return error_page(request, exc)
    passed = sum(result.result == "pass" for result in results)
    messages.success(
        request, f"Automated checks ran: {passed} passed, {len(results) - passed} failed."
    )
    return _back_to(None, _filters(request.POST))


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
    try:
        return evidence_file_response(actor=request.user, evidence_id=evidence_id)
    except ApplicationError as exc:
        return error_page(request, exc)


def _field_of(error: ApplicationError, form: Any) -> str | None:
    path = error.details[0]["path"] if error.details else ""
    return path if path in form.fields else None


def _sentence(error: ApplicationError) -> str:
    text = error.details[0]["message"] if error.details else error.message
    text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."
