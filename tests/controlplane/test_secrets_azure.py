"""The Azure Key Vault secrets backend, through the real SDK and DefaultAzureCredential, against
a local HTTPS stub of Key Vault and of App Service's managed-identity endpoint (Azure itself
cannot be reached from the test environment)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apps.core.secrets import base as secrets_base
from apps.core.secrets import build_provider
from apps.core.secrets.azure import AzureKeyVaultSecretsProvider
from apps.core.secrets.base import (
    CachingSecretsProvider,
    SecretMissing,
    SecretsBackendUnavailable,
)
from apps.core.secrets.required import OPTIONAL_SECRETS, REQUIRED_SECRETS
from tests.controlplane.keyvault_stub import KeyVaultStub, write_self_signed_cert
from tests.controlplane.startup import owner_url

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAMES = tuple(spec.name for spec in REQUIRED_SECRETS)
# Anything that could make DefaultAzureCredential pick another credential (service principal,
# workload identity, Service Fabric, Azure ML, Arc) or a user-assigned identity.
CREDENTIAL_PREFIXES = ("AZURE_", "IDENTITY_", "MSI_", "IMDS_")
PRODUCTION = {"BULWARK_ENV": "production", "ALLOWED_HOSTS": "bulwark.example.com"}


def vault_name(name: str) -> str:
    return name.lower().replace("_", "-")


def closed_port() -> int:
    # Bind and release: nothing listens there afterwards, so connections are refused at once.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def identity_env(stub: KeyVaultStub) -> dict[str, str]:
    """What App Service sets for a managed identity, plus trust in the stub's certificate."""
    return {
        "IDENTITY_ENDPOINT": stub.identity_endpoint,
        "IDENTITY_HEADER": stub.identity_header,
        "REQUESTS_CA_BUNDLE": str(stub.cert_file),
    }


def startup_env(stub: KeyVaultStub, vault_url: str) -> dict[str, str]:
    """This environment for a production manage.py reading secrets from the vault only: no
    secret (nor NAME_FILE), no other Azure credential, no developer .env."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in SECRET_NAMES
        and name.removesuffix("_FILE") not in SECRET_NAMES
        and not name.startswith(CREDENTIAL_PREFIXES)
    }
    env.update(
        PRODUCTION,
        DJANGO_SETTINGS_MODULE="controlplane.settings",
        BULWARK_DOTENV=os.devnull,
        SECRETS_BACKEND="azure-keyvault",
        AZURE_KEY_VAULT_URL=vault_url,
        DATABASE_OWNER_URL=owner_url(),
        **identity_env(stub),
    )
    return env


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # sys.executable is the project's .venv python when run as .venv/bin/pytest.
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def leaked(values: list[str], text: str) -> list[str]:
    """Lines of secret values found in `text` (PEM keys are checked line by line)."""
    return [
        line
        for value in values
        for line in value.splitlines()
        if line and not line.startswith("-----") and line in text
    ]


class FakeClock:
    """Stands in for the cache's `time` module so a TTL can pass without sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def tls_cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_self_signed_cert(tmp_path_factory.mktemp("keyvault-stub"))


@pytest.fixture
def vault(tls_cert: tuple[Path, Path]) -> Iterator[KeyVaultStub]:
    with KeyVaultStub(*tls_cert) as stub:
        yield stub


@pytest.fixture
def azure_env(vault: KeyVaultStub, monkeypatch: pytest.MonkeyPatch) -> KeyVaultStub:
    """This process as an App Service app whose managed identity the stub recognises."""
    for name in list(os.environ):
        if name.startswith(CREDENTIAL_PREFIXES):
            monkeypatch.delenv(name)
    for name, value in identity_env(vault).items():
        monkeypatch.setenv(name, value)
    return vault


def test_get_reads_the_vault_with_a_managed_identity_token(azure_env: KeyVaultStub) -> None:
    vault = azure_env
    vault.set_secret("jwt-signing-key", "jwt-from-the-vault-Q2x9LmN4pR7sT1vW3yZ5")
    vault.set_secret("api-key-pepper", "pepper-from-the-vault-8Hk3Jd0aZq")

    value = AzureKeyVaultSecretsProvider(vault.url).get("JWT_SIGNING_KEY")

    assert value == "jwt-from-the-vault-Q2x9LmN4pR7sT1vW3yZ5"
    assert vault.reads == {"jwt-signing-key": 1}
    # The token came from the managed-identity endpoint, for the resource the challenge named.
    assert vault.token_requests == [vault.resource]
    assert vault.tokens_seen
    assert set(vault.tokens_seen) <= vault.issued_tokens


def test_missing_secret_is_none_and_require_names_it(azure_env: KeyVaultStub) -> None:
    vault = azure_env
    for spec in REQUIRED_SECRETS:
        if spec.name != "API_KEY_PEPPER":
            vault.set_secret(vault_name(spec.name), spec.generate())
    provider = AzureKeyVaultSecretsProvider(vault.url)

    assert provider.get("API_KEY_PEPPER") is None
    with pytest.raises(SecretMissing) as raised:
        provider.require("API_KEY_PEPPER")

    message = str(raised.value)
    assert "API_KEY_PEPPER" in message
    assert "Azure Key Vault" in message
    assert leaked(vault.values(), message) == []
    # Both answers came from the vault (a 404 each), not from a local shortcut.
    assert vault.reads["api-key-pepper"] == 2


def test_cache_keeps_a_value_for_the_ttl_then_picks_up_rotation(
    azure_env: KeyVaultStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    vault = azure_env
    monkeypatch.setenv("SECRETS_BACKEND", "azure-keyvault")
    monkeypatch.setenv("AZURE_KEY_VAULT_URL", vault.url)
    monkeypatch.setenv("SECRETS_CACHE_TTL", "60")
    clock = FakeClock()
    monkeypatch.setattr(secrets_base, "time", clock)
    vault.set_secret("jwt-signing-key", "first-value-aB3dE5gH7jK9mN1pQ3sT")

    provider = build_provider()
    assert isinstance(provider, CachingSecretsProvider)
    assert isinstance(provider.inner, AzureKeyVaultSecretsProvider)

    assert provider.get("JWT_SIGNING_KEY") == "first-value-aB3dE5gH7jK9mN1pQ3sT"
    clock.advance(59)
    assert provider.get("JWT_SIGNING_KEY") == "first-value-aB3dE5gH7jK9mN1pQ3sT"
    assert vault.reads["jwt-signing-key"] == 1

    # Rotated in the vault; the old value is served until the TTL runs out, then the new one.
    vault.set_secret("jwt-signing-key", "rotated-value-Zy8Xw6Vu4Ts2Rq0Po9")
    assert provider.get("JWT_SIGNING_KEY") == "first-value-aB3dE5gH7jK9mN1pQ3sT"
    clock.advance(2)
    assert provider.get("JWT_SIGNING_KEY") == "rotated-value-Zy8Xw6Vu4Ts2Rq0Po9"
    assert vault.reads["jwt-signing-key"] == 2


def test_unreachable_vault_raises_backend_unavailable(azure_env: KeyVaultStub) -> None:
    url = f"https://127.0.0.1:{closed_port()}"
    provider = AzureKeyVaultSecretsProvider(url)

    started = time.monotonic()
    with pytest.raises(SecretsBackendUnavailable) as raised:
        provider.get("JWT_SIGNING_KEY")

    message = str(raised.value)
    assert url in message
    assert "could not be reached" in message
    assert "JWT_SIGNING_KEY" in message
    # A dead vault must stop startup in seconds, not hang in retries.
    assert time.monotonic() - started < 15


def test_startup_refuses_an_unreachable_vault_in_one_line(vault: KeyVaultStub) -> None:
    url = f"https://127.0.0.1:{closed_port()}"

    started = time.monotonic()
    result = manage("check", env=startup_env(vault, url))

    assert time.monotonic() - started < 30
    assert result.returncode != 0
    assert result.stderr.startswith("Bulwark cannot start:"), result.stderr
    assert url in result.stderr
    assert "could not be reached" in result.stderr
    assert "Traceback" not in result.stderr


def store_all_secrets(vault: KeyVaultStub) -> list[str]:
    values = {spec.name: spec.generate() for spec in REQUIRED_SECRETS}
    for name, value in values.items():
        vault.set_secret(vault_name(name), value)
    return list(values.values())


def test_production_starts_with_every_secret_from_the_vault(vault: KeyVaultStub) -> None:
    values = store_all_secrets(vault)

    result = manage("check", "--deploy", env=startup_env(vault, vault.url))

    assert result.returncode == 0, result.stderr
    assert "System check identified" in result.stdout
    # Every required secret, and the optional ones (absent here: 404, and startup goes on).
    optional = {vault_name(name) for name, _ in OPTIONAL_SECRETS}
    assert set(vault.reads) == {vault_name(name) for name in SECRET_NAMES} | optional
    assert vault.token_requests
    assert leaked(values, result.stdout + result.stderr) == []


def test_production_refuses_when_the_vault_lacks_a_secret(vault: KeyVaultStub) -> None:
    values = store_all_secrets(vault)
    vault.delete_secret("audit-hmac-key")

    result = manage("check", "--deploy", env=startup_env(vault, vault.url))

    assert result.returncode != 0
    assert result.stderr.startswith("Bulwark cannot start:"), result.stderr
    assert "AUDIT_HMAC_KEY" in result.stderr
    assert "Azure Key Vault" in result.stderr
    assert "Traceback" not in result.stderr
    assert vault.reads["audit-hmac-key"] >= 1
    assert leaked(values, result.stdout + result.stderr) == []


def test_a_vault_url_outside_the_challenged_resource_is_refused_clearly(
    azure_env: KeyVaultStub,
) -> None:
    vault = azure_env
    vault.set_secret("jwt-signing-key", "never-handed-out-Q2x9LmN4pR7sT1vW3yZ5")
    # The server claims to be a real Azure vault, but the URL is not under vault.azure.net.
    vault.resource = "https://vault.azure.net"

    with pytest.raises(SecretsBackendUnavailable) as raised:
        AzureKeyVaultSecretsProvider(vault.url).get("JWT_SIGNING_KEY")

    assert "check AZURE_KEY_VAULT_URL" in str(raised.value)
    assert vault.token_requests == []  # no token was ever fetched for that host
