"""Audit HMAC key rotation: each event names the key that chained it, the chain verifies across
keys, a retired key never chains again, and events from before key ids still verify."""

from __future__ import annotations

import base64
import csv
import io
import json
import os
import secrets as random
from collections.abc import Iterator

import pytest
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from django.db.migrations.executor import MigrationExecutor

from apps.audit.canonical import GENESIS_HASH, canonical_json, chain_hash
from apps.audit.export import verify_export
from apps.audit.keys import KeyRun
from apps.audit.models import AuditEvent, PendingEvent
from apps.audit.services import audit_chain_pending, audit_event_record, chain_head
from apps.audit.signing import load_public_key, public_key_pem
from apps.audit.verification import audit_chain_verify
from apps.core import secrets
from apps.core.env import dotenv_quote, parse_dotenv
from apps.core.secrets.required import (
    audit_hmac_key_id,
    audit_hmac_keys_retired_entry,
    parse_audit_hmac_keys_retired,
)

OLD = random.token_urlsafe(48)
NEW = random.token_urlsafe(48)
NEWER = random.token_urlsafe(48)
OLD_ID, NEW_ID, NEWER_ID = (audit_hmac_key_id(key.encode()) for key in (OLD, NEW, NEWER))
VERIFY = "/api/v1/audit/verify"


def _clear_secrets_cache() -> None:
    secrets._runtime_provider().clear()  # type: ignore[attr-defined]  # the TTL cache
    secrets._runtime_provider.cache_clear()


@pytest.fixture
def use_hmac_keys(monkeypatch: pytest.MonkeyPatch) -> Iterator:  # type: ignore[type-arg]
    """Configure AUDIT_HMAC_KEY and AUDIT_HMAC_KEYS_RETIRED as a restarted process would see
    them, and drop the cached values."""

    def configure(current: str, *retired: str) -> None:
        monkeypatch.setenv("AUDIT_HMAC_KEY", current)
        if retired:
            entries = (audit_hmac_keys_retired_entry(key.encode()) for key in retired)
            monkeypatch.setenv("AUDIT_HMAC_KEYS_RETIRED", ",".join(entries))
        else:
            monkeypatch.delenv("AUDIT_HMAC_KEYS_RETIRED", raising=False)
        _clear_secrets_cache()

    yield configure
    monkeypatch.undo()
    _clear_secrets_cache()


def append(count: int, action: str = "test.event") -> None:
    for index in range(count):
        audit_event_record(action, actor=None, details={"i": index})
    audit_chain_pending()


def raw(sql: str, params: list | None = None) -> None:  # type: ignore[type-arg]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def without_append_only_trigger(sql: str, params: list | None = None) -> None:  # type: ignore[type-arg]
    """What an attacker with the table owner's rights can do (undone with the test's
    transaction)."""
    raw("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
    raw(sql, params)
    raw("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


def event_body(seq: int, *, key_id: str | None, details: dict) -> str:  # type: ignore[type-arg]
    """A body as the chainer writes it; without `key_id` as it wrote it before key ids."""
    event = {
        "ts": "2026-01-02T03:04:05.123456+00:00",
        "action": "test.forged" if key_id else "test.legacy",
        "outcome": "success",
        "actor": {"type": "system", "ref": "bulwark"},
        "target": {"type": None, "id": None},
        "request_id": None,
        "ip": None,
        "details": details,
        "seq": seq,
    }
    if key_id is not None:
        event["hmac_key_id"] = key_id
    return canonical_json(event)


def insert_event(seq: int, body: str, prev_hash: str, digest: str, key_id: str) -> None:
    """INSERT straight into the table: the trigger refuses UPDATE and DELETE, not INSERT."""
    event = json.loads(body)
    raw(
        "INSERT INTO audit_auditevent (seq, ts, action, outcome, actor_type, actor_ref, body, "
        "prev_hash, hash, hmac_key_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        [seq, event["ts"], event["action"], event["outcome"], event["actor"]["type"],
         event["actor"]["ref"], body, prev_hash, digest, key_id],
    )  # fmt: skip


def append_with(key: str, *, key_id: str | None, details: dict | None = None) -> int:  # type: ignore[type-arg]
    """Append one event computed by hand under `key`, naming `key_id` (None: no id, as before
    key ids existed). Returns its seq."""
    seq, head = chain_head()
    body = event_body(seq + 1, key_id=key_id, details=details or {"n": seq + 1})
    insert_event(seq + 1, body, head, chain_hash(key.encode(), head, body), key_id or "")
    return seq + 1


def legacy_events(count: int, key: str) -> None:
    """Events as Bulwark chained them before key ids existed: no id in the body, "" in the
    column, hashed under the key of the time."""
    for _ in range(count):
        append_with(key, key_id=None)


def rotated_events(use_hmac_keys) -> None:  # type: ignore[no-untyped-def]
    """Three events under OLD, then three under NEW (OLD retired)."""
    use_hmac_keys(OLD)
    append(3, "before.rotation")
    use_hmac_keys(NEW, OLD)
    append(3, "after.rotation")


def logged(log_output: io.StringIO, message: str) -> list[dict]:  # type: ignore[type-arg]
    lines = [json.loads(line) for line in log_output.getvalue().splitlines() if line.strip()]
    return [line for line in lines if line.get("message") == message]


# --- every event names its key --------------------------------------------------------------


@pytest.mark.django_db
def test_each_event_names_the_key_that_chained_it_inside_its_hashed_body(
    use_hmac_keys, api_client, actors
):
    use_hmac_keys(OLD)
    append(2)
    for row in AuditEvent.objects.all():
        assert row.hmac_key_id == OLD_ID
        assert json.loads(row.body)["hmac_key_id"] == OLD_ID  # the hash covers it
        assert row.hash == chain_hash(OLD.encode(), row.prev_hash, row.body)
    api_client.force_authenticate(actors["auditor"])
    events = api_client.get("/api/v1/audit/events").json()["results"]
    assert {event["hmac_key_id"] for event in events} == {OLD_ID}
    assert OLD not in json.dumps(events)


@pytest.mark.django_db
def test_audit_verify_passes_across_a_rotation(use_hmac_keys, api_client, actors, capsys):
    rotated_events(use_hmac_keys)
    assert (
        list(AuditEvent.objects.values_list("hmac_key_id", flat=True))
        == [OLD_ID] * 3 + [NEW_ID] * 3
    )

    result = audit_chain_verify()

    assert (result.ok, result.checked) == (True, 6), result
    assert result.key_runs == (KeyRun(OLD_ID, 1, 3), KeyRun(NEW_ID, 4, 6))
    call_command("audit_verify")
    out = capsys.readouterr().out
    assert "OK: 6 events verified" in out
    assert f"HMAC keys: seq 1-3 under {OLD_ID}; seq 4-6 under {NEW_ID}" in out
    api_client.force_authenticate(actors["auditor"])
    assert api_client.get(VERIFY).json()["ok"] is True


@pytest.mark.django_db
def test_without_the_retired_key_the_old_events_no_longer_verify(use_hmac_keys):
    rotated_events(use_hmac_keys)
    use_hmac_keys(NEW)  # the retired key was dropped
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert f"names HMAC key {OLD_ID}, which is neither AUDIT_HMAC_KEY nor in" in result.reason


@pytest.mark.django_db
def test_incremental_verification_picks_up_at_a_seq_after_the_rotation(use_hmac_keys):
    rotated_events(use_hmac_keys)
    head_at_4 = AuditEvent.objects.get(seq=4).hash
    result = audit_chain_verify(after_seq=4, after_hash=head_at_4)
    assert (result.ok, result.checked) == (True, 2)
    assert result.key_runs == (KeyRun(NEW_ID, 5, 6),)


# --- forgeries ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_event_altered_under_the_old_key_is_still_caught(use_hmac_keys):
    rotated_events(use_hmac_keys)
    body = AuditEvent.objects.get(seq=2).body.replace('"i":1', '"i":99')
    without_append_only_trigger("UPDATE audit_auditevent SET body = %s WHERE seq = 2", [body])
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "hash does not match" in result.reason


@pytest.mark.django_db
def test_events_rewritten_with_the_old_key_break_at_the_first_event_of_the_new_key(
    use_hmac_keys,
):
    # The attacker holds the retired key and re-chains everything it chained after an edit;
    # the first event of the new key links to the old hash and cannot be re-hashed without it.
    rotated_events(use_hmac_keys)
    rows = list(AuditEvent.objects.filter(seq__lte=3).order_by("seq").values_list("seq", "body"))
    without_append_only_trigger("DELETE FROM audit_auditevent WHERE seq <= 3")
    prev = GENESIS_HASH
    for seq, body in rows:
        body = body.replace('"i":0', '"i":7') if seq == 1 else body
        digest = chain_hash(OLD.encode(), prev, body)
        insert_event(seq, body, prev, digest, OLD_ID)
        prev = digest
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 4)
    assert "prev_hash" in result.reason


@pytest.mark.django_db
def test_an_event_forged_with_the_retired_key_after_the_rotation_is_refused(use_hmac_keys):
    rotated_events(use_hmac_keys)
    # A hash that is right under the retired key, which the attacker holds.
    forged = append_with(OLD, key_id=OLD_ID)
    assert forged == 7

    result = audit_chain_verify()

    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert f"HMAC key {OLD_ID} chains again after key {NEW_ID} took over" in result.reason
    with pytest.raises(CommandError, match="FAILED at seq 7"):
        call_command("audit_verify")


@pytest.mark.django_db
def test_an_event_forged_with_the_retired_key_and_no_key_id_is_refused(use_hmac_keys):
    rotated_events(use_hmac_keys)
    append_with(OLD, key_id=None)  # posing as an event from before key ids
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert "no HMAC key id but follows events that have one" in result.reason


@pytest.mark.django_db
def test_an_event_fabricated_with_a_wrong_key_is_caught(use_hmac_keys):
    rotated_events(use_hmac_keys)
    append_with(random.token_urlsafe(48), key_id=NEW_ID)  # claims the current key
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert result.reason == "hash does not match the event's content"


@pytest.mark.django_db
def test_an_event_claiming_an_unknown_key_id_is_refused(use_hmac_keys, api_client, actors):
    rotated_events(use_hmac_keys)
    stranger = random.token_urlsafe(48)
    stranger_id = audit_hmac_key_id(stranger.encode())
    append_with(stranger, key_id=stranger_id)  # internally consistent under its own key

    result = audit_chain_verify()

    assert (result.ok, result.first_bad_seq) == (False, 7)
    assert f"names HMAC key {stranger_id}, which is neither AUDIT_HMAC_KEY nor in" in (
        result.reason
    )
    api_client.force_authenticate(actors["auditor"])
    assert api_client.get(VERIFY).json() == {
        "ok": False,
        "first_bad_seq": 7,
        "reason": result.reason,
    }


@pytest.mark.django_db
def test_an_events_key_id_swapped_in_its_column_or_its_body_is_caught(use_hmac_keys):
    rotated_events(use_hmac_keys)
    without_append_only_trigger(
        "UPDATE audit_auditevent SET hmac_key_id = %s WHERE seq = 5", [OLD_ID]
    )
    assert audit_chain_verify().first_bad_seq == 5
    without_append_only_trigger(
        "UPDATE audit_auditevent SET hmac_key_id = %s WHERE seq = 5", [NEW_ID]
    )
    assert audit_chain_verify().ok
    body = AuditEvent.objects.get(seq=5).body.replace(NEW_ID, OLD_ID)
    without_append_only_trigger("UPDATE audit_auditevent SET body = %s WHERE seq = 5", [body])
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)


# --- the chainer: never back to a retired key -------------------------------------------------


@pytest.mark.django_db
def test_a_process_still_on_the_old_key_leaves_events_pending_instead_of_chaining_them(
    use_hmac_keys, log_output
):
    rotated_events(use_hmac_keys)
    use_hmac_keys(OLD)  # a process that has not picked up the rotation yet
    audit_event_record("late.event", actor=None)

    assert audit_chain_pending() == 0

    assert PendingEvent.objects.count() == 1  # durable, waiting
    [line] = logged(log_output, "audit events left pending")
    assert f"chained under HMAC key {NEW_ID}, which this process does not hold" in line["reason"]
    assert OLD not in log_output.getvalue() and NEW not in log_output.getvalue()
    use_hmac_keys(NEW, OLD)  # the process is restarted with the new settings
    assert audit_chain_pending() == 1
    assert AuditEvent.objects.get(seq=7).hmac_key_id == NEW_ID
    assert audit_chain_verify().checked == 7


@pytest.mark.django_db
def test_a_retired_key_put_back_as_current_chains_nothing(use_hmac_keys, log_output):
    rotated_events(use_hmac_keys)
    use_hmac_keys(OLD, NEW)  # a rollback that swapped the two
    audit_event_record("late.event", actor=None)

    assert audit_chain_pending() == 0

    [line] = logged(log_output, "audit events left pending")
    assert f"AUDIT_HMAC_KEY (id {OLD_ID}) chained earlier events" in line["reason"]
    assert PendingEvent.objects.count() == 1
    assert audit_chain_verify(chain_first=False).ok


@pytest.mark.django_db
def test_the_chainer_moves_to_a_new_key_and_logs_it(use_hmac_keys, log_output):
    rotated_events(use_hmac_keys)
    [line] = logged(log_output, "audit chain moves to a new HMAC key")
    assert (line["from_key"], line["to_key"], line["after_seq"]) == (OLD_ID, NEW_ID, 3)


@pytest.mark.django_db
def test_keys_unreadable_after_a_commit_defer_chaining_and_keep_the_event(
    use_hmac_keys, monkeypatch, django_capture_on_commit_callbacks, log_output
):
    use_hmac_keys(OLD)
    monkeypatch.setenv("AUDIT_HMAC_KEYS_RETIRED", "nonsense")  # broken in the vault meanwhile
    _clear_secrets_cache()
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        audit_event_record("committed.change", actor=None)
    assert PendingEvent.objects.count() == 1
    [line] = logged(log_output, "audit chaining deferred")
    assert "AUDIT_HMAC_KEYS_RETIRED entry 1 is not id:base64" in line["error"]


# --- events from before key ids ---------------------------------------------------------------


@pytest.mark.django_db
def test_events_from_before_key_ids_verify_under_the_key_that_chained_them(use_hmac_keys):
    use_hmac_keys(OLD)
    legacy_events(3, OLD)
    append(2)  # the upgraded deployment, same key: now with ids
    use_hmac_keys(NEW, OLD)
    append(2)

    result = audit_chain_verify()

    assert (result.ok, result.checked) == (True, 7), result
    assert result.key_runs == (
        KeyRun(OLD_ID, 1, 3, legacy=True),
        KeyRun(OLD_ID, 4, 5),
        KeyRun(NEW_ID, 6, 7),
    )
    assert (
        list(AuditEvent.objects.values_list("hmac_key_id", flat=True))
        == [""] * 3 + [OLD_ID] * 2 + [NEW_ID] * 2
    )


@pytest.mark.django_db
def test_events_from_before_key_ids_and_rotated_at_once_still_verify(use_hmac_keys):
    # The deployment that brings key ids also rotates the key: no event of the old key has
    # an id, and the old key is only found by trying it.
    use_hmac_keys(OLD)
    legacy_events(3, OLD)
    use_hmac_keys(NEW, OLD)
    append(2)
    result = audit_chain_verify()
    assert result.ok, result
    assert result.key_runs == (KeyRun(OLD_ID, 1, 3, legacy=True), KeyRun(NEW_ID, 4, 5))
    use_hmac_keys(NEW)  # without the old key, nothing can vouch for them
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 1)
    assert "under any configured HMAC key" in result.reason


@pytest.mark.django_db
def test_an_event_from_before_key_ids_altered_is_caught(use_hmac_keys):
    use_hmac_keys(NEW, OLD)
    legacy_events(4, OLD)
    body = AuditEvent.objects.get(seq=3).body.replace('"n":3', '"n":33')
    without_append_only_trigger("UPDATE audit_auditevent SET body = %s WHERE seq = 3", [body])
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert result.reason == "hash does not match the event's content"


@pytest.mark.django_db
def test_the_old_key_of_events_before_key_ids_may_not_chain_after_the_new_key(use_hmac_keys):
    use_hmac_keys(NEW, OLD)
    legacy_events(2, OLD)
    append(2)  # under NEW
    append_with(OLD, key_id=OLD_ID)  # the leaked old key, now with its id
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 5)
    assert "chains again" in result.reason


@pytest.mark.django_db
def test_the_chainer_waits_when_no_configured_key_chained_the_events_before_key_ids(
    use_hmac_keys, log_output
):
    use_hmac_keys(OLD)
    legacy_events(2, OLD)
    use_hmac_keys(NEW)  # AUDIT_HMAC_KEYS_RETIRED not installed yet
    audit_event_record("new.event", actor=None)
    assert audit_chain_pending() == 0
    [line] = logged(log_output, "audit events left pending")
    assert "verify under no configured key" in line["reason"]
    use_hmac_keys(NEW, OLD)
    assert audit_chain_pending() == 1
    assert audit_chain_verify().ok


@pytest.mark.django_db(transaction=True)
def test_the_migration_leaves_earlier_events_untouched_and_they_still_verify(use_hmac_keys):
    use_hmac_keys(OLD)
    executor = MigrationExecutor(connection)
    executor.migrate([("audit", "0002_append_only_trigger")])
    try:
        prev = GENESIS_HASH
        for seq in (1, 2, 3):  # as chained before 0003: the table has no hmac_key_id column
            body = event_body(seq, key_id=None, details={"n": seq})
            digest = chain_hash(OLD.encode(), prev, body)
            event = json.loads(body)
            raw(
                "INSERT INTO audit_auditevent (seq, ts, action, outcome, actor_type, actor_ref, "
                "body, prev_hash, hash) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                [seq, event["ts"], event["action"], event["outcome"], "system", "bulwark", body,
                 prev, digest],
            )  # fmt: skip
            prev = digest
        before = list(AuditEvent.objects.values_list("seq", "body", "prev_hash", "hash"))
    finally:
        # The append-only trigger is in place throughout: an UPDATE would raise here. Then on
        # to the latest migration, so later tests find the schema (and indexes) they expect.
        MigrationExecutor(connection).migrate([("audit", "0003_hmac_key_ids")])
        latest = MigrationExecutor(connection)
        latest.migrate(latest.loader.graph.leaf_nodes("audit"))

    assert list(AuditEvent.objects.values_list("seq", "body", "prev_hash", "hash")) == before
    assert list(AuditEvent.objects.values_list("hmac_key_id", flat=True)) == ["", "", ""]
    use_hmac_keys(NEW, OLD)
    append(1)
    result = audit_chain_verify()
    assert (result.ok, result.checked) == (True, 4), result
    assert result.key_runs == (KeyRun(OLD_ID, 1, 3, legacy=True), KeyRun(NEW_ID, 4, 4))


# --- the command ----------------------------------------------------------------------------


def rotation_events() -> list[dict]:  # type: ignore[type-arg]
    audit_chain_pending()
    return [
        json.loads(body)
        for body in AuditEvent.objects.filter(action="audit.hmac_key.rotated").values_list(
            "body", flat=True
        )
    ]


@pytest.fixture
def dotenv(tmp_path, settings):  # type: ignore[no-untyped-def]
    """A development .env holding the current key, as `make run` writes it."""
    path = tmp_path / ".env"
    path.write_text(f"# generated\nDJANGO_DEBUG=false\nAUDIT_HMAC_KEY={dotenv_quote(OLD)}\n")
    path.chmod(0o600)
    settings.DOTENV_PATH = path
    return path


@pytest.mark.django_db
def test_the_command_writes_the_new_key_into_dotenv_and_the_chain_verifies_across_it(
    use_hmac_keys, dotenv, log_output
):
    use_hmac_keys(OLD)
    append(2)
    out = io.StringIO()

    call_command("rotate_audit_hmac_key", "--write-dotenv", stdout=out)

    values = parse_dotenv(dotenv.read_text())
    new_key = values["AUDIT_HMAC_KEY"]
    new_id = audit_hmac_key_id(new_key.encode())
    assert new_key != OLD and len(new_key) >= 32
    assert parse_audit_hmac_keys_retired(values["AUDIT_HMAC_KEYS_RETIRED"]) == [
        (OLD_ID, OLD.encode())
    ]
    assert values["DJANGO_DEBUG"] == "false"  # the rest of the file is kept
    assert dotenv.read_text().count("AUDIT_HMAC_KEY=") == 1
    assert dotenv.stat().st_mode & 0o777 == 0o600
    assert f"New audit HMAC key {new_id}; {OLD_ID} joins the retired keys" in out.getvalue()
    assert "restart" in out.getvalue()
    assert new_key not in out.getvalue() and new_key not in log_output.getvalue()
    [event] = rotation_events()
    assert event["details"] == {
        "from": OLD_ID,
        "to": new_id,
        "retired": [OLD_ID],
        "delivery": "dotenv",
    }
    assert event["actor"] == {"type": "system", "ref": "rotate_audit_hmac_key"}
    assert event["hmac_key_id"] == OLD_ID  # the last word of the old key

    # The processes restart with the new .env: new events are chained under the new key.
    use_hmac_keys(new_key, OLD)
    append(2)
    result = audit_chain_verify()
    assert (result.ok, result.checked) == (True, 5), result
    assert result.key_runs == (KeyRun(OLD_ID, 1, 3), KeyRun(new_id, 4, 5))


@pytest.mark.django_db
def test_the_command_prints_the_settings_on_stdout_only_when_asked(use_hmac_keys, log_output):
    use_hmac_keys(OLD)
    append(1)
    out, err = io.StringIO(), io.StringIO()

    call_command("rotate_audit_hmac_key", "--print", stdout=out, stderr=err)

    lines = out.getvalue().splitlines()
    assert [line.split("=", 1)[0] for line in lines] == [
        "AUDIT_HMAC_KEY",
        "AUDIT_HMAC_KEYS_RETIRED",
    ]
    values = parse_dotenv(out.getvalue())
    new_key = values["AUDIT_HMAC_KEY"]
    assert parse_audit_hmac_keys_retired(values["AUDIT_HMAC_KEYS_RETIRED"]) == [
        (OLD_ID, OLD.encode())
    ]
    assert "Install AUDIT_HMAC_KEYS_RETIRED first" in err.getvalue()
    assert new_key not in err.getvalue() and new_key not in log_output.getvalue()
    assert OLD not in log_output.getvalue()
    [event] = rotation_events()
    assert event["details"]["delivery"] == "stdout"
    stored = "".join(AuditEvent.objects.values_list("body", flat=True))
    encoded_old = base64.b64encode(OLD.encode()).decode()
    assert new_key not in stored and OLD not in stored and encoded_old not in stored


@pytest.mark.django_db
def test_a_second_rotation_keeps_every_earlier_key(use_hmac_keys):
    use_hmac_keys(OLD)
    append(1)
    keys = [OLD]
    for _ in range(2):
        out = io.StringIO()
        call_command("rotate_audit_hmac_key", "--print", stdout=out, stderr=io.StringIO())
        values = parse_dotenv(out.getvalue())
        retired = parse_audit_hmac_keys_retired(values["AUDIT_HMAC_KEYS_RETIRED"])
        assert {material.decode() for _, material in retired} == set(keys)
        keys.append(values["AUDIT_HMAC_KEY"])
        use_hmac_keys(keys[-1], *keys[:-1])
        append(1)
    result = audit_chain_verify()
    assert result.ok, result
    assert [run.key_id for run in result.key_runs] == [
        audit_hmac_key_id(key.encode()) for key in keys
    ]


def assert_nothing_changed(dotenv_text: str | None = None, path=None) -> None:  # type: ignore[no-untyped-def]
    # Read without chaining: the keys may be the broken configuration under test.
    assert not PendingEvent.objects.exists()
    assert not AuditEvent.objects.filter(action="audit.hmac_key.rotated").exists()
    if path is not None:
        assert path.read_text() == dotenv_text


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ([], "Say where the new key goes: --print"),
        (["--print", "--write-dotenv"], "not allowed with argument"),
    ],
)
def test_the_command_needs_exactly_one_place_for_the_key(use_hmac_keys, arguments, message):
    use_hmac_keys(OLD)
    with pytest.raises(CommandError, match=message):
        call_command("rotate_audit_hmac_key", *arguments, stdout=io.StringIO())
    assert_nothing_changed()


@pytest.mark.django_db
def test_the_command_refuses_without_a_current_key(use_hmac_keys, monkeypatch):
    use_hmac_keys(OLD)
    monkeypatch.delenv("AUDIT_HMAC_KEY")
    _clear_secrets_cache()
    with pytest.raises(CommandError, match="AUDIT_HMAC_KEY is not set: there is no current"):
        call_command("rotate_audit_hmac_key", "--print", stdout=io.StringIO())
    assert_nothing_changed()


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("retired", "message"),
    [
        ("nonsense", "entry 1 is not id:base64 with an id of 16 lower-case hex digits"),
        (f"{NEW_ID}:not base64!", f"entry '{NEW_ID}' is not valid base64"),
        (
            f"{NEW_ID}:{base64.b64encode(NEWER.encode()).decode()}",
            "the id and the key do not belong together",
        ),
        (
            f"{audit_hmac_keys_retired_entry(NEW.encode())},"
            f"{audit_hmac_keys_retired_entry(NEW.encode())}",
            f"the id '{NEW_ID}' appears twice",
        ),
    ],
)
def test_the_command_refuses_a_malformed_retired_list_naming_no_key(
    use_hmac_keys, monkeypatch, retired, message
):
    use_hmac_keys(OLD)
    monkeypatch.setenv("AUDIT_HMAC_KEYS_RETIRED", retired)
    _clear_secrets_cache()
    with pytest.raises(CommandError, match=message) as refused:
        call_command("rotate_audit_hmac_key", "--print", stdout=io.StringIO())
    assert "AUDIT_HMAC_KEYS_RETIRED" in str(refused.value)
    for key in (OLD, NEW, NEWER):
        assert key not in str(refused.value)
        assert base64.b64encode(key.encode()).decode() not in str(refused.value)
    assert_nothing_changed()


@pytest.mark.django_db
def test_the_command_refuses_when_a_key_of_the_chain_is_not_configured(use_hmac_keys):
    rotated_events(use_hmac_keys)
    use_hmac_keys(NEW)  # OLD dropped from the retired list
    with pytest.raises(CommandError, match=f"chained under HMAC key id\\(s\\) {OLD_ID}, which"):
        call_command("rotate_audit_hmac_key", "--print", stdout=io.StringIO())
    assert_nothing_changed()


@pytest.mark.django_db
def test_the_command_refuses_when_the_events_before_key_ids_match_no_key(use_hmac_keys):
    use_hmac_keys(OLD)
    legacy_events(2, OLD)
    use_hmac_keys(NEW)
    with pytest.raises(CommandError, match="chained before key ids existed verify under no"):
        call_command("rotate_audit_hmac_key", "--print", stdout=io.StringIO())
    assert_nothing_changed()


@pytest.mark.django_db
def test_write_dotenv_refuses_a_dotenv_that_is_not_a_regular_file(use_hmac_keys, settings):
    use_hmac_keys(OLD)
    settings.DOTENV_PATH = os.devnull  # the tests' own BULWARK_DOTENV
    before = os.stat(os.devnull)
    with pytest.raises(CommandError, match="is not a regular file"):
        call_command("rotate_audit_hmac_key", "--write-dotenv", stdout=io.StringIO())
    after = os.stat(os.devnull)
    assert (after.st_mode, after.st_uid) == (before.st_mode, before.st_uid)
    assert_nothing_changed()


@pytest.mark.django_db
def test_write_dotenv_refuses_when_the_key_comes_from_elsewhere(use_hmac_keys, dotenv):
    use_hmac_keys(NEW)  # the environment sets another key than .env: it would still win
    text = dotenv.read_text()
    with pytest.raises(CommandError, match="the current AUDIT_HMAC_KEY does not come from"):
        call_command("rotate_audit_hmac_key", "--write-dotenv", stdout=io.StringIO())
    assert_nothing_changed(text, dotenv)


@pytest.mark.django_db
def test_write_dotenv_is_refused_in_production(use_hmac_keys, dotenv, settings):
    use_hmac_keys(OLD)
    settings.PRODUCTION = True
    text = dotenv.read_text()
    with pytest.raises(CommandError, match="--write-dotenv is for development"):
        call_command("rotate_audit_hmac_key", "--write-dotenv", stdout=io.StringIO())
    assert_nothing_changed(text, dotenv)


# --- exports --------------------------------------------------------------------------------


def export_lines(api_client, actors, **params) -> list[bytes]:  # type: ignore[no-untyped-def]
    api_client.force_authenticate(actors["auditor"])
    response = api_client.get("/api/v1/audit/export", params)
    assert response.status_code == 200
    return b"".join(response.streaming_content).splitlines(keepends=True)


def verify_offline(tmp_path, lines: list[bytes]) -> str:  # type: ignore[no-untyped-def]
    """audit_verify_export with the public key only, as an auditor runs it."""
    pem = tmp_path / "audit-public.pem"
    pem.write_text(public_key_pem())
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"".join(lines))
    out = io.StringIO()
    call_command("audit_verify_export", str(export), "--public-key", str(pem), stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_an_export_across_a_rotation_verifies_offline_with_the_public_key_only(
    tmp_path, use_hmac_keys, api_client, actors
):
    use_hmac_keys(OLD)
    legacy_events(2, OLD)
    append(2)
    use_hmac_keys(NEW, OLD)
    append(2)

    lines = export_lines(api_client, actors)  # the export's own event is the 7th, under NEW
    result = verify_export(lines, load_public_key(public_key_pem()))

    assert (result.ok, result.count) == (True, 7), result
    assert result.key_runs == (
        KeyRun("", 1, 2, legacy=True),
        KeyRun(OLD_ID, 3, 4),
        KeyRun(NEW_ID, 5, 7),
    )
    output = verify_offline(tmp_path, lines)
    assert output.startswith("OK: 7 events, manifest signature valid")
    assert (
        f"HMAC keys: seq 1-2 (chained before key ids); seq 3-4 under {OLD_ID}; "
        f"seq 5-7 under {NEW_ID}"
    ) in output
    events = [json.loads(line) for line in lines[:-1]]
    assert [event.get("hmac_key_id") for event in events] == [None] * 2 + [OLD_ID] * 2 + [
        NEW_ID
    ] * 3


@pytest.mark.django_db
def test_an_export_of_a_chain_with_a_retired_key_chaining_again_fails_offline(
    tmp_path, use_hmac_keys, api_client, actors
):
    # The database was forged before the export: the export signs what it holds, and the key
    # order in its lines still gives the forgery away, with no HMAC key at hand.
    rotated_events(use_hmac_keys)
    append_with(OLD, key_id=OLD_ID)
    lines = export_lines(api_client, actors)
    result = verify_export(lines, load_public_key(public_key_pem()))
    assert (result.ok, result.line) == (False, 7)
    assert result.reason == f"HMAC key {OLD_ID} chains again after key {NEW_ID} took over"
    with pytest.raises(CommandError, match="FAILED \\(line 7\\): HMAC key"):
        verify_offline(tmp_path, lines)


@pytest.mark.django_db
def test_an_export_line_with_a_key_id_that_is_no_key_id_fails_offline(
    use_hmac_keys, api_client, actors
):
    rotated_events(use_hmac_keys)
    lines = export_lines(api_client, actors)
    lines[1] = lines[1].replace(OLD_ID.encode(), b"not-a-key-id")
    result = verify_export(lines, load_public_key(public_key_pem()))
    assert (result.ok, result.line, result.reason) == (
        False,
        2,
        "the line's hmac_key_id is not a key id",
    )


@pytest.mark.django_db
def test_a_csv_export_names_each_events_key(use_hmac_keys, api_client, actors):
    rotated_events(use_hmac_keys)
    api_client.force_authenticate(actors["auditor"])
    response = api_client.get("/api/v1/audit/export", {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["hmac_key_id"] for row in rows] == [OLD_ID] * 3 + [NEW_ID] * 4
