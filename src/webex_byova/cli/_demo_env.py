"""The offline world ``byova demo`` runs in: emulator, data source, demo agent's media server.

Everything Webex would do is done for real against the local emulator, through the SDK:

1. the Integration is authorized with the OAuth browser flow (an HTTP client follows the
   authorize URL: the emulator consents without a login page);
2. the Service App is authorized in the customer org (the admin's step in Control Hub);
3. the SDK fetches the Service App's org token and registers a BYOVA data source;
4. the media server verifies the data source's JWS on every RPC, exactly as in production.

The data source is registered for :data:`DEMO_DATA_SOURCE_URL` (gRPC) or
:data:`DEMO_WS_DATA_SOURCE_URL` (BYOVA over WebSocket: the WebSocket schema and a bare
``wss://`` origin): like a real deployment, the URL Webex dials (behind a TLS terminator)
differs from the local bind address, which keeps the registration independent of the port
picked at start.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..client import BYOVA
from ..credentials import IntegrationCredentials, ServiceAppCredentials
from ..data_sources import BYOVA_SCHEMA_ID
from ..media.config import DEFAULT_WS_SCHEMA_ID, MediaServerConfig
from ..media.server import BYOVAMediaServer
from ..testing import WebexEmulator
from ._admin import consent_automatically
from ._demo_agent import AGENT_ID, AGENT_NAME, install_demo_agent

__all__ = [
    "DEMO_DATA_SOURCE_URL",
    "DEMO_WS_DATA_SOURCE_URL",
    "DemoEnvironment",
    "start_demo_environment",
]

DEMO_DATA_SOURCE_URL = "https://byova-demo.localhost/"
DEMO_WS_DATA_SOURCE_URL = "wss://byova-demo.localhost"
Transport = Literal["grpc", "websocket"]
AUDIENCE = "BYOVAGateway"
SUBJECT = "callAudioData"

Step = Callable[[str, str], None]


@dataclass
class DemoEnvironment:
    """A running emulator + demo agent server, and the token Webex would present."""

    emulator: WebexEmulator
    server: BYOVAMediaServer
    sdk: BYOVA
    token: str = field(repr=False)
    data_source_id: str
    data_source_url: str
    org_id: str
    virtual_agent_id: str = AGENT_ID
    transport: Transport = "grpc"

    @property
    def target(self) -> str:
        """What a caller connects to: ``host:port`` (gRPC) or ``ws://host:port`` (WebSocket)."""
        return self.server.ws_url if self.transport == "websocket" else self.server.address

    def describe(self) -> dict[str, Any]:
        """What an external Webex-side client needs (includes the token: it is the point)."""
        return {
            "target": self.target,
            "transport": self.transport,
            "token": self.token,
            "virtual_agent_id": self.virtual_agent_id,
            "data_source_id": self.data_source_id,
            "data_source_url": self.data_source_url,
            "org_id": self.org_id,
            "emulator_base_url": self.emulator.base_url,
        }

    async def aclose(self) -> None:
        """Stop the server, close the SDK, stop the emulator."""
        with contextlib.suppress(Exception):
            await self.server.stop(grace=1.0)
        with contextlib.suppress(Exception):
            await self.sdk.aclose()
        await asyncio.to_thread(self.emulator.stop)


async def register_data_source(
    emu: WebexEmulator, url: str, *, schema_id: str = BYOVA_SCHEMA_ID, step: Step | None = None
) -> tuple[BYOVA, str, str]:
    """Do what a BYOVA developer does in Webex, against ``emu``; return (sdk, id, jwsToken)."""
    note = step or (lambda _kind, _text: None)
    sdk = BYOVA(
        IntegrationCredentials(
            client_id=emu.integration.client_id,
            client_secret=emu.integration.client_secret,
            redirect_uri="http://127.0.0.1:0/callback",
        ),
        ServiceAppCredentials(
            client_id=emu.service_app.client_id,
            client_secret=emu.service_app.client_secret,
            application_id=emu.service_app.application_id,
        ),
        config=emu.config(),
    )
    try:
        await sdk.integration.aauthorize(
            open_browser=False, on_url=consent_automatically, timeout=30
        )
        note("oauth", "Integration authorized (OAuth code flow with PKCE)")
        org = emu.org.org_id
        await emu.aauthorize_service_app(org)
        note("admin", f"Service App authorized in org {org[:8]}…")
        await sdk.service_app.afetch_org_token(org)
        note("oauth", "Service App org token fetched")
        client = await sdk.aget_client_for_org(org)
        ds = await client.data_sources.acreate(
            schema_id=schema_id,
            url=url,
            audience=AUDIENCE,
            subject=SUBJECT,
            token_lifetime_minutes=60,
        )
        if not ds.jws_token:
            raise RuntimeError("the data source came back without a jwsToken")
        note("byods", f"data source {ds.id[:8]}… registered for {url}")
        return sdk, ds.id, ds.jws_token
    except BaseException:
        await sdk.aclose()
        raise


def demo_server_config(
    emu: WebexEmulator,
    *,
    host: str,
    port: int,
    url: str,
    transport: Transport = "grpc",
    **overrides: Any,
) -> MediaServerConfig:
    """Media server settings of the demo: token verification on, trusting only ``emu``."""
    where: dict[str, Any] = (
        {"transport": "websocket", "ws_host": host, "ws_port": port, "ws_expected_url": url}
        if transport == "websocket"
        else {"host": host, "port": port, "expected_url": url}
    )
    values: dict[str, Any] = {
        **where,
        "verify_tokens": True,
        "expected_org_id": emu.org.org_id,
        "extra_issuers": (emu.issuer,),
        "agents": (f"{AGENT_ID}={AGENT_NAME}",),
        "log_level": "WARNING",
    }
    values.update(overrides)
    return MediaServerConfig(**values)


async def start_demo_environment(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    transport: Transport = "grpc",
    url: str | None = None,
    step: Step | None = None,
    install: Callable[[BYOVAMediaServer], Any] = install_demo_agent,
    **config_overrides: Any,
) -> DemoEnvironment:
    """Start the emulator, register the data source, start the demo agent's server.

    ``transport="websocket"`` registers a BYOVA-over-WebSocket data source and serves the
    agent on ``/v1/va`` instead of gRPC. ``url`` defaults to the demo URL of the transport.
    """
    note = step or (lambda _kind, _text: None)
    websocket = transport == "websocket"
    if url is None:
        url = DEMO_WS_DATA_SOURCE_URL if websocket else DEMO_DATA_SOURCE_URL
    schema_id = DEFAULT_WS_SCHEMA_ID if websocket else BYOVA_SCHEMA_ID
    emu = WebexEmulator()
    await emu.astart()
    note("emulator", f"Webex emulator at {emu.base_url}")
    try:
        sdk, ds_id, token = await register_data_source(emu, url, schema_id=schema_id, step=note)
    except BaseException:
        await emu.astop()
        raise
    try:
        config = demo_server_config(
            emu, host=host, port=port, url=url, transport=transport, **config_overrides
        )
        server = BYOVAMediaServer(config)
        install(server)
        await server.start()
    except BaseException:
        await sdk.aclose()
        await emu.astop()
        raise
    where = server.ws_url if websocket else server.address
    note("server", f"demo agent listening on {where} (JWS verification on)")
    return DemoEnvironment(
        emulator=emu,
        server=server,
        sdk=sdk,
        token=token,
        data_source_id=ds_id,
        data_source_url=url,
        org_id=emu.org.org_id,
        transport=transport,
    )
