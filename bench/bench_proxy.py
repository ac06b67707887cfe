"""WebSocket proxy overhead: prints figures (no assertions).

Run: ``.venv/bin/python bench/bench_proxy.py``. Everything runs on 127.0.0.1 in one process:
the real media server over gRPC, a ``WebexCaller`` and a ``websockets`` backend.

* per relayed frame: time from the local ``audio_input`` handler (which runs just before the
  connector) until the backend has decoded that frame, with the caller pacing 20 ms frames;
* per prompt: DTMF round trip answered by the backend through the proxy, minus the same round
  trip answered by a local handler;
* the sans-IO encode/decode cost per message.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import timeit

from websockets.asyncio.server import ServerConnection, serve

from webex_byova.media.config import MediaServerConfig
from webex_byova.media.proxy import WebSocketProxyConnector
from webex_byova.media.proxy._protocol import (
    AudioFrame,
    Prompt,
    decode_inbound,
    decode_outbound,
    encode_message,
)
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.testing._caller import WebexCaller

FRAMES = 150
PROMPTS = 60
CONFIG = {"host": "127.0.0.1", "port": 0, "verify_tokens": False, "realtime_pacing": False}


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def show(label: str, seconds: list[float]) -> None:
    ms = [s * 1000 for s in seconds]
    print(
        f"  {label:34s} median {statistics.median(ms):6.3f} ms   p95 {pct(ms, 0.95):6.3f} ms"
        f"   max {max(ms):6.3f} ms   (n={len(ms)})"
    )


async def bench_frames() -> None:
    handed: dict[int, float] = {}
    arrived: dict[int, float] = {}

    async def bot(ws: ServerConnection) -> None:
        async for frame in ws:
            msg = decode_outbound(frame)
            if msg.type == "session.start":
                await ws.send(encode_message(Prompt(text="hi")))
            elif isinstance(msg, AudioFrame):
                arrived[msg.seq] = time.perf_counter()

    async with serve(bot, "127.0.0.1", 0) as backend:
        port = next(iter(backend.sockets)).getsockname()[1]
        server = BYOVAMediaServer(MediaServerConfig(**CONFIG))
        server.use_proxy(WebSocketProxyConnector(f"ws://127.0.0.1:{port}"))
        counter = iter(range(10**9))

        @server.on("audio_input")
        def stamp(event: object) -> None:
            handed[next(counter)] = time.perf_counter()

        await server.start()
        try:
            async with WebexCaller(server.address, realtime=True) as caller:
                await caller.start_session()
                noise = bytes(0x7F if i % 3 else 0xFF for i in range(160))  # digital silence
                await caller.stream_frames([noise] * FRAMES, stop_on_end_of_input=False)
                await caller.end_session()
        finally:
            await server.stop(grace=0.5)
    lat = [arrived[k] - handed[k] for k in handed if k in arrived]
    print(f"Relayed caller frames (20 ms pacing, {FRAMES} frames)")
    show("handler -> backend decoded", lat)


async def bench_prompts() -> None:
    async def bot(ws: ServerConnection) -> None:
        async for frame in ws:
            msg = decode_outbound(frame)
            if msg.type in ("session.start", "dtmf"):
                await ws.send(encode_message(Prompt(text="ok")))

    async def round_trips(server: BYOVAMediaServer) -> list[float]:
        await server.start()
        try:
            async with WebexCaller(server.address, realtime=False) as caller:
                await caller.start_session()
                out = []
                for _ in range(PROMPTS):
                    t0 = time.perf_counter()
                    result = await caller.send_dtmf("1")
                    out.append(time.perf_counter() - t0)
                    assert result.texts == ["ok"], result.texts
                await caller.end_session()
                return out
        finally:
            await server.stop(grace=0.5)

    local = BYOVAMediaServer(MediaServerConfig(**CONFIG))

    @local.on("session_start")
    @local.on("dtmf_input")
    def answer(event: object) -> None:
        event.turn.say("ok")  # type: ignore[attr-defined]

    direct = await round_trips(local)
    async with serve(bot, "127.0.0.1", 0) as backend:
        port = next(iter(backend.sockets)).getsockname()[1]
        proxied_server = BYOVAMediaServer(MediaServerConfig(**CONFIG))
        proxied_server.use_proxy(WebSocketProxyConnector(f"ws://127.0.0.1:{port}"))
        proxied = await round_trips(proxied_server)
    print(f"Prompt round trip (DTMF RPC -> FINAL with prompt, {PROMPTS} turns)")
    show("local handler", direct)
    show("via WebSocket backend", proxied)
    added = statistics.median(proxied) - statistics.median(direct)
    print(f"  added by the proxy per prompt (median)  {added * 1000:6.3f} ms")


def bench_codec() -> None:
    frame = AudioFrame(seq=1, turn=2, audio=bytes(range(160)), offset_ms=20.0)
    prompt = encode_message(Prompt(text="Hello there", audio=b"\x00" * 8000))
    print("Sans-IO protocol cost")
    for label, fn in (
        ("encode audio frame (160 B)", lambda: encode_message(frame)),
        ("decode prompt (8 kB audio)", lambda: decode_inbound(prompt)),
    ):
        t = min(timeit.repeat(fn, number=2000, repeat=5)) / 2000
        print(f"  {label:34s} {t * 1e6:7.2f} µs")


async def main() -> None:
    bench_codec()
    await bench_frames()
    await bench_prompts()


if __name__ == "__main__":
    asyncio.run(main())
