"""Whole calls through a real pipecat pipeline on a real media server."""

from __future__ import annotations

import asyncio

from pipecat.frames.frames import InputAudioRawFrame, TTSSpeakFrame, UserStoppedSpeakingFrame

from webex_byova.integrations.pipecat import BYOVATransportParams
from webex_byova.media.assets import load

from .conftest import RATE, WELCOME, ScriptedBot, pipecat_server

HELLO = load("speech_hello.wav")


async def test_welcome_utterance_dtmf_transfer(place_call) -> None:
    bot = pipecat_server()
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


async def test_text_streamed_by_an_llm_with_no_tts_is_one_prompt(place_call) -> None:
    bot = pipecat_server()
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        answer = await caller.press("3")
        assert answer.texts == ["Your balance is zero."]
        assert len(answer.finals) == 1


async def test_barge_in_cancels_the_bot_output(place_call) -> None:
    # A 2 s reply generated in 20 slow pieces: the caller talks over it on the next RPC.
    bot = pipecat_server(bot=lambda r: ScriptedBot(r, reply_ms=2000, pieces=20, piece_delay=0.05))
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        first = caller.open("audio")
        talking = asyncio.create_task(caller.say(wav=HELLO, turn=first))
        while not first.result.chunks:  # the reply started streaming
            await asyncio.sleep(0.01)
        second = await caller.say(wav=HELLO)
        cut = await talking
        assert len(cut.finals) == 1
        assert 0 < len(cut.audio) < 16000  # the rest of the 2 s (16000 µ-law bytes) never went
        assert second.event_types[:2] == ["START_OF_INPUT", "END_OF_INPUT"]
        assert len(second.audio) == 16000  # the next reply plays whole
        record = bot.records[0]
        assert record.interruptions >= 1
        await caller.end_session()
        await asyncio.wait_for(record.finished.wait(), 5)


async def test_caller_hang_up_ends_the_pipeline(place_call) -> None:
    bot = pipecat_server()
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


async def test_end_frame_ends_the_session(place_call) -> None:
    bot = pipecat_server()
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


async def test_no_input_and_a_silent_bot_are_answered(place_call) -> None:
    params = BYOVATransportParams(audio_in_sample_rate=16000, reply_timeout_s=0.3)
    bot = pipecat_server(params=params)
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


async def test_pipecat_and_server_both_see_the_turn(place_call) -> None:
    bot = pipecat_server()
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


async def test_pipecat_turn_taking_ends_the_input_on_the_wire(place_call) -> None:
    params = BYOVATransportParams(audio_in_sample_rate=RATE, turn_taking="pipecat")
    # The server's own end of speech would need 5 s of silence: the caller sends 2 s at most.
    bot = pipecat_server(bot=EndsTurnAfterAudio, params=params, complete_timeout_ms=5000)
    reasons: list[str] = []
    bot.server.on("utterance")(lambda event: reasons.append(event.reason))
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        spoken = await caller.say(wav=HELLO)
        assert "END_OF_INPUT" in spoken.event_types
        assert spoken.frames_sent < len(caller.frames(wav=HELLO, trailing_silence_ms=2000))
        assert reasons == ["handler"]  # turn.end_input(), on the pipeline's decision
        assert len(spoken.audio) == 8000 * 400 // 1000  # and the bot's reply came with it
        assert bot.records[0].frames[0] == "decided"  # no UserStartedSpeakingFrame pushed


async def test_wav_mode_puts_the_reply_in_the_final(place_call) -> None:
    bot = pipecat_server(audio_mode="wav")
    async with bot.server:
        caller = place_call(bot.server)
        await caller.start_session()
        spoken = await caller.say(wav=HELLO)
        assert not spoken.chunks
        assert len(spoken.finals) == 1
        assert spoken.final.prompts[0].audio_content[:4] == b"RIFF"
        assert len(spoken.audio) == 8000 * 400 // 1000


async def test_custom_event_handler_and_server_stop(place_call) -> None:
    seen: list[str] = []

    def setup(transport, worker) -> None:
        @transport.event_handler("on_custom_event")
        async def custom(transport, custom_event) -> None:
            seen.append(custom_event.event_name)
            await worker.queue_frames([TTSSpeakFrame("Order shipped.")])

    bot = pipecat_server(setup=setup)
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
