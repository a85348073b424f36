"""The chain proves that nothing was altered or removed, even by someone with database access."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from apps.audit.canonical import chain_hash
from apps.audit.models import AuditEvent, Checkpoint
from apps.audit.services import (
    audit_chain_pending,
    audit_event_record,
    checkpoint_as_dict,
    checkpoint_create,
)
from apps.audit.verification import audit_chain_verify, verify_since_checkpoint
from tests.services import database_url_of

ROOT = Path(__file__).resolve().parents[2]


def append(count: int, action: str = "test.event") -> None:
    for index in range(count):
        audit_event_record(action, actor=None, details={"i": index})
    audit_chain_pending()


def raw(sql: str, params: list | None = None) -> None:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def without_append_only_trigger(sql: str, params: list | None = None) -> None:
    """What an attacker with the table owner's rights can do. Inside the test's transaction,
    so the trigger is back (and the damage gone) when the test ends."""
    raw("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
    raw(sql, params)
    raw("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_auditevent SET action = 'x' WHERE seq = 2",
        "DELETE FROM audit_auditevent WHERE seq = 3",
    ],
)
def test_postgresql_refuses_update_and_delete_of_events(statement):
    append(3)
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        raw(statement)
    assert AuditEvent.objects.count() == 3


@pytest.mark.django_db
def test_the_orm_cannot_delete_events_either():
    append(2)
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEvent.objects.filter(seq=1).delete()


@pytest.mark.django_db
def test_a_hash_changed_in_the_database_is_found_with_its_seq():
    append(6)
    without_append_only_trigger("UPDATE audit_auditevent SET hash = %s WHERE seq = 4", ["f" * 64])
    result = audit_chain_verify()
    assert not result.ok
    assert result.first_bad_seq == 4
    assert "hash" in result.reason


@pytest.mark.django_db
def test_a_changed_body_is_found():
    append(5)
    body = AuditEvent.objects.get(seq=3).body.replace('"i":2', '"i":99')
    without_append_only_trigger("UPDATE audit_auditevent SET body = %s WHERE seq = 3", [body])
    assert audit_chain_verify().first_bad_seq == 3


@pytest.mark.django_db
def test_a_filter_column_that_disagrees_with_the_body_is_found():
    append(4)
    without_append_only_trigger("UPDATE audit_auditevent SET action = 'innocent' WHERE seq = 2")
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 2)
    assert "column" in result.reason


@pytest.mark.django_db
def test_an_event_removed_from_the_middle_is_found():
    append(5)
    without_append_only_trigger("DELETE FROM audit_auditevent WHERE seq = 3")
    result = audit_chain_verify()
    assert (result.ok, result.first_bad_seq) == (False, 3)
    assert "missing" in result.reason


@pytest.mark.django_db
def test_a_truncated_chain_fails_against_a_checkpoint_kept_before():
    append(5)
    kept = checkpoint_as_dict(checkpoint_create())  # what an auditor downloaded
    append(2)
    without_append_only_trigger("DELETE FROM audit_auditevent WHERE seq >= 4")
    assert audit_chain_verify().ok  # on its own, a cut tail is invisible
    result = verify_since_checkpoint(kept)
    assert not result.ok
    assert "removed" in result.reason


@pytest.mark.django_db
def test_a_chain_rewritten_with_the_key_fails_against_a_checkpoint():
    append(4)
    kept = checkpoint_as_dict(checkpoint_create())
    # The attacker holds the HMAC key and rebuilds every hash after changing event 2.
    key = os.environ["AUDIT_HMAC_KEY"].encode()
    rows = list(AuditEvent.objects.order_by("seq").values_list("seq", "body"))
    raw("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
    raw("DELETE FROM audit_auditevent")
    prev = "0" * 64
    for seq, body in rows:
        if seq == 2:
            body = body.replace('"i":1', '"i":7')
        digest = chain_hash(key, prev, body)
        event = json.loads(body)
        raw(
            "INSERT INTO audit_auditevent (seq, ts, action, outcome, actor_type, actor_ref, body, "
            "prev_hash, hash, hmac_key_id) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [seq, event["ts"], event["action"], event["outcome"], event["actor"]["type"],
             event["actor"]["ref"], body, prev, digest, event["hmac_key_id"]],
        )  # fmt: skip
        prev = digest
    raw("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    assert audit_chain_verify().ok  # internally consistent again
    result = verify_since_checkpoint(kept)
    assert not result.ok
    assert "rewritten" in result.reason


@pytest.mark.django_db
def test_a_forged_checkpoint_is_refused():
    append(3)
    kept = checkpoint_as_dict(checkpoint_create())
    assert verify_since_checkpoint(kept).ok
    forged = {**kept, "seq": 2}
    assert "signature" in verify_since_checkpoint(forged).reason
    assert "not {seq" in verify_since_checkpoint({"seq": 1}).reason


@pytest.mark.django_db
def test_checkpoints_are_kept_and_written_whole_to_the_log(log_output):
    append(2)
    checkpoint = checkpoint_create()
    assert Checkpoint.objects.get(seq=2) == checkpoint
    logged = [json.loads(line) for line in log_output.getvalue().splitlines()]
    [line] = [line for line in logged if line["message"] == "audit checkpoint"]
    # The copy outside the database is usable as is: the signature is not masked.
    assert line["checkpoint"] == checkpoint_as_dict(checkpoint)
    assert verify_since_checkpoint(line["checkpoint"]).ok
    assert checkpoint_create() == checkpoint  # nothing new: the same checkpoint


@pytest.mark.django_db
def test_audit_verify_command_exits_non_zero_with_the_first_bad_seq(tmp_path, capsys):
    append(3)
    call_command("audit_verify")
    assert "OK: 3 events verified" in capsys.readouterr().out
    kept = tmp_path / "checkpoint.json"
    kept.write_text(json.dumps(checkpoint_as_dict(checkpoint_create())))
    call_command("audit_verify", "--since-checkpoint", str(kept))
    without_append_only_trigger("UPDATE audit_auditevent SET hash = %s WHERE seq = 2", ["0" * 64])
    with pytest.raises(CommandError, match="FAILED at seq 2"):
        call_command("audit_verify")
    without_append_only_trigger("DELETE FROM audit_auditevent WHERE seq = 3")
    with pytest.raises(CommandError, match="removed"):
        call_command("audit_verify", "--since-checkpoint", str(kept))


WRITER = """
import os, sys, time, django
django.setup()
from django.db import transaction
from apps.audit.services import audit_event_record
start, count, name = float(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
while time.time() < start:
    time.sleep(0.001)
for i in range(count):
    with transaction.atomic():
        audit_event_record("test.concurrent", actor=name, details={"i": i})
"""


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_in_several_processes_never_fork_the_chain():
    assert connection.vendor == "postgresql"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "controlplane.test_settings",
        "DATABASE_URL": database_url_of(connection.settings_dict),
    }
    writers, per_writer = 4, 60
    start = time.time() + 2.0  # all begin together, after their imports
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(start), str(per_writer), f"writer-{n}"],
            cwd=ROOT,
            env=env,
            stderr=subprocess.PIPE,
        )
        for n in range(writers)
    ]
    for process in processes:
        _, errors = process.communicate(timeout=120)
        assert process.returncode == 0, errors.decode()[-2000:]
    audit_chain_pending()
    result = audit_chain_verify()
    assert result.ok, result
    assert result.checked == writers * per_writer
    seqs = list(AuditEvent.objects.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, writers * per_writer + 1))
    by_writer = {}
    for actor in AuditEvent.objects.values_list("actor_ref", flat=True):
        by_writer[actor] = by_writer.get(actor, 0) + 1
    assert by_writer == {f"writer-{n}": per_writer for n in range(writers)}
