from __future__ import annotations

import json
from base64 import b32encode
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import pytest
from django.apps import apps
from django.contrib.admin.models import CHANGE, LogEntry
from django.contrib.contenttypes.models import ContentType
from django.http import HttpResponse
from django.test import Client
from django.utils import timezone

from apps.accounts.devices import new_recovery_code
from apps.accounts.models import IssuedRefreshToken, RecoveryCodeDevice, TotpDevice, User
from apps.accounts.tokens import token_pair_issue, token_refresh
from apps.apikeys.models import ApiKey
from apps.apikeys.services import api_key_issue
from apps.audit.models import AuditEvent
from apps.audit.services import audit_chain_pending
from apps.audit.subjects import pseudonym_for
from apps.incidents.models import ActionItem, EntryKind, Incident, TimelineEntry
from apps.registry.models import PredictGrant, RegisteredModel
from tests.accounts.factories import UserFactory

PREDICT = "/api/v1/models/churn/predict"


@dataclass
class Subject:
    """A person with something in every category the export covers, and every secret
    Bulwark holds about them (which no export or leftover may ever show)."""

    user: User
    access: str
    refresh: str
    key: str
    api_key: ApiKey
    signing_secret: str
    totp: TotpDevice
    recovery_codes: list[str]
    model: RegisteredModel
    incident: Incident
    action_item: ActionItem
    note: TimelineEntry
    session_key: str
    compliance_item: Any = None
    secrets: list[str] = field(default_factory=list)

    @property
    def traces(self) -> list[str]:
        """What would lead to the person: username, e-mail address, id (dashed and hex)."""
        return [self.user.username, self.user.email, str(self.user.pk), self.user.pk.hex]


@pytest.fixture
def subject(actors: dict[str, Any]) -> Subject:
    admin = actors["admin"]
    user = UserFactory(
        username="erin.subject",
        email="erin.subject@example.test",
        first_name="Erin",
        last_name="Quill",
        roles=["api_client"],
    )
    model = RegisteredModel.objects.create(name="churn", description="Churn", created_by=user)
    model.owners.add(user)
    PredictGrant.objects.create(model=model, user=user, granted_by=admin)
    totp = TotpDevice.objects.create(user=user, name="Erin's phone", confirmed=True)
    recovery = RecoveryCodeDevice.objects.create(user=user, name="Recovery codes", confirmed=True)
    codes = [new_recovery_code() for _ in range(3)]
    for code in codes:
        recovery.codes.create(code_hash=recovery.code_hash(code))
    first = token_pair_issue(user=user)
    pair = token_refresh(raw=first["refresh"])  # a family with a used and a live token
    issued = api_key_issue(
        actor=user,
        owner=user,
        name="churn job",
        scopes=["predict:churn"],
        require_signature=True,
    )
    incident = Incident.objects.create(
        title="Key leak",
        severity="sev2",
        detected_at=timezone.now(),
        assignee=user,
        reported_by=admin,
    )
    item = ActionItem.objects.create(
        incident=incident, description="Rotate keys", owner=user, due_date=date(2030, 1, 1)
    )
    note = TimelineEntry.objects.create(
        incident=incident,
        kind=EntryKind.NOTE,
        actor_type="user",
        actor_ref=pseudonym_for(user),
        text="Contained by rotating.",
    )
    LogEntry.objects.create(
        user=admin,
        content_type=ContentType.objects.get_for_model(User),
        object_id=str(user.pk),
        object_repr=user.username,
        action_flag=CHANGE,
        change_message=json.dumps([{"changed": {"fields": ["Email address"]}}]),
    )
    LogEntry.objects.create(
        user=admin,
        content_type=ContentType.objects.get_for_model(PredictGrant),
        object_id="x",
        object_repr=f"predict on churn for user {user.username}",
        action_flag=CHANGE,
        change_message="[]",
    )
    browser = Client()
    browser.force_login(user)
    compliance_item = _owned_compliance_item(user)
    user.refresh_from_db()
    api_key = issued.api_key
    jtis = list(IssuedRefreshToken.objects.filter(family__user=user).values_list("jti", flat=True))
    return Subject(
        user=user,
        access=pair["access"],
        refresh=pair["refresh"],
        key=issued.key,
        api_key=api_key,
        signing_secret=issued.signing_secret or "",
        totp=totp,
        recovery_codes=codes,
        model=model,
        incident=incident,
        action_item=item,
        note=note,
        session_key=browser.session.session_key or "",
        compliance_item=compliance_item,
        secrets=[
            user.password,
            user.password.split("$")[-1],
            totp.bin_key.hex(),
            b32encode(totp.bin_key).decode().rstrip("="),
            totp.key_sealed,
            recovery.hash_key_sealed,
            *recovery.codes.values_list("code_hash", flat=True),
            *codes,
            issued.key,
            issued.key.split("_", 2)[2],
            api_key.secret_hash,
            issued.signing_secret or "",
            api_key.signing_secret_sealed,
            first["access"],
            first["refresh"],
            pair["access"],
            pair["refresh"],
            *jtis,
            browser.session.session_key or "",
        ],
    )


def _owned_compliance_item(user: User) -> Any:
    """A checklist item the person owns, when the compliance app is installed."""
    if not apps.is_installed("apps.compliance"):
        return None
    item_model = apps.get_model("compliance", "ChecklistItem")
    item = item_model.objects.order_by("position").first()
    if item is None:
        item = item_model.objects.create(
            key="privacy-test", position=9999, category=_first_choice(item_model, "category"),
            title="Privacy test item", description="An item for the privacy tests.",
        )  # fmt: skip
    item.owner = user
    item.save(update_fields=["owner"])
    return item


def _first_choice(model: Any, name: str) -> str:
    return str(model._meta.get_field(name).choices[0][0])


def bearer(token: str) -> dict[str, str]:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def predict_with_key(client: Any, key: str) -> HttpResponse:
    return client.post(PREDICT, {"inputs": [{}]}, format="json", HTTP_X_API_KEY=key)


def audit_events(action: str | None = None) -> list[dict[str, Any]]:
    audit_chain_pending()
    events = [json.loads(body) for body in AuditEvent.objects.values_list("body", flat=True)]
    return [event for event in events if action is None or event["action"] == action]


def error_code(response: HttpResponse) -> str:
    return str(json.loads(response.content)["error"]["code"])
