"""The Django admin writes to the audit chain. Every add, change and delete the admin logs
(its `log_addition`, `log_change` and `log_deletions` hooks, which Django calls inside the
write's transaction) and every admin action becomes an event, `admin.add`, `admin.change`,
`admin.delete` or `admin.action`, in that same transaction: if the event cannot be written,
the change rolls back with it. Django's own `django_admin_log` is kept, but it is an
ordinary table anyone with database access can edit; the chain is the record.

An event's details name the model and the changed fields, always by field name. Values are
kept only where they can carry neither a secret nor personal data: flags, numbers, dates,
choices, and references to objects other than people. Every other value is masked.

`audited_admin(admin_class)` is applied to every ModelAdmin by the admin site
(apps.accounts.admin_site.BulwarkAdminSite.register), so no registration can forget it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.contrib.admin import ModelAdmin
from django.contrib.auth import get_user_model
from django.db import models, transaction
from django.forms import BaseForm
from django.http import HttpRequest

from apps.audit.services import audit_event_record

MASKED = "[MASKED]"
# Form fields that are not model fields but stand for one (a password form's two entries).
_FORM_FIELD_NAMES = {"password1": "password", "password2": "password"}
_FORM_KEY = "_bulwark_admin_form"


def admin_form_of(request: HttpRequest) -> BaseForm | None:
    """The form of the admin write being logged in this request, if any."""
    return getattr(request, _FORM_KEY, None)


def _plain(value: Any) -> Any:
    if isinstance(value, bool | int | float | None):
        return value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    return MASKED


def _reference(value: Any) -> Any:
    if isinstance(value, models.Model):
        if isinstance(value, get_user_model()):
            return MASKED  # a person: the event's target names people by pseudonym only
        return str(value.pk)
    return _plain(value) if not isinstance(value, str) else value


def _shown(field: models.Field[Any, Any] | None, value: Any) -> Any:
    """A value as the event may keep it: as is when it can be neither a secret nor
    personal data, else MASKED."""
    if field is None:
        return MASKED
    if field.is_relation:
        if field.related_model is get_user_model():
            return MASKED
        if field.many_to_many or field.one_to_many:
            return sorted(str(_reference(item)) for item in (value or []))
        return _reference(value)
    if field.choices:
        return value if isinstance(value, str | int | None) else MASKED
    if isinstance(field, models.BooleanField | models.IntegerField | models.FloatField):
        return _plain(value)
    if isinstance(field, models.DecimalField | models.DateField | models.DurationField):
        return _plain(value) if not isinstance(value, str) else MASKED
    return MASKED  # text, JSON, binary: could hold anything


def _model_field(model: type[models.Model], name: str) -> models.Field[Any, Any] | None:
    try:
        field = model._meta.get_field(name)
    except Exception:  # a form-only field (FieldDoesNotExist and friends)
        return None
    return field if isinstance(field, models.Field) else None


def form_changes(model: type[models.Model], form: BaseForm | None) -> dict[str, Any]:
    """`{"fields": [names], "values": {name: {"from", "to"} | MASKED}}` of a bound form."""
    if form is None or not form.is_bound:
        return {"fields": [], "values": {}}
    fields: list[str] = []
    values: dict[str, Any] = {}
    for name in form.changed_data:
        field_name = _FORM_FIELD_NAMES.get(name, name)
        if field_name in fields:
            continue
        fields.append(field_name)
        field = _model_field(model, field_name)
        before = _shown(field, form.initial.get(name))
        after = _shown(
            field, form.cleaned_data.get(name) if hasattr(form, "cleaned_data") else None
        )
        values[field_name] = MASKED if MASKED in (before, after) else {"from": before, "to": after}
    return {"fields": sorted(fields), "values": values}


def _formset_fields(formsets: Iterable[Any] | None) -> list[str]:
    """Inline changes, named `<inline model>.<field>`."""
    names: set[str] = set()
    for formset in formsets or ():
        label = formset.model._meta.model_name
        for form in formset.forms:
            if form.has_changed():
                names.update(f"{label}.{field}" for field in form.changed_data)
        if getattr(formset, "deleted_forms", None):
            names.add(f"{label}.DELETE")
    return sorted(names)


def _record(
    action: str,
    request: HttpRequest,
    obj: Any,
    *,
    fields: list[str] | None = None,
    values: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    details: dict[str, Any] = {"model": obj._meta.label_lower, "fields": fields or []}
    if values:
        details["values"] = values
    details.update(extra or {})
    audit_event_record(action, actor=request.user, target=obj, details=details)


class AuditedAdminMixin:
    """Audits the writes a ModelAdmin logs, and its actions (see the module docstring)."""

    def construct_change_message(
        self, request: HttpRequest, form: BaseForm, formsets: Any, add: bool = False
    ) -> Any:
        setattr(request, _FORM_KEY, form)
        request._bulwark_admin_formsets = formsets  # type: ignore[attr-defined]  # for _logged
        return super().construct_change_message(request, form, formsets, add)  # type: ignore[misc]  # a mixin

    def _logged(self, action: str, request: HttpRequest, obj: Any) -> None:
        changes = form_changes(type(obj), admin_form_of(request))
        inline = _formset_fields(getattr(request, "_bulwark_admin_formsets", None))
        _record(
            action,
            request,
            obj,
            fields=sorted({*changes["fields"], *inline}),
            values=changes["values"],
        )

    def log_addition(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_addition(request, obj, message)  # type: ignore[misc]  # a mixin
        self._logged("admin.add", request, obj)
        return entry

    def log_change(self, request: HttpRequest, obj: Any, message: Any) -> Any:
        entry = super().log_change(request, obj, message)  # type: ignore[misc]  # a mixin
        self._logged("admin.change", request, obj)
        return entry

    def log_deletions(self, request: HttpRequest, queryset: Any) -> Any:
        objects = list(queryset)
        entries = super().log_deletions(request, objects)  # type: ignore[misc]  # a mixin
        for obj in objects:
            _record("admin.delete", request, obj)
        return entries

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)  # type: ignore[misc]  # a mixin: ModelAdmin's
        return {
            name: (_audited_action(func, name), name, description)
            for name, (func, _, description) in actions.items()
        }


def _audited_action(func: Callable[..., Any], name: str) -> Callable[..., Any]:
    """The action and one `admin.action` event per selected object, in one transaction.
    `delete_selected` is recorded by `log_deletions` instead, once the deletion is confirmed
    (its first call only shows what would be deleted)."""
    record = name != "delete_selected"

    def run(modeladmin: ModelAdmin[Any], request: HttpRequest, queryset: Any) -> Any:
        with transaction.atomic():
            objects = list(queryset) if record else []
            response = func(modeladmin, request, queryset)
            for obj in objects:
                _record("admin.action", request, obj, extra={"action": name})
            return response

    run.__name__ = getattr(func, "__name__", name)
    for attribute in ("allowed_permissions", "short_description"):
        if hasattr(func, attribute):
            setattr(run, attribute, getattr(func, attribute))
    return run


def audited_admin(admin_class: type[ModelAdmin[Any]]) -> type[ModelAdmin[Any]]:
    """`admin_class` with AuditedAdminMixin in front (once)."""
    if issubclass(admin_class, AuditedAdminMixin):
        return admin_class
    return type(admin_class.__name__, (AuditedAdminMixin, admin_class), {})
