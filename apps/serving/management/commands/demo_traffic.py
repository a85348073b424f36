"""`python manage.py demo_traffic [--url http://127.0.0.1:8000] [--seconds 60]`: a minute of
predict traffic against the demo, so that a newcomer sees the detectors open incidents.

A client of the HTTP API only (it reads nothing from the database, so it works against any
Bulwark that `bootstrap_demo` set up), with the keys `make run` printed once, read from the
environment (or, at a terminal, asked for without echo): BULWARK_KEY (the plain key, 10
calls a minute), BULWARK_SIGNED_KEY and BULWARK_SIGNING_SECRET (the key that signs its
requests). What it sends:

- steady traffic: about one signed call every 1.7 s and one plain call every 5 s, one to three
  rows of plausible prices each, now and then a row the schema refuses (400), and a few calls
  over the plain key's limit (429);
- a burst of 22 bad keys (unknown keys, and the plain key with a guessed secret), a third of the
  way in: 401 api_key_invalid each, which the `auth_failures_network` detector counts (default:
  20 from one network in 5 minutes);
- one signed request sent again, byte for byte, four times, half way in: 401
  signature_replayed, for the `signature_replay` detector (default: 3 in 5 minutes).

Together the refusals stay under the per-address limit of failed authentication (30 a
minute), so the steady traffic keeps working. The detectors run every minute (`make run`'s
scheduler); the incidents show at /incidents/ soon after.
"""

from __future__ import annotations

import contextlib
import getpass
import hashlib
import hmac
import json
import os
import random
import secrets
import string
import sys
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

DEMO_MODEL = "pricing"  # bootstrap_demo's
BAD_KEYS = 22
REPLAYS = 4
SIGNED_EVERY = 1.7  # seconds: about 35 calls a minute, under the signed key's 60/m
PLAIN_EVERY = 5.0  # 12 a minute: the plain key's 10/m refuses a couple (429)
INVALID_EVERY = 9  # every ninth steady call carries a row the schema refuses
TIMEOUT = 15.0


@dataclass
class Tally:
    """What came back, per phase: status and error code."""

    answers: dict[str, Counter[str]] = field(default_factory=dict)

    def add(self, phase: str, status: int, code: str | None) -> None:
        label = f"{status}" + (f" {code}" if code else "")
        self.answers.setdefault(phase, Counter())[label] += 1

    def lines(self) -> list[str]:
        return [
            f"  {phase:<16} " + ", ".join(f"{n} x {label}" for label, n in sorted(counts.items()))
            for phase, counts in self.answers.items()
        ]


@dataclass
class Stream:
    """Steady calls with one key."""

    phase: str
    key: str = field(repr=False)
    signed: bool
    every: float  # seconds between calls
    next_at: float  # time.monotonic() of the next call
    made: int = 0


class Command(BaseCommand):
    help = (
        "Send a minute of demo predict traffic, with a burst of bad keys and a replayed "
        "signature, so the detectors open incidents. Keys from the environment, as "
        "`make run` printed them: BULWARK_KEY, BULWARK_SIGNED_KEY, BULWARK_SIGNING_SECRET."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="Bulwark's address.")
        parser.add_argument("--seconds", type=float, default=60.0, help="How long (default 60).")
        parser.add_argument("--model", default=DEMO_MODEL, help="The model to call.")

    def handle(self, *args: Any, **options: Any) -> None:
        self.base = options["url"].rstrip("/")
        if not self.base.startswith(("http://", "https://")):
            raise CommandError("--url must start with http:// or https://.")
        seconds = options["seconds"]
        if not 1 <= seconds <= 3600:
            raise CommandError("--seconds must be between 1 and 3600.")
        self.path = f"/api/v1/models/{options['model']}/predict"
        self.plain = self._secret("BULWARK_KEY")
        self.signed = self._secret("BULWARK_SIGNED_KEY")
        self.signing_secret = self._secret("BULWARK_SIGNING_SECRET")
        self.tally = Tally()
        self.calls = 0
        self.rows = random.Random()  # noqa: S311  # made-up prices, not secrets
        self._check_server()
        self._explain_missing_keys()
        self.stdout.write(
            f"Sending {seconds:g} s of traffic to {self.base}{self.path} (Ctrl-C stops it early)."
        )
        try:
            self._run(seconds)
        except KeyboardInterrupt:
            self.stdout.write("Stopped early.")
        self._report()

    # --- the plan ---------------------------------------------------------------------------

    def _run(self, seconds: float) -> None:
        """The steady calls on their beat, the burst a third of the way in, the replay half
        way. A short run (or a slow first call, while the model loads) still sends each kind
        at least once."""
        start = time.monotonic()
        end = start + seconds
        steady: list[Stream] = []
        if self.signed and self.signing_secret:
            steady.append(Stream("steady (signed)", self.signed, True, SIGNED_EVERY, start))
        if self.plain:
            steady.append(Stream("steady (plain)", self.plain, False, PLAIN_EVERY, start + 0.5))
        plan: list[tuple[float, Callable[[], None]]] = [
            (start + seconds / 3, self._bad_key_burst),
            (start + seconds / 2, self._replayed_signature),
        ]
        while True:
            now = time.monotonic()
            if plan and now >= plan[0][0]:
                plan.pop(0)[1]()
                continue
            due = [s for s in steady if now >= s.next_at and (now < end or not s.made)]
            if due:
                stream = due[0]
                self._steady(stream.phase, stream.key, signed=stream.signed)
                stream.next_at = max(stream.next_at + stream.every, time.monotonic())
                stream.made += 1
                continue
            if now >= end and not plan and all(s.made for s in steady):
                return
            upcoming = [end] + [when for when, _ in plan] + [s.next_at for s in steady]
            time.sleep(max(0.01, min([m for m in upcoming if m > now] or [now + 0.05]) - now))

    def _steady(self, phase: str, key: str, *, signed: bool) -> None:
        self.calls += 1
        body = self._body(invalid=self.calls % INVALID_EVERY == 0)
        self._send(phase, key, body, signature=self._signature(body) if signed else None)

    def _bad_key_burst(self) -> None:
        self.stdout.write(
            f"Burst: {BAD_KEYS} calls with bad API keys (unknown keys, and the plain key with "
            "a guessed secret), as a credential-stuffing script would send them."
        )
        for number in range(BAD_KEYS):
            if self.plain.count("_") >= 2 and number % 2:
                public = self.plain.split("_")[1]
                key = f"bwk_{public}_{secrets.token_urlsafe(32)}"  # the right id, a wrong secret
            else:
                alphabet = string.ascii_lowercase + string.digits
                public = "".join(secrets.choice(alphabet) for _ in range(12))
                key = f"bwk_{public}_{secrets.token_urlsafe(32)}"
            self._send("bad keys", key, self._body())

    def _replayed_signature(self) -> None:
        if not (self.signed and self.signing_secret):
            self.stdout.write(
                "Replay skipped: it needs BULWARK_SIGNED_KEY and BULWARK_SIGNING_SECRET."
            )
            return
        self.stdout.write(
            f"Replay: one signed request, then the same bytes and signature {REPLAYS} more "
            "times, as someone who captured it would."
        )
        body = self._body()
        signature = self._signature(body)
        self._send("replay (first)", self.signed, body, signature=signature)
        for _ in range(REPLAYS):
            self._send("replay (again)", self.signed, body, signature=signature)

    # --- HTTP -------------------------------------------------------------------------------

    def _body(self, *, invalid: bool = False) -> bytes:
        rows = [
            {
                "price": round(self.rows.uniform(5, 500), 2),
                "demand": round(self.rows.random(), 3),
                "inventory": self.rows.randint(0, 5000),
            }
            for _ in range(self.rows.randint(1, 3))
        ]
        if invalid:
            rows[0]["price"] = 0  # below the schema's minimum: 400 invalid_input
        return json.dumps({"inputs": rows}).encode()

    def _signature(self, body: bytes) -> str:
        stamp = str(int(time.time()))
        message = f"{stamp}.POST.{self.path}.{hashlib.sha256(body).hexdigest()}".encode()
        digest = hmac.new(self.signing_secret.encode(), message, hashlib.sha256).hexdigest()
        return f"t={stamp},v1={digest}"

    def _send(self, phase: str, key: str, body: bytes, *, signature: str | None = None) -> None:
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-API-Key": key,
            "X-Request-ID": f"demo-traffic-{secrets.token_hex(6)}",
            "User-Agent": "bulwark-demo-traffic",
        }
        if signature is not None:
            headers["X-Signature"] = signature
        request = urllib.request.Request(  # noqa: S310  # --url is checked to be http(s)
            self.base + self.path, data=body, headers=headers, method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
                response.read()
                self.tally.add(phase, response.status, None)
        except urllib.error.HTTPError as refused:
            code = None
            with contextlib.suppress(ValueError, AttributeError):  # not our JSON error body
                code = json.loads(refused.read() or b"{}").get("error", {}).get("code")
            self.tally.add(phase, refused.code, code)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise CommandError(f"{self.base} stopped answering: {exc}") from None

    def _check_server(self) -> None:
        try:
            health = f"{self.base}/healthz"
            with urllib.request.urlopen(health, timeout=TIMEOUT) as response:  # noqa: S310
                response.read()
        except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
            raise CommandError(
                f"Nothing answers at {self.base} ({exc}). Start Bulwark first (`make run`), "
                "then run this in a second terminal."
            ) from None

    def _secret(self, name: str) -> str:
        """From the environment, or, at a terminal, asked for without echo (pasting the line
        `make run` printed, name included, works too). Never on the command line, where
        other users' `ps` and the shell's history would keep it."""
        value = os.environ.get(name, "").strip()
        if value or not sys.stdin.isatty():
            return value
        typed = getpass.getpass(f"{name} (printed once by `make run`; Enter to skip): ").strip()
        return typed.removeprefix(f"{name}=").strip()

    def _explain_missing_keys(self) -> None:
        missing = [
            name
            for name, value in (
                ("BULWARK_KEY", self.plain),
                ("BULWARK_SIGNED_KEY", self.signed),
                ("BULWARK_SIGNING_SECRET", self.signing_secret),
            )
            if not value
        ]
        if missing:
            self.stdout.write(
                self.style.WARNING(
                    f"Not given: {', '.join(missing)}. `make run` printed them once, when it "
                    "created the demo (new keys for demo-client: the Keys page). Without the "
                    "plain key no plain calls; without the signed key and its secret no signed "
                    "calls and no replay; the bad-key burst is sent in any case."
                )
            )

    def _report(self) -> None:
        self.stdout.write("What came back (status and error code):")
        for line in self.tally.lines():
            self.stdout.write(line)
        self.stdout.write(
            "\nThe detectors read the audit trail every minute (the scheduler of `make run`). "
            "Within a minute or two\nthey open (or, when one is already open, add to it):\n"
            "  - 'Burst of failed authentication from <your network>' (SEV3): the bad keys,\n"
            "  - 'Replayed request signatures for API key ...' (SEV2): the replay.\n"
            "Where to look:\n"
            f"  {self.base}/incidents/   the incidents (sign in as the demo admin)\n"
            f"  {self.base}/             the dashboard: traffic and refusals by code\n"
            f"  {self.base}/audit/       each refusal, as an apikey.rejected or predict.rejected "
            "event (request ids demo-traffic-...)"
        )
