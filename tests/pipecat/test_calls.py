"""Whole calls through a real pipecat pipeline on a real media server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from pipecat.frames.frames import InputAudioRawFrame, TTSSpeakFrame, UserStoppedSpeakingFrame

from webex_byova.integrations.pipecat import BYOVATransportParams
from webex_byova.media.assets import load

from .conftest import RATE, WELCOME, ScriptedBot

HELLO = load("speech_hello.wav")


async def test_welcome_utterance_dtmf_transfer(serve, place_call) -> None:
    bot = serve()
    async with bot.server:
        caller = place_call(bot.server)
        first = await caller.start_session()
        assert first.ok
        assert first.texts == [WELCOME]
        assert len(first.finals) == 1
        spoken = await caller.say(wav=HELLO)
        assert spoken.event_types[:2] == ["START_OF_INPUT", "END_OF_INPUT"]
        assert len(spoken.finals) == 1
        assert len(spoken.audio) == 8000 * 400 // 1000  # the bot's 400 ms reply, as µ-law
        assert spoken.chunks  # streamed as CHUNKs before the FINAL
        keyed = await caller.press("5")
        assert keyed.texts == ["You pressed 5."]
        assert len(keyed.finals) == 1
        moved = await caller.press("0")
        assert moved.has_event("TRANSFER_TO_AGENT")
        assert moved.terminal
        record = bot.records[0]
        await asyncio.wait_for(record.finished.wait(), 5)
        assert record.frames == ["UserStartedSpeakingFrame", "UserStoppedSpeakingFrame"]
        assert record.keys == ["5", "0"]
        assert record.audio_in_bytes > 0
        assert record.connected == 1
        assert record.disconnected == 1


async def test_text_streamed_by_an_llm_with_no_tts_is_one_prompt(serve, place_call) -> None:
    bot = serve()
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        answer = await caller.press("3")
        assert answer.texts == ["Your balance is zero."]
        assert len(answer.finals) == 1


async def _barge_in_over_grpc(caller) -> tuple[Any, Any, list[str]]:
    """Webex opens the next audio RPC while the reply's RPC is still open."""
    first = caller.open("audio")
    talking = asyncio.create_task(caller.say(wav=HELLO, turn=first))
    while not first.result.chunks:  # the reply started streaming
        await asyncio.sleep(0.01)
    second = await caller.say(wav=HELLO)
    return await talking, second, second.event_types


async def _barge_in_over_websocket(caller) -> tuple[Any, Any, list[str]]:
    """One socket: Webex keeps streaming caller audio after END_OF_INPUT while a barge-in
    enabled reply plays; the caller's new speech is the next turn on the same socket."""
    talking = asyncio.create_task(caller.say(wav=HELLO))
    while not any(_audio_chunk(env) for env in caller.received):  # the reply is streaming
        await asyncio.sleep(0.01)
    frames = caller.frames(wav=HELLO, leading_silence_ms=200, trailing_silence_ms=2000)
    sent, between = 0, len(caller.unsolicited)
    while not talking.done():  # talk over the reply until it is cut (its FINAL arrives)
        assert sent < len(frames), "the reply was not cut while the caller spoke"
        await caller.send_request(caller.audio_payload(frames[sent]))
        sent += 1
        await asyncio.sleep(0.01)
    cut = await talking
    second = await caller.stream_frames(frames[sent:])
    # START_OF_INPUT may come right behind the cut reply's FINAL, before the next step began.
    early = [_event_types(env) for env in caller.unsolicited[between:]]
    return cut, second, [t for types in early for t in types] + second.event_types


def _audio_chunk(envelope: dict) -> bool:
    payload = envelope.get("payload") or {}
    prompts = payload.get("prompts") or ()
    return payload.get("response_type") == "CHUNK" and any(
        p.get("audio_content_b64") for p in prompts
    )


def _event_types(envelope: dict) -> list[str]:
    payload = envelope.get("payload") or {}
    return [e.get("event_type", "") for e in payload.get("output_events") or ()]


async def test_barge_in_cancels_the_bot_output(serve, place_call, webex) -> None:
    # A 2 s reply generated in 20 slow pieces (2 s in all): the caller talks over it.
    bot = serve(bot=lambda r: ScriptedBot(r, reply_ms=2000, pieces=20, piece_delay=0.1))
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        if webex == "grpc":
            cut, second, events = await _barge_in_over_grpc(caller)
        else:
            cut, second, events = await _barge_in_over_websocket(caller)
        assert len(cut.finals) == 1
        assert 0 < len(cut.audio) < 16000  # the rest of the 2 s (16000 µ-law bytes) never went
        assert events[:2] == ["START_OF_INPUT", "END_OF_INPUT"]
        assert len(second.finals) == 1
        assert len(second.audio) == 16000  # the next reply plays whole
        record = bot.records[0]
        assert record.interruptions >= 1
        await caller.end_session()
        await asyncio.wait_for(record.finished.wait(), 5)


async def test_caller_hang_up_ends_the_pipeline(serve, place_call) -> None:
    bot = serve()
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        await caller.say(wav=HELLO)
        bye = await caller.end_session()
        assert bye.ok
        record = bot.records[0]
        await asyncio.wait_for(record.finished.wait(), 5)
        assert record.disconnected == 1
        assert not bot.server.sessions


async def test_end_frame_ends_the_session(serve, place_call) -> None:
    bot = serve()
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        goodbye = await caller.press("9")  # TTSSpeakFrame("Goodbye."), then the EndFrame
        assert goodbye.texts == ["Goodbye."]
        assert len(goodbye.finals) == 1
        await asyncio.wait_for(bot.records[0].finished.wait(), 5)
        # The EndFrame came after that reply's FINAL: Webex's next turn gets SESSION_END.
        last = await caller.say(wav=HELLO)
        assert last.has_event("SESSION_END")
        assert last.terminal
        assert not bot.server.sessions


async def test_no_input_and_a_silent_bot_are_answered(serve, place_call) -> None:
    params = BYOVATransportParams(audio_in_sample_rate=16000, reply_timeout_s=0.3)
    bot = serve(params=params)
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        nudge = await caller.no_input()
        assert nudge.texts == ["Are you still there?"]
        silent = await caller.press("7")  # the bot says nothing: an empty FINAL, in bounded time
        assert silent.ok
        assert len(silent.finals) == 1
        assert not silent.texts
        event = await caller.custom_event("order_status")  # no on_custom_event handler
        assert len(event.finals) == 1


async def test_pipecat_and_server_both_see_the_turn(serve, place_call) -> None:
    bot = serve()
    ours: list[tuple[str, str]] = []
    bot.server.on("turn_ended")(lambda e: ours.append((e.kind, e.outcome)))
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        await caller.say(wav=HELLO)
        await caller.end_session()
        record = bot.records[0]
        await asyncio.wait_for(record.finished.wait(), 5)
    assert ("audio", "completed") in ours
    assert record.pipecat_turns[:1] == ["started 1"]
    assert "ended 1" in record.pipecat_turns
    assert record.metrics >= 1  # enable_metrics: pipecat's metrics frames flow


class EndsTurnAfterAudio(ScriptedBot):
    """Plays the pipeline's turn analyzer: after ~0.6 s of caller audio it decides the caller
    is done (UserStoppedSpeakingFrame), long before the server's own end-pointer would."""

    async def process_frame(self, frame, direction) -> None:
        if isinstance(frame, InputAudioRawFrame) and not self.record.frames:
            self.record.audio_in_bytes += len(frame.audio)
            if self.record.audio_in_bytes >= RATE * 2 * 6 // 10:
                self.record.frames.append("decided")
                await self.push_frame(UserStoppedSpeakingFrame())
                self._speaking = self.create_task(self._speak())
            return
        await super().process_frame(frame, direction)


async def test_pipecat_turn_taking_ends_the_input_on_the_wire(serve, place_call) -> None:
    params = BYOVATransportParams(audio_in_sample_rate=RATE, turn_taking="pipecat")
    # The server's own end of speech would need 5 s of silence: the caller sends 2 s at most.
    bot = serve(bot=EndsTurnAfterAudio, params=params, complete_timeout_ms=5000)
    reasons: list[str] = []
    bot.server.on("utterance")(lambda event: reasons.append(event.reason))
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        # Paced (5x real time) as Webex is, so the caller can stop at END_OF_INPUT: unpaced, a
        # WebSocket caller has sent every frame before the pipeline heard the first 0.6 s.
        caller.realtime, caller.speed = True, 5.0
        spoken = await caller.say(wav=HELLO)
        assert "END_OF_INPUT" in spoken.event_types
        assert spoken.frames_sent < len(caller.frames(wav=HELLO, trailing_silence_ms=2000))
        assert reasons == ["handler"]  # turn.end_input(), on the pipeline's decision
        assert len(spoken.audio) == 8000 * 400 // 1000  # and the bot's reply came with it
        assert bot.records[0].frames[0] == "decided"  # no UserStartedSpeakingFrame pushed


# gRPC only: WebSocket has no WAV mode (its reply audio is always raw µ-law CHUNKs, never a
# WAV in the FINAL), so this scenario does not exist there.
@pytest.mark.parametrize("webex", ["grpc"], indirect=True)
async def test_wav_mode_puts_the_reply_in_the_final(serve, place_call) -> None:
    bot = serve(audio_mode="wav")
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        spoken = await caller.say(wav=HELLO)
        assert not spoken.chunks
        assert len(spoken.finals) == 1
        assert spoken.final.prompts[0].audio_content[:4] == b"RIFF"
        assert len(spoken.audio) == 8000 * 400 // 1000


async def test_custom_event_handler_and_server_stop(serve, place_call) -> None:
    seen: list[str] = []

    def setup(transport, worker) -> None:
        @transport.event_handler("on_custom_event")
        async def custom(transport, custom_event) -> None:
            seen.append(custom_event.event_name)
            await worker.queue_frames([TTSSpeakFrame("Order shipped.")])

    bot = serve(setup=setup)
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        answer = await caller.custom_event("order_status", {"order": "42"})
        assert answer.texts == ["Order shipped."]
        assert seen == ["order_status"]
    # Leaving `async with` stopped the server: the live call ended and its pipeline with it.
    record = bot.records[0]
    assert record.finished.is_set()
    assert record.disconnected == 1
