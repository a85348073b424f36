"""Trusted publishers: whose signed artifacts an upload accepts (apps.registry.signing).
Security officers and admins register and remove them; both are audited."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_event_record
from apps.core.errors import Conflict, InvalidInput
from apps.registry.models import ModelVersion, Publisher, VersionStatus
from apps.registry.scanning import model_version_quarantine
from apps.registry.signing import canonical_public_key
from apps.registry.trust import beyond_deployment


def publisher_create(*, actor: Any, name: str, public_key: str) -> Publisher:
    """Register a publisher; audited `publisher.created` (with the key id, never more).
    InvalidInput for a key model signing cannot use, Conflict for a name or key already
    registered."""
    try:
        pem, key_id = canonical_public_key(public_key)
    except ValueError as exc:
        raise InvalidInput(
            f"public_key: {exc}", details=[{"path": "public_key", "message": str(exc)}]
        ) from None
    publisher = Publisher(name=name, public_key=pem, key_id=key_id, created_by=actor)
    publisher.full_clean(validate_constraints=False)  # the constraints, race-free, below
    try:
        with transaction.atomic():
            publisher.save()
            audit_event_record(
                "publisher.created",
                actor=actor,
                target=publisher,
                details={"name": name, "key_id": key_id},
            )
    except IntegrityError:
        raise Conflict("A publisher with this name or this key is already registered.") from None
    return publisher


@transaction.atomic
def publisher_remove(*, actor: Any, publisher: Publisher) -> Publisher:
    """Stop trusting `publisher`'s signatures from now on; audited `publisher.removed`. The
    row stays (versions name their signer). Versions that needed its signature (they import
    globals beyond the deployment's list) are quarantined in the same transaction."""
    publisher = Publisher.objects.select_for_update().get(pk=publisher.pk)
    if publisher.removed_at is not None:
        return publisher
    publisher.removed_at = timezone.now()
    publisher.save(update_fields=["removed_at", "updated_at"])
    audit_event_record(
        "publisher.removed",
        actor=actor,
        target=publisher,
        details={"name": publisher.name, "key_id": publisher.key_id},
    )
    signed = ModelVersion.objects.filter(signed_by=publisher, status=VersionStatus.OK)
    for version in signed.select_related("model"):
        beyond = beyond_deployment(version.allowed_globals)
        if beyond:
            model_version_quarantine(
                actor=actor,
                version=version,
                reason=f"its signer {publisher.name} was removed and it imports "
                + ", ".join(beyond),
            )
    return publisher
