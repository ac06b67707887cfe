"""Hostile and broken input: the server answers with clear statuses, stays up, and other
calls are unaffected."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import grpc

from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media.assets import load

YES = load("speech_yes.wav")


def _echo_server(server: Any) -> None:
    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("hello")

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("heard")


async def _healthy_call(caller_factory: Any, server: Any) -> None:
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["hello"]
    reply = await caller.say(wav=YES)
    assert reply.ok
    assert reply.texts == ["heard"]


async def test_empty_and_oneof_less_requests(media_server, caller_factory):
    server = await media_server()
    _echo_server(server)
    await server.start()
    caller = caller_factory(server)

    turn = caller.open()
    await turn.send(vva.VoiceVARequest())  # nothing at all
    await turn.half_close()
    result = await turn.wait(5)
    assert result.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "conversation_id" in result.details

    turn = caller.open()
    for _ in range(5):
        await turn.send(caller.request())  # ids but no oneof set
    await turn.half_close()
    result = await turn.wait(5)
    assert result.ok
    assert result.responses == []

    empty_rpc = caller.open()
    await empty_rpc.half_close()  # no request at all
    assert (await empty_rpc.wait(5)).ok
    await _healthy_call(caller_factory, server)


async def test_oversized_frames(media_server, caller_factory):
    server = await media_server(max_message_bytes=1024 * 1024)
    _echo_server(server)
    await server.start()
    caller = caller_factory(server)
    await caller.start_session()

    turn = caller.open("audio")
    await turn.send(caller.audio_request(b"\x00" * (70 * 1024)))  # > 64 KiB: dropped
    await turn.half_close()
    result = await turn.wait(5)
    assert result.ok
    assert result.event_types == []

    turn = caller.open("audio")
    await turn.send(caller.audio_request(b"\x00" * (2 * 1024 * 1024)))  # > max message size
    await turn.half_close()
    result = await turn.wait(5)
    assert result.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    await _healthy_call(caller_factory, server)


async def test_garbage_audio_and_unknown_encodings(media_server, caller_factory):
    server = await media_server(max_speech_timeout_ms=2000)
    _echo_server(server)
    await server.start()
    caller = caller_factory(server)
    noise = os.urandom(8000 * 4)
    frames = [noise[i : i + 160] for i in range(0, len(noise), 160)]
    result = await caller.stream_frames(frames)  # random µ-law: loud noise
    assert result.ok
    assert len(result.finals) == 1
    assert result.event_types.count("END_OF_INPUT") <= 1

    turn = caller.open("audio")
    for frame in frames[:50]:
        req = caller.audio_request(frame, encoding="LINEAR16", sample_rate=11025)  # bad rate
        await turn.send(req)
        bad = caller.audio_request(frame[:-1], encoding="LINEAR16")  # odd length PCM
        await turn.send(bad)
        weird = caller.request(audio_input=vva.VoiceInput(caller_audio=frame, encoding=9))
        await turn.send(weird)
    await turn.half_close()
    assert (await turn.wait(10)).ok
    await _healthy_call(caller_factory, server)


async def test_ten_thousand_tiny_frames(media_server, caller_factory):
    server = await media_server()
    _echo_server(server)
    await server.start()
    caller = caller_factory(server)
    result = await caller.stream_frames([b"\x01\x02\x03"] * 10_000)
    assert result.ok
    assert result.frames_sent == 10_000
    assert result.event_types == []
    assert len(result.finals) == 1
    await _healthy_call(caller_factory, server)


async def test_client_cancels_mid_prompt(media_server, caller_factory):
    server = await media_server(audio_mode="chunk", realtime_pacing=True, chunk_ms=100)
    outcome: list[Any] = []
    both = asyncio.Event()

    @server.on("session_start")
    async def long_prompt(event: Any) -> None:
        outcome.append(await event.turn.say(audio=b"\x33" * 80_000))  # 10 s
        if len(outcome) == 2:
            both.set()

    @server.on("turn_ended")
    def ended(event: Any) -> None:
        outcome.append(event.outcome)
        if len(outcome) == 2:
            both.set()

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("heard")

    await server.start()
    caller = caller_factory(server)
    turn = caller.open("session_start")
    await turn.send(caller.event_request("SESSION_START"))
    await turn.half_close()
    await asyncio.wait_for(turn.first_response.wait(), 5)
    turn.cancel()
    result = await turn.wait(5)
    assert result.code == grpc.StatusCode.CANCELLED
    await asyncio.wait_for(both.wait(), 10)
    assert sorted(map(str, outcome)) == ["False", "cancelled"]
    # the conversation survives the cancelled RPC, and other calls are unaffected
    assert caller.conversation_id in server.sessions
    other = caller_factory(server)
    assert (await other.say(wav=YES)).texts == ["heard"]
    assert (await caller.say(wav=YES)).texts == ["heard"]


async def test_a_caller_streaming_on_after_a_transfer_sees_the_servers_ok(
    media_server, caller_factory
):
    """The server completes a terminal RPC at once (as Cisco's gateway does) while an unpaced
    caller is still writing: grpc-python's late write fails locally and reports INTERNAL
    "Internal error from Core"; the Webex-side caller reports the server's OK with the
    terminal response, never a failed call."""
    from webex_byova.media import audio

    server = await media_server()

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("hello")

    @server.on("utterance")
    def transfer(event: Any) -> None:
        event.turn.transfer_to_agent()

    await server.start()
    ulaw = audio.wav_to_webex(YES) + b"\xff" * 8000 * 4  # speech, then 4 s of silence
    for _ in range(5):
        caller = caller_factory(server)
        assert (await caller.start_session()).ok
        turn = caller.open("audio")
        for i in range(0, len(ulaw), 160):  # as fast as gRPC takes them, no pacing
            if not await turn.send(caller.audio_request(ulaw[i : i + 160])):
                break
        await turn.half_close()
        result = await turn.wait(10)
        assert result.has_event("TRANSFER_TO_AGENT")
        assert result.ok, (result.code, result.details)
