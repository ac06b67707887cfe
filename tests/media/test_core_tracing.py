"""The call core's turn spans, read back through the OpenTelemetry SDK's in-memory exporter.

Written for the mutation run of the call core (``scripts/mutation.py media_core``): turns are
driven in process through open_turn()/TurnHandle with an injected clock and a scripted
end-pointer (see test_core_mutation), and each test compares every finished turn span whole:
name, attributes (turn number, kind, tracking id, outcome) and events with their values.
"""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from webex_byova.media._messages import DtmfIn, PromptSpec
from webex_byova.media.vad import VADEvent

from .test_core_mutation import (
    START,
    _all,
    _ended,
    _final,
    _frames,
    _req,
    _server,
    _settle,
    _started,
)

pytestmark = pytest.mark.timeout(5)

BASE = {
    "webex_byova.conversation_id": "c1",
    "webex_byova.transport": "grpc",
    "webex_byova.virtual_agent_id": "agent-1",
}


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    return made


def _turns(exporter: InMemorySpanExporter) -> list[tuple[dict[str, Any], list[tuple[str, Any]]]]:
    """Every finished turn span: its attributes and its events (name, attributes)."""
    found: list[ReadableSpan] = [s for s in exporter.get_finished_spans() if s.name == "byova.turn"]
    return [
        (dict(s.attributes or {}), [(e.name, dict(e.attributes or {})) for e in s.events])
        for s in found
    ]


async def test_an_audio_turn_span_has_its_number_kind_tracking_id_and_both_moments(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    # speech from frame 2; the end-pointer ends it at 160 ms, 60 ms after the last voice
    events: dict[int, list[VADEvent]] = {2: [_started(2)], 5: [_ended(160.0, 100.0)]}
    server, clock, _ = _server(events, tracer_provider=provider)

    @server.on("utterance")
    def reply(event: Any) -> None:
        clock.now += 0.25  # the reply's first byte leaves 0.25 s after the end of input
        event.turn.say("heard")

    greeting = await server.open_turn(_req(START), transport="grpc", tracking_id="trk-1")
    greeting.caller_done()
    assert await _all(greeting) == [_final()]
    frames = _frames(6)
    handle = await server.open_turn(_req(frames[0]), transport="grpc", tracking_id="trk-2")
    for frame in frames[1:]:
        assert handle.feed_input(frame)
        await _settle()
    handle.caller_done()
    responses = await _all(handle)
    assert responses[-1] == _final(PromptSpec(text="heard"))
    assert _turns(exporter) == [
        (
            {
                **BASE,
                "webex_byova.tracking_id": "trk-1",
                "webex_byova.turn": 1,
                "webex_byova.turn.kind": "session_start",
                "webex_byova.outcome": "completed",
            },
            [],  # no caller input before a greeting: no latency
        ),
        (
            {
                **BASE,
                "webex_byova.tracking_id": "trk-2",
                "webex_byova.turn": 2,
                "webex_byova.turn.kind": "audio",
                "webex_byova.outcome": "completed",
            },
            [
                ("end_of_input", {"webex_byova.delay_s": 0.06}),
                ("first_reply_byte", {"webex_byova.latency_s": 0.25}),
            ],
        ),
    ]


async def test_turn_spans_end_with_the_turns_outcome(
    exporter: InMemorySpanExporter, provider: TracerProvider
) -> None:
    server, clock, _ = _server(tracer_provider=provider)

    @server.on("dtmf_input")
    def answer(event: Any) -> None:
        if event.digits == "1":
            raise ValueError("boom")
        clock.now += 0.5
        event.turn.transfer_to_agent()

    for digits in ("", "1", "2"):
        if digits:
            handle = await server.open_turn(_req(DtmfIn(digits=digits)), transport="websocket")
        else:
            handle = await server.open_turn(_req(START), transport="websocket")
        await _all(handle)
    await _settle()
    ws = {**BASE, "webex_byova.transport": "websocket"}
    assert _turns(exporter) == [
        (
            {
                **ws,
                "webex_byova.turn": 1,
                "webex_byova.turn.kind": "session_start",
                "webex_byova.outcome": "completed",
            },
            [],
        ),
        (
            {
                **ws,
                "webex_byova.turn": 2,
                "webex_byova.turn.kind": "dtmf",
                "webex_byova.outcome": "error",
            },
            [("first_reply_byte", {"webex_byova.latency_s": 0.0})],
        ),
        (
            {
                **ws,
                "webex_byova.turn": 3,
                "webex_byova.turn.kind": "dtmf",
                "webex_byova.outcome": "transfer",
            },
            [("first_reply_byte", {"webex_byova.latency_s": 0.5})],
        ),
    ]
