"""Forms of the incidents UI. They only shape input for the services (which validate again
and own every rule); choices of people are usernames, resolved by the views."""

from __future__ import annotations

import re
import uuid
from typing import Any, cast

from django import forms
from django.contrib.auth import get_user_model
from django.forms import formset_factory

from apps.core.permissions import ROLE_MATRIX
from apps.incidents.models import Resolution, Severity, Status
from apps.incidents.selectors import SORTS
from apps.incidents.services import CONTAINMENT_ACTIONS, MAX_ACTION_ITEMS

SORT_LABELS = {
    "severity": "Most severe first",
    "newest": "Newest first",
    "oldest": "Oldest first",
    "status": "Phase",
    "updated": "Recently updated",
}
NOTE_MAX = 10_000


def responder_choices() -> list[tuple[str, str]]:
    """Active people who may work incidents (assignees), by username."""
    names = (
        get_user_model()
        .objects.filter(is_active=True, roles__name__in=ROLE_MATRIX["incidents.write"])
        .distinct()
        .order_by("username")
        .values_list("username", flat=True)
    )
    return [(name, name) for name in names]


def people_choices() -> list[tuple[str, str]]:
    """Every active person, by username (owners of post-mortem action items)."""
    names = (
        get_user_model()
        .objects.filter(is_active=True)
        .order_by("username")
        .values_list("username", flat=True)
    )
    return [(name, name) for name in names]


class _Form(forms.Form):
    """Labels without Django's trailing colon."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class IncidentFilterForm(_Form):
    """The list's filters (GET). Unknown values are left to the selector, which refuses them
    with a message the page shows."""

    state = forms.ChoiceField(
        required=False,
        label="Open or closed",
        choices=[("", "All"), ("open", "Open"), ("closed", "Closed")],
    )
    status = forms.ChoiceField(
        required=False, label="Phase", choices=[("", "Any phase"), *Status.choices]
    )
    severity = forms.ChoiceField(
        required=False, label="Severity", choices=[("", "Any severity"), *Severity.choices]
    )
    resolution = forms.ChoiceField(
        required=False,
        label="Resolution",
        choices=[("", "Any resolution"), *Resolution.choices],
    )
    assignee = forms.ChoiceField(required=False, label="Assignee")
    sort = forms.ChoiceField(
        required=False, label="Sort by", choices=[(key, SORT_LABELS[key]) for key in SORTS]
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["assignee"]).choices = [
            ("", "Anyone"),
            ("none", "Unassigned"),
            *responder_choices(),
        ]

    def filters(self) -> dict[str, str]:
        """The raw values, for the selector (which validates them and names a bad one)."""
        return {name: str(self.data.get(name, "")).strip() for name in self.fields}


class IncidentCreateForm(_Form):
    title = forms.CharField(
        max_length=200,
        help_text="What is happening, in a few words.",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    severity = forms.ChoiceField(
        choices=Severity.choices,
        initial=Severity.SEV3,
        help_text="SEV1: customer impact or a live breach, all hands. SEV4: minor, no impact.",
    )
    description = forms.CharField(
        required=False,
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text="What you know so far: signals seen, affected models, keys or users.",
    )
    assignee = forms.ChoiceField(required=False, label="Assign to")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["assignee"]).choices = [
            ("", "Nobody yet"),
            *responder_choices(),
        ]


class TransitionForm(_Form):
    to = forms.ChoiceField(choices=Status.choices, widget=forms.HiddenInput)
    note = forms.CharField(
        label="Note",
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required: why the incident moves on, what was done.",
    )


RESOLUTION_HELP = {
    Resolution.FALSE_POSITIVE: "Nothing of what was reported happened: a detector or a "
    "report was wrong.",
    Resolution.DUPLICATE: "Another incident already covers it: name that one below.",
    Resolution.BENIGN: "It happened, but it is expected or harmless (a test, a known job).",
}
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")


class CloseForm(_Form):
    """Close an open incident as a false positive, a duplicate or benign: from any phase,
    with a note, no post-mortem. The detail page posts it; the view answers with a
    confirmation page, and only a post carrying `confirm` closes."""

    resolution = forms.ChoiceField(
        label="Resolution",
        choices=[(value, Resolution(value).label) for value in RESOLUTION_HELP],
        initial=Resolution.FALSE_POSITIVE,
        widget=forms.RadioSelect,
    )
    duplicate_of = forms.CharField(
        required=False,
        max_length=300,
        label="Duplicate of",
        help_text="For a duplicate: the other incident's id, or the address of its page.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    note = forms.CharField(
        label="Note",
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Required: why it closes this way.",
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)

    def clean_duplicate_of(self) -> str:
        raw = str(self.cleaned_data.get("duplicate_of") or "").strip()
        if not raw:
            return ""
        found = _UUID.search(raw)
        if found is None:
            raise forms.ValidationError("Give the other incident's id or its page's address.")
        return str(uuid.UUID(found.group(0)))

    def clean(self) -> dict[str, Any]:
        cleaned = cast(dict[str, Any], super().clean())  # Form.clean: cleaned_data
        duplicate = cleaned.get("resolution") == Resolution.DUPLICATE
        if duplicate and not cleaned.get("duplicate_of") and "duplicate_of" not in self.errors:
            self.add_error("duplicate_of", "A duplicate names the incident it repeats.")
        if not duplicate:  # typed before choosing another resolution: unused
            cleaned["duplicate_of"] = ""
            self.errors.pop("duplicate_of", None)
        return cleaned


class NoteForm(_Form):
    text = forms.CharField(
        label="Add a note",
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class AssignForm(_Form):
    assignee = forms.ChoiceField(required=False, label="Assignee")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["assignee"]).choices = [
            ("", "Unassigned"),
            *responder_choices(),
        ]


ACTION_LABELS = {
    "revoke_api_key": "Revoke API key",
    "archive_model_version": "Archive model version",
    "deactivate_user": "Deactivate user",
}


class ContainmentForm(_Form):
    """One containment action and its target. The detail page posts it; the view answers with
    a confirmation page, and only a post carrying `confirm` acts."""

    action = forms.ChoiceField(choices=[(a, ACTION_LABELS[a]) for a in CONTAINMENT_ACTIONS])
    key = forms.CharField(
        required=False,
        max_length=64,
        label="API key prefix or id",
        help_text="bwk_… as shown in logs and linked resources.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    model = forms.CharField(required=False, max_length=100, label="Model name")
    version = forms.IntegerField(required=False, min_value=1, label="Version")
    username = forms.CharField(
        required=False,
        max_length=150,
        label="Username",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    confirm = forms.BooleanField(required=False, widget=forms.HiddenInput)
    # On the confirmation page, for an incident still detected (checked there by default).
    then_contained = forms.BooleanField(required=False, label="Also move it to Contained")

    REQUIRED = {
        "revoke_api_key": ("key",),
        "archive_model_version": ("model", "version"),
        "deactivate_user": ("username",),
    }

    def clean(self) -> dict[str, Any]:
        cleaned = cast(dict[str, Any], super().clean())  # Form.clean: cleaned_data
        for name in self.REQUIRED.get(cleaned.get("action") or "", ()):
            if cleaned.get(name) in (None, ""):
                self.add_error(name, "This field is required for this action.")
        return cleaned


class PostmortemForm(_Form):
    root_cause = forms.CharField(
        required=False,
        max_length=NOTE_MAX,
        label="Root cause",
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="Why it happened, not only what happened.",
    )
    impact = forms.CharField(
        required=False,
        max_length=NOTE_MAX,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Who and what was affected, for how long.",
    )
    lessons = forms.CharField(
        required=False,
        max_length=NOTE_MAX,
        label="Lessons learned",
        widget=forms.Textarea(attrs={"rows": 3}),
    )


class ActionItemForm(_Form):
    description = forms.CharField(required=False, max_length=500, label="Action")
    owner = forms.ChoiceField(required=False, label="Owner")
    due_date = forms.DateField(
        required=False, label="Due", widget=forms.DateInput(attrs={"type": "date"})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["owner"]).choices = [("", "Choose…"), *people_choices()]

    def clean(self) -> dict[str, Any]:
        cleaned = cast(dict[str, Any], super().clean())  # Form.clean: cleaned_data
        fields = ("description", "owner", "due_date")
        if not cleaned.get("DELETE") and any(cleaned.get(n) or n in self.errors for n in fields):
            for name in fields:
                if not cleaned.get(name) and name not in self.errors:
                    self.add_error(name, "Each action item needs an action, an owner and a date.")
        return cleaned


ActionItemFormSet = formset_factory(
    ActionItemForm, extra=2, can_delete=True, max_num=MAX_ACTION_ITEMS, validate_max=True
)


def action_items_of(formset: Any) -> list[dict[str, str]]:
    """The kept rows as the service's `actions`: description, owner username, ISO date."""
    items = []
    for form in formset.forms:
        data = form.cleaned_data
        if not data or data.get("DELETE") or not data.get("description"):
            continue
        items.append(
            {
                "description": data["description"],
                "owner": data["owner"],
                "due_date": data["due_date"].isoformat(),
            }
        )
    return items
