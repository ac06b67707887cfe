"""MediaMetrics: exact values scraped over real HTTP, one process and several."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from webex_byova.media._metrics import (
    OUTCOMES,
    MediaMetrics,
    conversation_outcome,
    exposition_registry,
    mark_process_dead,
    start_metrics_server,
)


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``url`` as ``{(name, sorted labels): value}``."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def test_scrape_shows_exact_values_after_a_scripted_call() -> None:
    metrics = MediaMetrics()
    exporter = start_metrics_server(0, "127.0.0.1", metrics=metrics)
    try:
        metrics.stream_opened("grpc")
        metrics.conversation_started("grpc")
        metrics.turn_finished("grpc", "completed")  # greeting: no caller input, no latency
        metrics.stream_closed("grpc")
        metrics.stream_opened("grpc")
        metrics.frames_in("grpc", 50)
        metrics.frame_dropped("grpc", "small")
        metrics.end_of_input("grpc", 0.8)
        metrics.turn_finished("grpc", "completed", latency_s=0.3)
        metrics.frames_out("grpc", 12)
        metrics.frame_late("grpc")
        metrics.handler_error("grpc")
        metrics.handler_timeout("grpc")
        metrics.turn_finished("grpc", "timeout", latency_s=2.5)
        metrics.auth_refused("grpc", "claim_mismatch:url")
        metrics.auth_refused("websocket", "expired")
        metrics.auth_refused("grpc", "something new\nwith text")
        metrics.conversation_started("websocket")
        s = scrape(exporter.url)
        g = (("transport", "grpc"),)
        assert s[("webex_byova_conversations_started_total", g)] == 1
        assert s[("webex_byova_conversations_active", g)] == 1
        assert s[("webex_byova_conversations_active", (("transport", "websocket"),))] == 1
        assert s[("webex_byova_streams_opened_total", g)] == 2
        assert s[("webex_byova_streams_active", g)] == 1
        assert s[("webex_byova_turns_total", (("outcome", "completed"), *g))] == 2
        assert s[("webex_byova_turns_total", (("outcome", "timeout"), *g))] == 1
        assert s[("webex_byova_turn_latency_seconds_count", g)] == 2
        assert s[("webex_byova_turn_latency_seconds_sum", g)] == pytest.approx(2.8)
        assert s[("webex_byova_turn_latency_seconds_bucket", (("le", "0.25"), *g))] == 0
        assert s[("webex_byova_turn_latency_seconds_bucket", (("le", "0.5"), *g))] == 1
        assert s[("webex_byova_turn_latency_seconds_bucket", (("le", "3.0"), *g))] == 2
        assert s[("webex_byova_end_of_input_delay_seconds_count", g)] == 1
        assert s[("webex_byova_end_of_input_delay_seconds_bucket", (("le", "0.5"), *g))] == 0
        assert s[("webex_byova_end_of_input_delay_seconds_bucket", (("le", "0.8"), *g))] == 1
        assert s[("webex_byova_frames_received_total", g)] == 50
        assert s[("webex_byova_frames_sent_total", g)] == 12
        assert s[("webex_byova_frames_late_total", g)] == 1
        assert s[("webex_byova_frames_dropped_total", (("reason", "small"), *g))] == 1
        assert s[("webex_byova_handler_errors_total", g)] == 1
        assert s[("webex_byova_handler_timeouts_total", g)] == 1
        assert s[("webex_byova_auth_refusals_total", (("reason", "claim_mismatch"), *g))] == 1
        assert s[("webex_byova_auth_refusals_total", (("reason", "other"), *g))] == 1
        ws = (("reason", "expired"), ("transport", "websocket"))
        assert s[("webex_byova_auth_refusals_total", ws)] == 1

        metrics.conversation_ended("grpc", "transfer")
        metrics.conversation_evicted("idle")
        metrics.conversation_ended("websocket", "made-up outcome")
        s = scrape(exporter.url)
        assert s[("webex_byova_conversations_active", g)] == 0
        assert s[("webex_byova_conversations_ended_total", (("outcome", "transfer"), *g))] == 1
        other = (("outcome", "other"), ("transport", "websocket"))
        assert s[("webex_byova_conversations_ended_total", other)] == 1
        assert s[("webex_byova_conversations_evicted_total", (("reason", "idle"),))] == 1
    finally:
        exporter.stop()
    with pytest.raises(httpx.TransportError):
        httpx.get(exporter.url, timeout=2)


def test_names_follow_prometheus_conventions_and_carry_no_per_call_labels() -> None:
    metrics = MediaMetrics()
    metrics.conversation_started("grpc")
    metrics.turn_finished("grpc", "completed", 0.1)
    allowed = {"transport", "outcome", "reason", "le"}
    for family in metrics.registry.collect():
        assert family.name.startswith("webex_byova_")
        for sample in family.samples:
            assert set(sample.labels) <= allowed, sample
            if family.type == "counter":
                assert sample.name.endswith(("_total", "_created")), sample.name
            if family.type == "histogram":
                assert family.name.endswith("_seconds")


def test_two_servers_in_one_process_do_not_collide() -> None:
    first, second = MediaMetrics(), MediaMetrics()
    first.conversation_started("grpc")
    assert (
        first.registry.get_sample_value(
            "webex_byova_conversations_started_total", {"transport": "grpc"}
        )
        == 1
    )
    assert second.registry.get_sample_value(
        "webex_byova_conversations_started_total", {"transport": "grpc"}
    ) in (None, 0)


def test_exposition_needs_metrics_outside_multiprocess_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    with pytest.raises(ValueError, match="no metrics"):
        exposition_registry()


WORKER = textwrap.dedent(
    """
    import sys
    from webex_byova.media._metrics import MediaMetrics
    m = MediaMetrics()
    turns = int(sys.argv[1])
    m.conversation_started("grpc")
    for _ in range(turns):
        m.turn_finished("grpc", "completed", latency_s=0.2)
    m.frames_in("grpc", 10 * turns)
    print("ready", flush=True)
    sys.stdin.readline()
    """
)


def test_multiprocess_mode_aggregates_two_real_processes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "prom"
    directory.mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(turns)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for turns in (2, 3)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            assert proc.stdout.readline() == "ready\n"
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
        exporter = start_metrics_server(0, "127.0.0.1")
        try:
            s = scrape(exporter.url)
            g = (("transport", "grpc"),)
            assert s[("webex_byova_conversations_started_total", g)] == 2
            assert s[("webex_byova_conversations_active", g)] == 2
            assert s[("webex_byova_turns_total", (("outcome", "completed"), *g))] == 5
            assert s[("webex_byova_turn_latency_seconds_count", g)] == 5
            assert s[("webex_byova_turn_latency_seconds_sum", g)] == pytest.approx(1.0)
            assert s[("webex_byova_frames_received_total", g)] == 50

            # a worker dies: its live gauge share goes, its counters stay
            dead = procs[0]
            assert dead.stdin is not None
            dead.stdin.close()
            assert dead.wait(timeout=20) == 0
            mark_process_dead(dead.pid)
            s = scrape(exporter.url)
            assert s[("webex_byova_conversations_active", g)] == 1
            assert s[("webex_byova_conversations_started_total", g)] == 2
        finally:
            exporter.stop()
    finally:
        for proc in procs:
            if proc.poll() is None:
                assert proc.stdin is not None
                proc.stdin.close()
                proc.wait(timeout=20)
            assert proc.stdout is not None
            proc.stdout.close()


SERVE_APP = """\
from webex_byova import BYOVAMediaServer

server = BYOVAMediaServer.from_env()
"""


def test_byova_serve_metrics_port_serves_the_families(tmp_path: Path) -> None:
    import re
    import signal

    from ..cli.conftest import BYOVA

    app = tmp_path / "app.py"
    app.write_text(SERVE_APP)
    env = {**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false"}
    proc = subprocess.Popen(
        [str(BYOVA), "serve", str(app), "--host", "127.0.0.1", "--port", "0"]
        + ["--metrics-port", "0"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        first = proc.stderr.readline()
        assert first.startswith("serving "), first  # still the first line, as tools expect
        match = re.match(r"metrics on (http://\S+)$", proc.stderr.readline().strip())
        assert match
        url = match.group(1)
        assert url.startswith("http://127.0.0.1:")
        response = httpx.get(url, timeout=10)
        assert response.status_code == 200
        names = {f.name for f in text_string_to_metric_families(response.text)}
        assert {
            "webex_byova_conversations_active",
            "webex_byova_turns",
            "webex_byova_turn_latency_seconds",
            "webex_byova_auth_refusals",
        } <= names
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        proc.stderr.close()


def test_reload_and_workers_do_not_combine(tmp_path: Path) -> None:
    from ..cli.conftest import BYOVA

    app = tmp_path / "app.py"
    app.write_text(SERVE_APP)
    result = subprocess.run(
        [str(BYOVA), "serve", str(app), "--reload", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "--reload runs one process" in result.stdout + result.stderr


def test_conversation_outcome_maps_session_end_reasons() -> None:
    assert conversation_outcome("caller_ended") == "caller_hangup"
    assert conversation_outcome("transfer_to_agent") == "transfer"
    assert conversation_outcome("session_end") == "ended"
    assert conversation_outcome("idle_timeout") == "timeout"
    assert conversation_outcome("server_stop") == "cancelled"
    assert conversation_outcome("something else") == "other"
    for reason in ("caller_ended", "transfer_to_agent", "session_end", "idle_timeout"):
        assert conversation_outcome(reason) in OUTCOMES
