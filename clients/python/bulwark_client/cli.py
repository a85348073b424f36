"""The `bulwark` command (also `python -m bulwark_client`).

Secrets come from options or the environment (BULWARK_URL, BULWARK_KEY,
BULWARK_SIGNING_SECRET for predict; BULWARK_TOKEN, or BULWARK_USERNAME and BULWARK_PASSWORD
(prompted when missing) and --otp for operators) and are never printed, except the new key and
signing secret that `keys create` and `keys rotate` exist to show once.

Exit status: 0 done, 1 refused by the server or a failed verification, 2 bad usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from bulwark_client.client import Bulwark
from bulwark_client.errors import BulwarkError
from bulwark_client.signing import signature_header
from bulwark_client.verify import describe_key_runs, load_public_key, verify_export


class UsageError(Exception):
    pass


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")


def _env(value: str | None, name: str, what: str) -> str:
    found = value or os.environ.get(name)
    if not found:
        raise UsageError(f"{what}: give --{what} or set {name}")
    return found


def _read_body(source: str | None) -> bytes:
    if source is None or source == "-":
        return sys.stdin.buffer.read()
    return Path(source).read_bytes()


def _operator(args: argparse.Namespace) -> Bulwark:
    """A client signed in as a person: BULWARK_TOKEN, else username and password."""
    url = _env(args.url, "BULWARK_URL", "url")
    token = os.environ.get("BULWARK_TOKEN")
    if token and not args.username:
        return Bulwark(url, access_token=token, timeout=args.timeout)
    username = _env(args.username, "BULWARK_USERNAME", "username")
    password = os.environ.get("BULWARK_PASSWORD") or getpass.getpass(f"Password for {username}: ")
    return Bulwark.sign_in(url, username, password, args.otp, timeout=args.timeout)


def _print_json(value: Any) -> None:
    _out(json.dumps(value, indent=2, sort_keys=True))


def cmd_predict(args: argparse.Namespace) -> int:
    url = _env(args.url, "BULWARK_URL", "url")
    key = _env(args.key, "BULWARK_KEY", "key")
    secret = args.signing_secret or os.environ.get("BULWARK_SIGNING_SECRET") or None
    text = args.rows if args.rows is not None else _read_body(args.file).decode("utf-8")
    rows = json.loads(text)
    if isinstance(rows, dict) and "inputs" in rows:
        rows = rows["inputs"]
    if isinstance(rows, dict):
        rows = [rows]
    if not isinstance(rows, list):
        raise UsageError('rows: a JSON object, a list of objects or {"inputs": [...]}')
    client = Bulwark(url, key, secret, timeout=args.timeout, max_retries=args.max_retries)
    _print_json(client.predict(args.model, rows, args.version))
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    secret = _env(args.signing_secret, "BULWARK_SIGNING_SECRET", "signing-secret")
    if not args.path.startswith("/"):
        raise UsageError("path: the request target as sent, starting with / (query included)")
    body = _read_body(args.body)
    header = signature_header(secret, args.method, args.path, body, timestamp=args.timestamp)
    _out(f"X-Signature: {header}")
    return 0


def cmd_keys_create(args: argparse.Namespace) -> int:
    created = _operator(args).keys.create(
        args.name,
        args.scope,
        expires_in_days=args.expires_in_days,
        rate_limit=args.rate_limit,
        require_signature=True if args.require_signature else None,
        allowed_ips=args.allowed_ip or None,
    )
    _print_json(created)  # the key and signing secret: shown this once, by design
    _err("Keep the key (and signing secret) now: Bulwark never shows them again.")
    return 0


def cmd_keys_list(args: argparse.Namespace) -> int:
    for key in _operator(args).keys.iterate():
        _out(json.dumps(key, sort_keys=True))
    return 0


def cmd_keys_rotate(args: argparse.Namespace) -> int:
    rotated = _operator(args).keys.rotate(args.id, args.grace_seconds)
    _print_json(rotated)  # the new key: shown this once, by design
    _err("Keep the new key now: Bulwark never shows it again.")
    return 0


def cmd_keys_revoke(args: argparse.Namespace) -> int:
    _print_json(_operator(args).keys.revoke(args.id))
    return 0


def cmd_audit_export(args: argparse.Namespace) -> int:
    client = _operator(args)
    options = {"since": args.since, "until": args.until, "format": args.format}
    if args.output in (None, "-"):
        client.audit.export(sys.stdout.buffer, **options)
        sys.stdout.buffer.flush()
    else:
        with open(args.output, "wb") as target:
            client.audit.export(target, **options)
    return 0


def cmd_audit_public_key(args: argparse.Namespace) -> int:
    sys.stdout.write(_operator(args).audit.public_key())
    return 0


def cmd_audit_verify_export(args: argparse.Namespace) -> int:
    """As `manage.py audit_verify_export`, offline: no server, no Django."""
    try:
        public_key = load_public_key(Path(args.public_key).read_bytes())
    except (OSError, ValueError) as exc:
        _err(f"cannot use the public key: {exc}")
        return 2
    try:
        with open(args.file, "rb") as lines:
            result = verify_export(lines, public_key)
    except OSError as exc:
        _err(f"cannot read {args.file}: {exc.strerror}")
        return 2
    if not result.ok:
        where = f" (line {result.line})" if result.line else ""
        _err(f"FAILED{where}: {result.reason}")
        return 1
    _out(f"OK: {result.count} events, manifest signature valid")
    if result.key_runs:
        _out(f"HMAC keys: {describe_key_runs(result.key_runs)}")
    return 0


def _server_options(parser: argparse.ArgumentParser, *, operator: bool) -> None:
    parser.add_argument("--url", help="the server (default: $BULWARK_URL)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request")
    if operator:
        parser.add_argument(
            "--username",
            help="sign in as (default: $BULWARK_USERNAME; password from $BULWARK_PASSWORD or "
            "a prompt). Without it, $BULWARK_TOKEN (an access JWT) is used when set.",
        )
        parser.add_argument("--otp", help="the authenticator's code, if the account has one")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bulwark", description="Bulwark's HTTP API from the command line."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="predict with an API key")
    _server_options(predict, operator=False)
    predict.add_argument("model")
    predict.add_argument("--version", type=int)
    predict.add_argument("--rows", help='JSON: a row, a list of rows or {"inputs": [...]}')
    predict.add_argument("--file", help="read the rows from FILE (default: stdin)")
    predict.add_argument("--key", help="API key (default: $BULWARK_KEY; prefer the variable)")
    predict.add_argument(
        "--signing-secret", help="the key's signing secret (default: $BULWARK_SIGNING_SECRET)"
    )
    predict.add_argument("--max-retries", type=int, default=3)
    predict.set_defaults(run=cmd_predict)

    sign = commands.add_parser("sign", help="print the X-Signature header for a request body")
    sign.add_argument("--method", default="POST")
    sign.add_argument("--path", required=True, help="request target as sent, with its query")
    sign.add_argument("--body", help="the body's file (default: stdin)")
    sign.add_argument("--timestamp", type=int, help="unix seconds (default: now)")
    sign.add_argument("--signing-secret", help="default: $BULWARK_SIGNING_SECRET")
    sign.set_defaults(run=cmd_sign)

    keys = commands.add_parser("keys", help="API keys (as a signed-in person)")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="a new key for yourself; shown once")
    _server_options(create, operator=True)
    create.add_argument("--name", required=True)
    create.add_argument(
        "--scope", action="append", required=True, help="predict:<model> or predict:*; repeat"
    )
    create.add_argument("--expires-in-days", type=int)
    create.add_argument("--rate-limit", help="N/s, N/m or N/h")
    create.add_argument("--require-signature", action="store_true")
    create.add_argument("--allowed-ip", action="append", help="CIDR; repeat")
    create.set_defaults(run=cmd_keys_create)
    listing = key_commands.add_parser("list", help="your keys (all keys for admins), no secret")
    _server_options(listing, operator=True)
    listing.set_defaults(run=cmd_keys_list)
    rotate = key_commands.add_parser("rotate", help="a new key replacing ID; shown once")
    _server_options(rotate, operator=True)
    rotate.add_argument("id")
    rotate.add_argument("--grace-seconds", type=int)
    rotate.set_defaults(run=cmd_keys_rotate)
    revoke = key_commands.add_parser("revoke", help="revoke key ID now")
    _server_options(revoke, operator=True)
    revoke.add_argument("id")
    revoke.set_defaults(run=cmd_keys_revoke)

    audit = commands.add_parser("audit", help="the audit trail")
    audit_commands = audit.add_subparsers(dest="audit_command", required=True)
    export = audit_commands.add_parser("export", help="download an export (JSONL or CSV)")
    _server_options(export, operator=True)
    export.add_argument("--since", help="ISO 8601")
    export.add_argument("--until", help="ISO 8601")
    export.add_argument("--format", choices=["jsonl", "csv"], default="jsonl")
    export.add_argument("-o", "--output", help="file to write (default: stdout)")
    export.set_defaults(run=cmd_audit_export)
    public_key = audit_commands.add_parser(
        "public-key", help="print the PEM that signs export manifests"
    )
    _server_options(public_key, operator=True)
    public_key.set_defaults(run=cmd_audit_public_key)
    verify = audit_commands.add_parser(
        "verify-export", help="verify a JSONL export and its manifest offline"
    )
    verify.add_argument("file")
    verify.add_argument("--public-key", required=True, metavar="PEM", help="the PEM file")
    verify.set_defaults(run=cmd_audit_verify_export)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except UsageError as exc:
        _err(f"bulwark: {exc}")
        return 2
    except BulwarkError as exc:
        _err(f"bulwark: refused: {exc}")
        return 1
    except (OSError, ValueError) as exc:
        _err(f"bulwark: {exc}")
        return 2
    return code


if __name__ == "__main__":
    raise SystemExit(main())
