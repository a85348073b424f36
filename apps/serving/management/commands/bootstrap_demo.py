"""`python manage.py bootstrap_demo`: the demo data of the README's first command.

An admin, the `pricing` model (trained here on synthetic data, nothing downloaded) with
version 1 in production, a demo API client granted predict on it, and two of its keys: a
plain one (10 calls a minute, so the tour can show a 429) and one that requires signed
requests. Secrets are printed once, to the operator's terminal, and never logged. Running it
again creates only what is missing and prints no secret twice.
"""

from __future__ import annotations

import io
import secrets
from typing import TYPE_CHECKING, Any

from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts.roles import RoleName
from apps.accounts.selectors import user_find
from apps.accounts.services import user_create
from apps.apikeys.services import api_key_issue
from apps.registry.selectors import registered_model_exists
from apps.registry.services import (
    model_version_register,
    model_version_stage,
    predict_grant_create,
    registered_model_create,
)
from apps.serving.demo import PRICING_SCHEMA, pricing_artifact

if TYPE_CHECKING:
    from apps.accounts.models import User

DEMO_ADMIN = "admin"
DEMO_CLIENT = "demo-client"
DEMO_MODEL = "pricing"


class Command(BaseCommand):
    help = "Create the demo data of the README's first command (idempotent)."

    def handle(self, *args: Any, **options: Any) -> None:
        admin = self._admin()
        if registered_model_exists(DEMO_MODEL):
            self.stdout.write(
                f"Demo model '{DEMO_MODEL}' already exists; its API keys were printed when it "
                "was created (make new ones with POST /api/v1/api-keys)."
            )
            return
        with transaction.atomic():
            model = registered_model_create(
                actor=admin,
                name=DEMO_MODEL,
                description="Demo: units sold from price, demand, stock.",
            )
            upload = io.BytesIO(pricing_artifact())
            upload.name = "pricing.joblib"
            version = model_version_register(
                actor=admin, model=model, artifact=upload, input_schema=PRICING_SCHEMA
            )
            model_version_stage(actor=admin, version=version, stage="production")
            client = user_find(DEMO_CLIENT) or user_create(
                username=DEMO_CLIENT,
                password=secrets.token_urlsafe(24),  # never used: it predicts with its keys
                roles=[RoleName.API_CLIENT],
            )
            predict_grant_create(actor=admin, model=model, user=client)
            plain = api_key_issue(
                actor=admin,
                owner=client,
                name="demo key",
                scopes=[f"predict:{DEMO_MODEL}"],
                rate_limit="10/m",
            )
            signed = api_key_issue(
                actor=admin,
                owner=client,
                name="demo signed key",
                scopes=[f"predict:{DEMO_MODEL}"],
                require_signature=True,
            )
        self.stdout.write(
            self.style.SUCCESS(
                f"Demo model '{DEMO_MODEL}' v{version.number} is in production. "
                "These API keys are shown once; keep them now."
            )
        )
        self.stdout.write(f"  BULWARK_KEY={plain.key}")
        self.stdout.write(f"  BULWARK_SIGNED_KEY={signed.key}")
        self.stdout.write(f"  BULWARK_SIGNING_SECRET={signed.signing_secret}")

    def _admin(self) -> User:
        existing = user_find(DEMO_ADMIN)
        if existing is not None:
            self.stdout.write(
                f"Demo admin '{DEMO_ADMIN}' already exists; its password was printed when it was "
                f"created (reset it with: python manage.py changepassword {DEMO_ADMIN})."
            )
            return existing
        password = secrets.token_urlsafe(18)
        admin = user_create(
            username=DEMO_ADMIN,
            password=password,
            roles=[RoleName.ADMIN],
            is_staff=True,
            is_superuser=True,
        )
        # Printed once, to the operator's terminal; never logged.
        self.stdout.write(
            self.style.SUCCESS("Demo admin created. This password is shown once; keep it now.")
        )
        self.stdout.write(f"  username: {DEMO_ADMIN}\n  password: {password}")
        return admin
