"""`byova simulate` against the demo agent served by `byova demo --serve-only`."""

from __future__ import annotations

import json

from webex_byova.cli import app
from webex_byova.cli._demo_agent import AGENT_ID, GOODBYE_TEXT, MENU_TEXT


def test_serve_only_prints_target_and_token(demo_server) -> None:
    info = demo_server.info
    assert info["target"].startswith("127.0.0.1:")
    assert info["token"].count(".") == 2
    assert info["virtual_agent_id"] == AGENT_ID
    assert info["data_source_url"].startswith("https://")


def test_simulate_json_against_the_demo_agent(runner, demo_server) -> None:
    info = demo_server.info
    args = ["simulate", "--target", info["target"], "--token", info["token"], "--json"]
    args += ["--agent", AGENT_ID, "--dtmf", "0", "--dtmf", "9", "--turns", "2", "--fast"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    call = json.loads(result.stdout)
    assert call["ok"] is True
    assert call["outcome"] == "ended_by_agent"
    sent = [t["sent"] for t in call["turns"]]
    assert sent == [
        "SESSION_START",
        "caller speech",
        "caller speech",
        "START_OF_DTMF",
        "DTMF 0",
        "START_OF_DTMF",
        "DTMF 9",
    ]
    speech = call["turns"][1]
    assert speech["events"][:2] == ["START_OF_INPUT", "END_OF_INPUT"]
    assert speech["texts"][0].startswith("You spoke for")
    assert speech["latency_ms"] >= 0
    assert call["turns"][4]["texts"] == [MENU_TEXT]
    assert call["turns"][6]["texts"] == [GOODBYE_TEXT]
    assert call["turns"][6]["events"] == ["SESSION_END"]


def test_simulate_hangs_up_when_the_agent_does_not(runner, demo_server) -> None:
    info = demo_server.info
    result = runner.invoke(
        app,
        ["simulate", "--target", info["target"], "--token", info["token"], "--json", "--fast"],
    )
    assert result.exit_code == 0, result.output
    call = json.loads(result.stdout)
    assert call["outcome"] == "caller_hung_up"
    assert call["turns"][-1]["kind"] == "session_end"


def test_simulate_without_a_token_is_rejected(runner, demo_server) -> None:
    result = runner.invoke(
        app, ["simulate", "--target", demo_server.info["target"], "--json", "--fast"]
    )
    assert result.exit_code == 1
    call = json.loads(result.stdout)
    assert call["ok"] is False
    assert call["turns"][0]["status"] == "UNAUTHENTICATED"


def test_load_test_reports_percentiles(runner, demo_server) -> None:
    info = demo_server.info
    args = ["simulate", "--target", info["target"], "--token", info["token"], "--json"]
    args += ["--agent", AGENT_ID, "--calls", "8", "--rate", "40", "--fast", "--dtmf", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["calls"] == 8
    assert stats["completed"] == 8
    assert stats["failed"] == 0
    assert stats["outcomes"] == {"transferred": 8}
    assert stats["peak_concurrency"] >= 1
    lat = stats["latency_ms"]
    assert lat["samples"] == 8 * 3  # welcome, speech, DTMF 5 per call
    assert lat["p50"] <= lat["p95"] <= lat["p99"] <= lat["max"]
    assert stats["late_frames"] == 0  # --fast sends unpaced: lateness is not measured
    assert stats["frames_sent"] > 0
