"""The forms of the console's models pages: registering a model and uploading a version.

They take the fields of `POST /api/v1/models` and `POST /api/v1/models/{name}/versions`
(docs/api.md "Models and versions") and refuse early only what the API's serializers refuse
(the registry's rules, read through `model_upload_rules`); everything else is the registry's
services' to check, so a page refuses exactly what the API refuses, with the same message.
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.core.validators import MaxValueValidator
from django.utils.html import escape

from apps.registry.inputs import positive_finite
from apps.registry.selectors import model_upload_rules
from apps.registry.upload_form import VersionUploadFormMixin


def _escape_help_texts(form: forms.Form) -> None:
    # Django writes help texts into the page as HTML; these are plain text ("predict:<name>",
    # "0 < t <= 1"), so each is escaped once here.
    for field in form.fields.values():
        if field.help_text:
            field.help_text = escape(field.help_text)


def _json_area(rows: int, **attrs: str) -> forms.Textarea:
    return forms.Textarea(attrs={"rows": rows, "spellcheck": "false", "class": "code", **attrs})


class ModelRegisterForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        help_text="1 to 64 letters, digits, hyphens or underscores: the name in URLs and in "
        "predict:<name> key scopes. It cannot be changed later.",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    description = forms.CharField(
        max_length=2000, required=False, widget=forms.Textarea(attrs={"rows": 2})
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _escape_help_texts(self)

    def clean_name(self) -> str:
        name = str(self.cleaned_data["name"]).strip()
        if not re.fullmatch(model_upload_rules()["name_pattern"], name):
            raise forms.ValidationError("Use 1 to 64 letters, digits, hyphens or underscores.")
        return name


class VersionUploadForm(VersionUploadFormMixin, forms.Form):
    """The upload's fields; parsed by the API's helpers (apps.registry.inputs) and checked by
    the API's service (`model_version_register`)."""

    artifact = forms.FileField(
        help_text="Kept in memory and encrypted with its own key; never written to disk."
    )
    format = forms.ChoiceField(
        choices=(),
        help_text="joblib: its pickle is walked, never run, and every global it would import "
        "must be allowed. skops: loads only allow-listed types.",
    )
    input_schema = forms.CharField(
        widget=_json_area(10),
        help_text="JSON Schema (draft 2020-12) of one input row: an object.",
    )
    feature_order = forms.CharField(
        required=False,
        widget=_json_area(2),
        help_text="JSON list of property names; empty: the order of the schema's properties.",
    )
    max_batch = forms.IntegerField(min_value=1, initial=100, help_text="Rows per predict call.")
    dp_epsilon = forms.FloatField(
        required=False,
        validators=[positive_finite],
        label="DP epsilon",
        help_text="With DP sensitivity: Laplace noise on numeric outputs.",
    )
    dp_sensitivity = forms.FloatField(
        required=False,
        validators=[positive_finite],
        label="DP sensitivity",
        help_text="With DP epsilon.",
    )
    watermark = forms.CharField(
        required=False,
        widget=_json_area(3),
        help_text='JSON {"inputs": [rows], "labels": [...], "threshold": 0 < t <= 1}; stored '
        "sealed and verified after the upload.",
    )
    signature = forms.FileField(
        required=False,
        label="Signature bundle",
        help_text="An OpenSSF model-signing bundle for this artifact (model.sig) by a trusted "
        "publisher's key; the publisher is the one whose key signed it.",
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        rules = model_upload_rules()
        fmt = self.fields["format"]
        assert isinstance(fmt, forms.ChoiceField)  # noqa: S101  # narrows the type for mypy
        fmt.choices = rules["formats"]
        batch = self.fields["max_batch"]
        assert isinstance(batch, forms.IntegerField)  # noqa: S101  # narrows the type for mypy
        # Set here, not in the declaration: the limit is the registry's (its MAX_BATCH_LIMIT).
        batch.max_value = rules["max_batch_limit"]
        batch.validators.append(MaxValueValidator(rules["max_batch_limit"]))
        batch.widget.attrs["max"] = str(rules["max_batch_limit"])
        _escape_help_texts(self)
