"""Time to a bounded answer for each hostile media case (issue 12); prints figures.

Run: ``.venv/bin/python bench/bench_hostile_media.py [repeats]`` (default 20).

One in-process media server on 127.0.0.1 (``handler_timeout_s=0.2`` so the timeout cases are
quick), one real grpc.aio client. Each case is one RPC: the figure is from opening it to the
server's status (p50 / max ms over the repeats), with the status code the case must end with.
Cases bounded by ``handler_timeout_s`` take that long by design (about 1x or 2x of it).
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from grpc import aio

from webex_byova.media._proto import byova_common_pb2 as common
from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media.config import MediaServerConfig
from webex_byova.media.server import SERVICE_NAME, BYOVAMediaServer

METHOD = f"/{SERVICE_NAME}/ProcessCallerInput"
TIMEOUT_S = 0.2
SORRY = MediaServerConfig().error_prompt_text


def _start(cid: str, agent: str = "") -> bytes:
    event = common.EventInput(event_type=common.EventInput.SESSION_START)
    return vva.VoiceVARequest(
        conversation_id=cid, virtual_agent_id=agent, event_input=event
    ).SerializeToString()


def _deep(depth: int) -> bytes:
    def ld(tag: int, payload: bytes) -> bytes:
        n, size = len(payload), b""
        while True:
            byte, n = n & 0x7F, n >> 7
            size += bytes([byte | (0x80 if n else 0)])
            if not n:
                return bytes([tag]) + size + payload

    struct = b""
    for _ in range(depth):
        struct = ld(0x0A, ld(0x0A, b"a") + ld(0x12, ld(0x2A, struct)))
    return vva.VoiceVARequest(conversation_id="deep").SerializeToString() + ld(
        0x42, b"\x08\x01" + ld(0x1A, struct)
    )


async def _rpc(channel: aio.Channel, messages: list[bytes | None]) -> tuple[str, list[str]]:
    """Send ``messages``; ``None`` half-closes, else the RPC is never half-closed and only the
    server's bounds end it. Returns the status name and the prompt texts received."""
    call = channel.stream_stream(
        METHOD, request_serializer=None, response_deserializer=vva.VoiceVAResponse.FromString
    )()
    for message in messages:
        if message is None:
            await call.done_writing()
        else:
            await call.write(message)
    texts: list[str] = []
    try:
        async for response in call:
            texts.extend(p.text for p in response.prompts)
    except aio.AioRpcError:
        pass
    code = await call.code()
    return str(code.name), texts


def _cases() -> dict[str, tuple[str, Callable[[], list[bytes | None]]]]:
    def cid() -> str:
        return str(uuid.uuid4())

    return {
        "random bytes": ("INVALID_ARGUMENT", lambda: [b"\xff\xff\xff\x07garbage"]),
        "bad UTF-8 string": ("INVALID_ARGUMENT", lambda: [b"\x0a\x02\xff\xfe"]),
        "Struct nested 120 deep": ("INVALID_ARGUMENT", lambda: [_deep(120)]),
        "bad message after valid first": ("INVALID_ARGUMENT", lambda: [_start(cid()), b"\xff"]),
        "conversation_id of 1 MiB": ("INVALID_ARGUMENT", lambda: [_start("c" * 2**20)]),
        "unknown agent id": ("NOT_FOUND", lambda: [_start(cid(), "x" * 200)]),
        "say(123) in handler": ("OK", lambda: [_start(cid(), "types"), None]),
        "handler raises CancelledError": ("OK", lambda: [_start(cid(), "cancel"), None]),
        "stream() never yields": ("OK", lambda: [_start(cid(), "stuck-stream"), None]),
        "error handler hangs": ("OK", lambda: [_start(cid(), "stuck-error"), None]),
    }


def _server() -> BYOVAMediaServer:
    config = MediaServerConfig(
        host="127.0.0.1",
        port=0,
        verify_tokens=False,
        handler_timeout_s=TIMEOUT_S,
        max_conversations=100_000,
        agents=("default", "types", "cancel", "stuck-stream", "stuck-error"),
    )
    server = BYOVAMediaServer(config)

    async def forever() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    behaviours: dict[str, Callable[[Any], Awaitable[None] | None]] = {
        "types": lambda event: event.turn.say(123),
        "stuck-stream": lambda event: event.turn.stream(forever()),
    }

    async def cancelled(event: Any) -> None:
        raise asyncio.CancelledError

    async def boom(event: Any) -> None:
        raise RuntimeError("boom")

    async def stuck_error(event: Any) -> None:
        if event.session.virtual_agent_id == "stuck-error":
            await asyncio.Event().wait()

    for agent, handler in (*behaviours.items(), ("cancel", cancelled), ("stuck-error", boom)):
        server.on("session_start", virtual_agent_id=agent)(handler)
    server.on("error")(stuck_error)
    return server


async def main(repeats: int) -> None:
    server = _server()
    await server.start()
    print(f"hostile media cases: {len(_cases()) + 1}, {repeats} RPCs each, "
          f"handler_timeout_s={TIMEOUT_S}")  # fmt: skip
    print(f"{'case':34} {'status':17} {'p50 ms':>8} {'max ms':>8}")
    async with aio.insecure_channel(server.address) as channel:
        for name, (expected, build) in _cases().items():
            times = []
            for _ in range(repeats):
                messages = build()
                start = time.perf_counter()
                code, texts = await _rpc(channel, messages)
                times.append((time.perf_counter() - start) * 1000)
                if code != expected or (expected == "OK" and texts != [SORRY]):
                    raise SystemExit(f"{name}: expected {expected}, got {code} {texts}")
            print(f"{name:34} {expected:17} {statistics.median(times):8.1f} {max(times):8.1f}")
    await server.stop(0.5)
    await _abandoned(repeats)


async def _abandoned(repeats: int, capacity: int = 200) -> None:
    """Calls that start and vanish fill ``max_conversations``; each new call evicts one."""
    server = BYOVAMediaServer(
        MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False, max_conversations=capacity)
    )
    await server.start()
    async with aio.insecure_channel(server.address) as channel:
        for _ in range(capacity):
            await _rpc(channel, [_start(str(uuid.uuid4())), None])
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            code, _ = await _rpc(channel, [_start(str(uuid.uuid4())), None])
            times.append((time.perf_counter() - start) * 1000)
            if code != "OK":
                raise SystemExit(f"new call at capacity: {code}")
    label = f"new call at capacity ({capacity} abandoned)"
    print(f"{label:34} {'OK (evicts one)':17} {statistics.median(times):8.1f} {max(times):8.1f}")
    print(f"conversations evicted: {server.conversations_evicted}")
    await server.stop(0.5)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
