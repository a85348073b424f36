"""Shared by the key pages' tests (the console's and the admin's, pages and browser): a
service account like the demo's `demo-client` granted predict on one model, keys made
through the services, and what a page shows of a new key."""

from __future__ import annotations

import re
from typing import Any

from django.contrib.sessions.models import Session

from apps.apikeys.models import ApiKey
from apps.registry.selectors import registered_model_exists, registered_model_get
from apps.registry.services import predict_grant_create, registered_model_create
from tests.accounts.factories import UserFactory

# A whole key as the pages print it: bwk_<12-char public id>_<43-char secret>.
KEY = re.compile(r"bwk_[a-z0-9]{12}_[A-Za-z0-9_-]{43}")
# What the pages that show a key once print it in.
SHOWN = re.compile(r'<code class="(?:secret|bulwark-secret)"[^>]*>([^<]+)</code>')


def text_of(response: Any) -> str:
    return re.sub(r"\s+", " ", response.content.decode())


def service_account(admin: Any, *, username: str = "demo-client", model: str = "pricing") -> Any:
    """An API client (a service, not a person) granted predict on `model`, as the demo's
    `demo-client`: its keys hold `predict:<model>`."""
    if not registered_model_exists(model):
        registered_model_create(actor=admin, name=model, description="Demo model.")
    account = UserFactory(username=username, roles=["api_client"])
    predict_grant_create(
        actor=admin, model=registered_model_get(actor=admin, name=model), user=account
    )
    return account


def secret_of(key: str) -> str:
    """The secret part of a whole key (what must never be shown twice)."""
    return key.split("_", 2)[2]


def session_texts() -> list[str]:
    """Every stored session, decoded and raw."""
    return [str(s.get_decoded()) + s.session_data for s in Session.objects.all()]


def keys_of(owner: Any) -> list[ApiKey]:
    return list(ApiKey.objects.filter(owner=owner).order_by("created_at"))
