"""`byova demo` / `byova simulate` over BYOVA WebSocket (in process and as console scripts)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from webex_byova.cli import app
from webex_byova.cli._call import parse_ws_target
from webex_byova.cli._demo_agent import AGENT_ID, GOODBYE_TEXT, MENU_TEXT, WELCOME_TEXT

from ..cli.conftest import BYOVA, ROOT, Background


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture(scope="module")
def ws_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    """`byova demo --serve-only --transport websocket` in a subprocess."""
    args = ["demo", "--serve-only", "--transport", "websocket", "--port", "0"]
    bg = Background(args, tmp_path_factory.mktemp("wsdemo"))
    try:
        yield bg
    finally:
        assert bg.stop() == 0


def test_demo_over_websocket(runner: CliRunner, tmp_path: Path) -> None:
    out = tmp_path / "bot.wav"
    result = runner.invoke(
        app, ["demo", "--fast", "--json", "--transport", "websocket", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["ok"] is True, data["checks"]
    assert data["target"].startswith("ws://127.0.0.1:")
    assert data["data_source_url"] == "wss://byova-demo.localhost"
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
    assert all(t["status"] == "OK" for t in call["turns"])
    assert out.stat().st_size > 44


def test_bad_transport_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(app, ["demo", "--transport", "carrier-pigeon"])
    assert result.exit_code != 0
    assert "grpc or websocket" in result.output


def test_serve_only_prints_a_websocket_target_and_token(ws_demo: Background) -> None:
    info = ws_demo.info
    assert info["target"].startswith("ws://127.0.0.1:")
    assert info["transport"] == "websocket"
    assert info["token"].count(".") == 2
    assert info["virtual_agent_id"] == AGENT_ID
    assert info["data_source_url"] == "wss://byova-demo.localhost"


def test_simulate_over_websocket(runner: CliRunner, ws_demo: Background) -> None:
    info = ws_demo.info
    args = ["simulate", "--transport", "websocket", "--target", info["target"]]
    args += ["--token", info["token"], "--json", "--agent", AGENT_ID]  # org: the token's
    args += ["--dtmf", "0", "--dtmf", "9", "--fast"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    call = json.loads(result.stdout)
    assert call["ok"] is True
    assert call["outcome"] == "ended_by_agent"
    assert call["turns"][3]["texts"] == [MENU_TEXT]
    assert call["turns"][5]["texts"] == [GOODBYE_TEXT]
    assert call["turns"][1]["events"][:2] == ["START_OF_INPUT", "END_OF_INPUT"]


def test_simulate_load_over_websocket(runner: CliRunner, ws_demo: Background) -> None:
    info = ws_demo.info
    args = ["simulate", "--transport", "websocket", "--target", info["target"]]
    args += ["--token", info["token"], "--json", "--agent", AGENT_ID, "--org", info["org_id"]]
    args += ["--calls", "6", "--rate", "40", "--fast", "--dtmf", "5"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["completed"] == 6
    assert stats["failed"] == 0
    assert stats["outcomes"] == {"transferred": 6}


def test_simulate_with_another_org_is_refused(runner: CliRunner, ws_demo: Background) -> None:
    info = ws_demo.info
    args = ["simulate", "--transport", "websocket", "--target", info["target"]]
    args += ["--token", info["token"], "--json", "--fast", "--org", "org-other"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1
    call = json.loads(result.stdout)
    assert call["turns"][0]["status"] == "UNAUTHENTICATED"  # ERROR unauthorized / 403


def test_simulate_without_a_token_is_refused(runner: CliRunner, ws_demo: Background) -> None:
    args = ["simulate", "--transport", "websocket", "--target", ws_demo.info["target"]]
    result = runner.invoke(app, [*args, "--json", "--fast"])
    assert result.exit_code == 1
    call = json.loads(result.stdout)
    assert call["ok"] is False
    assert "401" in call["error"]


@pytest.mark.parametrize(
    ("text", "url"),
    [
        ("127.0.0.1:8765", "ws://127.0.0.1:8765"),
        (" ws://127.0.0.1:1 ", "ws://127.0.0.1:1"),
        ("wss://byova.example.com", "wss://byova.example.com"),
    ],
)
def test_websocket_targets(text: str, url: str) -> None:
    assert parse_ws_target(text) == url


@pytest.mark.parametrize("text", ["http://h:1", "ws://", "ws:///v1/va", "h", "h:99999"])
def test_bad_websocket_targets(text: str) -> None:
    with pytest.raises(ValueError, match="--target"):
        parse_ws_target(text)


def test_byova_serve_runs_an_app_on_both_transports(runner: CliRunner) -> None:
    """`byova serve examples/media_server_minimal.py --transport both`: one app, two wires."""
    env = {
        **os.environ,
        "WEBEX_MEDIA_VERIFY_TOKENS": "false",
        "WEBEX_MEDIA_HOST": "127.0.0.1",
        "WEBEX_MEDIA_WS_HOST": "127.0.0.1",
    }
    app_file = ROOT / "examples" / "media_server_minimal.py"
    args = ["serve", str(app_file), "--port", "0", "--ws-port", "0", "--transport", "both"]
    proc = subprocess.Popen(
        [str(BYOVA), *args], env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r" on (127\.0\.0\.1:\d+) and (ws://127\.0\.0\.1:\d+) \(plaintext", line)
        assert match, line
        for transport, target in (("grpc", match.group(1)), ("websocket", match.group(2))):
            result = runner.invoke(
                app,
                ["simulate", "--transport", transport, "--target", target]
                + ["--dtmf", "0", "--fast", "--json"],
            )
            assert result.exit_code == 0, result.output
            call = json.loads(result.stdout)
            assert call["outcome"] == "transferred"
            assert call["turns"][-1]["texts"] == ["Connecting you to an agent."]
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        proc.stderr.close()
