"""``byova emulator``: run the local Webex emulator and describe how to point an app at it."""

from __future__ import annotations

import shlex
from typing import Any

from ..testing import WebexEmulator

__all__ = ["emulator_info", "export_lines", "start_emulator"]

#: Variables for the media server (``byova serve``, ``BYOVAMediaServer.from_env``).
MEDIA_PREFIX = "WEBEX_MEDIA_"


def start_emulator(
    host: str = "127.0.0.1", port: int = 0, *, authorize: bool = True
) -> WebexEmulator:
    """Start an emulator; with ``authorize`` the Service App is authorized in the seeded org.

    (Real Webex has an admin do that in Control Hub; the emulator has no UI, so we do it.)
    """
    emu = WebexEmulator(host=host, port=port).start()
    if authorize:
        emu.authorize_service_app(emu.org.org_id)
    return emu


def emulator_info(emu: WebexEmulator) -> dict[str, Any]:
    """URLs, seeded credentials and the ``WEBEX_*`` variables that point the SDK/CLI at ``emu``.

    The credentials are random per run and only valid against this local emulator.
    ``WEBEX_MEDIA_EXTRA_ISSUERS`` makes a media server started with these variables trust the
    data-source tokens the emulator mints (``byova simulate --mint-token``); production
    servers trust only Webex's issuers.
    """
    env = {
        "WEBEX_BASE_URL": emu.base_url,
        "WEBEX_INTEGRATION_CLIENT_ID": emu.integration.client_id,
        "WEBEX_INTEGRATION_CLIENT_SECRET": emu.integration.client_secret,
        "WEBEX_INTEGRATION_REDIRECT_URI": "http://127.0.0.1:0/callback",
        "WEBEX_SA_CLIENT_ID": emu.service_app.client_id,
        "WEBEX_SA_CLIENT_SECRET": emu.service_app.client_secret,
        "WEBEX_SA_APPLICATION_ID": emu.service_app.application_id,
        "WEBEX_ORG_ID": emu.org.org_id,
        "WEBEX_MEDIA_EXTRA_ISSUERS": emu.issuer,
    }
    return {
        "url": emu.url,
        "base_url": emu.base_url,
        "authorize_url": emu.authorize_url,
        "token_url": emu.token_url,
        "issuer": emu.issuer,
        "jwks_url": emu.jwks_url,
        "developer_org_id": emu.developer_org.org_id,
        "customer_org_id": emu.org.org_id,
        "customer_org_hydra_id": emu.org.hydra_id,
        "service_app_authorized": emu.is_authorized(emu.org.org_id),
        "env": env,
    }


def export_lines(env: dict[str, str]) -> list[str]:
    """The shell lines ``byova emulator`` prints: ``export`` lines under ``#`` comments.

    Every line can be pasted into a POSIX shell as is (the comments are shell comments).
    """
    rest = {k: v for k, v in env.items() if not k.startswith(MEDIA_PREFIX)}
    media = {k: v for k, v in env.items() if k.startswith(MEDIA_PREFIX)}
    lines = ["# the SDK (BYOVA.from_env) and the byova admin commands"]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in rest.items()]
    if media:
        lines.append("# byova serve / BYOVAMediaServer.from_env: trust the emulator's tokens")
        lines += [f"export {key}={shlex.quote(value)}" for key, value in media.items()]
    return lines
