"""Forms of the console's audit pages. They only shape input: the selectors and services own
every rule (and check again)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django import forms
from django.core.validators import RegexValidator

from apps.audit.selectors import FILTER_VALUE_MAX, EventFilters

OUTCOMES = [("", "Any"), ("success", "Success"), ("failure", "Failure"), ("denied", "Denied")]
# What X-Request-ID may be (docs/api.md, "Everywhere").
REQUEST_ID = RegexValidator(
    r"^[A-Za-z0-9._-]{1,128}$", "A request id is 1 to 128 letters, digits, dots, dashes or _."
)
DATETIME_FORMATS = [
    "%Y-%m-%dT%H:%M",  # what <input type="datetime-local"> sends
    "%Y-%m-%dT%H:%M:%S",
    "%Y-%m-%dT%H:%M:%S.%f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y-%m-%d",
]


class _Form(forms.Form):
    """Labels without Django's trailing colon."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class _UtcDateTimeField(forms.DateTimeField):
    """A time in UTC (the pages show every time in UTC), as a datetime-local input."""

    widget = forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M")

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(input_formats=DATETIME_FORMATS, required=False, **kwargs)
        self.error_messages["invalid"] = "Enter a date and time such as 2026-12-08T09:30 (UTC)."


class RangeForm(_Form):
    since = _UtcDateTimeField(label="From (UTC)", help_text="Events at or after this time.")
    until = _UtcDateTimeField(label="To (UTC)", help_text="Events before this time.")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        since, until = data.get("since"), data.get("until")
        if since and until and since >= until:
            self.add_error("until", "“To” must be after “From”.")
        return data


class EventFilterForm(RangeForm):
    """The event list's filters (GET). Every one is served by an index
    (apps.audit.selectors.event_page)."""

    action = forms.CharField(
        required=False,
        max_length=64,
        help_text="Exact, e.g. apikey.revoked",
        widget=forms.TextInput(attrs={"list": "audit-actions", "spellcheck": "false"}),
    )
    outcome = forms.ChoiceField(required=False, choices=OUTCOMES)
    actor = forms.CharField(
        required=False,
        max_length=FILTER_VALUE_MAX,
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )
    target = forms.CharField(
        required=False,
        max_length=FILTER_VALUE_MAX,
        help_text="An id (model name, key prefix, incident id, pseudonym) or type:id.",
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )
    request_id = forms.CharField(
        required=False,
        max_length=128,
        label="Request id",
        validators=[REQUEST_ID],
        widget=forms.TextInput(attrs={"spellcheck": "false"}),
    )

    def filters(self, *, actor: str) -> EventFilters:
        """The cleaned filters, with the actor reference the view settled on."""
        data = self.cleaned_data
        target, target_type = data["target"].strip(), ""
        kind, sep, ident = target.partition(":")
        if sep and ident and kind.replace("_", "").replace(".", "").isalnum() and kind.islower():
            target, target_type = ident, kind
        return EventFilters(
            since=data["since"],
            until=data["until"],
            action=data["action"].strip(),
            outcome=data["outcome"],
            actor=actor,
            target=target,
            target_type=target_type,
            request_id=data["request_id"].strip(),
        )


class ExportForm(RangeForm):
    format = forms.ChoiceField(
        choices=[("jsonl", "JSONL with its signed manifest"), ("csv", "CSV (for spreadsheets)")],
        initial="jsonl",
        widget=forms.RadioSelect,
    )


class VerifyUploadForm(_Form):
    export = forms.FileField(
        label="Export file (.jsonl)",
        help_text="A JSONL export as downloaded: its last line is the signed manifest.",
        error_messages={
            "required": "Choose the JSONL export file to verify.",
            "empty": "The export file is empty.",
        },
    )
    manifest = forms.FileField(
        required=False,
        label="Manifest (optional)",
        help_text='Only if the manifest line ({"manifest": …}) was saved apart from the events.',
    )


class PseudonymLookupForm(_Form):
    query = forms.CharField(
        max_length=FILTER_VALUE_MAX,
        label="Username or pseudonym",
        help_text="alice, or p_ followed by 20 hexadecimal digits",
        error_messages={"required": "Enter a username or a pseudonym."},
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )


class UsernameSearchForm(_Form):
    """The list's search by username (a POST: the lookup is recorded)."""

    username = forms.CharField(
        max_length=FILTER_VALUE_MAX,
        label="Events of a person, by username",
        error_messages={"required": "Enter the username of the person whose events to show."},
        widget=forms.TextInput(attrs={"spellcheck": "false", "autocomplete": "off"}),
    )


def utc_text(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if value else ""
