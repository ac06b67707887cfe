"""handler_timeout_s: a turn whose handler never replies is answered like a handler exception."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from webex_byova.media.assets import load
from webex_byova.media.config import MediaServerConfig
from webex_byova.media.session import HandlerTimeoutError

YES = load("speech_yes.wav")

# event a hanging handler is registered for -> (caller step that dispatches it, turn kind)
STEPS = {
    "session_start": (lambda caller: caller.start_session(), "session_start"),
    "utterance": (lambda caller: caller.say(wav=YES), "audio"),
    "dtmf_input": (lambda caller: caller.send_dtmf("7"), "dtmf"),
    "no_input": (lambda caller: caller.no_input(), "no_input"),
    "custom_event": (lambda caller: caller.custom_event("crm_lookup"), "custom_event"),
}


@pytest.mark.parametrize("event_name", list(STEPS))
async def test_a_handler_that_never_returns_gets_the_error_path(
    media_server, caller_factory, caplog, event_name
):
    # Real loop timer, no injected clock: the handler never returns, so only the timeout can
    # answer the RPC (nothing here depends on how long that takes).
    server = await media_server(handler_timeout_s=0.05)
    errors: list[Any] = []
    cancelled = asyncio.Event()

    async def hang(event: Any) -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cancelled.set()

    server.on(event_name)(hang)

    @server.on("error")
    def on_error(event: Any) -> None:
        errors.append((type(event.exception), event.source.name, event.turn.kind))

    @server.on("dtmf_input" if event_name != "dtmf_input" else "no_input")
    def alive(event: Any) -> None:
        event.turn.say("still alive")

    caplog.set_level(logging.ERROR, logger="webex_byova")
    await server.start()
    caller = caller_factory(server, tracking_id="TRK-1")
    if event_name != "session_start":
        assert (await caller.start_session()).ok
    step, expected_kind = STEPS[event_name]
    result = await step(caller)
    assert result.ok
    assert len(result.finals) == 1
    assert result.texts == [server.config.error_prompt_text]
    await asyncio.wait_for(cancelled.wait(), 5)  # the stuck handler task was cancelled
    assert len(errors) == 1
    exc_type, source, turn_kind = errors[0]
    assert issubclass(exc_type, HandlerTimeoutError)
    assert issubclass(exc_type, TimeoutError)
    assert (source, turn_kind) == (event_name, expected_kind)
    logged = [r for r in caplog.records if getattr(r, "exc_info", None) and r.exc_info[1]]
    assert any(
        isinstance(r.exc_info[1], HandlerTimeoutError)
        and r.conversation_id == caller.conversation_id
        and r.trackingid == ("TRK-1_1" if event_name == "session_start" else "TRK-1_2")
        for r in logged
    )
    # the call survives
    after = await (caller.no_input() if event_name == "dtmf_input" else caller.send_dtmf("1"))
    assert after.texts == ["still alive"]
    assert caller.conversation_id in server.sessions
    assert len(errors) == 1


async def test_timeout_with_custom_event_and_end_call_on_error(media_server, caller_factory):
    server = await media_server(handler_timeout_s=0.05, error_response="custom_event")

    @server.on("session_start")
    async def hang(event: Any) -> None:
        await asyncio.Event().wait()

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.events == [("CUSTOM_EVENT", "error_occurred")]
    assert caller.conversation_id in server.sessions

    ending = await media_server(handler_timeout_s=0.05, end_call_on_error=True)
    ending.on("session_start")(hang)
    await ending.start()
    caller = caller_factory(ending)
    result = await caller.start_session()
    assert result.event_types == ["SESSION_END"]
    assert caller.conversation_id not in ending.sessions


async def test_collect_input_waits_are_not_timed_but_the_collected_turn_is(
    media_server, caller_factory
):
    now = [1000.0]
    server = await media_server(handler_timeout_s=5, clock=lambda: now[0])
    errors: list[Any] = []
    got_last = asyncio.Event()

    @server.on("session_start")
    async def dialog(event: Any) -> None:
        event.turn.say("Enter your PIN")
        pin = await event.turn.collect_input()
        pin.turn.say(f"Got {pin.digits}. Anything else?")
        last = await pin.turn.collect_input()
        got_last.set()
        await asyncio.Event().wait()  # stuck on the turn of the input it collected
        last.turn.say("never sent")

    @server.on("error")
    def on_error(event: Any) -> None:
        errors.append((type(event.exception).__name__, event.source.name, event.turn.kind))

    await server.start()
    caller = caller_factory(server)
    first = await caller.start_session()
    assert first.texts == ["Enter your PIN"]
    now[0] += 3600  # the handler waits an hour for the caller: not a stuck reply
    assert server.expire_overdue_turns() == 0
    second = await caller.press("1234")
    assert second.texts == ["Got 1234. Anything else?"]
    now[0] += 3600
    assert server.expire_overdue_turns() == 0
    assert errors == []
    pending = asyncio.create_task(caller.no_input())
    await asyncio.wait_for(got_last.wait(), 5)
    now[0] += 4.9
    assert server.expire_overdue_turns() == 0
    now[0] += 0.1
    assert server.expire_overdue_turns() == 1
    third = await pending
    assert third.texts == [server.config.error_prompt_text]
    assert errors == [("HandlerTimeoutError", "no_input", "no_input")]
    assert server.expire_overdue_turns() == 0


async def test_zero_disables_the_handler_timeout(media_server, caller_factory):
    now = [1000.0]
    server = await media_server(handler_timeout_s=0, clock=lambda: now[0])
    entered, release = asyncio.Event(), asyncio.Event()
    errors: list[Any] = []

    @server.on("session_start")
    async def slow(event: Any) -> None:
        entered.set()
        await release.wait()
        event.turn.say("late answer")

    server.on("error")(errors.append)
    await server.start()
    caller = caller_factory(server)
    pending = asyncio.create_task(caller.start_session())
    await asyncio.wait_for(entered.wait(), 5)
    now[0] += 1e6
    assert server.expire_overdue_turns() == 0
    release.set()
    result = await pending
    assert result.texts == ["late answer"]
    assert errors == []


def test_handler_timeout_from_env() -> None:
    assert MediaServerConfig().handler_timeout_s == 20.0
    env = {"WEBEX_MEDIA_HANDLER_TIMEOUT_S": "2.5"}
    assert MediaServerConfig.from_env(env).handler_timeout_s == 2.5
    assert MediaServerConfig.from_env({"WEBEX_MEDIA_HANDLER_TIMEOUT_S": "0"}).handler_timeout_s == 0
    with pytest.raises(ValueError, match="WEBEX_MEDIA_HANDLER_TIMEOUT_S"):
        MediaServerConfig.from_env({"WEBEX_MEDIA_HANDLER_TIMEOUT_S": "-1"})
