"""Tracing: conversation and turn spans through OpenTelemetry's API, SDK in-memory exporter."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from webex_byova.media._tracing import MediaTracer, tracing_available


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> MediaTracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return MediaTracer(provider)


def test_a_conversation_with_two_turns(tracer: MediaTracer, exporter: InMemorySpanExporter) -> None:
    assert tracing_available()
    call = tracer.conversation(
        "conv-1", virtual_agent_id="agent-a", transport="grpc", tracking_id="track-0"
    )
    greeting = call.turn(1, "session_start", tracking_id="track-1")
    greeting.end()
    with call.turn(2, "audio") as turn:
        turn.event("end_of_input", delay_s=0.8)
        turn.event("first_reply_byte", latency_s=0.25, barge_in=False)
    call.end("transfer")
    call.end("ignored: already ended")

    spans = {
        (s.name, s.attributes.get("webex_byova.turn")): s for s in exporter.get_finished_spans()
    }
    assert set(spans) == {("byova.conversation", None), ("byova.turn", 1), ("byova.turn", 2)}
    conv = spans[("byova.conversation", None)]
    assert conv.kind is SpanKind.SERVER
    assert conv.parent is None
    assert dict(conv.attributes) == {
        "webex_byova.conversation_id": "conv-1",
        "webex_byova.transport": "grpc",
        "webex_byova.virtual_agent_id": "agent-a",
        "webex_byova.tracking_id": "track-0",
        "webex_byova.outcome": "transfer",
    }
    first, second = spans[("byova.turn", 1)], spans[("byova.turn", 2)]
    for turn_span in (first, second):
        assert turn_span.parent is not None
        assert turn_span.parent.span_id == conv.context.span_id
        assert turn_span.context.trace_id == conv.context.trace_id
        assert turn_span.attributes["webex_byova.conversation_id"] == "conv-1"
        assert turn_span.attributes["webex_byova.outcome"] == "completed"
    assert first.attributes["webex_byova.tracking_id"] == "track-1"
    assert first.attributes["webex_byova.turn.kind"] == "session_start"
    assert [e.name for e in second.events] == ["end_of_input", "first_reply_byte"]
    assert dict(second.events[1].attributes) == {
        "webex_byova.latency_s": 0.25,
        "webex_byova.barge_in": False,
    }


def test_an_error_records_its_type_but_never_its_message(
    tracer: MediaTracer, exporter: InMemorySpanExporter
) -> None:
    call = tracer.conversation("conv-2")
    with pytest.raises(ValueError), call.turn(1, "audio"):
        raise ValueError("caller said: my card number is 4111 1111 1111 1111")
    call.end("error", RuntimeError("secret token abc"))
    for span in exporter.get_finished_spans():
        assert span.status.status_code is StatusCode.ERROR
        assert span.attributes["webex_byova.outcome"] == "error"
        text = repr(dict(span.attributes)) + repr(span.status.description) + repr(span.events)
        assert "4111" not in text
        assert "abc" not in text
    types = sorted(s.attributes["error.type"] for s in exporter.get_finished_spans())
    assert types == ["RuntimeError", "ValueError"]


def test_event_attributes_must_be_numbers(tracer: MediaTracer) -> None:
    turn = tracer.conversation("c").turn(1, "audio")
    with pytest.raises(TypeError, match="number or a bool"):
        turn.event("said", text="hello")  # type: ignore[arg-type]
    turn.end()
    turn.event("after the end", n=1)  # ignored


def test_without_the_api_every_helper_is_a_no_op() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
        from webex_byova.media._tracing import MediaTracer, tracing_available
        assert not tracing_available()
        call = MediaTracer().conversation("c", virtual_agent_id="a")
        with call.turn(1, "audio") as turn:
            turn.event("end_of_input", delay_s=0.5)
        call.end("completed")
        print("no-op ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "no-op ok\n"
