"""Where the CLI's settings come from: ``--base-url`` and ``WEBEX_*`` environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from ..config import BYOVAConfig

__all__ = ["DEFAULT_BASE_URL", "ENV_VARS", "REQUIRED_VARS", "config_for_base_url", "env_base_url"]

DEFAULT_BASE_URL = BYOVAConfig().base_url
JWKS_PATH = "/idb/oauth2/v2/keys/verificationjwk"

#: Environment variables the CLI reads (name -> meaning), shown by ``byova doctor``.
ENV_VARS: dict[str, str] = {
    "WEBEX_BASE_URL": "Webex REST base URL (default https://webexapis.com/v1; the emulator's URL)",
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


def config_for_base_url(base_url: str | None, *, region: str | None = None) -> BYOVAConfig:
    """A :class:`BYOVAConfig` for ``base_url``.

    Real Webex (the default URL) keeps every default. Any other base URL (the emulator, a
    proxy) gets its OAuth endpoints below the base URL and its JWKS and issuer at the same
    origin's ``/idb`` (the emulator's layout), so JWS verification trusts it.
    """
    kwargs: dict[str, object] = {}
    if region:
        kwargs["region"] = region
    if base_url is None or base_url.rstrip("/") == DEFAULT_BASE_URL:
        return BYOVAConfig(**kwargs)  # type: ignore[arg-type]
    base = base_url.rstrip("/")
    parts = urlsplit(base)
    origin = f"{parts.scheme}://{parts.netloc}"
    return BYOVAConfig(
        base_url=base,
        authorize_url=base + "/authorize",
        token_url=base + "/access_token",
        jwk_url_us=origin + JWKS_PATH,
        jwk_url_eu=origin + JWKS_PATH,
        extra_issuers=(origin + "/idb",),
        **kwargs,  # type: ignore[arg-type]
    )
