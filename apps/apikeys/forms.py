"""The key forms of the admin and of the console: the same fields, help texts and checks (the
model's validators, apps.apikeys.validation), so a key is refused for the same reasons, with
the same messages, wherever it is issued. The services check everything again."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.utils.html import escape, format_html, format_html_join
from django.utils.safestring import SafeString

from apps.apikeys.selectors import api_key_owner_choices, api_key_owner_find
from apps.apikeys.validation import (
    MAX_ALLOWED_IPS,
    MAX_SCOPES,
    canonical_cidrs,
    cidr_error,
    owner_refusal,
    scope_error,
    scopes_beyond_grants,
    validate_rate_limit,
)
from apps.core.permissions import may

_SPLIT = re.compile(r"[\s,]+")

# Help texts are HTML wherever Django renders them (the admin and the default form templates
# mark them safe): escaped here, so `<model name>` is shown, not swallowed as a tag.
SCOPES_HELP = escape(
    "Comma-separated: predict:<model name> or predict:*, within the owner's grants."
)
NETWORKS_HELP = escape(
    "Comma-separated CIDRs the key may be used from, such as 203.0.113.0/24; empty: any."
)
RATE_HELP = escape('"N/s", "N/m" or "N/h", N from 1 to 1,000,000 (a fixed window).')
EXPIRY_HELP = escape("From 1 to 365 days. Keys without an expiry do not exist.")
SIGNATURE_HELP = escape(
    "Requests must carry an X-Signature (HMAC-SHA256 with a signing secret shown once)."
)
OWNER_HELP = escape(
    "Your own username, or a service account's (the API client role and no other). The key's "
    "secret is shown to you, to hand over: people with any other role issue their own keys."
)

# How long the old key keeps working after a rotation from a key's page (docs/api.md: the
# API takes 0..604800 seconds, 86400 by default).
GRACE_CHOICES = [
    (86400, "24 hours (default)"),
    (3600, "1 hour"),
    (604800, "7 days"),
    (0, "No grace: the old key stops now"),
]


def items_of(text: str) -> list[str]:
    return [item for item in _SPLIT.split((text or "").strip()) if item]


def scopes_clean(text: str) -> list[str]:
    """The scopes in `text`, deduplicated in order; ValidationError naming each bad one."""
    scopes = list(dict.fromkeys(items_of(text)))
    errors = [f"{scope}: {error}" for scope in scopes if (error := scope_error(scope))]
    if errors:
        raise ValidationError(errors)
    if not scopes:
        raise ValidationError("Give at least one scope.")
    if len(scopes) > MAX_SCOPES:
        raise ValidationError(f"At most {MAX_SCOPES} scopes.")
    return scopes


def networks_clean(text: str) -> list[str]:
    networks = items_of(text)
    errors = [error for network in networks if (error := cidr_error(network))]
    if errors:
        raise ValidationError([error[0].upper() + error[1:] + "." for error in errors])
    if len(networks) > MAX_ALLOWED_IPS:
        raise ValidationError(f"At most {MAX_ALLOWED_IPS} networks.")
    return canonical_cidrs(networks)


def owner_clean(username: str, *, actor: Any) -> Any:
    """The user named `username`, if the actor may give them a key (themselves, or an active
    service account for a holder of `apikeys.manage_all`: validation.owner_refusal);
    ValidationError saying why not."""
    username = (username or "").strip()
    owner = api_key_owner_find(username)
    if owner is None:
        raise ValidationError(f"No user named {username}.")
    if owner.pk == getattr(actor, "pk", None):
        return owner
    if not may(actor, "apikeys.manage_all"):
        raise ValidationError("You may issue keys for yourself only.")
    refusal = owner_refusal(owner)
    if refusal:
        raise ValidationError(refusal)
    return owner


class UsernameInput(forms.TextInput):
    """A text box for a username with suggestions (a <datalist>, no script): any other
    username may be typed. The suggestions are read when the form is shown, not when it is
    sent."""

    def __init__(self, suggestions: Callable[[], list[str]], attrs: dict[str, Any] | None = None):
        super().__init__(attrs={"autocomplete": "off", "spellcheck": "false", **(attrs or {})})
        self.suggestions = suggestions

    def render(
        self, name: str, value: Any, attrs: dict[str, Any] | None = None, renderer: Any = None
    ) -> SafeString:
        attrs = dict(attrs or {})
        list_id = f"{attrs.get('id') or name}-suggestions"
        attrs["list"] = list_id
        box = super().render(name, value, attrs, renderer)
        options = format_html_join("", '<option value="{}">', ((n,) for n in self.suggestions()))
        return format_html('{}<datalist id="{}">{}</datalist>', box, list_id, options)


def owner_suggest(field: forms.Field, actor: Any) -> None:
    """Let `field` (an owner_field of one form instance) suggest the owners `actor` may
    choose: themselves and the service accounts (api_key_owner_choices)."""
    widget = field.widget
    if isinstance(widget, UsernameInput):
        widget.suggestions = lambda: api_key_owner_choices(actor=actor)


def owner_field(**kwargs: Any) -> forms.CharField:
    return forms.CharField(
        max_length=150,
        help_text=OWNER_HELP,
        widget=UsernameInput(api_key_owner_choices),
        **kwargs,
    )


class ApiKeyIssueForm(forms.Form):
    """The console's issue form. `actor` decides who may be the owner and whose grants bound
    the scopes; `once` is the form's one-time id (the view checks it: a form sent twice issues
    one key)."""

    owner = owner_field()
    name = forms.CharField(max_length=100)
    scopes = forms.CharField(max_length=8_000, help_text=SCOPES_HELP)
    expires_in_days = forms.IntegerField(
        label="Expires in (days)", min_value=1, max_value=365, initial=90, help_text=EXPIRY_HELP
    )
    rate_limit = forms.CharField(
        max_length=16, initial="60/m", validators=[validate_rate_limit], help_text=RATE_HELP
    )
    require_signature = forms.BooleanField(
        label="Require signed requests", required=False, help_text=SIGNATURE_HELP
    )
    allowed_ips = forms.CharField(
        label="IP allow-list", max_length=8_000, required=False, help_text=NETWORKS_HELP
    )
    once = forms.CharField(max_length=64, widget=forms.HiddenInput)

    def __init__(self, *args: Any, actor: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        self.actor = actor
        owner_suggest(self.fields["owner"], actor)

    def clean_owner(self) -> Any:
        return owner_clean(self.cleaned_data["owner"], actor=self.actor)

    def clean_scopes(self) -> list[str]:
        return scopes_clean(self.cleaned_data["scopes"])

    def clean_allowed_ips(self) -> list[str]:
        return networks_clean(self.cleaned_data.get("allowed_ips") or "")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        owner, scopes = data.get("owner"), data.get("scopes")
        if owner is not None and scopes:
            beyond = scopes_beyond_grants(owner, scopes)
            if beyond:
                self.add_error(
                    "scopes",
                    f"Beyond the grants of {owner.get_username()}: {', '.join(beyond)}.",
                )
        return data
