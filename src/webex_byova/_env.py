"""Read the SDK's ``WEBEX_*`` environment variables (used by ``BYOVA.from_env``).

Required: ``WEBEX_INTEGRATION_CLIENT_ID``, ``WEBEX_INTEGRATION_CLIENT_SECRET``,
``WEBEX_SA_CLIENT_ID``, ``WEBEX_SA_CLIENT_SECRET``.

Optional: ``WEBEX_INTEGRATION_REDIRECT_URI``, ``WEBEX_INTEGRATION_SCOPES`` (space or comma
separated), ``WEBEX_SA_APPLICATION_ID``, ``WEBEX_REGION`` (``us``/``eu``), ``WEBEX_BASE_URL``
(any URL other than real Webex's also moves the ``authorize`` and ``access_token`` URLs below
it, and the JWS key set and issuer to the same origin's ``/idb``: the emulator's layout, see
:func:`config_for_base_url`), ``WEBEX_TOKEN_STORE``
(``memory`` | ``sqlite:///path`` | ``redis://host:port/db``; default ``memory``) and
``WEBEX_TOKEN_STORE_KEY`` (Fernet key(s), comma separated: encrypts the store).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from .config import BYOVAConfig
from .credentials import DEFAULT_REDIRECT_URI, IntegrationCredentials, ServiceAppCredentials
from .jws import jwks_url_for
from .storage import TokenStorage, from_url

__all__ = [
    "DEFAULT_BASE_URL",
    "REQUIRED_VARIABLES",
    "EnvSettings",
    "config_for_base_url",
    "load_env",
]

DEFAULT_BASE_URL = BYOVAConfig().base_url

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


def config_for_base_url(base_url: str | None, *, region: str | None = None) -> BYOVAConfig:
    """A :class:`BYOVAConfig` for ``base_url``.

    Real Webex (the default URL) keeps every default. Any other base URL (the emulator, a
    proxy) gets its OAuth endpoints below the base URL and its JWKS and issuer at the same
    origin's ``/idb`` (the emulator's layout), so the data-source tokens it mints verify.

    Raises:
        ValueError: For an unknown region or a base URL that is not http(s).
    """
    kwargs: dict[str, object] = {}
    if region:
        kwargs["region"] = region
    if base_url is None or base_url.strip().rstrip("/") == DEFAULT_BASE_URL:
        return BYOVAConfig(**kwargs)  # type: ignore[arg-type]
    base = base_url.strip().rstrip("/")
    parts = urlsplit(base)
    issuer = f"{parts.scheme}://{parts.netloc}/idb"
    return BYOVAConfig(
        base_url=base,
        authorize_url=base + "/authorize",
        token_url=base + "/access_token",
        jwk_url_us=jwks_url_for(issuer),
        jwk_url_eu=jwks_url_for(issuer),
        extra_issuers=(issuer,),
        **kwargs,  # type: ignore[arg-type]
    )


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
        try:
            config = config_for_base_url(
                _get(env, "WEBEX_BASE_URL"), region=_get(env, "WEBEX_REGION")
            )
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
