"""The audit trail: append-only, hash-chained events; pseudonyms kept apart; signed checkpoints.

An event is first written to `PendingEvent` in the same transaction as the change it records
(so a 2xx means it is durable), then chained: given its `seq`, `prev_hash` and `hash` and moved
to `AuditEvent`, whose rows PostgreSQL refuses to update or delete (a trigger).
"""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models

GENESIS_HASH = "0" * 64
# The hmac_key_id of events chained before key ids existed (apps/audit/keys.py).
LEGACY_KEY_ID = ""


class PendingEvent(models.Model):
    """An event recorded but not yet chained. `body` is its canonical JSON without `seq`."""

    id = models.BigAutoField(primary_key=True)
    body = models.TextField()

    class Meta:
        ordering = ["id"]

    def __str__(self) -> str:
        return f"pending event {self.id}"


class AuditEvent(models.Model):
    """One chained event. `body` (canonical JSON, `seq` included) is what the hash covers and
    what the API shows; the other columns are copies for filtering, checked against it."""

    seq = models.BigIntegerField(primary_key=True)
    ts = models.DateTimeField(db_index=True)
    action = models.CharField(max_length=64, db_index=True)
    outcome = models.CharField(max_length=16)
    actor_type = models.CharField(max_length=16)
    actor_ref = models.CharField(max_length=64, db_index=True)
    body = models.TextField()
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)
    # Which audit HMAC key chained the event (its derived id), a copy of the body's
    # `hmac_key_id`; LEGACY_KEY_ID for events chained before ids existed.
    hmac_key_id = models.CharField(max_length=16, default=LEGACY_KEY_ID)

    class Meta:
        ordering = ["seq"]
        indexes = [
            # On a change of key, the chainer and the verifier ask whether the new key chained
            # anything before: an index range scan, however long the chain.
            models.Index(fields=["hmac_key_id", "seq"], name="%(app_label)s_%(class)s_key_seq"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(seq__gte=1), name="%(app_label)s_%(class)s_seq_positive"
            ),
            models.CheckConstraint(
                condition=models.Q(outcome__in=["success", "failure", "denied"]),
                name="%(app_label)s_%(class)s_outcome_known",
            ),
        ]

    def __str__(self) -> str:
        return f"#{self.seq} {self.action} ({self.outcome})"


def new_pseudonym() -> str:
    # Random, not derived from anything about the person: deleting the mapping row is enough
    # to make every event that names this pseudonym anonymous, even to us.
    return "p_" + secrets.token_hex(10)


class ActorPseudonym(models.Model):
    """The only link from a pseudonym in the events to a person. GDPR erasure deletes it."""

    pseudonym = models.CharField(max_length=32, unique=True, default=new_pseudonym)
    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="audit_pseudonym"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return self.pseudonym


class Checkpoint(models.Model):
    """A signed statement that the chain had `head` at `seq` at `ts` (Ed25519)."""

    seq = models.BigIntegerField(primary_key=True)
    head = models.CharField(max_length=64)
    ts = models.DateTimeField()
    signature = models.CharField(max_length=128)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-seq"]

    def __str__(self) -> str:
        return f"checkpoint #{self.seq}"


class VerifiedHead(models.Model):
    """Where the scheduled incremental verification got to (one row)."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS_HASH)
    verified_at = models.DateTimeField(null=True)

    def __str__(self) -> str:
        return f"verified up to #{self.seq}"
