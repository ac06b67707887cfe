"""Tracing without a provider makes no spans; a provider set globally later is used.

The global tracer provider can be set once per process, so the script runs in its own.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap


def test_spans_start_once_an_application_sets_a_global_provider() -> None:
    script = textwrap.dedent(
        """
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        from webex_byova.media import BYOVAMediaServer, MediaServerConfig
        from webex_byova.media._tracing import MediaTracer

        tracer = MediaTracer()
        server_tracer = BYOVAMediaServer(MediaServerConfig(verify_tokens=False)).tracer
        before = tracer.conversation("before", virtual_agent_id="a")
        with before.turn(1, "audio") as turn:
            turn.event("end_of_input", delay_s=0.5)
        before.end("completed")

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        for made_before in (tracer, server_tracer):
            call = made_before.conversation("after", transport="websocket")
            with call.turn(1, "session_start"):
                pass
            call.end("transfer")
        spans = exporter.get_finished_spans()
        names = sorted(s.name for s in spans)
        assert names == ["byova.conversation"] * 2 + ["byova.turn"] * 2, names
        ids = {s.attributes["webex_byova.conversation_id"] for s in spans}
        assert ids == {"after"}, ids
        outcomes = sorted(
            s.attributes["webex_byova.outcome"] for s in spans if s.name == "byova.conversation"
        )
        assert outcomes == ["transfer", "transfer"], outcomes
        print("provider ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "provider ok\n"
