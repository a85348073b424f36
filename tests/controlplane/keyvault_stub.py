"""A local stand-in for Azure Key Vault's secrets REST API and App Service's managed-identity
token endpoint, served over HTTPS on 127.0.0.1 so the real azure-identity and
azure-keyvault-secrets SDKs can be tested without Azure.

The stub speaks just enough of both protocols for `SecretClient.get_secret` through
`DefaultAzureCredential`: the challenge (401 + WWW-Authenticate), the managed-identity token
request, and bearer-authenticated reads answered 200 or 404.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from secrets import token_hex, token_urlsafe
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TENANT_ID = "11111111-2222-4333-8444-555555555555"  # any tenant: the stub does not check it
MSI_API_VERSION = "2019-08-01"
# GET /secrets/{name}/ (latest version; the SDK's form) or /secrets/{name}/{version}.
_SECRET_PATH = re.compile(r"^/secrets/(?P<name>[0-9A-Za-z-]{1,127})(?:/[0-9A-Za-z]*)?/?$")


def write_self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for IP 127.0.0.1 and its key, as PEM files. The certificate is
    also the CA bundle the SDK is told to trust (REQUESTS_CA_BUNDLE)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bulwark test Key Vault stub")])
    now = dt.datetime.now(dt.UTC)
    public_key = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]),
            critical=False,
        )
        # A trust anchor that also serves TLS, like `openssl req -x509`: CA flag and both usages.
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(public_key), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    cert_file = directory / "keyvault-stub.crt"
    key_file = directory / "keyvault-stub.key"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: KeyVaultStub


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep pytest output clean; the stub records what tests need

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        query = {key: values[-1] for key, values in parse_qs(url.query).items()}
        stub = self.server.stub
        if url.path == "/msi/token":
            self._token(stub, query)
            return
        match = _SECRET_PATH.match(url.path)
        if match is None:
            self._json(404, {"error": {"code": "NotFound", "message": "No such endpoint."}})
            return
        if not query.get("api-version"):
            self._json(400, {"error": {"code": "BadParameter", "message": "api-version missing"}})
            return
        token = self.headers.get("Authorization", "").removeprefix("Bearer ")
        if not stub.accepts_token(token):
            stub.count_challenge()
            self._challenge(stub)
            return
        name = match["name"].lower()
        version, value = stub.read(name, token)
        if value is None:
            message = f"A secret with (name/id) {name} was not found in this key vault."
            self._json(404, {"error": {"code": "SecretNotFound", "message": message}})
            return
        self._json(
            200,
            {
                "value": value,
                "id": f"{stub.url}/secrets/{name}/{version}",
                "attributes": {"enabled": True, "recoveryLevel": "Recoverable+Purgeable"},
            },
        )

    def _token(self, stub: KeyVaultStub, query: dict[str, str]) -> None:
        # The App Service identity endpoint answers only its own platform's secret header.
        if self.headers.get("X-IDENTITY-HEADER") != stub.identity_header:
            self._json(401, {"statusCode": 401, "message": "X-IDENTITY-HEADER is wrong."})
            return
        if query.get("api-version") != MSI_API_VERSION:
            self._json(400, {"statusCode": 400, "message": "Unsupported api-version."})
            return
        resource = query.get("resource", "")
        token = stub.issue_token(resource)
        if token is None:
            self._json(400, {"statusCode": 400, "message": f"Unknown resource {resource!r}."})
            return
        self._json(
            200,
            {
                "access_token": token,
                "expires_on": str(int(time.time()) + 3600),
                "resource": resource,
                "token_type": "Bearer",
            },
        )

    def _challenge(self, stub: KeyVaultStub) -> None:
        body = json.dumps(
            {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer."}}
        ).encode()
        self.send_response(401)
        self.send_header(
            "WWW-Authenticate",
            f'Bearer authorization="https://login.microsoftonline.com/{TENANT_ID}", '
            f'resource="{stub.resource}"',
        )
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class KeyVaultStub:
    """Key Vault plus managed-identity endpoint on https://127.0.0.1:<free port>.

    Secrets are keyed by vault name (`jwt-signing-key`). `reads` counts authenticated reads
    per vault name (what a real vault would bill), `challenges` the unauthenticated requests
    answered with 401, `token_requests` the resources managed identity was asked for, and
    `tokens_seen` the bearer tokens presented on accepted reads.
    """

    def __init__(
        self, cert_file: Path, key_file: Path, secrets: Mapping[str, str] | None = None
    ) -> None:
        self.cert_file = cert_file
        self.identity_header = token_urlsafe(24)
        self.reads: Counter[str] = Counter()
        self.challenges = 0
        self.token_requests: list[str] = []
        self.tokens_seen: list[str] = []
        self._secrets: dict[str, tuple[str, str]] = {}
        self._issued: set[str] = set()
        self._lock = threading.Lock()
        for name, value in (secrets or {}).items():
            self.set_secret(name, value)

        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.stub = self
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        # Handshake in the per-request thread, so a client that stalls cannot block accept().
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port: int = self._server.server_address[1]
        self.url = f"https://127.0.0.1:{self.port}"
        # The SDK accepts a challenge only if the vault host ends with "." + the resource's host
        # (real vaults: my-vault.vault.azure.net under resource https://vault.azure.net).
        # "127.0.0.1:<port>" ends with ".0.0.1:<port>", so this resource passes the same check
        # without turning verification off.
        self.resource = f"https://0.0.1:{self.port}"
        self.identity_endpoint = f"{self.url}/msi/token"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name=f"keyvault-stub-{self.port}", daemon=True
        )

    def __enter__(self) -> KeyVaultStub:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def set_secret(self, name: str, value: str) -> None:
        """Store (or rotate) a secret under its vault name; a new value gets a new version."""
        with self._lock:
            self._secrets[name] = (token_hex(16), value)

    def delete_secret(self, name: str) -> None:
        with self._lock:
            self._secrets.pop(name, None)

    def values(self) -> list[str]:
        with self._lock:
            return [value for _, value in self._secrets.values()]

    def issue_token(self, resource: str) -> str | None:
        with self._lock:
            self.token_requests.append(resource)
            if resource.rstrip("/") != self.resource:
                return None
            token = token_urlsafe(32)
            self._issued.add(token)
            return token

    def accepts_token(self, token: str) -> bool:
        with self._lock:
            return token in self._issued

    def count_challenge(self) -> None:
        with self._lock:
            self.challenges += 1

    def read(self, name: str, token: str) -> tuple[str, str | None]:
        with self._lock:
            self.reads[name] += 1
            self.tokens_seen.append(token)
            entry = self._secrets.get(name)
        return entry if entry is not None else ("", None)

    @property
    def issued_tokens(self) -> set[str]:
        with self._lock:
            return set(self._issued)
