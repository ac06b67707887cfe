"""Backend crashes, slow backends, malformed messages and heartbeats."""

from __future__ import annotations

import asyncio
import random

from webex_byova.media.assets import load
from webex_byova.media.proxy import ProxyFallback, ReconnectPolicy
from webex_byova.media.proxy._protocol import Prompt
from webex_byova.media.proxy.connector import WebSocketProxyConnector

from .conftest import BackendConn, instant


async def test_backend_crash_mid_call_reconnects_and_resumes(backend, media_server, caller_factory):
    crash_after = 40

    async def bot(conn: BackendConn) -> None:
        start = await conn.recv()
        if not start.resumed:
            await conn.send(Prompt(text="Welcome"))
            audio = 0
            while audio < crash_after:
                if (await conn.recv()).type == "audio":
                    audio += 1
            conn.ws.transport.abort()  # crash: no close frame
            await conn.ws.wait_closed()
        while True:
            msg = await conn.recv()
            if msg.type == "event" and msg.name == "end_of_input":
                await conn.send(Prompt(text="I heard you after the crash"))

    be = await backend(bot)
    server = media_server()
    connector = WebSocketProxyConnector(
        be.url, reconnect=ReconnectPolicy(max_attempts=5), sleep=instant
    )
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["Welcome"]

    reply = await caller.say(wav=load("speech_hello.wav"))
    assert reply.has_event("END_OF_INPUT")
    assert reply.texts == ["I heard you after the crash"]
    assert not reply.terminal

    first, second = be.conns[0], await be.connection(1)
    stats, _queue = connector.stats(caller.conversation_id)
    assert stats.connects == 2
    assert stats.reconnects == 1
    resumed = second.messages[0]
    assert resumed.type == "session.start"
    assert resumed.resumed is True
    assert resumed.conversation_id == caller.conversation_id
    seqs1 = [m.seq for m in first.of_type("audio")]
    seqs2 = [m.seq for m in second.of_type("audio")]
    assert seqs1 == list(range(len(seqs1)))
    assert len(seqs1) >= crash_after
    # the new connection continues where the old one was cut, in order, without repeats
    assert seqs2 == list(range(resumed.next_seq, resumed.next_seq + len(seqs2)))
    assert resumed.next_seq >= crash_after
    assert seqs2

    await caller.end_session()
    await asyncio.wait_for(second.closed.wait(), 5)
    assert connector.open_connections == 0
    assert be.open_connections == 0


async def test_malformed_backend_messages_are_ignored(backend, media_server, caller_factory):
    garbage = [
        "not json at all",
        "[1, 2, 3]",
        '{"no_type": true}',
        '{"type": "prompt", "v": 99, "text": "from the future"}',
        '{"type": "audio", "audio": "***not base64***"}',
        '{"type": "prompt", "barge_in": "sometimes"}',
        b"\x00\x01binary",
        '{"type": "telemetry", "cpu": 0.5}',
    ]

    async def bot(conn: BackendConn) -> None:
        await conn.recv()
        for frame in garbage:
            await conn.send(frame)
        # valid, with an unknown field and audio that is not a WAV: its text is still played
        await conn.send(
            '{"type":"prompt","text":"Welcome despite the noise","extra":1,"audio":"AAAA"}'
        )
        while True:
            msg = await conn.recv()
            if msg.type == "dtmf":
                await conn.send("{{{")
                await conn.send(Prompt(text=f"You pressed {msg.digits}"))

    be = await backend(bot)
    server = media_server()
    connector = WebSocketProxyConnector(be.url)
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    welcome = await caller.start_session()
    assert welcome.texts == ["Welcome despite the noise"]
    stats, _ = connector.stats(caller.conversation_id)
    assert stats.invalid == 7
    assert stats.unknown == 1
    dtmf = await caller.press("7")
    assert dtmf.texts == ["You pressed 7"]
    later = await caller.press("8")
    assert later.texts == ["You pressed 8"]
    assert connector.state(caller.conversation_id) == "open"
    stats, _ = connector.stats(caller.conversation_id)
    assert stats.connects == 1
    assert stats.invalid == 9
    await caller.end_session()
    assert connector.open_connections == 0


async def _slow_call(backend, media_server, caller_factory, **connector_kwargs):
    """A 60 s call (3000 frames, sent without real-time pacing) to a backend that reads
    nothing until the caller has finished sending."""
    release = asyncio.Event()

    async def slow_bot(conn: BackendConn) -> None:
        await conn.recv()
        await conn.send(Prompt(text="Hello"))
        await release.wait()
        while True:
            msg = await conn.recv()
            if msg.type == "dtmf":
                await conn.send(Prompt(text="Caught up"))

    be = await backend(slow_bot, rcvbuf=4096, max_queue=4, ping_interval=None, close_timeout=0.2)
    server = media_server()
    connector = WebSocketProxyConnector(be.url, ping_interval=None, **connector_kwargs)
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["Hello"]
    rng = random.Random(8)
    noise = [bytes(rng.getrandbits(8) for _ in range(160)) for _ in range(50)]
    depth: list[tuple[int, int]] = []

    @server.on("audio_input")
    def sample(event):
        found = connector.stats(event.conversation_id)
        if found is not None:
            depth.append((found[1].depth, found[1].bytes))

    # quiet-enough noise: the end-pointer sees no speech, so every frame is relayed
    frames = [bytes(0x7F | (b & 0x80) if b & 1 else 0xFF for b in f) for f in noise]
    result = await caller.stream_frames([frames[i % 50] for i in range(3000)])
    stats = connector.stats(caller.conversation_id)
    return be, connector, caller, result, stats, depth, release


async def test_slow_backend_drop_oldest_audio_bounds_memory(backend, media_server, caller_factory):
    limit = 64 * 1024
    be, connector, caller, result, stats, depth, release = await _slow_call(
        backend, media_server, caller_factory, queue_max_bytes=limit, policy="drop_oldest_audio"
    )
    assert result.frames_sent == 3000
    assert not result.terminal  # the call goes on
    link_stats, queue = stats
    assert len(depth) == 3000
    assert max(b for _, b in depth) <= limit
    assert queue.high_water_bytes <= limit
    assert queue.dropped_frames > 0  # the policy was applied
    assert queue.queued + queue.dropped_frames >= 3000

    release.set()  # the backend catches up: it still gets the newest audio, in order
    conn = be.conns[0]
    reply_turn = await caller.press("1")
    assert reply_turn.texts == ["Caught up"]
    await caller.end_session()
    await asyncio.wait_for(conn.closed.wait(), 10)
    seqs = [m.seq for m in conn.of_type("audio")]
    assert seqs == sorted(set(seqs))
    assert seqs[-1] == 2999
    assert [m.digits for m in conn.of_type("dtmf")] == ["1"]  # control messages never dropped
    assert connector.open_connections == 0


async def test_slow_backend_end_call_policy_ends_via_fallback(
    backend, media_server, caller_factory
):
    limit = 32 * 1024
    be, connector, caller, result, stats, depth, release = await _slow_call(
        backend,
        media_server,
        caller_factory,
        queue_max_bytes=limit,
        policy="end_call",
        fallback=ProxyFallback("transfer", "Connecting you to an agent."),
    )
    release.set()
    assert result.terminal
    assert result.has_event("TRANSFER_TO_AGENT")
    assert "Connecting you to an agent." in result.texts
    assert result.frames_sent < 3000  # the call ended before all 60 s were sent
    assert max(b for _, b in depth) <= limit
    await asyncio.wait_for(be.conns[0].closed.wait(), 10)
    assert connector.open_connections == 0


async def test_heartbeat_detects_a_hung_backend_and_reconnects(
    backend, media_server, caller_factory
):
    async def bot(conn: BackendConn) -> None:
        start = await conn.recv()
        if not start.resumed:
            await conn.send(Prompt(text="Welcome"))
            conn.ws.transport.pause_reading()  # hung: pings are never answered
            await conn.ws.wait_closed()
        while True:
            msg = await conn.recv()
            if msg.type == "dtmf":
                await conn.send(Prompt(text="Back again"))

    be = await backend(bot, ping_interval=None, close_timeout=0.2)
    server = media_server()
    connector = WebSocketProxyConnector(
        be.url, ping_interval=0.05, ping_timeout=0.1, close_timeout=0.1, sleep=instant
    )
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["Welcome"]
    second = await asyncio.wait_for(be.connection(1), 10)
    await connector.wait_state(caller.conversation_id, "open")
    assert (await caller.press("2")).texts == ["Back again"]
    assert second.messages[0].type == "session.start"
    assert second.messages[0].resumed is True
    await caller.end_session()
    assert connector.open_connections == 0


async def test_backend_that_accepts_then_closes_gives_up_after_max_attempts(
    backend, media_server, caller_factory
):
    async def rejecting(conn: BackendConn) -> None:
        await conn.recv()  # session.start
        await conn.ws.close(1008, "not allowed")

    be = await backend(rejecting)
    server = media_server()
    connector = WebSocketProxyConnector(
        be.url,
        reconnect=ReconnectPolicy(max_attempts=3),
        sleep=instant,
        reply_timeout=30,
    )
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    reply = await asyncio.wait_for(caller.start_session(), 20)
    # the fallback answers once the attempts are spent, not after reply_timeout
    assert reply.has_event("TRANSFER_TO_AGENT")
    assert len(be.conns) == 1 + 3  # the first connection and max_attempts retries
