"""Read the SDK's ``WEBEX_*`` environment variables (used by ``BYOVA.from_env``).

Required: ``WEBEX_INTEGRATION_CLIENT_ID``, ``WEBEX_INTEGRATION_CLIENT_SECRET``,
``WEBEX_SA_CLIENT_ID``, ``WEBEX_SA_CLIENT_SECRET``.

Optional: ``WEBEX_INTEGRATION_REDIRECT_URI``, ``WEBEX_INTEGRATION_SCOPES`` (space or comma
separated), ``WEBEX_SA_APPLICATION_ID``, ``WEBEX_REGION`` (``us``/``eu``), ``WEBEX_BASE_URL``
(``authorize`` and ``access_token`` URLs are derived from it), ``WEBEX_TOKEN_STORE``
(``memory`` | ``sqlite:///path`` | ``redis://host:port/db``; default ``memory``) and
``WEBEX_TOKEN_STORE_KEY`` (Fernet key(s), comma separated: encrypts the store).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from .config import BYOVAConfig
from .credentials import DEFAULT_REDIRECT_URI, IntegrationCredentials, ServiceAppCredentials
from .storage import TokenStorage, from_url

__all__ = ["REQUIRED_VARIABLES", "EnvSettings", "load_env"]

REQUIRED_VARIABLES: tuple[str, ...] = (
    "WEBEX_INTEGRATION_CLIENT_ID",
    "WEBEX_INTEGRATION_CLIENT_SECRET",
    "WEBEX_SA_CLIENT_ID",
    "WEBEX_SA_CLIENT_SECRET",
)


@dataclass(frozen=True)
class EnvSettings:
    """Everything ``BYOVA.from_env`` needs, read from the environment."""

    integration: IntegrationCredentials
    service_app: ServiceAppCredentials
    config: BYOVAConfig
    token_storage: TokenStorage


def _get(env: Mapping[str, str], name: str) -> str | None:
    value = env.get(name)
    if value is None or not value.strip():
        return None
    return value.strip()


def load_env(
    environ: Mapping[str, str] | None = None,
    *,
    config: BYOVAConfig | None = None,
    token_storage: TokenStorage | None = None,
) -> EnvSettings:
    """Build credentials, config and token store from ``WEBEX_*`` variables.

    An explicit ``config`` wins over ``WEBEX_REGION``/``WEBEX_BASE_URL``; an explicit
    ``token_storage`` wins over ``WEBEX_TOKEN_STORE``.

    Raises:
        ValueError: Naming every missing required variable, or describing a bad value.
    """
    env = os.environ if environ is None else environ
    missing = [name for name in REQUIRED_VARIABLES if _get(env, name) is None]
    if missing:
        raise ValueError(
            "missing required environment variable(s): "
            + ", ".join(missing)
            + " (set them, or construct BYOVA(...) with explicit credentials)"
        )
    scopes_text = _get(env, "WEBEX_INTEGRATION_SCOPES")
    integration_kwargs: dict[str, object] = {}
    if scopes_text:
        integration_kwargs["scopes"] = tuple(scopes_text.replace(",", " ").split())
    integration = IntegrationCredentials(
        client_id=env["WEBEX_INTEGRATION_CLIENT_ID"].strip(),
        client_secret=env["WEBEX_INTEGRATION_CLIENT_SECRET"].strip(),
        redirect_uri=_get(env, "WEBEX_INTEGRATION_REDIRECT_URI") or DEFAULT_REDIRECT_URI,
        **integration_kwargs,  # type: ignore[arg-type]
    )
    service_app = ServiceAppCredentials(
        client_id=env["WEBEX_SA_CLIENT_ID"].strip(),
        client_secret=env["WEBEX_SA_CLIENT_SECRET"].strip(),
        application_id=_get(env, "WEBEX_SA_APPLICATION_ID"),
    )
    if config is None:
        overrides: dict[str, str] = {}
        region = _get(env, "WEBEX_REGION")
        if region:
            overrides["region"] = region
        base_url = _get(env, "WEBEX_BASE_URL")
        if base_url:
            base = base_url.rstrip("/")
            overrides.update(
                base_url=base, authorize_url=f"{base}/authorize", token_url=f"{base}/access_token"
            )
        try:
            config = BYOVAConfig(**overrides)  # type: ignore[arg-type]
        except ValueError as exc:
            raise ValueError(f"invalid WEBEX_REGION/WEBEX_BASE_URL: {exc}") from exc
    if token_storage is None:
        url = _get(env, "WEBEX_TOKEN_STORE") or "memory"
        key_text = _get(env, "WEBEX_TOKEN_STORE_KEY")
        keys = [k.strip() for k in key_text.split(",") if k.strip()] if key_text else None
        try:
            token_storage = from_url(url, encryption_key=keys)
        except ValueError as exc:
            raise ValueError(f"invalid WEBEX_TOKEN_STORE/WEBEX_TOKEN_STORE_KEY: {exc}") from exc
    return EnvSettings(integration, service_app, config, token_storage)
