from __future__ import annotations

from datetime import timedelta
from typing import Any

import factory
from django.utils import timezone

from apps.apikeys.keys import format_key, hash_secret, new_public_id, new_secret
from apps.apikeys.models import ApiKey
from apps.apikeys.signatures import SIGNING_PURPOSE
from apps.core.sealing import seal
from tests.accounts.factories import UserFactory


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """Keys made directly (no grant check, no audit event): fixtures for tests of everything
    else. `issue()` also returns the whole key, which only exists at creation."""

    class Meta:
        model = ApiKey

    owner = factory.SubFactory(UserFactory, roles=["api_client"])
    name = factory.Sequence(lambda n: f"key {n}")
    public_id = factory.LazyFunction(new_public_id)
    secret_hash = factory.LazyFunction(lambda: hash_secret(new_secret()))
    scopes = factory.LazyFunction(lambda: ["predict:*"])
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=90))
    rate_limit = "60/m"

    @classmethod
    def issue(cls, *, owner: Any, **fields: Any) -> tuple[ApiKey, str]:
        secret = new_secret()
        api_key = cls(owner=owner, secret_hash=hash_secret(secret), **fields)
        return api_key, format_key(api_key.public_id, secret)

    @classmethod
    def issue_signed(cls, *, owner: Any, **fields: Any) -> tuple[ApiKey, str, str]:
        """(key, whole key, signing secret) of a key that requires signed requests."""
        signing_secret = new_secret()
        api_key, key = cls.issue(
            owner=owner,
            require_signature=True,
            signing_secret_sealed=seal(signing_secret, purpose=SIGNING_PURPOSE),
            **fields,
        )
        return api_key, key, signing_secret
