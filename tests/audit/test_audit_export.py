from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import CommandError, call_command

from apps.audit.export import CSV_COLUMNS, verify_export
from apps.audit.models import AuditEvent, Checkpoint, PendingEvent
from apps.audit.services import audit_chain_pending, audit_event_record
from apps.audit.signing import load_public_key, public_key_pem
from apps.audit.subjects import pseudonym_for
from apps.core.request_context import request_facts

pytestmark = pytest.mark.django_db

EXPORT = "/api/v1/audit/export"
# hmac_key_id (the key that chained the event) is an addition to docs/api.md's fields.
EVENT_FIELDS = {
    "seq", "ts", "action", "outcome", "actor", "target", "request_id", "ip", "details",
    "prev_hash", "hash", "hmac_key_id",
}  # fmt: skip
MANIFEST_FIELDS = {
    "count", "first_seq", "last_seq", "head", "generated_at", "sha256", "signature",
}  # fmt: skip


@pytest.fixture
def auditor_client(api_client, actors):  # type: ignore[no-untyped-def]
    api_client.force_authenticate(actors["auditor"])
    return api_client


@pytest.fixture
def recorded():  # type: ignore[no-untyped-def]
    """Five events, each with details {"n": i}, already chained."""
    for index in range(1, 6):
        audit_event_record("model.created", actor=None, details={"n": index})
    audit_chain_pending()
    return list(AuditEvent.objects.order_by("seq"))


def download(response) -> bytes:  # type: ignore[no-untyped-def]
    assert response.status_code == 200
    assert response.streaming
    return b"".join(response.streaming_content)


def jsonl_export(client, **params) -> list[bytes]:  # type: ignore[no-untyped-def]
    # JSONL is the default; the tests that name ?format= do so on purpose.
    return download(client.get(EXPORT, params)).splitlines(keepends=True)


def manifest_of(lines: list[bytes]) -> dict:  # type: ignore[type-arg]
    last = json.loads(lines[-1])
    assert set(last) == {"manifest"}
    return last["manifest"]


def events_of(lines: list[bytes]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in lines[:-1]]


# JSONL --------------------------------------------------------------------------------------


def test_a_jsonl_export_is_an_ndjson_attachment(auditor_client, recorded):
    response = auditor_client.get(EXPORT, {"format": "jsonl"})
    assert response.status_code == 200
    assert response.headers["Content-Type"].split(";")[0] == "application/x-ndjson"
    disposition = response.headers["Content-Disposition"]
    assert re.fullmatch(r'attachment; filename="?[\w.-]+\.jsonl"?', disposition), disposition
    assert download(response).endswith(b"\n")


def test_jsonl_is_the_default_format(auditor_client, recorded):
    response = auditor_client.get(EXPORT)
    assert response.headers["Content-Type"].split(";")[0] == "application/x-ndjson"
    assert "manifest" in json.loads(download(response).splitlines()[-1])


def test_a_jsonl_export_is_every_event_then_a_signed_manifest(auditor_client, recorded):
    lines = jsonl_export(auditor_client)
    events, manifest = events_of(lines), manifest_of(lines)
    stored = {row.seq: row for row in AuditEvent.objects.all()}
    assert [event["seq"] for event in events] == sorted(stored) == list(range(1, len(stored) + 1))
    for event in events:
        assert set(event) == EVENT_FIELDS
        assert event["hash"] == stored[event["seq"]].hash
        assert event["prev_hash"] == stored[event["seq"]].prev_hash
    assert [event["details"] for event in events[:5]] == [{"n": n} for n in range(1, 6)]
    assert set(manifest) == MANIFEST_FIELDS
    assert manifest["count"] == len(events)
    assert manifest["first_seq"] == 1
    assert manifest["last_seq"] == events[-1]["seq"]
    assert manifest["head"] == events[-1]["hash"]
    statement = {name: value for name, value in manifest.items() if name != "signature"}
    message = json.dumps(statement, sort_keys=True, separators=(",", ":")).encode()
    load_public_key(public_key_pem()).verify(bytes.fromhex(manifest["signature"]), message)


def test_an_export_records_itself_and_includes_that_event(auditor_client, actors, recorded):
    lines = jsonl_export(auditor_client)
    exported = [event for event in events_of(lines) if event["action"] == "audit.exported"]
    assert len(exported) == 1
    [event] = exported
    assert event["actor"] == {"type": "user", "ref": pseudonym_for(actors["auditor"])}
    assert event["details"] == {"format": "jsonl", "since": None, "until": None}
    assert event["outcome"] == "success"
    assert event["seq"] == manifest_of(lines)["last_seq"]
    assert actors["auditor"].username.encode() not in b"".join(lines)


def test_an_export_signs_a_checkpoint_at_its_last_event(auditor_client, recorded):
    assert not Checkpoint.objects.exists()
    manifest = manifest_of(jsonl_export(auditor_client))
    checkpoint = Checkpoint.objects.get(seq=manifest["last_seq"])
    assert checkpoint.head == manifest["head"]


def test_events_recorded_while_an_export_streams_are_left_out(auditor_client, recorded):
    response = auditor_client.get(EXPORT)
    audit_event_record("model.created", actor=None, details={"n": "late"})
    audit_chain_pending()
    lines = download(response).splitlines(keepends=True)
    assert all(event["details"] != {"n": "late"} for event in events_of(lines))
    assert manifest_of(lines)["last_seq"] == AuditEvent.objects.count() - 1


def test_since_and_until_restrict_the_export_to_a_contiguous_range(auditor_client, recorded):
    since, until = recorded[1].ts, recorded[4].ts
    lines = jsonl_export(auditor_client, since=since.isoformat(), until=until.isoformat())
    expected = [row.seq for row in AuditEvent.objects.order_by("seq") if since <= row.ts < until]
    got = [event["seq"] for event in events_of(lines)]
    assert got == expected
    assert got == list(range(got[0], got[-1] + 1))
    assert 1 not in got and 5 not in got
    manifest = manifest_of(lines)
    assert (manifest["count"], manifest["first_seq"], manifest["last_seq"]) == (
        len(got),
        got[0],
        got[-1],
    )
    assert verify_export(lines, load_public_key(public_key_pem())).ok


def test_the_export_event_names_the_range_asked_for(auditor_client, recorded):
    since = recorded[2].ts
    lines = jsonl_export(auditor_client, since=since.isoformat())
    [event] = [event for event in events_of(lines) if event["action"] == "audit.exported"]
    assert event["details"]["format"] == "jsonl"
    assert event["details"]["since"] is not None and event["details"]["until"] is None
    assert events_of(lines)[0]["seq"] == 3


def test_an_export_of_an_empty_range_still_has_a_signed_manifest(auditor_client, recorded):
    lines = jsonl_export(auditor_client, since="2000-01-01T00:00:00Z", until="2000-01-02T00:00:00Z")
    assert len(lines) == 1
    manifest = manifest_of(lines)
    assert manifest["count"] == 0 and manifest["first_seq"] is None
    assert verify_export(lines, load_public_key(public_key_pem())).ok


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"format": "xml"}, "format"),
        ({"since": "last tuesday"}, "since"),
        ({"since": "2025-01-02T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "until"),
    ],
)
def test_a_bad_export_request_is_invalid_input_and_records_nothing(
    auditor_client, recorded, params, path
):
    before = AuditEvent.objects.count()
    response = auditor_client.get(EXPORT, params)
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["code"] == "invalid_input"
    assert path in [detail["path"] for detail in body["error"]["details"]]
    assert AuditEvent.objects.count() == before and not PendingEvent.objects.exists()


# CSV ----------------------------------------------------------------------------------------


def csv_rows(client, **params) -> tuple:  # type: ignore[no-untyped-def,type-arg]
    response = client.get(EXPORT, {"format": "csv", **params})
    text = download(response).decode("utf-8")
    return response, list(csv.reader(io.StringIO(text)))


def test_a_csv_export_is_a_header_and_one_row_per_event(auditor_client, recorded):
    response, table = csv_rows(auditor_client)
    assert response.headers["Content-Type"].split(";")[0] == "text/csv"
    assert re.fullmatch(
        r'attachment; filename="?[\w.-]+\.csv"?', response.headers["Content-Disposition"]
    )
    header, *body = table
    assert tuple(header) == CSV_COLUMNS
    assert len(body) == AuditEvent.objects.count()  # the export's own event included
    by_seq = {int(row[0]): dict(zip(header, row, strict=True)) for row in body}
    assert sorted(by_seq) == list(range(1, len(body) + 1))
    assert json.loads(by_seq[2]["details"]) == {"n": 2}
    assert by_seq[2]["hash"] == recorded[1].hash
    assert by_seq[len(body)]["action"] == "audit.exported"
    assert json.loads(by_seq[len(body)]["details"])["format"] == "csv"


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised(auditor_client):
    # A client may send any [A-Za-z0-9._-]+ request id.
    with request_facts(request_id="-2+3", client_ip="203.0.113.9"):
        audit_event_record(
            "model.created",
            actor=None,
            target=("model", "=HYPERLINK(1)"),
            details={"note": "=HYPERLINK(1)"},
        )
    _, table = csv_rows(auditor_client)
    header, first = table[0], dict(zip(table[0], table[1], strict=True))
    assert header.index("target_id") >= 0
    assert first["target_id"] == "'=HYPERLINK(1)"
    assert first["request_id"] == "'-2+3"
    # The details cell is JSON and starts with "{", so no spreadsheet runs it; it stays parseable.
    assert json.loads(first["details"]) == {"note": "=HYPERLINK(1)"}
    for row in table:
        for cell in row:
            assert cell[:1] not in {"=", "+", "-", "@"}, cell


def test_csv_since_and_until_restrict_the_rows(auditor_client, recorded):
    since, until = recorded[1].ts, recorded[3].ts
    _, table = csv_rows(auditor_client, since=since.isoformat(), until=until.isoformat())
    assert [int(row[0]) for row in table[1:]] == [2, 3]


# Offline verification -------------------------------------------------------------------------


@pytest.fixture
def export_lines(auditor_client, recorded) -> list[bytes]:  # type: ignore[no-untyped-def]
    return jsonl_export(auditor_client)


@pytest.fixture
def public_pem(tmp_path, auditor_client):  # type: ignore[no-untyped-def]
    path = tmp_path / "audit-public.pem"
    path.write_text(auditor_client.get("/api/v1/audit/public-key").json()["public_key_pem"])
    return path


def verify_with_command(tmp_path, lines: list[bytes], pem) -> str:  # type: ignore[no-untyped-def]
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"".join(lines))
    out = io.StringIO()
    call_command("audit_verify_export", str(export), "--public-key", str(pem), stdout=out)
    return out.getvalue()


def test_an_untouched_export_verifies_offline(tmp_path, export_lines, public_pem):
    output = verify_with_command(tmp_path, export_lines, public_pem)
    assert output.startswith("OK")
    assert f"{len(export_lines) - 1} events" in output


def test_an_export_verifies_with_the_deployments_own_key_by_default(tmp_path, export_lines):
    export = tmp_path / "export.jsonl"
    export.write_bytes(b"".join(export_lines))
    out = io.StringIO()
    call_command("audit_verify_export", str(export), stdout=out)
    assert out.getvalue().startswith("OK")


def edit_details(lines: list[bytes]) -> list[bytes]:
    assert b'"details":{"n":2}' in lines[1]
    return [lines[0], lines[1].replace(b'"n":2', b'"n":7'), *lines[2:]]


def edit_details_and_rehash_manifest(lines: list[bytes]) -> list[bytes]:
    """The forger recomputes every unsigned number; only the signature gives them away."""
    edited = edit_details(lines)
    manifest = manifest_of(edited)
    manifest["sha256"] = hashlib.sha256(b"".join(edited[:-1])).hexdigest()
    return [*edited[:-1], (json.dumps({"manifest": manifest}) + "\n").encode()]


def remove_a_line(lines: list[bytes]) -> list[bytes]:
    return [*lines[:2], *lines[3:]]


def remove_the_last_event(lines: list[bytes]) -> list[bytes]:
    return [*lines[:-2], lines[-1]]


def swap_two_lines(lines: list[bytes]) -> list[bytes]:
    return [lines[0], lines[2], lines[1], *lines[3:]]


def duplicate_a_line(lines: list[bytes]) -> list[bytes]:
    return [*lines[:2], lines[1], *lines[2:]]


def append_a_forged_event(lines: list[bytes]) -> list[bytes]:
    last = json.loads(lines[-2])
    forged = {**last, "seq": last["seq"] + 1, "prev_hash": last["hash"], "hash": "e" * 64}
    return [*lines[:-1], (json.dumps(forged) + "\n").encode(), lines[-1]]


def add_a_line_after_the_manifest(lines: list[bytes]) -> list[bytes]:
    return [*lines, lines[0]]


def alter_the_signature(lines: list[bytes]) -> list[bytes]:
    manifest = manifest_of(lines)
    signature = manifest["signature"]
    manifest["signature"] = ("0" if signature[0] != "0" else "1") + signature[1:]
    return [*lines[:-1], (json.dumps({"manifest": manifest}) + "\n").encode()]


def alter_the_manifest_count(lines: list[bytes]) -> list[bytes]:
    manifest = manifest_of(lines)
    manifest["count"] += 1
    return [*lines[:-1], (json.dumps({"manifest": manifest}) + "\n").encode()]


def remove_the_manifest(lines: list[bytes]) -> list[bytes]:
    return lines[:-1]


def add_a_non_json_line(lines: list[bytes]) -> list[bytes]:
    return [lines[0], b"not json\n", *lines[1:]]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        (edit_details, "the manifest's sha256 does not match"),
        (edit_details_and_rehash_manifest, "signature is not valid"),
        (remove_a_line, "seq 4 follows seq 2"),
        (remove_the_last_event, "the manifest's count does not match"),
        (swap_two_lines, "seq 3 follows seq 1"),
        (duplicate_a_line, "seq 2 follows seq 2"),
        (append_a_forged_event, "the manifest's count does not match"),
        (add_a_line_after_the_manifest, "a line follows the manifest"),
        (alter_the_signature, "signature is not valid"),
        (alter_the_manifest_count, "the manifest's count does not match"),
        (remove_the_manifest, "no manifest"),
        (add_a_non_json_line, "not JSON"),
    ],
    ids=lambda value: value.__name__ if callable(value) else None,
)
def test_a_tampered_export_fails_offline_verification(
    tmp_path,
    export_lines,
    public_pem,
    tamper: Callable[[list[bytes]], list[bytes]],
    reason: str,
):
    tampered = tamper(list(export_lines))
    assert tampered != export_lines
    result = verify_export(tampered, load_public_key(public_pem.read_text()))
    assert result.ok is False
    assert reason in (result.reason or "")
    with pytest.raises(CommandError, match="FAILED") as failure:
        verify_with_command(tmp_path, tampered, public_pem)
    assert reason in str(failure.value)


def test_an_export_fails_verification_with_another_public_key(tmp_path, export_lines):
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(CommandError, match="signature is not valid for this public key"):
        verify_with_command(tmp_path, export_lines, other)


@pytest.mark.parametrize("content", ["not a key", None])
def test_verification_refuses_an_unusable_public_key(tmp_path, export_lines, content):
    pem = tmp_path / "bad.pem"
    if content is not None:
        pem.write_text(content)
    with pytest.raises(CommandError, match="cannot use the public key"):
        verify_with_command(tmp_path, export_lines, pem)


def test_verification_of_a_missing_file_is_a_command_error(tmp_path, public_pem):
    with pytest.raises(CommandError, match="cannot read"):
        call_command(
            "audit_verify_export", str(tmp_path / "absent.jsonl"), "--public-key", str(public_pem)
        )
