"""Secrets from Azure Key Vault through the official SDK and DefaultAzureCredential.

Key Vault names allow only letters, digits and dashes, so `JWT_SIGNING_KEY` is stored
as the secret `jwt-signing-key`.
"""

from __future__ import annotations

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.identity import DefaultAzureCredential
from azure.keyvault.secrets import SecretClient

from apps.core.secrets.base import SecretsBackendUnavailable, SecretsProvider


def vault_secret_name(name: str) -> str:
    return name.lower().replace("_", "-")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


class AzureKeyVaultSecretsProvider(SecretsProvider):
    label = "Azure Key Vault"

    def __init__(self, vault_url: str, *, timeout: float = 5.0) -> None:
        if not vault_url.startswith("https://"):
            raise SecretsBackendUnavailable(
                "AZURE_KEY_VAULT_URL must be an https:// URL such as https://my-vault.vault.azure.net."
            )
        self.vault_url = vault_url
        # One retry and short timeouts: an unreachable vault should stop startup in seconds.
        self._client = SecretClient(
            vault_url=vault_url,
            credential=DefaultAzureCredential(),
            retry_total=1,
            retry_backoff_factor=0.2,
            connection_timeout=timeout,
            read_timeout=timeout,
        )

    def get(self, name: str) -> str | None:
        try:
            return self._client.get_secret(vault_secret_name(name)).value
        except ResourceNotFoundError:
            return None
        except ClientAuthenticationError as exc:
            raise SecretsBackendUnavailable(
                f"Azure Key Vault at {self.vault_url} refused our credentials while reading "
                f"{name}: {_first_line(exc)}"
            ) from None
        except (ServiceRequestError, ServiceResponseError) as exc:
            raise SecretsBackendUnavailable(
                f"Azure Key Vault at {self.vault_url} could not be reached or did not answer "
                f"while reading {name} ({_first_line(exc)}); check AZURE_KEY_VAULT_URL and "
                "the network."
            ) from None
        except ValueError as exc:
            # The SDK refuses a challenge naming a resource this URL is not under: the URL
            # points somewhere that is not the vault it claims to be.
            raise SecretsBackendUnavailable(
                f"Azure Key Vault at {self.vault_url} was refused while reading {name}: "
                f"{_first_line(exc)}; check AZURE_KEY_VAULT_URL."
            ) from None
        except (HttpResponseError, AzureError) as exc:
            raise SecretsBackendUnavailable(
                f"Azure Key Vault at {self.vault_url} failed while reading {name}: "
                f"{_first_line(exc)}"
            ) from None
