"""A whole call relayed through WebSocketProxyConnector to a real WebSocket backend."""

from __future__ import annotations

import asyncio

from webex_byova.media import audio
from webex_byova.media.assets import load
from webex_byova.media.proxy import ProxyFallback, ReconnectPolicy, TwilioMediaStreamsAdapter
from webex_byova.media.proxy._protocol import (
    AudioChunk,
    AudioEnd,
    Dtmf,
    InputConfig,
    Prompt,
    Transfer,
)
from webex_byova.media.proxy.connector import WebSocketProxyConnector

from .conftest import BackendConn, instant

TONE = bytes((i * 37) % 251 for i in range(4000))  # 0.5 s of arbitrary µ-law
WELCOME_WAV = audio.make_wav(TONE)
REPLY = bytes((i * 11) % 239 + 1 for i in range(2400))  # 0.3 s streamed reply


async def bot(conn: BackendConn) -> None:
    """Welcome on start; streamed reply after each utterance; transfer on 0."""
    start = await conn.recv()
    assert start.type == "session.start"
    await conn.send(Prompt(text="Welcome to the bot", audio=WELCOME_WAV, barge_in=True))
    while True:
        msg = await conn.recv()
        if msg.type == "event" and msg.name == "end_of_input":
            for i in range(0, len(REPLY), 800):
                await conn.send(AudioChunk(audio=REPLY[i : i + 800]))
            await conn.send(AudioEnd(input=InputConfig(mode="voice_dtmf", dtmf_input_length=1)))
        elif isinstance(msg, Dtmf) and msg.digits == "0":
            await conn.send(Transfer(text="Transferring you now", reason="caller_asked"))


async def test_whole_call_relayed_both_ways(backend, media_server, caller_factory):
    be = await backend(bot)
    server = media_server(audio_mode="chunk")
    connector = WebSocketProxyConnector(
        be.url, headers={"Authorization": "Bearer backend-secret"}, reply_timeout=10
    )
    server.use_proxy(connector)
    local_seen: list[str] = []

    @server.on("utterance")
    async def local(event):  # runs beside the proxy, does not answer
        local_seen.append(f"utterance:{event.turn.index}")

    local_audio: list[bytes] = []

    @server.on("audio_input")
    def local_frame(event):
        local_audio.append(event.audio)

    @server.on("dtmf_input")
    def local_dtmf(event):
        local_seen.append(f"dtmf:{event.digits}")

    await server.start()
    caller = caller_factory(server, customer_org_id="org-42")

    welcome = await caller.start_session()
    assert welcome.ok
    assert welcome.audio[: len(TONE)] == TONE  # the backend's WAV, streamed (CHUNK mode)
    conn = await be.connection(0)
    assert conn.headers["Authorization"] == "Bearer backend-secret"
    start = conn.messages[0]
    assert (start.org_id, start.resumed, start.audio_encoding) == ("org-42", False, "MULAW")
    assert start.conversation_id == caller.conversation_id

    frames = caller.frames(wav=load("speech_hello.wav"), trailing_silence_ms=2000)
    reply = await caller.stream_frames(frames)
    assert reply.has_event("END_OF_INPUT")
    assert reply.audio[: len(REPLY)] == REPLY  # streamed reply played in order
    await asyncio.sleep(0)

    sent = frames[: reply.frames_sent]
    audio_msgs = conn.of_type("audio")
    got = [m.audio for m in audio_msgs]
    # every frame the server accepted reached the backend, in order, numbered from 0
    assert [m.seq for m in audio_msgs] == list(range(len(audio_msgs)))
    assert got == sent[: len(got)]
    assert got == local_audio  # exactly the frames the server accepted (up to END_OF_INPUT)
    assert len(got) > 100
    events = [m.name for m in conn.of_type("event")]
    assert events[:2] == ["start_of_input", "end_of_input"]

    transfer = await caller.press("0")
    assert transfer.terminal
    assert transfer.has_event("TRANSFER_TO_AGENT")
    assert "Transferring you now" in transfer.texts
    assert local_seen == ["utterance:2", "dtmf:0"]

    await asyncio.wait_for(conn.closed.wait(), 5)
    ends = conn.of_type("session.end")
    assert [e.reason for e in ends] == ["transfer_to_agent"]
    assert connector.open_connections == 0
    assert be.open_connections == 0
    assert len(be.conns) == 1  # one WebSocket for the whole conversation


async def test_caller_hangup_closes_the_backend_socket(backend, media_server, caller_factory):
    be = await backend(bot)
    server = media_server()
    connector = WebSocketProxyConnector(be.url)
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["Welcome to the bot"]
    await caller.end_session()
    conn = await be.connection(0)
    await asyncio.wait_for(conn.closed.wait(), 5)
    assert [e.reason for e in conn.of_type("session.end")] == ["caller_ended"]
    assert connector.open_connections == 0


async def test_backend_down_uses_transfer_fallback(media_server, caller_factory, unused_port):
    server = media_server()
    connector = WebSocketProxyConnector(
        f"ws://127.0.0.1:{unused_port}",
        reconnect=ReconnectPolicy(max_attempts=2, connect_timeout=2),
        sleep=instant,
    )
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.terminal
    assert result.has_event("TRANSFER_TO_AGENT")
    assert result.texts == [ProxyFallback().text]
    assert connector.open_connections == 0


async def test_backend_down_prompt_fallback_keeps_the_call(
    media_server, caller_factory, unused_port
):
    server = media_server()
    connector = WebSocketProxyConnector(
        f"ws://127.0.0.1:{unused_port}",
        reconnect=ReconnectPolicy(max_attempts=1),
        fallback=ProxyFallback("prompt", "The assistant is busy."),
        sleep=instant,
    )
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    first = await caller.start_session()
    assert first.texts == ["The assistant is busy."]
    assert not first.terminal
    second = await caller.press("5")
    assert second.texts == ["The assistant is busy."]
    assert not second.terminal
    await caller.end_session()
    assert connector.open_connections == 0


async def test_twilio_like_backend(backend, media_server, caller_factory):
    async def twilio_bot(conn: BackendConn) -> None:
        while True:
            frame = await conn.ws.recv()
            conn.raw.append(frame)
            if '"event":"start"' in frame:
                import base64
                import json

                payload = base64.b64encode(TONE).decode()
                await conn.send(json.dumps({"event": "media", "media": {"payload": payload}}))
                await conn.send(json.dumps({"event": "mark", "mark": {"name": "welcome"}}))
            if '"event":"dtmf"' in frame:
                await conn.send('{"event":"hangup","text":"Goodbye"}')

    be = await backend(twilio_bot)
    server = media_server(audio_mode="chunk")
    server.use_proxy(WebSocketProxyConnector(be.url, adapter=TwilioMediaStreamsAdapter))
    await server.start()
    caller = caller_factory(server)
    welcome = await caller.start_session()
    assert welcome.audio[: len(TONE)] == TONE
    bye = await caller.press("1")
    assert bye.has_event("SESSION_END")
    conn = await be.connection(0)
    await asyncio.wait_for(conn.closed.wait(), 5)
    kinds = [f.split('"event":"')[1].split('"')[0] for f in conn.raw]
    assert kinds[:2] == ["connected", "start"]
    assert "dtmf" in kinds
    assert kinds[-1] == "stop"
