"""Forms of the compliance UI. They only shape input; the services validate and decide."""

from __future__ import annotations

from typing import Any, cast

from django import forms

from apps.compliance.models import EVIDENCE_TEXT_MAX, EVIDENCE_URL_MAX, NOTES_MAX, ItemStatus


class FilterForm(forms.Form):
    framework = forms.ChoiceField(required=False)
    category = forms.ChoiceField(required=False)

    def __init__(
        self, *args: Any, frameworks: list[tuple[str, str]], categories: Any, **kwargs: Any
    ):
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["framework"]).choices = frameworks
        cast(forms.ChoiceField, self.fields["category"]).choices = [
            ("", "All categories"),
            *categories,
        ]


class ReportForm(forms.Form):
    framework = forms.ChoiceField(label="Framework")
    format = forms.ChoiceField(
        label="Format", choices=[("pdf", "PDF"), ("csv", "CSV"), ("json", "JSON")]
    )

    def __init__(self, *args: Any, frameworks: list[tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["framework"]).choices = frameworks


class ItemForm(forms.Form):
    status = forms.ChoiceField(label="Status", choices=ItemStatus.choices)
    owner = forms.ChoiceField(label="Owner", required=False)
    notes = forms.CharField(
        label="Notes",
        required=False,
        max_length=NOTES_MAX,
        strip=False,
        widget=forms.Textarea(attrs={"rows": 3}),
    )

    def __init__(self, *args: Any, owners: list[str], **kwargs: Any):
        super().__init__(*args, **kwargs)
        cast(forms.ChoiceField, self.fields["owner"]).choices = [
            ("", "Nobody"),
            *((name, name) for name in owners),
        ]


class EvidenceForm(forms.Form):
    url = forms.CharField(
        label="Link",
        required=False,
        max_length=EVIDENCE_URL_MAX,
        widget=forms.URLInput(attrs={"placeholder": "https://"}),
        help_text="An http:// or https:// address.",
    )
    text = forms.CharField(
        label="Text",
        required=False,
        max_length=EVIDENCE_TEXT_MAX,
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    file = forms.FileField(
        label="File",
        required=False,
        help_text="PDF, PNG, JPEG, text, CSV or JSON; stored encrypted.",
        widget=forms.FileInput(attrs={"accept": ".pdf,.png,.jpg,.jpeg,.txt,.csv,.json"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        given = [name for name in ("url", "text", "file") if cleaned.get(name)]
        if len(given) != 1:
            raise forms.ValidationError(
                "Give exactly one piece of evidence: a link, a text or a file."
            )
        return cleaned
