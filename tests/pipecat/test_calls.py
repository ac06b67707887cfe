"""Whole calls through a real pipecat pipeline on a real media server."""

from __future__ import annotations

import asyncio

from webex_byova.media.assets import load

from .conftest import WELCOME, pipecat_server

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
