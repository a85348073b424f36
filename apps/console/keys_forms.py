"""Forms of the console's key pages besides the issue form (apps.apikeys.forms, shared with
the admin): the list's filters, and the confirmations of rotate and revoke."""

from __future__ import annotations

from typing import Any

from django import forms

from apps.apikeys.forms import GRACE_CHOICES, UsernameInput
from apps.apikeys.selectors import api_key_holder_choices

STATE_LABELS = {
    "": "Any state",
    "active": "Active",
    "expiring": "Expiring within 14 days",
    "rotating": "Rotating (grace period)",
    "revoked": "Revoked",
    "expired": "Expired",
}


class _Form(forms.Form):
    """Labels without Django's trailing colon."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)


class KeyFilterForm(_Form):
    """The list's filters (GET). An unknown state is left to the selector, which refuses it
    with a message the page shows."""

    owner = forms.CharField(
        required=False,
        max_length=150,
        label="Owner",
        widget=UsernameInput(api_key_holder_choices, attrs={"placeholder": "username"}),
    )
    key = forms.CharField(
        required=False,
        max_length=40,
        label="Key prefix",
        widget=forms.TextInput(attrs={"placeholder": "bwk_…", "spellcheck": "false"}),
    )
    state = forms.CharField(
        required=False,
        label="State",
        widget=forms.Select(choices=list(STATE_LABELS.items())),
    )

    def filters(self) -> dict[str, str]:
        data = self.data
        return {
            "owner": str(data.get("owner", "")).strip()[:150],
            "state": str(data.get("state", "")).strip()[:20],
            "key": str(data.get("key", "")).strip()[:40],
        }


class RotateForm(_Form):
    grace_seconds = forms.TypedChoiceField(
        label="The old key keeps working for",
        choices=GRACE_CHOICES,
        coerce=int,
        initial=86400,
    )


class RevokeForm(_Form):
    reason = forms.CharField(
        label="Reason (kept in the audit trail)",
        max_length=500,
        required=False,
        widget=forms.TextInput(attrs={"placeholder": "e.g. leaked in a support ticket"}),
    )
