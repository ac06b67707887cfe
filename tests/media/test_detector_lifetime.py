"""The end-pointer lives per conversation: made once, reset between turns (it keeps what it
learned of the line), and a fresh one only when the timers change or turns overlap."""

from __future__ import annotations

from typing import Any

from webex_byova.media import BYOVAMediaServer, EnergyVAD
from webex_byova.media.assets import load

from .conftest import make_config

HELLO = load("speech_hello.wav")


class CountingVAD(EnergyVAD):
    made: list[CountingVAD] = []  # noqa: RUF012 - the test's record of every detector

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resets = 0
        CountingVAD.made.append(self)

    def reset_turn(self) -> None:
        self.resets += 1
        super().reset_turn()


def _factory(sample_rate: int, settings: Any) -> CountingVAD:
    return CountingVAD(
        sample_rate=sample_rate,
        complete_timeout_ms=settings.complete_timeout_ms,
        max_speech_ms=settings.max_speech_timeout_ms,
    )


async def test_one_detector_per_conversation_reset_between_turns(caller_factory) -> None:
    CountingVAD.made = []
    server = BYOVAMediaServer(make_config(), detector_factory=_factory)
    replies = []

    @server.on("utterance")
    def answer(event: Any) -> None:
        replies.append(event.duration_ms)
        event.turn.say("got it")

    @server.on("dtmf_input")
    def slower(event: Any) -> None:
        event.turn.say("ok")
        event.session.set_input(complete_timeout_ms=1200)

    async with server:
        caller = caller_factory(server)
        await caller.start_session()
        for _ in range(3):
            assert (await caller.say(wav=HELLO)).event_types[:2] == [
                "START_OF_INPUT",
                "END_OF_INPUT",
            ]
        assert len(CountingVAD.made) == 1
        assert CountingVAD.made[0].resets == 2  # turns 2 and 3 reused it
        await caller.press("1")  # changes the speech timers: the next turn needs a new one
        await caller.say(wav=HELLO)
        assert len(CountingVAD.made) == 2
        assert CountingVAD.made[1].resets == 0
        other = caller_factory(server)  # another conversation never shares it
        await other.start_session()
        await other.say(wav=HELLO)
        assert len(CountingVAD.made) == 3
    assert len(replies) == 5
