"""Exactly one FINAL per gRPC turn, whatever the handler API is asked, however often.

Webex takes the FINAL as the end of the virtual agent's reply; a second one on the same RPC is
a protocol violation (a repeated prompt, a second terminal event). Every test here runs a real
media server and a real :class:`~webex_byova.testing.WebexCaller`, drives the handler API
twice, out of order or from concurrent tasks, and counts the FINALs on the wire.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from webex_byova.media import BYOVAMediaServer, MediaServerConfig
from webex_byova.media.audio import silence
from webex_byova.media.session import TurnFinishedError


def _one_final(result: Any) -> Any:
    assert result.ok, (result.code, result.details)
    assert len(result.finals) == 1, [r.response_type for r in result.responses]
    assert result.responses[-1].response_type == "FINAL"
    return result.final


async def _welcome_with(media_server: Any, caller_factory: Any, body: Any, **config: Any) -> Any:
    """Start a session whose ``session_start`` handler is ``body(turn, problems)``."""
    server = await media_server(**config)
    problems: list[str] = []

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        await body(event.turn, problems)

    await server.start()
    result = await caller_factory(server).start_session()
    return result, problems


async def test_finish_twice_sends_one_final(media_server, caller_factory) -> None:
    async def body(turn: Any, problems: list[str]) -> None:
        turn.say("hello")
        first = turn.finish()
        second = turn.finish()
        await first
        await second
        await turn.finish()

    result, _ = await _welcome_with(media_server, caller_factory, body)
    _one_final(result)
    assert result.texts == ["hello"]


async def test_say_and_events_after_finish_are_refused(media_server, caller_factory) -> None:
    async def body(turn: Any, problems: list[str]) -> None:
        turn.say("hello")
        await turn.finish()
        for late in (
            lambda: turn.say("too late"),
            lambda: turn.custom_event("late"),
            lambda: turn.no_match(),
            lambda: turn.transfer_to_agent("late transfer"),
            lambda: turn.end_session("late goodbye"),
            lambda: turn.session.say("late via session"),
        ):
            try:
                late()
            except TurnFinishedError:
                problems.append("refused")

    result, problems = await _welcome_with(media_server, caller_factory, body)
    final = _one_final(result)
    assert problems == ["refused"] * 6
    assert result.texts == ["hello"]
    assert list(final.output_events) == []
    assert not result.terminal


@pytest.mark.parametrize(
    ("first", "second", "event"),
    [
        ("transfer_to_agent", "end_session", "TRANSFER_TO_AGENT"),
        ("end_session", "transfer_to_agent", "SESSION_END"),
        ("transfer_to_agent", "transfer_to_agent", "TRANSFER_TO_AGENT"),
        ("end_session", "end_session", "SESSION_END"),
    ],
)
async def test_two_terminal_calls_send_one_terminal_final(
    media_server, caller_factory, first, second, event
) -> None:
    async def body(turn: Any, problems: list[str]) -> None:
        done = getattr(turn, first)("bye")
        try:
            getattr(turn, second)("again")
        except TurnFinishedError:
            problems.append("refused")
        turn.finish()
        await done

    result, problems = await _welcome_with(media_server, caller_factory, body)
    _one_final(result)
    assert problems == ["refused"]
    assert result.event_types == [event]
    assert result.texts == ["bye"]


async def test_concurrent_finish_calls_send_one_final(media_server, caller_factory) -> None:
    async def body(turn: Any, problems: list[str]) -> None:
        turn.say("hello")

        async def finisher() -> None:
            await asyncio.sleep(0)
            await turn.finish()

        await asyncio.gather(*(finisher() for _ in range(20)))

    result, _ = await _welcome_with(media_server, caller_factory, body)
    _one_final(result)
    assert result.texts == ["hello"]


async def test_concurrent_terminal_calls_race_to_one_final(media_server, caller_factory) -> None:
    async def body(turn: Any, problems: list[str]) -> None:
        async def terminal(index: int) -> None:
            await asyncio.sleep(0)
            kind = "transfer_to_agent" if index % 2 else "end_session"
            try:
                await getattr(turn, kind)(f"last words {index}")
            except TurnFinishedError:
                problems.append("refused")

        await asyncio.gather(*(terminal(i) for i in range(10)))

    result, problems = await _welcome_with(media_server, caller_factory, body)
    final = _one_final(result)
    assert problems == ["refused"] * 9
    assert len(final.output_events) == 1
    assert result.event_types[0] in ("TRANSFER_TO_AGENT", "SESSION_END")
    assert len(result.texts) == 1


async def test_concurrent_prompts_and_finishes(media_server, caller_factory) -> None:
    """Prompts racing a finish either make it into the one FINAL or are refused."""

    async def body(turn: Any, problems: list[str]) -> None:
        async def speaker(index: int) -> None:
            await asyncio.sleep(0)
            try:
                turn.say(f"prompt {index}")
            except TurnFinishedError:
                problems.append(f"prompt {index}")

        async def finisher() -> None:
            await asyncio.sleep(0)
            await turn.finish()

        await asyncio.gather(*(speaker(i) for i in range(10)), finisher(), finisher())

    result, refused = await _welcome_with(media_server, caller_factory, body)
    _one_final(result)
    spoken = set(result.texts)
    assert spoken.isdisjoint(refused)
    assert spoken | set(refused) == {f"prompt {i}" for i in range(10)}


async def test_chunk_mode_finish_twice_while_streaming(media_server, caller_factory) -> None:
    async def body(turn: Any, problems: list[str]) -> None:
        played = turn.say(audio=silence(300))
        turn.finish()
        turn.finish()
        await played
        await turn.finish()

    result, _ = await _welcome_with(media_server, caller_factory, body, audio_mode="chunk")
    _one_final(result)
    assert result.chunks
    assert all(r.response_type == "CHUNK" for r in result.responses[:-1])


async def test_several_handlers_finishing_one_turn(media_server, caller_factory) -> None:
    server = await media_server()
    problems: list[str] = []

    for index in range(3):

        @server.on("session_start")
        async def welcome(event: Any, index: int = index) -> None:
            try:
                event.turn.say(f"handler {index}")
            except TurnFinishedError:
                problems.append(f"handler {index}")
            await event.turn.finish()

    await server.start()
    result = await caller_factory(server).start_session()
    _one_final(result)
    assert len(result.texts) + len(problems) == 3


async def test_one_final_on_every_turn_of_a_call(media_server, caller_factory) -> None:
    server = await media_server()

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        event.turn.say("welcome")
        event.turn.finish()
        await event.turn.finish()

    @server.on("dtmf_input")
    async def digits(event: Any) -> None:
        event.turn.say(f"you pressed {event.digits}")
        await asyncio.gather(event.turn.finish(), event.turn.finish())
        event.turn.finish()

    @server.on("custom_event")
    async def custom(event: Any) -> None:
        done = event.turn.end_session("goodbye")
        with pytest.raises(TurnFinishedError):
            event.turn.transfer_to_agent("no")
        await asyncio.gather(done, event.turn.finish())

    await server.start()
    caller = caller_factory(server)
    assert _one_final(await caller.start_session()) is not None
    pressed = await caller.press("12")
    _one_final(pressed)
    assert pressed.texts == ["you pressed 12"]
    ended = await caller.custom_event("wrap_up")
    _one_final(ended)
    assert ended.event_types == ["SESSION_END"]
    for turn in caller.history:
        assert len(turn.finals) <= 1


async def test_a_repeated_finish_resolves_like_the_first(caller_factory) -> None:
    """finish() is idempotent: the second call's future says what the first one's says."""
    server = BYOVAMediaServer(MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False))
    outcomes: list[tuple[bool, bool]] = []

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        event.turn.say("x")
        first = event.turn.finish()
        second = event.turn.finish()
        outcomes.append((await first, await second))

    async with server:
        result = await caller_factory(server).start_session()
    assert len(result.finals) == 1
    assert outcomes == [(True, True)]
