"""`byova demo`: in-process (CliRunner), as the installed console script, and its checks."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from webex_byova.cli import app
from webex_byova.cli._call import run_call
from webex_byova.cli._demo import demo_script, expected_call
from webex_byova.cli._demo_agent import AGENT_ID, WELCOME_TEXT
from webex_byova.cli._demo_env import start_demo_environment
from webex_byova.media import audio
from webex_byova.testing._caller import WebexCaller

from .conftest import BYOVA


def test_demo_in_process_json(runner, tmp_path: Path) -> None:
    wav = tmp_path / "out" / "bot.wav"
    result = runner.invoke(app, ["demo", "--fast", "--json", "--output", str(wav)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True
    assert all(c["ok"] for c in data["checks"])
    call = data["call"]
    assert call["outcome"] == "transferred"
    assert [t["sent"] for t in call["turns"]] == [
        "SESSION_START",
        "caller speech",
        "START_OF_DTMF",
        "DTMF 0",
        "START_OF_DTMF",
        "DTMF 5",
    ]
    assert call["turns"][0]["texts"] == [WELCOME_TEXT]
    assert call["turns"][1]["events"][:2] == ["START_OF_INPUT", "END_OF_INPUT"]
    assert call["turns"][-1]["events"] == ["TRANSFER_TO_AGENT"]
    assert all(t["status"] == "OK" for t in call["turns"])
    assert call["turns"][1]["latency_ms"] is not None
    # the bot's audio: welcome + echo of ~4 s of speech + menu + transfer prompt
    written = audio.read_wav(wav.read_bytes())
    assert written.sample_rate == 8000
    assert written.duration * 1000 == call["bot_audio_ms"]
    assert written.duration > 5.0


def test_demo_hangup_ends_the_call(runner, tmp_path: Path) -> None:
    result = runner.invoke(app, ["demo", "--fast", "--hangup", "--output", str(tmp_path / "b.wav")])
    assert result.exit_code == 0, result.output
    assert "call OK" in result.output
    assert "outcome=ended_by_agent" in result.output
    assert "DTMF 9 ends the call (SESSION_END)" in result.output


def test_demo_console_script_realtime(tmp_path: Path) -> None:
    """The README's main job: the installed `byova demo`, real-time audio, default output."""
    proc = subprocess.run(
        [str(BYOVA), "demo"], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Demo call summary" in proc.stdout
    assert "Expectations" in proc.stdout
    assert "call OK" in proc.stdout
    assert "FAIL" not in proc.stdout
    out = tmp_path / "demo-output" / "bot_audio.wav"
    assert audio.read_wav(out.read_bytes()).duration > 5.0


async def test_expectations_fail_for_a_misbehaving_agent() -> None:
    """The demo's exit code is only 0 when the call matches: a wrong agent is caught."""

    def wrong_agent(server) -> None:
        @server.on("session_start")
        def _hi(event) -> None:
            event.turn.say("Hi.")

        @server.on("dtmf_input")
        def _bye(event) -> None:
            event.turn.end_session("Bye.")  # never transfers, never repeats the menu

    env = await start_demo_environment(install=wrong_agent, realtime_pacing=False)
    try:
        async with WebexCaller(
            env.target, token=env.token, virtual_agent_id=AGENT_ID, realtime=False
        ) as caller:
            report = await run_call(caller, demo_script("transfer"))
    finally:
        await env.aclose()
    checks = {c.name: c.ok for c in expected_call(report, "transfer")}
    assert checks["every RPC completed with OK"]
    assert not checks["welcome prompt on SESSION_START"]
    assert not checks["utterance answered (echo of the caller's words)"]
    assert not checks["DTMF 0 repeats the menu"]
    assert not checks["call outcome is transferred"]


async def test_demo_server_rejects_a_call_without_the_data_source_token() -> None:
    env = await start_demo_environment(realtime_pacing=False)
    try:
        async with WebexCaller(env.target, virtual_agent_id=AGENT_ID, realtime=False) as caller:
            result = await caller.start_session()
        forged = env.emulator.mint_data_source_token(url="https://elsewhere.example/")
        async with WebexCaller(
            env.target, token=forged, virtual_agent_id=AGENT_ID, realtime=False
        ) as caller:
            wrong_url = await caller.start_session()
    finally:
        await env.aclose()
    assert result.code.name == "UNAUTHENTICATED"
    assert wrong_url.code.name == "UNAUTHENTICATED"


def test_demo_in_chunk_mode(runner, tmp_path: Path) -> None:
    """Streamed audio (CHUNK responses + one empty FINAL): prompts are recognised by audio."""
    wav = tmp_path / "chunk.wav"
    result = runner.invoke(
        app, ["demo", "--fast", "--json", "--audio-mode", "chunk", "--output", str(wav)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["call"]["outcome"] == "transferred"
    speech = data["call"]["turns"][1]
    assert speech["texts"] == []  # CHUNK mode streams audio without text
    assert speech["audio_ms"] > 4000
    assert audio.read_wav(wav.read_bytes()).duration * 1000 == data["call"]["bot_audio_ms"]
