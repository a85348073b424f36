"""The console's audit pages (apps/console/views/audit.py): who may see them, the event list's
filters and keyset pages, an event's hash links and checkpoint, the chain's state and a
bounded verification, exports through the API's services and their verification by upload,
and the pseudonym lookup that audit.identify holders (admins, security officers, auditors)
may make, each one audited, and that the service refuses to anyone else."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import DataError, connection
from django.test import Client

from apps.audit.migrations import __path__ as migrations_path
from apps.audit.models import ActorPseudonym, AuditEvent
from apps.audit.selectors import REQUEST_ID_SQL, TARGET_ID_SQL, export_check
from apps.audit.services import (
    audit_chain_pending,
    audit_event_record,
    checkpoint_create,
    pseudonym_erase,
    pseudonym_lookup,
)
from apps.audit.subjects import Subject, pseudonym_for
from apps.console.views import audit as views
from apps.core.errors import PermissionDenied
from apps.core.permissions import ADMIN, ROLE_MATRIX, SECURITY_OFFICER
from apps.core.request_context import request_facts

pytestmark = pytest.mark.django_db

LIST = "/audit/"
SEARCH = "/audit/search"
PAGES = ["/audit/", "/audit/events/1", "/audit/chain", "/audit/export", "/audit/pseudonyms"]
READERS = ["admin", "security_officer", "auditor"]


def text(response: Any) -> str:
    """The page's text, without tags, its spaces collapsed."""
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", "", response.content.decode()))


def seqs(response: Any) -> list[int]:
    """The event numbers of the list's table, top to bottom."""
    body = response.content.decode().split("<tbody>", 1)[1].split("</tbody>", 1)[0]
    return [int(n) for n in re.findall(r'<a href="/audit/events/(\d+)">\d+</a>', body)]


def bodies(action: str | None = None) -> list[dict[str, Any]]:
    audit_chain_pending()
    events = [
        json.loads(b) for b in AuditEvent.objects.order_by("seq").values_list("body", flat=True)
    ]
    return [e for e in events if action is None or e["action"] == action]


@pytest.fixture
def signed_in(verified_login: Any) -> Any:
    def client_for(user: Any, **kwargs: Any) -> Client:
        return verified_login(Client(**kwargs), user)

    return client_for


@pytest.fixture
def trail(actors: dict[str, Any]) -> dict[str, Any]:
    """A few events: an officer's, a key's refusal, a job's, each with its own request id."""
    officer = actors["security_officer"]
    with request_facts(request_id="req-officer-1", client_ip="203.0.113.7"):
        audit_event_record(
            "incident.created", actor=officer, target=Subject("incident", "inc-1"), details={"n": 1}
        )
    with request_facts(request_id="req-key-2", client_ip="198.51.100.4"):
        audit_event_record(
            "predict.rejected",
            actor=Subject("api_key", "bwk_abc123"),
            target=Subject("model", "pricing"),
            outcome="denied",
            details={"code": "scope_missing"},
        )
    audit_event_record("compliance.checks.completed", actor="compliance", details={"failed": 0})
    with request_facts(request_id="req-officer-4", client_ip=None):
        audit_event_record(
            "apikey.revoked",
            actor=officer,
            target=Subject("api_key", "bwk_abc123"),
            outcome="failure",
            details={"reason": "leak"},
        )
    audit_chain_pending()
    return {"officer": officer, "pseudonym": pseudonym_for(officer)}


# --- who may see -------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PAGES, "/audit/chain/verify", "/audit/export/public-key.pem"])
def test_a_visitor_who_is_not_signed_in_is_sent_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code in {302, 405}
    if response.status_code == 302:
        assert response["Location"].startswith("/account/login?next=")


def test_a_post_by_a_visitor_changes_nothing(client, trail):
    before = AuditEvent.objects.count()
    for path in (
        "/audit/export",
        "/audit/pseudonyms",
        "/audit/chain/verify",
        "/audit/export/verify",
    ):
        response = client.post(path, {"format": "jsonl", "query": "x"})
        assert response.status_code == 302 and response["Location"].startswith("/account/login")
    assert AuditEvent.objects.count() == before


@pytest.mark.parametrize("role", ["ml_engineer", "api_client"])
def test_people_without_audit_read_get_the_403_page(signed_in, actors, trail, role):
    client = signed_in(actors[role])
    for path in PAGES[:-1]:
        response = client.get(path)
        assert response.status_code == 403, path
        assert "text/html" in response["Content-Type"]
        assert "incident.created" not in response.content.decode()
    assert client.post("/audit/export", {"format": "jsonl"}).status_code == 403


@pytest.mark.parametrize("role", READERS)
def test_admins_officers_and_auditors_read_every_page(signed_in, actors, trail, role):
    client = signed_in(actors[role])
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 200, path
        assert "no-store" in response["Cache-Control"]
    listing = text(client.get(LIST))
    assert "incident.created" in listing and "predict.rejected" in listing
    # Every reader holds audit.identify, so every reader sees the lookup.
    assert "Who is this pseudonym?" in listing
    assert 'action="/audit/pseudonyms"' in client.get(LIST).content.decode()
    assert bodies("audit.pseudonym_lookup") == []  # showing the form looks nobody up


def test_the_auditor_reads_but_has_no_form_that_changes_anything_but_the_trail(
    signed_in, actors, trail
):
    """The auditor's forms: filters (GET), the lookup (its only write is its own event),
    exports (`audit.exported`), verifications (nothing written), signing out."""
    client = signed_in(actors["auditor"])

    def forms(path: str) -> list[str]:
        return sorted(re.findall(r'<form [^>]*action="([^"]+)"', client.get(path).content.decode()))

    first = seqs(client.get(LIST))[-1]
    assert forms(f"/audit/events/{first}") == ["/account/logout", "/audit/pseudonyms"]
    assert forms(LIST) == ["/account/logout", "/audit/", "/audit/pseudonyms", "/audit/search"]
    assert forms("/audit/export") == ["/account/logout", "/audit/export", "/audit/export/verify"]
    assert forms("/audit/chain") == ["/account/logout", "/audit/chain/verify"]
    assert forms("/audit/pseudonyms") == ["/account/logout", "/audit/pseudonyms"]


# --- the list ---------------------------------------------------------------------------


def test_events_are_listed_newest_first(signed_in, actors, trail):
    response = signed_in(actors["auditor"]).get(LIST)
    assert seqs(response) == sorted(seqs(response), reverse=True)
    assert len(seqs(response)) == AuditEvent.objects.count()


@pytest.mark.parametrize(
    ("query", "actions"),
    [
        ("action=predict.rejected", {"predict.rejected"}),
        ("outcome=denied", {"predict.rejected"}),
        ("outcome=failure", {"apikey.revoked"}),
        ("actor=bwk_abc123", {"predict.rejected"}),
        ("actor=%3Dcompliance", {"compliance.checks.completed"}),
        ("target=bwk_abc123", {"apikey.revoked"}),
        ("target=api_key:bwk_abc123", {"apikey.revoked"}),
        ("target=model:bwk_abc123", set()),
        ("target=pricing", {"predict.rejected"}),
        ("request_id=req-key-2", {"predict.rejected"}),
        ("request_id=req-none", set()),
    ],
)
def test_each_filter_narrows_the_list(signed_in, actors, trail, query, actions):
    response = signed_in(actors["auditor"]).get(f"{LIST}?{query}")
    assert response.status_code == 200
    shown = {e["action"] for e in bodies() if e["seq"] in seqs(response)}
    assert shown == actions
    if not actions:
        assert "No event matches these filters." in text(response)


def test_the_actor_filter_takes_a_pseudonym(signed_in, actors, trail):
    response = signed_in(actors["auditor"]).get(f"{LIST}?actor={trail['pseudonym']}")
    shown = {e["action"] for e in bodies() if e["seq"] in seqs(response)}
    assert shown == {"incident.created", "apikey.revoked"}


def test_the_time_range_filters_by_the_event_time(signed_in, actors, trail):
    client = signed_in(actors["auditor"])
    now = datetime.now(UTC)
    past = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    future = (now + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    assert len(seqs(client.get(f"{LIST}?since={past}&until={future}"))) == len(bodies())
    assert seqs(client.get(f"{LIST}?until={past}")) == []
    assert seqs(client.get(f"{LIST}?since={future}")) == []
    # The list links its time range to the export form.
    linked = client.get(f"{LIST}?since={past}").content.decode()
    assert f'href="/audit/export?{urlencode({"since": past})}"' in linked


def test_pages_follow_each_other_by_keyset(signed_in, actors, trail, monkeypatch):
    monkeypatch.setattr(views, "PAGE_SIZE", 2)
    client = signed_in(actors["auditor"])
    everything = [e["seq"] for e in reversed(bodies())]
    first = client.get(LIST)
    assert seqs(first) == everything[:2]
    html = first.content.decode()
    older = re.search(r'href="\?before=(\d+)" rel="next"', html)
    assert older and 'rel="prev"' not in html
    second = client.get(f"{LIST}?before={older.group(1)}")
    assert seqs(second) == everything[2:4]
    newer = re.search(r'href="\?after=(\d+)" rel="prev"', second.content.decode())
    assert newer
    assert seqs(client.get(f"{LIST}?after={newer.group(1)}")) == everything[:2]
    # Filters stay on the page links.
    filtered = client.get(f"{LIST}?since=2000-01-01T00:00").content.decode()
    assert "?since=2000-01-01T00%3A00&amp;before=" in filtered


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("since=yesterday", "Enter a date and time such as 2026-12-08T09:30 (UTC)."),
        ("until=2026-13-45T99:00", "Enter a date and time such as 2026-12-08T09:30 (UTC)."),
        ("since=2026-12-08T10:00&until=2026-12-08T09:00", "“To” must be after “From”."),
        ("outcome=maybe", "Select a valid choice."),
        ("request_id=a%20b", "A request id is 1 to 128 letters, digits, dots, dashes or _."),
        ("action=" + "x" * 65, "Ensure this value has at most 64 characters"),
    ],
)
def test_garbage_filters_are_a_400_page_that_says_which(signed_in, actors, trail, query, message):
    response = signed_in(actors["auditor"]).get(f"{LIST}?{query}")
    assert response.status_code == 400
    assert message in text(response)
    assert "Not filtered: correct the fields marked below." in text(response)
    assert seqs(response) == []


def test_a_garbage_or_unknown_cursor_is_refused_with_a_sentence(signed_in, actors, trail):
    client = signed_in(actors["auditor"])
    response = client.get(f"{LIST}?before=abc")
    assert response.status_code == 400 and "“before” must be an event number." in text(response)
    response = client.get(f"{LIST}?after=999999")
    assert response.status_code == 404 and "No audit event #999999 to page from." in text(response)


# --- usernames and pseudonyms ----------------------------------------------------------


@pytest.mark.parametrize("role", READERS)
def test_a_username_search_posts_becomes_the_pseudonym_and_is_audited(
    signed_in, actors, trail, role
):
    client = signed_in(actors[role])
    username = trail["officer"].username
    response = client.post(SEARCH, {"username": username, "outcome": "success", "actor": "x"})
    assert response.status_code == 303
    assert response["Location"] == f"{LIST}?outcome=success&actor={trail['pseudonym']}"
    assert username not in response["Location"]
    page = client.get(response["Location"])
    assert f"{username} is {trail['pseudonym']}: showing their events." in text(page)
    # The officer's own lookup is theirs too, when they look themselves up.
    mine = {"audit.pseudonym_lookup"} if role == "security_officer" else set()
    assert {e["action"] for e in bodies() if e["seq"] in seqs(page)} == {"incident.created", *mine}
    (lookup,) = bodies("audit.pseudonym_lookup")
    assert lookup["actor"]["ref"] == pseudonym_for(actors[role])
    assert lookup["target"] == {"type": "user", "id": trail["pseudonym"]}
    assert lookup["details"] == {
        "direction": "username_to_pseudonym",
        "found": True,
        "via": "filter",
    }
    assert username not in json.dumps(bodies())  # never the username in the chain


def test_the_auditor_searches_by_username_and_changes_nothing_but_the_lookup_event(
    signed_in, actors, trail
):
    client = signed_in(actors["auditor"])
    username = trail["officer"].username
    before = AuditEvent.objects.count()
    response = client.post(SEARCH, {"username": username})
    assert response.status_code == 303
    assert response["Location"] == f"{LIST}?actor={trail['pseudonym']}"
    page = client.get(response["Location"])
    assert {e["action"] for e in bodies() if e["seq"] in seqs(page)} == {
        "incident.created",
        "apikey.revoked",
    }
    # One new event, the lookup (the page's reload holds the pseudonym: no second lookup).
    assert AuditEvent.objects.count() == before + 1
    # No one else gets a pseudonym: only the auditor, whom their lookup's event names.
    assert set(ActorPseudonym.objects.values_list("user_id", flat=True)) == {
        trail["officer"].pk,
        actors["auditor"].pk,
    }
    (lookup,) = bodies("audit.pseudonym_lookup")
    assert lookup["actor"]["ref"] == pseudonym_for(actors["auditor"])
    assert lookup["target"] == {"type": "user", "id": trail["pseudonym"]}
    assert lookup["outcome"] == "success"
    assert username not in json.dumps(bodies())


def test_every_reader_of_the_trail_may_identify_and_no_one_else():
    assert ROLE_MATRIX["audit.identify"] == ROLE_MATRIX["audit.read"]
    assert ROLE_MATRIX["audit.identify"] != ROLE_MATRIX["privacy.manage"]


@pytest.mark.parametrize("role", ["ml_engineer", "api_client"])
def test_the_service_refuses_a_lookup_without_audit_identify_and_records_it(actors, trail, role):
    for kwargs in ({"username": trail["officer"].username}, {"pseudonym": trail["pseudonym"]}):
        with pytest.raises(PermissionDenied) as refused:
            pseudonym_lookup(actor=actors[role], **kwargs)
        assert refused.value.status_code == 403
        assert "Only admins, security officers and auditors may" in refused.value.message
        assert trail["officer"].username not in refused.value.message
    denied = bodies("audit.pseudonym_lookup")
    assert [e["outcome"] for e in denied] == ["denied", "denied"]
    assert [e["details"]["direction"] for e in denied] == [
        "username_to_pseudonym",
        "pseudonym_to_username",
    ]
    assert all(e["target"] == {"type": None, "id": None} for e in denied)
    assert all(e["actor"]["ref"] == pseudonym_for(actors[role]) for e in denied)
    assert trail["officer"].username not in json.dumps(bodies())


@pytest.fixture
def readers_without_identify(monkeypatch: Any) -> None:
    """A matrix where auditors read the trail but may not identify (none such today): the
    pages' own refusals, which must hold should the matrix change."""
    monkeypatch.setitem(ROLE_MATRIX, "audit.identify", frozenset({ADMIN, SECURITY_OFFICER}))


def test_a_reader_without_audit_identify_typing_a_username_learns_nothing(
    signed_in, actors, trail, readers_without_identify
):
    client = signed_in(actors["auditor"])
    response = client.get(f"{LIST}?actor={trail['officer'].username}")
    assert response.status_code == 200
    assert seqs(response) == []
    assert "Searching by username is for admins, security officers and auditors" in text(response)
    assert trail["pseudonym"] not in response.content.decode()
    assert "Who is this pseudonym?" not in text(response)
    assert "Search by username" not in text(response)
    assert bodies("audit.pseudonym_lookup") == []
    response = client.post(SEARCH, {"username": trail["officer"].username})
    assert response.status_code == 403
    assert "Only admins, security officers and auditors may learn who" in text(response)
    assert trail["pseudonym"] not in response.content.decode()
    assert [e["outcome"] for e in bodies("audit.pseudonym_lookup")] == ["denied"]


def test_a_username_without_a_pseudonym_or_no_user_at_all(signed_in, actors, trail):
    client = signed_in(actors["security_officer"])
    newcomer = actors["ml_engineer"]
    assert not ActorPseudonym.objects.filter(user=newcomer).exists()
    response = client.post(SEARCH, {"username": newcomer.username, "outcome": "denied"})
    assert response.status_code == 303 and response["Location"] == f"{LIST}?outcome=denied"
    response = client.get(response["Location"])
    assert "has no pseudonym: they have not appeared in the audit trail" in text(response)
    assert not ActorPseudonym.objects.filter(user=newcomer).exists()  # reading makes none
    response = client.post(SEARCH, {"username": "compliance"}, follow=True)
    assert "No user is named compliance" in text(response)
    assert "goes in the actor filter as =compliance" in text(response)
    found = [e["details"]["found"] for e in bodies("audit.pseudonym_lookup")]
    assert found == [False, False]


def test_a_username_in_the_address_looks_nobody_up(signed_in, actors, trail):
    """A GET (a link from anywhere, the session cookie is SameSite=Lax) records nothing: the
    username is matched as a literal actor reference and the page offers the search."""
    client = signed_in(actors["auditor"])
    username = trail["officer"].username
    before = AuditEvent.objects.count()
    response = client.get(f"{LIST}?actor={username}")
    assert response.status_code == 200 and seqs(response) == []
    assert f"“{username}” was matched as an actor reference" in text(response)
    assert "use “Search by username” below" in text(response)
    assert trail["pseudonym"] not in response.content.decode()
    html = response.content.decode()
    assert re.search(rf'id="search-username"[^>]*value="{username}"', html)
    assert AuditEvent.objects.count() == before
    audit_chain_pending()
    assert AuditEvent.objects.count() == before and bodies("audit.pseudonym_lookup") == []
    assert client.get(f"{SEARCH}?username={username}").status_code == 405


def test_the_search_keeps_the_other_filters_and_takes_a_reference_as_it_is(
    signed_in, actors, trail
):
    client = signed_in(actors["auditor"])
    kept = {"action": "incident.created", "target": "incident:inc-1", "request_id": "r-1"}
    response = client.post(SEARCH, {**kept, "username": "bwk_abc123", "before": "9"})
    assert response["Location"] == f"{LIST}?{urlencode({**kept, 'actor': 'bwk_abc123'})}"
    response = client.post(SEARCH, {"username": ""})
    assert response.status_code == 400
    assert "Enter the username of the person whose events to show." in text(response)
    assert bodies("audit.pseudonym_lookup") == []


def test_the_search_needs_the_csrf_token(verified_login, actors, trail):
    client = verified_login(Client(enforce_csrf_checks=True), actors["auditor"])
    response = client.post(SEARCH, {"username": trail["officer"].username})
    assert response.status_code == 403
    assert bodies("audit.pseudonym_lookup") == []
    page = client.get(LIST)
    token = re.search(
        r'action="/audit/search"[^>]*>\s*<input type="hidden" name="csrfmiddlewaretoken" '
        r'value="([^"]+)"',
        page.content.decode(),
    )
    assert token, "the search form carries the CSRF token"
    response = client.post(
        SEARCH, {"username": trail["officer"].username, "csrfmiddlewaretoken": token[1]}
    )
    assert response.status_code == 303


def test_identifying_and_exporting_need_a_session_verified_with_an_authenticator(
    actors, trail, verified_login
):
    """Auditors need no authenticator to sign in (MFA_REQUIRED_ROLES), but one to learn who
    is behind a pseudonym or take the trail away: without one, they are sent to enrol."""
    auditor = actors["auditor"]
    client = Client()
    client.force_login(auditor)
    assert client.get(LIST).status_code == 200
    assert client.get(f"{LIST}events/1").status_code == 200
    assert client.get("/audit/export").status_code == 200
    attempts = [
        ("get", "/audit/pseudonyms", {}),
        ("post", "/audit/pseudonyms", {"query": trail["officer"].username}),
        ("post", SEARCH, {"username": trail["officer"].username}),
        ("post", "/audit/export", {"format": "jsonl"}),
    ]
    for method, path, data in attempts:
        response = getattr(client, method)(path, data)
        assert response.status_code == 302 and response["Location"] == "/account/mfa/", path
    page = client.get("/account/mfa/")
    assert "That page needs a session verified with an authenticator" in text(page)
    # With a device but a session that never checked it: sign in again.
    verified_login(Client(), auditor)  # gives the auditor a confirmed device
    for method, path, data in attempts:
        response = getattr(client, method)(path, data)
        assert response.status_code == 302 and response["Location"].startswith("/account/login")
    assert bodies("audit.pseudonym_lookup") == [] and bodies("audit.exported") == []
    verified = verified_login(Client(), auditor)
    assert verified.post(SEARCH, {"username": trail["officer"].username}).status_code == 303
    assert verified.post("/audit/export", {"format": "jsonl"}).status_code == 200


def test_the_lookup_page_is_refused_to_a_reader_without_audit_identify_with_a_sentence(
    signed_in, actors, trail, readers_without_identify
):
    client = signed_in(actors["auditor"])
    response = client.get("/audit/pseudonyms")
    assert response.status_code == 403
    assert "Only admins, security officers and auditors may learn who is behind" in text(response)
    response = client.post("/audit/pseudonyms", {"query": trail["pseudonym"]})
    assert response.status_code == 403
    assert trail["officer"].username not in response.content.decode()
    (refused,) = bodies("audit.pseudonym_lookup")
    assert refused["outcome"] == "denied"
    assert refused["target"] == {"type": None, "id": None}


@pytest.mark.parametrize("role", ["security_officer", "auditor"])
def test_an_officer_or_auditor_looks_up_both_ways_and_each_lookup_is_recorded(
    signed_in, actors, trail, role
):
    client = signed_in(actors[role])
    username, pseudonym = trail["officer"].username, trail["pseudonym"]
    assert client.get("/audit/pseudonyms").status_code == 200
    by_name = client.post("/audit/pseudonyms", {"query": username})
    assert by_name.status_code == 200
    assert f"{username} is {pseudonym}" in text(by_name)
    by_pseudonym = client.post("/audit/pseudonyms", {"query": pseudonym})
    assert f"{username} is {pseudonym}" in text(by_pseudonym)
    directions = [e["details"]["direction"] for e in bodies("audit.pseudonym_lookup")]
    assert directions == ["username_to_pseudonym", "pseudonym_to_username"]
    assert all(e["target"]["id"] == pseudonym for e in bodies("audit.pseudonym_lookup"))


def test_an_erased_person_maps_to_nobody(signed_in, actors, trail):
    pseudonym_erase(user_id=trail["officer"].pk)
    client = signed_in(actors["admin"])
    response = client.post("/audit/pseudonyms", {"query": trail["pseudonym"]})
    assert "maps to nobody: the person was erased" in text(response)
    assert trail["officer"].username not in response.content.decode()


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "Enter a username or a pseudonym."), ("p_" + "z" * 20, "A pseudonym is p_ followed")],
)
def test_a_malformed_lookup_is_a_400_and_not_recorded(signed_in, actors, trail, query, message):
    response = signed_in(actors["admin"]).post("/audit/pseudonyms", {"query": query})
    assert response.status_code == 400 and message in text(response)
    assert bodies("audit.pseudonym_lookup") == []


# --- one event ----------------------------------------------------------------------------


def test_an_event_page_shows_its_fields_hashes_neighbours_and_checkpoint(signed_in, actors, trail):
    client = signed_in(actors["security_officer"])
    events = AuditEvent.objects.order_by("seq")
    first, second = events[0], events[1]
    page = client.get(f"/audit/events/{second.seq}").content.decode()
    assert second.hash in page and second.prev_hash == first.hash and first.hash in page
    assert f'href="/audit/events/{first.seq}" rel="prev"' in page
    assert f'href="/audit/events/{second.seq + 1}" rel="next"' in page
    assert "req-key-2" in page and "198.51.100.0/24" in page and "scope_missing" in page
    assert "None yet: the next checkpoint" in page
    checkpoint = checkpoint_create()
    page = client.get(f"/audit/events/{second.seq}").content.decode()
    assert f"Checkpoint #{checkpoint.seq}</a>" in page
    genesis = client.get(f"/audit/events/{first.seq}").content.decode()
    assert "The genesis value" in genesis and 'rel="prev"' not in genesis
    head = client.get(f"/audit/events/{checkpoint.seq}").content.decode()
    assert "this is the chain's head" in head and 'rel="next"' not in head
    # A person's pseudonym can be looked up from there by those allowed.
    officer_event = client.get(f"/audit/events/{first.seq}").content.decode()
    assert f'name="query" value="{trail["pseudonym"]}"' in officer_event


def test_an_unknown_event_is_a_404_page(signed_in, actors, trail):
    client = signed_in(actors["auditor"])
    response = client.get("/audit/events/999999")
    assert response.status_code == 404
    assert "No audit event #999999: the chain has no such seq." in text(response)
    assert client.get("/audit/events/abc").status_code == 404
    assert client.get("/audit/events/99999999999999999999999").status_code == 404


def test_pages_still_read_when_pending_events_cannot_be_chained(
    signed_in, actors, trail, monkeypatch
):
    """Keys that cannot be read (a vault outage) leave new events pending for the scheduled
    job: the pages read what is chained, and a verification says it could not run."""
    from apps.audit import selectors
    from apps.core.secrets import SecretsError

    def unreadable(**kwargs: Any) -> int:
        raise SecretsError("AUDIT_HMAC_KEY cannot be read")

    monkeypatch.setattr(selectors, "audit_chain_pending", unreadable)
    client = signed_in(actors["auditor"])
    assert len(seqs(client.get(LIST))) == AuditEvent.objects.count()
    assert client.get("/audit/events/1").status_code == 200
    monkeypatch.setattr(selectors, "audit_chain_verify", lambda **kwargs: unreadable())
    response = client.post("/audit/chain/verify")
    assert response.status_code == 200
    assert "The audit HMAC keys cannot be read now, so nothing was verified" in text(response)


# --- the chain --------------------------------------------------------------------------


def test_the_chain_page_shows_the_head_and_pages_through_checkpoints(
    signed_in, actors, trail, monkeypatch
):
    monkeypatch.setattr(views, "CHECKPOINTS_PAGE", 2)
    made = []
    for index in range(3):
        audit_event_record("test.event", actor=None, details={"i": index})
        made.append(checkpoint_create().seq)
    client = signed_in(actors["auditor"])
    page = client.get("/audit/chain").content.decode()
    head_seq, head_hash = AuditEvent.objects.order_by("-seq").values_list("seq", "hash").first()
    assert f"event #{head_seq}" in page and head_hash in page
    assert f'id="checkpoint-{made[2]}"' in page and f'id="checkpoint-{made[1]}"' in page
    assert f'id="checkpoint-{made[0]}"' not in page
    older = client.get(f"/audit/chain?before={made[1]}").content.decode()
    assert f'id="checkpoint-{made[0]}"' in older
    assert client.get("/audit/chain?before=x").status_code == 400


@pytest.mark.parametrize("role", READERS)
def test_verifying_from_the_page_checks_the_newest_events(signed_in, actors, trail, role):
    response = signed_in(actors[role]).post("/audit/chain/verify")
    assert response.status_code == 200
    assert f"Verified: events #1 to #{AuditEvent.objects.count()}" in text(response)


def test_a_rewritten_event_is_reported_by_the_page_with_its_seq(signed_in, actors, trail):
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE audit_auditevent SET hash = %s WHERE seq = 2", ["f" * 64])
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    response = signed_in(actors["auditor"]).post("/audit/chain/verify")
    assert "The chain is broken at" in text(response)
    assert 'href="/audit/events/2"' in response.content.decode()


def test_a_verification_too_big_for_a_page_says_what_to_run(signed_in, actors, trail, monkeypatch):
    from apps.audit import selectors

    monkeypatch.setattr(selectors, "VERIFY_RECENT_MAX", 2)
    monkeypatch.setattr(
        views, "chain_verify_recent", lambda: selectors.chain_verify_recent(max_events=2)
    )
    client = signed_in(actors["auditor"])
    assert "Not verified now." in text(client.post("/audit/chain/verify"))
    checkpoint_create()  # a signed checkpoint at the head: the page verifies from there
    assert "Verified: no event was appended since the checkpoint" in text(
        client.post("/audit/chain/verify")
    )


# --- export and its verification --------------------------------------------------------


def _download(response: Any) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("role", READERS)
def test_a_jsonl_export_downloads_with_a_manifest_that_verifies(signed_in, actors, trail, role):
    response = signed_in(actors[role]).post("/audit/export", {"format": "jsonl"})
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    assert re.match(
        r'attachment; filename="bulwark-audit-\d{8}T\d{6}Z\.jsonl"', response["Content-Disposition"]
    )
    lines = _download(response).splitlines(keepends=True)
    assert json.loads(lines[-1])["manifest"]["count"] == len(lines) - 1
    check, _ = export_check(lines)
    assert check.ok and check.count == len(lines) - 1
    (exported,) = bodies("audit.exported")
    assert exported["details"]["format"] == "jsonl"


def test_a_csv_export_and_a_time_range(signed_in, actors, trail):
    client = signed_in(actors["auditor"])
    response = client.post("/audit/export", {"format": "csv"})
    assert response["Content-Type"] == "text/csv"
    rows = _download(response).decode().splitlines()
    assert rows[0].startswith("seq,ts,action,outcome,actor_type,actor_ref,target_type,target_id")
    assert len(rows) == 1 + len(bodies())  # the export event itself is in it
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M")
    empty = client.post("/audit/export", {"format": "jsonl", "since": future})
    assert json.loads(_download(empty))["manifest"]["count"] == 0
    refused = client.post("/audit/export", {"format": "xml", "since": "soon"})
    assert refused.status_code == 400
    assert "Select a valid choice." in text(refused) and "Enter a date and time" in text(refused)


def _export_bytes(client: Client) -> bytes:
    return _download(client.post("/audit/export", {"format": "jsonl"}))


def test_an_uploaded_export_verifies(signed_in, actors, trail):
    client = signed_in(actors["auditor"])
    data = _export_bytes(client)
    upload = SimpleUploadedFile("bulwark-audit.jsonl", data, "application/x-ndjson")
    response = client.post("/audit/export/verify", {"export": upload})
    assert response.status_code == 200
    count = len(data.splitlines()) - 1
    assert f"Verified: bulwark-audit.jsonl holds {count} events" in text(response)


def test_an_export_with_its_manifest_apart_verifies_too(signed_in, actors, trail):
    client = signed_in(actors["auditor"])
    *events, manifest = _export_bytes(client).splitlines(keepends=True)
    response = client.post(
        "/audit/export/verify",
        {
            "export": SimpleUploadedFile("events.jsonl", b"".join(events)),
            "manifest": SimpleUploadedFile("manifest.json", manifest),
        },
    )
    assert f"holds {len(events)} events" in text(response)


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (
            lambda lines: [lines[0].replace(b'"n":1', b'"n":2'), *lines[1:]],
            "the manifest&#x27;s sha256 does not match the lines",
        ),
        (
            lambda lines: [lines[0], *lines[2:]],
            "(line 2): seq 3 follows seq 1",
        ),
        (lambda lines: lines[:-1], "the export has no manifest: it was cut short"),
        (lambda lines: [b"not json\n"], "(line 1): the line is not JSON"),
    ],
)
def test_a_tampered_upload_is_caught_with_the_reason(signed_in, actors, trail, tamper, message):
    client = signed_in(actors["auditor"])
    lines = _export_bytes(client).splitlines(keepends=True)
    assert b'"n":1' in lines[0]
    upload = SimpleUploadedFile("bulwark-audit.jsonl", b"".join(tamper(lines)))
    response = client.post("/audit/export/verify", {"export": upload})
    assert response.status_code == 200
    assert "Not verified" in text(response) and message in text(response)


def test_a_csv_upload_is_told_it_cannot_be_verified(signed_in, actors, trail):
    client = signed_in(actors["auditor"])
    data = _download(client.post("/audit/export", {"format": "csv"}))
    response = client.post("/audit/export/verify", {"export": SimpleUploadedFile("a.csv", data)})
    assert "A CSV export carries no manifest and cannot be verified" in text(response)


def test_bad_uploads_are_refused_clearly(signed_in, actors, trail, monkeypatch):
    client = signed_in(actors["auditor"])
    missing = client.post("/audit/export/verify", {})
    assert missing.status_code == 400
    assert "Choose the JSONL export file to verify." in text(missing)
    empty = client.post("/audit/export/verify", {"export": SimpleUploadedFile("e.jsonl", b"")})
    assert empty.status_code == 400 and "The export file is empty." in text(empty)
    monkeypatch.setattr(views, "VERIFY_UPLOAD_MAX", 1024)
    big = client.post(
        "/audit/export/verify", {"export": SimpleUploadedFile("b.jsonl", b"x" * 4096)}
    )
    assert big.status_code == 413
    assert "this page verifies exports of at most" in text(big)
    assert "audit_verify_export" in text(big)
    form = client.post(
        "/audit/export/verify", "export=x", content_type="application/x-www-form-urlencoded"
    )
    assert form.status_code == 400 and "upload form (multipart)" in text(form)


def test_the_upload_needs_the_csrf_token(verified_login, actors, trail):
    client = verified_login(Client(enforce_csrf_checks=True), actors["auditor"])
    upload = SimpleUploadedFile("a.jsonl", b"{}\n")
    assert client.post("/audit/export/verify", {"export": upload}).status_code == 403
    assert client.post("/audit/export", {"format": "jsonl"}).status_code == 403


def test_the_public_key_downloads(signed_in, actors, trail):
    response = signed_in(actors["auditor"]).get("/audit/export/public-key.pem")
    assert response.status_code == 200
    assert response.content.startswith(b"-----BEGIN PUBLIC KEY-----")


# --- a big database ---------------------------------------------------------------------


def test_the_migration_indexes_the_expressions_the_filters_use():
    source = (Path(migrations_path[0]) / "0004_console_filter_indexes.py").read_text()
    namespace: dict[str, Any] = {}
    exec(compile(source, "0004", "exec"), namespace)  # noqa: S102  # our own migration file
    assert namespace["TARGET_ID_SQL"] == TARGET_ID_SQL
    assert namespace["REQUEST_ID_SQL"] == REQUEST_ID_SQL


def _index_validity() -> dict[str, bool]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, i.indisvalid FROM pg_index i JOIN pg_class c"
            " ON c.oid = i.indexrelid WHERE c.relname LIKE 'audit_auditevent_%%_ts'"
        )
        return dict(cursor.fetchall())


@pytest.mark.django_db(transaction=True)
def test_the_migration_rebuilds_an_index_an_interrupted_build_left_invalid():
    """A CONCURRENTLY build that fails leaves an INVALID index of that name; running the
    migration again (twice here) drops it and builds the real one, each time valid."""
    source = (Path(migrations_path[0]) / "0004_console_filter_indexes.py").read_text()
    namespace: dict[str, Any] = {}
    exec(compile(source, "0004", "exec"), namespace)  # noqa: S102  # our own migration file
    names = set(namespace["INDEXES"])
    audit_event_record("test.event", actor=None, details={})
    audit_chain_pending()
    assert AuditEvent.objects.exists()
    # IF EXISTS: a test of tests/audit migrates back to 0003 and leaves it there.
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS audit_auditevent_outcome_ts")
        with pytest.raises(DataError, match="division by zero"):
            cursor.execute(
                "CREATE INDEX CONCURRENTLY audit_auditevent_outcome_ts"
                " ON audit_auditevent ((1 / (seq - seq)))"
            )
    assert _index_validity()["audit_auditevent_outcome_ts"] is False
    for _ in range(2):
        with connection.schema_editor(atomic=False) as editor:
            namespace["forward"](None, editor)
        assert _index_validity() == dict.fromkeys(names, True)
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_get_indexdef('audit_auditevent_outcome_ts'::regclass)")
        assert "WHERE ((outcome)::text <> 'success'::text)" in cursor.fetchone()[0]


@pytest.mark.parametrize(
    ("query", "index"),
    [
        ("target=pricing", "audit_auditevent_target_ts"),
        ("request_id=req-key-2", "audit_auditevent_request_ts"),
        ("outcome=denied", "audit_auditevent_outcome_ts"),
        ("action=predict.rejected", "audit_auditevent_action"),
        ("actor=bwk_abc123", "audit_auditevent_actor_ref"),
        ("until=2026-01-01T00:00", "audit_auditevent_ts"),
    ],
)
def test_every_filter_is_served_by_an_index(signed_in, actors, trail, query, index):
    """With sequential scans priced out, each filter's query must find an index to use: the
    expressions of the query and of migration 0004 are the same."""
    from django.test.utils import CaptureQueriesContext

    client = signed_in(actors["auditor"])
    with CaptureQueriesContext(connection) as queries:
        assert client.get(f"{LIST}?{query}").status_code == 200
    (listing,) = [
        q["sql"]
        for q in queries.captured_queries
        if "ORDER BY" in q["sql"] and '"audit_auditevent"."body"' in q["sql"]
    ]
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute(f"EXPLAIN {listing}")
        plan = "\n".join(row[0] for row in cursor.fetchall())
        cursor.execute("SET LOCAL enable_seqscan = on")
    assert index in plan, plan
