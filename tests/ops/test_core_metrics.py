"""The call core records metrics and spans: a scripted call against a real server, then
``/metrics`` over HTTP and the spans of OpenTelemetry's in-memory exporter."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from webex_byova.media import BYOVAMediaServer, MediaServerConfig
from webex_byova.media._metrics import MediaMetrics, start_metrics_server
from webex_byova.media.assets import load
from webex_byova.testing import WebexCaller

SPEECH = load("speech_hello.wav")
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(url: str) -> Samples:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def grpc_labels(**labels: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted({"transport": "grpc", **labels}.items()))


async def settle(server: BYOVAMediaServer) -> None:
    """Until every turn's handle is done (the server-side end of each RPC)."""
    for _ in range(500):
        if not server._open_rpcs and not server.sessions:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("turns still open")


async def test_a_scripted_call_shows_in_metrics_and_spans() -> None:
    spans = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    metrics = MediaMetrics()
    config = MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False)
    server = BYOVAMediaServer(config, metrics=metrics, tracer_provider=provider)
    server.on("session_start")(lambda event: event.turn.say("hello"))
    server.on("utterance")(lambda event: event.turn.say("heard you"))

    @server.on("dtmf_input")
    def broken(event: Any) -> None:
        raise RuntimeError("handler bug")

    exporter = start_metrics_server(0, "127.0.0.1", metrics=server.metrics)
    await server.start()
    try:
        async with WebexCaller(server.address, realtime=False) as caller:
            assert (await caller.start_session()).ok
            spoken = await caller.say(wav=SPEECH)
            assert spoken.texts == ["heard you"]
            assert (await caller.start_dtmf()).ok
            assert (await caller.send_dtmf("5")).texts == [config.error_prompt_text]
            assert (await caller.end_session()).ok
        await settle(server)
        s = await asyncio.to_thread(scrape, exporter.url)
    finally:
        await server.stop()
        exporter.stop()
    g = grpc_labels()
    assert s[("webex_byova_conversations_started_total", g)] == 1
    assert s[("webex_byova_conversations_active", g)] == 0
    assert s[("webex_byova_conversations_ended_total", grpc_labels(outcome="caller_hangup"))] == 1
    assert s[("webex_byova_streams_opened_total", g)] == 5
    assert s[("webex_byova_streams_active", g)] == 0
    # session_start, audio and start_of_dtmf completed; the DTMF turn answered by the error
    # path; the hang-up acknowledged
    assert s[("webex_byova_turns_total", grpc_labels(outcome="completed"))] == 3
    assert s[("webex_byova_turns_total", grpc_labels(outcome="error"))] == 1
    assert s[("webex_byova_turns_total", grpc_labels(outcome="caller_hangup"))] == 1
    # latency of the two turns with caller input (speech, DTMF)
    assert s[("webex_byova_turn_latency_seconds_count", g)] == 2
    assert s[("webex_byova_end_of_input_delay_seconds_count", g)] == 1
    assert s[("webex_byova_end_of_input_delay_seconds_sum", g)] > 0
    assert s[("webex_byova_handler_errors_total", g)] == 1
    assert s.get(("webex_byova_handler_timeouts_total", g), 0) == 0
    received = s[("webex_byova_frames_received_total", g)]
    assert 0 < received <= spoken.frames_sent
    # the WAV-mode replies carry no audio prompt here (text prompts): nothing sent as frames
    assert s.get(("webex_byova_frames_sent_total", g), 0) == 0
    finished = spans.get_finished_spans()
    conversations = [span for span in finished if span.name == "byova.conversation"]
    turns = [span for span in finished if span.name == "byova.turn"]
    assert len(conversations) == 1
    assert conversations[0].attributes is not None
    assert conversations[0].attributes["webex_byova.outcome"] == "caller_hangup"
    assert len(turns) == 5
    assert {span.parent.span_id for span in turns if span.parent} == {
        conversations[0].context.span_id
    }
    audio = next(t for t in turns if t.attributes and t.attributes["webex_byova.turn"] == 2)
    assert [e.name for e in audio.events] == ["end_of_input", "first_reply_byte"]
    for span in finished:  # no caller text, prompt or exception message in any attribute
        values = " ".join(str(v) for v in (span.attributes or {}).values())
        assert "heard you" not in values
        assert "handler bug" not in values


async def test_refused_tokens_are_counted_by_reason(caplog: pytest.LogCaptureFixture) -> None:
    from webex_byova.config import BYOVAConfig
    from webex_byova.jws import JWSVerifier

    verifier = JWSVerifier(BYOVAConfig())
    server = BYOVAMediaServer(
        MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=True), verifier=verifier
    )
    await server.start()
    try:
        async with WebexCaller(server.address, realtime=False) as caller:
            assert not (await caller.start_session()).ok
        async with WebexCaller(server.address, realtime=False, token="not-a-jws") as caller:
            assert not (await caller.start_session()).ok
    finally:
        await server.stop()
        await verifier.aclose()
    s = {
        tuple(sorted(sample.labels.items())): sample.value
        for family in server.metrics.registry.collect()
        for sample in family.samples
        if sample.name == "webex_byova_auth_refusals_total"
    }
    assert s[grpc_labels(reason="missing_token")] == 1
    assert sum(s.values()) == 2
    assert "not-a-jws" not in caplog.text


async def test_a_websocket_front_end_gets_the_same_metrics_and_the_drain_refusal() -> None:
    """Driven through the front-end interface as the WebSocket front end does (no socket):
    the core labels what it records with the turn's transport."""
    from webex_byova.media._frontend import CallRejected
    from webex_byova.media._messages import CallerRequest, EventIn

    server = BYOVAMediaServer(MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False))
    server.on("session_start")(lambda event: event.turn.say("hello"))
    await server.start()
    try:
        server.metrics.stream_opened("websocket")  # what the front end counts per socket
        start = CallerRequest("ws-1", input=EventIn(type="session_start"))
        handle = await server.open_turn(start, transport="websocket")
        replies = [r async for r in handle.responses()]
        assert [p.text for p in replies[-1].prompts] == ["hello"]
        drain = asyncio.ensure_future(server.drain(0.05, grace=30))
        while not server._draining:
            await asyncio.sleep(0.01)
        with pytest.raises(CallRejected) as refused:
            await server.open_turn(
                CallerRequest("ws-2", input=EventIn(type="session_start")), transport="websocket"
            )
        assert refused.value.kind == "unavailable"  # the WebSocket front end answers 503
        await asyncio.sleep(0.1)  # past the drain deadline, no turn open
        assert not drain.done()  # waiting for the conversation's next turn
        # the live conversation's next turn is the one that transfers it
        nxt = await server.open_turn(
            CallerRequest("ws-1", input=EventIn(type="custom_event", name="x")),
            transport="websocket",
        )
        last = [r async for r in nxt.responses()]
        assert [e.type for e in last[-1].output_events] == ["transfer_to_agent"], last
        assert await asyncio.wait_for(drain, 30) == 1
        server.metrics.stream_closed("websocket")
    finally:
        await server.stop()
    s = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in server.metrics.registry.collect()
        for sample in family.samples
    }
    ws = (("transport", "websocket"),)
    assert s[("webex_byova_conversations_started_total", ws)] == 1
    outcome = (("outcome", "transfer"), ("transport", "websocket"))
    assert s[("webex_byova_conversations_ended_total", outcome)] == 1
    assert s[("webex_byova_turns_total", outcome)] == 1
    assert s[("webex_byova_streams_opened_total", ws)] == 1
    assert s[("webex_byova_streams_active", ws)] == 0
    assert not any(labels == (("transport", "grpc"),) and v for (_, labels), v in s.items())


async def test_serve_exports_metrics_when_metrics_port_is_set() -> None:
    import os
    import signal

    from webex_byova.cli._workers import free_port

    port = free_port("127.0.0.1")
    config = MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False, metrics_port=port)
    server = BYOVAMediaServer(config)
    server.on("session_start")(lambda event: event.turn.say("hello"))
    task = asyncio.ensure_future(server.serve())
    while not server.port:
        await asyncio.sleep(0.01)
    async with WebexCaller(server.address, realtime=False) as caller:
        assert (await caller.start_session()).ok
        assert (await caller.end_session()).ok
    await settle(server)
    s = await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
    assert s[("webex_byova_conversations_started_total", grpc_labels())] == 1
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 30)
    with pytest.raises(httpx.TransportError):  # the exporter stopped with the server
        await asyncio.to_thread(scrape, f"http://127.0.0.1:{port}/metrics")
