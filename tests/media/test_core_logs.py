"""The call core's log records, captured with caplog: exact messages and their fields.

Written for the mutation run of the call core (``scripts/mutation.py media_core``): turns are
driven in process through open_turn()/TurnHandle with an injected clock (see
test_core_mutation); each test pins the whole message of the records an operator relies on
(conversation start and end, handler failures and timeouts, refusals, dropped frames) and the
structured fields log pipelines index (conversation id, tracking id, event, outcome).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webex_byova.media._frontend import CallRejected
from webex_byova.media._messages import AudioIn, DtmfIn, EventIn, PromptSpec

from .test_core_mutation import APOLOGY, START, _all, _final, _req, _server, _ws

pytestmark = pytest.mark.timeout(5)


def _records(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


def _fields(record: logging.LogRecord, *names: str) -> dict[str, Any]:
    return {name: getattr(record, name, "<missing>") for name in names}


async def test_a_call_logs_its_start_and_its_end_with_reason_and_outcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = _server()

    @server.on("dtmf_input")
    def bye(event: Any) -> None:
        event.turn.end_session("bye")

    with caplog.at_level(logging.INFO, logger="webex_byova.media"):
        assert len(await _ws(server, START)) == 1
        assert len(await _ws(server, DtmfIn(digits="1"))) == 1
    assert _records(caplog, "webex_byova.media") == [
        (logging.INFO, "[c1] conversation started (websocket, agent agent-1)"),
        (logging.INFO, "[c1] session ended: session_end (ended)"),
    ]
    start, end = [r for r in caplog.records if r.name == "webex_byova.media"]
    # no tracking id was ever sent: the field is there, empty
    assert _fields(start, "conversation_id", "trackingid", "event", "transport") == {
        "conversation_id": "c1",
        "trackingid": "",
        "event": "session_start",
        "transport": "websocket",
    }
    assert _fields(end, "conversation_id", "trackingid", "event", "outcome", "reason") == {
        "conversation_id": "c1",
        "trackingid": "",
        "event": "session_end",
        "outcome": "ended",
        "reason": "session_end",
    }


async def test_a_failing_audio_source_is_logged_as_the_prompt_audio_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = _server(audio_mode="chunk")

    async def broken() -> AsyncIterator[bytes]:
        raise OSError("tts\ndown")
        yield b""

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.stream(broken())

    with caplog.at_level(logging.ERROR, logger="webex_byova.media"):
        handle = await server.open_turn(_req(START), transport="websocket", tracking_id="t-7")
        assert await _all(handle) == [_final(PromptSpec(text=APOLOGY))]
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("webex_byova.media.handler", logging.ERROR)
    assert record.getMessage() == "[c1] prompt audio source raised OSError: tts\\ndown"
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], OSError)
    assert _fields(record, "conversation_id", "trackingid", "event", "outcome", "transport") == {
        "conversation_id": "c1",
        "trackingid": "t-7",
        "event": "handler_error",
        "outcome": "error",
        "transport": "websocket",
    }


async def test_a_stuck_handler_is_logged_as_a_timeout_of_its_event(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, clock, _ = _server(handler_timeout_s=0.01)

    @server.on("dtmf_input")
    async def stuck(event: Any) -> None:
        await asyncio.Event().wait()

    with caplog.at_level(logging.ERROR, logger="webex_byova.media"):
        handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
        handle.caller_done()
        clock.now += 0.01
        assert await _all(handle) == [_final(PromptSpec(text=APOLOGY))]
    (record,) = caplog.records
    assert record.getMessage() == (
        "[c1] dtmf_input handler raised HandlerTimeoutError: no reply to dtmf_input within "
        "handler_timeout_s=0.01; handler cancelled"
    )
    assert _fields(record, "event", "outcome", "transport") == {
        "event": "handler_error",
        "outcome": "timeout",
        "transport": "grpc",
    }


async def test_dropped_frames_are_logged_by_reason_when_the_turn_closes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = _server()
    with caplog.at_level(logging.DEBUG, logger="webex_byova.media"):
        handle = await server.open_turn(_req(AudioIn(audio=b"\x01" * 10)), transport="grpc")
        assert handle.feed_input(AudioIn(audio=b"\x01" * 160, sample_rate_hz=11025))
        # empty messages: an event of no known type, no input at all, another unknown event
        for item in (EventIn(type="unspecified"), None, EventIn(type="unspecified")):
            assert handle.feed_input(item)
        handle.caller_gone()
        assert await _all(handle) == []
    messages = [m for _, m in _records(caplog, "webex_byova.media") if "dropped" in m]
    assert messages == [
        "[c1 #1] dropped frames: {'small': 1, 'large': 0, 'empty': 3, 'bad': 1, 'after_close': 0}"
    ]


async def test_a_turn_without_dropped_frames_logs_none(caplog: pytest.LogCaptureFixture) -> None:
    server, _, _ = _server()
    with caplog.at_level(logging.DEBUG, logger="webex_byova.media"):
        assert await _ws(server, START) == [_final()]
    assert not [m for _, m in _records(caplog, "webex_byova.media") if "dropped" in m]


@pytest.mark.parametrize(
    ("kwargs", "logged"),
    [
        ({"text": "hi"}, True),
        ({"audio_uri": "https://x/a.wav"}, True),
        ({"ssml": "<speak>hi</speak>"}, True),
        ({}, False),
    ],
)
async def test_chunk_mode_says_why_a_prompt_label_is_not_streamed(
    caplog: pytest.LogCaptureFixture, kwargs: dict[str, str], logged: bool
) -> None:
    server, _, _ = _server(audio_mode="chunk")

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.say(audio=b"\x01" * 640, **kwargs)

    with caplog.at_level(logging.DEBUG, logger="webex_byova.media"):
        responses = await _ws(server, START)
    assert len(responses) == 2  # the chunk (no text on it) and the empty FINAL
    assert responses[0].prompts == (PromptSpec(audio=b"\x01" * 640),)
    expected = ["[c1 #1] CHUNK mode: prompt text not sent alongside streamed audio"]
    assert [m for _, m in _records(caplog, "webex_byova.media") if "CHUNK" in m] == (
        expected if logged else []
    )


async def test_a_refused_turn_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    server, _, _ = _server()
    with (
        caplog.at_level(logging.INFO, logger="webex_byova.media"),
        pytest.raises(CallRejected) as refused,
    ):
        await server.open_turn(
            _req(START, "c\n2", virtual_agent_id="nobody"), transport="grpc", tracking_id="t-1"
        )
    assert (refused.value.kind, refused.value.detail) == ("not_found", "Agent not found: nobody")
    assert _records(caplog, "webex_byova.media") == [
        (logging.INFO, "[c\\n2] rejected: Agent not found: nobody")
    ]
    assert _fields(caplog.records[0], "conversation_id", "trackingid", "event", "reason") == {
        "conversation_id": "c\\n2",
        "trackingid": "t-1",
        "event": "turn_rejected",
        "reason": "not_found",
    }
