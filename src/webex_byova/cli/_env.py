"""Where the CLI's settings come from: ``--base-url`` and ``WEBEX_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .._env import DEFAULT_BASE_URL, config_for_base_url

__all__ = ["DEFAULT_BASE_URL", "ENV_VARS", "REQUIRED_VARS", "config_for_base_url", "env_base_url"]


#: Environment variables the CLI reads (name -> meaning), shown by ``byova doctor``.
ENV_VARS: dict[str, str] = {
    "WEBEX_BASE_URL": "Webex REST base URL (default https://webexapis.com/v1; the emulator's URL, "
    "whose JWS issuer is then trusted)",
    "WEBEX_INTEGRATION_CLIENT_ID": "Integration client id (required)",
    "WEBEX_INTEGRATION_CLIENT_SECRET": "Integration client secret (required)",
    "WEBEX_INTEGRATION_REDIRECT_URI": "Integration redirect URI used by `byova auth login`",
    "WEBEX_INTEGRATION_SCOPES": "Integration scopes (space or comma separated)",
    "WEBEX_SA_CLIENT_ID": "Service App client id (required)",
    "WEBEX_SA_CLIENT_SECRET": "Service App client secret (required)",
    "WEBEX_SA_APPLICATION_ID": "Service App application id (derived from the client id if unset)",
    "WEBEX_REGION": "us or eu (JWKS lookup region)",
    "WEBEX_TOKEN_STORE": "Token store URL: memory, sqlite:///path.db, redis://host:6379/0",
    "WEBEX_TOKEN_STORE_KEY": "Fernet key(s) that encrypt the token store (comma-separated)",
    "WEBEX_WEBHOOK_SECRET": "Secret of the serviceApp webhooks (signature check)",
    "WEBEX_ORG_ID": "CLI: default customer org for data-source commands",
    "WEBEX_DATA_SOURCE_URL": "CLI: the URL your media server is registered under (doctor)",
}

#: Variables without which the SDK cannot be built.
REQUIRED_VARS: tuple[str, ...] = (
    "WEBEX_INTEGRATION_CLIENT_ID",
    "WEBEX_INTEGRATION_CLIENT_SECRET",
    "WEBEX_SA_CLIENT_ID",
    "WEBEX_SA_CLIENT_SECRET",
)


def env_base_url(environ: Mapping[str, str] | None = None) -> str | None:
    """``WEBEX_BASE_URL`` if set."""
    env = os.environ if environ is None else environ
    value = env.get("WEBEX_BASE_URL", "").strip()
    return value or None
