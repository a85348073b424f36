from __future__ import annotations

import pytest

from apps.audit.models import AuditEvent, Checkpoint
from apps.audit.services import audit_chain_pending, audit_event_record, checkpoint_create
from apps.audit.subjects import pseudonym_for
from tests.accounts.factories import UserFactory

pytestmark = pytest.mark.django_db

EVENTS = "/admin/audit/auditevent/"
CHECKPOINTS = "/admin/audit/checkpoint/"


@pytest.fixture
def superuser_client(client, verified_login):  # type: ignore[no-untyped-def]
    return verified_login(client, UserFactory(is_staff=True, is_superuser=True))


@pytest.fixture
def event() -> AuditEvent:
    audit_event_record("model.created", actor=None, target=("model", "pricing"))
    audit_event_record("incident.created", actor=None, outcome="denied")
    audit_chain_pending()
    return AuditEvent.objects.get(seq=1)


def test_the_event_list_shows_events(superuser_client, event):
    response = superuser_client.get(EVENTS)
    assert response.status_code == 200
    content = response.content.decode()
    assert "model.created" in content and "incident.created" in content
    assert f"{EVENTS}{event.seq}/change/" in content


def test_the_event_list_names_people_only_by_pseudonym(superuser_client):
    person = UserFactory(username="carol-the-engineer")
    audit_event_record("model.created", actor=person)
    audit_chain_pending()  # in production on_commit chains it; the test transaction never commits
    response = superuser_client.get(EVENTS)
    assert pseudonym_for(person) in response.content.decode()
    assert "carol-the-engineer" not in response.content.decode()


def test_events_cannot_be_added_in_the_admin(superuser_client, event):
    response = superuser_client.get(f"{EVENTS}add/")
    assert response.status_code == 403
    response = superuser_client.post(f"{EVENTS}add/", {"seq": 99, "action": "forged"})
    assert response.status_code == 403
    assert not AuditEvent.objects.filter(seq=99).exists()
    assert b"/admin/audit/auditevent/add/" not in superuser_client.get(EVENTS).content


def test_an_event_is_shown_read_only(superuser_client, event):
    response = superuser_client.get(f"{EVENTS}{event.seq}/change/")
    assert response.status_code == 200
    assert b"model.created" in response.content
    for button in (b'name="_save"', b'name="_continue"', b'name="_addanother"'):
        assert button not in response.content
    assert b'name="action"' not in response.content  # not an editable input


def test_posting_a_change_to_an_event_is_refused(superuser_client, event):
    response = superuser_client.post(
        f"{EVENTS}{event.seq}/change/", {"action": "forged", "outcome": "failure"}
    )
    assert response.status_code == 403
    event.refresh_from_db()
    assert (event.action, event.outcome) == ("model.created", "success")


def test_events_cannot_be_deleted_in_the_admin(superuser_client, event):
    response = superuser_client.post(f"{EVENTS}{event.seq}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert AuditEvent.objects.filter(seq=event.seq).exists()
    assert superuser_client.get(f"{EVENTS}{event.seq}/delete/").status_code == 403


def test_the_bulk_delete_action_is_not_offered_nor_obeyed(superuser_client, event):
    assert b"delete_selected" not in superuser_client.get(EVENTS).content
    superuser_client.post(
        EVENTS, {"action": "delete_selected", "_selected_action": [1, 2], "post": "yes"}
    )
    assert AuditEvent.objects.count() == 2


def test_checkpoints_are_read_only_in_the_admin(superuser_client, event):
    checkpoint = checkpoint_create()
    assert checkpoint is not None
    assert superuser_client.get(CHECKPOINTS).status_code == 200
    assert superuser_client.get(f"{CHECKPOINTS}add/").status_code == 403
    change = superuser_client.get(f"{CHECKPOINTS}{checkpoint.seq}/change/")
    assert change.status_code == 200 and b'name="_save"' not in change.content
    response = superuser_client.post(f"{CHECKPOINTS}{checkpoint.seq}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert Checkpoint.objects.filter(seq=checkpoint.seq).exists()


def test_the_pseudonym_mapping_is_not_in_the_admin(superuser_client):
    audit_event_record("model.created", actor=UserFactory())
    assert superuser_client.get("/admin/audit/actorpseudonym/").status_code == 404
    index = superuser_client.get("/admin/").content.decode()
    assert "actorpseudonym" not in index.lower()
    assert "/admin/audit/auditevent/" in index


def test_staff_without_permissions_cannot_read_events(client, event):
    client.force_login(UserFactory(is_staff=True))
    assert client.get(EVENTS).status_code == 403


def test_the_event_list_filters_by_known_values_without_scanning_for_them(
    superuser_client, event, django_assert_max_num_queries
):
    denied = superuser_client.get(f"{EVENTS}?outcome=denied").content.decode()
    assert "incident.created" in denied and "model.created" not in denied
    system = superuser_client.get(f"{EVENTS}?actor_type=system").content.decode()
    assert "incident.created" in system and "model.created" in system
    exact = superuser_client.get(f"{EVENTS}?q=model.created").content.decode()
    assert "model.created" in exact and "incident.created" not in exact
    # No DISTINCT over the table for a filter's choices, no date hierarchy.
    with django_assert_max_num_queries(20) as queries:
        superuser_client.get(EVENTS)
    assert not [q for q in queries.captured_queries if "DISTINCT" in q["sql"].upper()]


def test_the_event_list_counts_no_further_than_it_must(superuser_client, monkeypatch):
    from apps.audit import admin as audit_admin

    monkeypatch.setattr(audit_admin, "COUNTED", 3)
    for n in range(5):
        audit_event_record("model.created", actor=None, target=("model", f"m{n}"))
    audit_chain_pending()
    content = superuser_client.get(EVENTS).content.decode()
    assert "3 audit events" in content  # the cap, not the 5 there are
    assert "/audit/" in content  # the way to the console's pages
