from __future__ import annotations

import json

import pytest
from django.apps import apps
from django.db import connection
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.audit.models import ActorPseudonym, AuditEvent
from apps.audit.services import audit_chain_pending, audit_event_record, pseudonym_erase
from apps.audit.verification import audit_chain_verify
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db


def every_text_in_the_database() -> str:
    """All rows of all tables, as text: what someone holding the whole database (and our keys)
    could search."""
    chunks = []
    with connection.cursor() as cursor:
        for model in apps.get_models():
            cursor.execute(f'SELECT * FROM "{model._meta.db_table}"')  # noqa: S608  # our own table names
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


def test_erasure_leaves_a_verifying_chain_and_no_path_back_to_the_person():
    user = UserFactory(username="erin", email="erin@example.test")
    other = UserFactory()
    audit_event_record("model.created", actor=user, target=other)
    audit_event_record("apikey.created", actor=other, target=user)
    audit_chain_pending()
    pseudonym = ActorPseudonym.objects.get(user=user).pseudonym
    user_id = str(user.pk)

    assert pseudonym_erase(user_id=user.pk) is True
    user.delete()  # the privacy app deletes the account itself (a later issue)

    assert audit_chain_verify().ok
    assert AuditEvent.objects.filter(actor_ref=pseudonym).exists()  # events keep the pseudonym
    everything = every_text_in_the_database()
    for trace in ("erin", user_id, user_id.replace("-", "")):
        assert trace not in everything
    # The pseudonym remains in events only: no table maps it to anyone any more.
    assert not ActorPseudonym.objects.filter(pseudonym=pseudonym).exists()
    assert pseudonym_erase(user_id=user_id) is False


def test_deleting_a_user_removes_the_mapping_too():
    user = UserFactory()
    audit_event_record("x.y", actor=user)
    user.delete()
    assert ActorPseudonym.objects.count() == 0
    audit_chain_pending()
    assert audit_chain_verify().ok


SECRET_KEYS = st.sampled_from(
    ["password", "token", "api_key", "secret", "authorization", "signing_secret", "refresh", "otp"]
)
PLAIN_KEYS = st.sampled_from(["model", "reason", "rows", "scope", "version"])
SECRET = st.text(
    alphabet="ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789", min_size=16, max_size=32
)


def nested(secret_values: list[str]):  # type: ignore[no-untyped-def]
    leaf = st.one_of(st.integers(), st.booleans(), st.text(alphabet="xyz ", max_size=6))

    def extend(children):  # type: ignore[no-untyped-def]
        return st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(PLAIN_KEYS, children, max_size=3),
            st.builds(
                lambda key, value: {key: value}, SECRET_KEYS, SECRET.map(_remember(secret_values))
            ),
        )

    return st.recursive(leaf, extend, max_leaves=12)


def _remember(store: list[str]):  # type: ignore[no-untyped-def]
    def keep(value: str) -> str:
        store.append(value)
        return value

    return keep


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.data())
def test_no_secret_reaches_event_details(data):
    secrets: list[str] = []
    details = {"payload": data.draw(nested(secrets))}
    audit_event_record("property.checked", actor=None, details=details)
    audit_chain_pending()
    stored = AuditEvent.objects.order_by("-seq").values_list("body", flat=True).first()
    for secret in secrets:
        assert secret not in stored
    assert json.loads(stored)["action"] == "property.checked"
