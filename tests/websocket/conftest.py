"""WebSocket fixtures: a scripted ``/v1/va`` partner on 127.0.0.1 built on the real codec.

The partner is a small, fixed virtual agent (not the SDK's media server): it lets the
Webex-side caller be tested over real sockets on its own. Its protocol handling is the
production :class:`~webex_byova.media._ws_codec.VaConnection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

import pytest
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from webex_byova.media._messages import (
    AgentResponse,
    AudioIn,
    DtmfIn,
    EventIn,
    OutputEventSpec,
    PromptSpec,
)
from webex_byova.media._model import InputSettings
from webex_byova.media._ws_codec import (
    CLOSE_NORMAL,
    Fatal,
    PeerError,
    PingIn,
    RequestIn,
    VaConnection,
)

TOKEN = "good-token"
WELCOME_AUDIO = bytes(range(256)) * 16  # 4096 B: inline in the FINAL
REPLY_AUDIO = bytes([0x55]) * 40_000  # split into five CHUNKs


@dataclass
class ScriptedPartner:
    """A fixed agent: welcome, END_OF_INPUT after 10 audio frames, DTMF 0 transfers."""

    server: Server | None = None
    #: Seconds to wait between the END_OF_INPUT and the reply (PING tests send meanwhile).
    reply_delay: float = 0.0
    connections: list[VaConnection] = field(default_factory=list)
    closes: list[int | None] = field(default_factory=list)

    @property
    def url(self) -> str:
        assert self.server is not None
        port = next(iter(self.server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    def process_request(self, conn: ServerConnection, request: Request) -> Response | None:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return conn.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
        return None

    def answer(self, state: dict[str, Any], msg: RequestIn) -> list[AgentResponse | float]:
        """Responses to send for ``msg``; a float is a pause (seconds) between them."""
        inp = msg.request.input
        if isinstance(inp, EventIn) and inp.type == "session_start":
            prompt = PromptSpec(text="Welcome", audio=WELCOME_AUDIO)
            return [AgentResponse(prompts=(prompt,), settings=InputSettings())]
        if isinstance(inp, AudioIn):
            state["frames"] = state.get("frames", 0) + 1
            if state["frames"] == 3:
                start = OutputEventSpec("start_of_input")
                return [AgentResponse(response_type="chunk", output_events=(start,))]
            if state["frames"] == 10:
                end = OutputEventSpec("end_of_input")
                reply = PromptSpec(text="You spoke", audio=REPLY_AUDIO)
                return [
                    AgentResponse(response_type="chunk", output_events=(end,)),
                    self.reply_delay,
                    AgentResponse(prompts=(reply,)),
                ]
            return []
        if isinstance(inp, DtmfIn):
            if inp.digits == "0":
                bye = OutputEventSpec("transfer_to_agent")
                prompt = PromptSpec(text="Transferring")
                return [AgentResponse(prompts=(prompt,), output_events=(bye,))]
            return [AgentResponse(prompts=(PromptSpec(text=f"You pressed {inp.digits}"),))]
        if isinstance(inp, EventIn) and inp.type == "custom_event":
            echo = OutputEventSpec("custom_event", inp.name, dict(inp.parameters))
            return [AgentResponse(output_events=(echo,))]
        return []

    async def handler(self, ws: ServerConnection) -> None:
        conn = VaConnection()
        self.connections.append(conn)
        state: dict[str, Any] = {}
        try:
            async for message in ws:
                now = time.time()
                result = (
                    conn.receive_bytes(message, now)
                    if isinstance(message, bytes)
                    else conn.receive_text(message, now)
                )
                if isinstance(result, PingIn):
                    await ws.send(result.pong)
                elif isinstance(result, Fatal):
                    await ws.send(result.frame)
                    await ws.close(result.close_code, result.error.code)
                    break
                elif isinstance(result, PeerError):
                    await ws.close(CLOSE_NORMAL)
                    break
                elif isinstance(result, RequestIn):
                    for resp in self.answer(state, result):
                        if isinstance(resp, float):
                            await asyncio.sleep(resp)
                            continue
                        for frame in conn.respond(resp, time.time()):
                            await ws.send(frame)
                    if conn.ended:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(ws.wait_closed(), 2.0)
                        await ws.close(CLOSE_NORMAL)
                        break
        except ConnectionClosed:
            pass
        finally:
            self.closes.append(ws.close_code)


@pytest.fixture
async def partner() -> AsyncIterator[ScriptedPartner]:
    """A started :class:`ScriptedPartner` (stopped after the test)."""
    p = ScriptedPartner()
    async with serve(p.handler, "127.0.0.1", 0, process_request=p.process_request) as server:
        p.server = server
        yield p
