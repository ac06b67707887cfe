"""Proxy fixtures: a scripted WebSocket backend (a real ``websockets`` server on 127.0.0.1),
the real media server over gRPC and Webex-side callers."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from webex_byova.media.config import MediaServerConfig
from webex_byova.media.proxy._protocol import (
    OutboundMessage,
    ProxyMessage,
    decode_outbound,
    encode_message,
)
from webex_byova.media.server import BYOVAMediaServer

FAST: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "verify_tokens": False,
    "realtime_pacing": False,
    "half_close_timeout_s": 5.0,
}


async def instant(_delay: float) -> None:
    """Backoff sleep for tests: yield once instead of waiting."""
    await asyncio.sleep(0)


class BackendConn:
    """One accepted backend connection: what it received, and a way to answer."""

    def __init__(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.headers: Any = ws.request.headers if ws.request is not None else {}
        self.messages: list[Any] = []
        self.raw: list[str | bytes] = []
        self._arrived = asyncio.Condition()
        self.closed = asyncio.Event()

    async def recv(self) -> Any:
        frame = await self.ws.recv()
        self.raw.append(frame)
        msg = decode_outbound(frame) if isinstance(frame, str) else frame
        async with self._arrived:
            self.messages.append(msg)
            self._arrived.notify_all()
        return msg

    async def send(self, msg: ProxyMessage | str | bytes) -> None:
        await self.ws.send(msg if isinstance(msg, str | bytes) else encode_message(msg))

    def of_type(self, kind: str) -> list[OutboundMessage]:
        return [m for m in self.messages if getattr(m, "type", None) == kind]


Script = Callable[[BackendConn], Awaitable[None]]


class Backend:
    """A ``websockets`` server on loopback; ``script(conn)`` plays the voice-AI bot."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.conns: list[BackendConn] = []
        self.connected = asyncio.Condition()
        self.server: Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self, *, rcvbuf: int | None = None, **kwargs: Any) -> Backend:
        sock = None
        if rcvbuf is not None:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.bind(("127.0.0.1", 0))
            kwargs["sock"] = sock
        else:
            kwargs.update(host="127.0.0.1", port=0)
        self.server = await serve(self._handle, **kwargs)
        return self

    @property
    def url(self) -> str:
        assert self.server is not None
        host, port = next(iter(self.server.sockets)).getsockname()[:2]
        return f"ws://{host}:{port}"

    @property
    def open_connections(self) -> int:
        return sum(1 for c in self.conns if not c.closed.is_set())

    async def _handle(self, ws: ServerConnection) -> None:
        conn = BackendConn(ws)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        async with self.connected:
            self.conns.append(conn)
            self.connected.notify_all()
        try:
            await self.script(conn)
            # keep draining until the peer closes, so nothing it sends is lost
            while True:
                await conn.recv()
        except ConnectionClosed:
            pass
        finally:
            conn.closed.set()
            self.tasks.discard(task)

    async def connection(self, index: int) -> BackendConn:
        async with self.connected:
            await self.connected.wait_for(lambda: len(self.conns) > index)
        return self.conns[index]

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for task in list(self.tasks):  # scripts that hang on purpose
                task.cancel()
            await self.server.wait_closed()


@pytest.fixture
async def backend() -> AsyncIterator[Callable[..., Awaitable[Backend]]]:
    """Factory: ``await backend(script, **serve_kwargs)`` -> started :class:`Backend`."""
    started: list[Backend] = []

    async def factory(script: Script, **kwargs: Any) -> Backend:
        b = await Backend(script).start(**kwargs)
        started.append(b)
        return b

    yield factory
    for b in started:
        await b.close()


@pytest.fixture
async def media_server() -> AsyncIterator[Callable[..., BYOVAMediaServer]]:
    """Factory of (not yet started) servers with fast test settings; stopped afterwards."""
    servers: list[BYOVAMediaServer] = []

    def factory(**overrides: Any) -> BYOVAMediaServer:
        server = BYOVAMediaServer(MediaServerConfig(**{**FAST, **overrides}))
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop(grace=0.5)


@pytest.fixture
def unused_port() -> int:
    """A loopback port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
