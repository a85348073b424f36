"""What the admin's and the console's version-upload forms share: the signature bundle's field
check and a refusal shown on the field it names."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms

from apps.core.errors import ApplicationError
from apps.registry.signing import MAX_BUNDLE_BYTES


class VersionUploadFormMixin:
    """Mixed into a forms.Form (whose cleaned_data, fields and add_error it uses)."""

    if TYPE_CHECKING:
        cleaned_data: dict[str, Any]
        fields: dict[str, Any]

        def add_error(self, field: str | None, error: Any) -> None: ...

    def clean_signature(self) -> str | None:
        bundle = self.cleaned_data.get("signature")
        if not bundle:
            return None
        raw = bundle.read(MAX_BUNDLE_BYTES + 1)
        if len(raw) > MAX_BUNDLE_BYTES:
            raise forms.ValidationError(f"A bundle is at most {MAX_BUNDLE_BYTES} bytes.")
        try:
            return str(raw.decode())
        except UnicodeDecodeError:
            raise forms.ValidationError("A bundle is UTF-8 JSON.") from None

    def add_application_error(self, error: ApplicationError) -> None:
        """Show a refusal of the parsing helpers or the service on the field it names (the
        whole form's when it names none)."""
        placed = False
        for detail in error.details:
            path = str(detail.get("path", ""))
            field = path.split("/")[0]
            if field in self.fields:
                prefix = "" if path == field else f"{path}: "
                self.add_error(field, f"{prefix}{detail.get('message', error.message)}")
                placed = True
        if not placed:
            self.add_error(None, error.message)
