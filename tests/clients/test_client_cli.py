"""The `bulwark` command, run as a separate process (`python -m bulwark_client`) against the live
server: predict, sign, keys, and an audit export verified offline without Django, with a
tampered line, a truncated file and a wrong public key caught."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from django.core.management import call_command

from tests.apikeys.factories import ApiKeyFactory
from tests.clients.conftest import CLIENT_ROOT, PASSWORD
from tests.serving.conftest import ROW

pytestmark = pytest.mark.django_db(transaction=True)


def bulwark(
    *args: str, env: dict[str, str] | None = None, importtime: bool = False, stdin: bytes = b""
) -> subprocess.CompletedProcess[str]:
    """The command in a process of its own, with no Django settings in its environment."""
    clean = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("DJANGO", "BULWARK_"))
    }
    clean["PYTHONPATH"] = str(CLIENT_ROOT)
    python = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m"]
    return subprocess.run(
        [*python, "bulwark_client", *args],
        env={**clean, **(env or {})},
        input=stdin.decode(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_predict_and_sign(server: str, people: dict[str, Any], tmp_path: Path) -> None:
    _, key, secret = ApiKeyFactory.issue_signed(owner=people["ml_engineer"])
    env = {"BULWARK_URL": server, "BULWARK_KEY": key, "BULWARK_SIGNING_SECRET": secret}
    done = bulwark("predict", "pricing", "--rows", json.dumps([ROW]), env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["model"] == "pricing"
    assert key not in done.stdout + done.stderr and secret not in done.stdout + done.stderr

    # `sign` prints the header a curl call needs; the server accepts it.
    body = json.dumps({"inputs": [ROW]}).encode()
    (tmp_path / "body.json").write_bytes(body)
    path = "/api/v1/models/pricing/predict?version=1"
    signed = bulwark("sign", "--path", path, "--body", str(tmp_path / "body.json"), env=env)
    assert signed.returncode == 0, signed.stderr
    name, _, value = signed.stdout.strip().partition(": ")
    assert name == "X-Signature" and value.startswith("t=") and secret not in signed.stdout
    request = urllib.request.Request(
        server + path,
        data=body,
        method="POST",
        headers={"Content-Type": "application/json", "X-API-Key": key, name: value},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.status == 200

    # Refused: exit 1, the code and request id on stderr, no secret.
    wrong = bulwark(
        "predict", "pricing", "--rows", json.dumps(ROW), env={**env, "BULWARK_KEY": "bwk_x_y"}
    )
    assert wrong.returncode == 1 and "api_key_invalid (401, request " in wrong.stderr
    assert secret not in wrong.stderr
    # Bad usage: exit 2.
    assert bulwark("predict", "pricing", "--rows", "[]").returncode == 2  # no URL, no key


def test_keys_create_rotate_revoke(server: str, people: dict[str, Any]) -> None:
    env = {
        "BULWARK_URL": server,
        "BULWARK_USERNAME": people["ml_engineer"].username,
        "BULWARK_PASSWORD": PASSWORD,
    }
    created = bulwark(
        "keys", "create", "--name", "cli", "--scope", "predict:pricing", "--rate-limit", "10/m",
        env=env,
    )  # fmt: skip
    assert created.returncode == 0, created.stderr
    key = json.loads(created.stdout)
    assert key["key"].startswith("bwk_") and "never shows them again" in created.stderr
    assert PASSWORD not in created.stdout + created.stderr

    listed = bulwark("keys", "list", env=env)
    assert listed.returncode == 0 and key["prefix"] in listed.stdout
    assert key["key"] not in listed.stdout

    rotated = bulwark("keys", "rotate", key["id"], "--grace-seconds", "0", env=env)
    assert rotated.returncode == 0, rotated.stderr
    successor = json.loads(rotated.stdout)
    revoked = bulwark("keys", "revoke", successor["id"], env=env)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["status"] == "revoked"
    again = bulwark("keys", "revoke", "00000000-0000-0000-0000-000000000000", env=env)
    assert again.returncode == 1 and "not_found (404" in again.stderr


def test_audit_export_verified_offline_without_django(
    server: str, people: dict[str, Any], tmp_path: Path
) -> None:
    _, key = ApiKeyFactory.issue(owner=people["ml_engineer"])
    from bulwark_client import Bulwark

    Bulwark(server, key).predict("pricing", [ROW])  # something in the trail
    env = {
        "BULWARK_URL": server,
        "BULWARK_USERNAME": people["auditor"].username,
        "BULWARK_PASSWORD": PASSWORD,
    }
    export, pem = tmp_path / "audit.jsonl", tmp_path / "audit.pem"
    done = bulwark("audit", "export", "-o", str(export), env=env)
    assert done.returncode == 0, done.stderr
    public = bulwark("audit", "public-key", env=env)
    assert public.returncode == 0 and "BEGIN PUBLIC KEY" in public.stdout
    pem.write_text(public.stdout)
    lines = export.read_bytes().splitlines(keepends=True)
    assert len(lines) > 3 and b'"manifest"' in lines[-1]

    # Offline: no server (its URL is not even given), no Django imported.
    verified = bulwark(
        "audit", "verify-export", str(export), "--public-key", str(pem), importtime=True
    )
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith(f"OK: {len(lines) - 1} events, manifest signature valid")
    imported = [line.split("|")[-1].strip() for line in verified.stderr.splitlines()]
    assert "bulwark_client.verify" in imported
    assert not [
        name for name in imported if name.split(".")[0] in {"django", "apps", "rest_framework"}
    ]

    # The same verdict, word for word, as the server's own offline verifier.
    out = io.StringIO()
    call_command("audit_verify_export", str(export), "--public-key", str(pem), stdout=out)
    assert out.getvalue() == verified.stdout

    def refused(lines_: list[bytes], public_key: Path = pem) -> str:
        target = tmp_path / "changed.jsonl"
        target.write_bytes(b"".join(lines_))
        done = bulwark("audit", "verify-export", str(target), "--public-key", str(public_key))
        assert done.returncode == 1 and done.stdout == "", done
        return done.stderr

    event = json.loads(lines[1])
    event["outcome"] = "failure" if event["outcome"] != "failure" else "success"
    tampered = [lines[0], (json.dumps(event, separators=(",", ":")) + "\n").encode(), *lines[2:]]
    assert "the manifest's sha256 does not match the lines" in refused(tampered)
    assert "the export has no manifest: it was cut short" in refused(lines[:-1])
    assert "seq" in refused([lines[0], *lines[2:]])  # a line removed

    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    assert "signature is not valid for this public key" in refused(lines, other)
    broken = bulwark("audit", "verify-export", str(export), "--public-key", str(export))
    assert broken.returncode == 2 and "cannot use the public key" in broken.stderr
