"""Media-server fixtures: a real grpc.aio server on 127.0.0.1 and Webex-side callers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from webex_byova.media.config import MediaServerConfig
from webex_byova.media.server import BYOVAMediaServer

FAST: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "verify_tokens": False,
    "realtime_pacing": False,
    "half_close_timeout_s": 5.0,
}


def make_config(**overrides: Any) -> MediaServerConfig:
    return MediaServerConfig(**{**FAST, **overrides})


@pytest.fixture
async def media_server() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``server = await media_server(**config_overrides)`` (started, stopped after)."""
    servers: list[BYOVAMediaServer] = []

    async def factory(**kwargs: Any) -> BYOVAMediaServer:
        server_kwargs = {k: kwargs.pop(k) for k in ("agents", "verifier", "clock") if k in kwargs}
        server = BYOVAMediaServer(make_config(**kwargs), **server_kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop(grace=0.5)
