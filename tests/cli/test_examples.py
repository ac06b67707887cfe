"""Every example in examples/ runs against the emulator/simulator in a test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from webex_byova.cli import app
from webex_byova.cli._emulator_cmd import emulator_info

from .conftest import BYOVA, ROOT

EXAMPLES = ROOT / "examples"
# Examples tested elsewhere: file name -> the test that runs it.
TESTED_ELSEWHERE = {
    "webhook_receiver.py": ROOT / "tests" / "byods" / "receiver.py",
    "pipecat_bot.py": ROOT / "tests" / "pipecat" / "test_example.py",
}
TESTED_HERE = {"media_server_minimal.py", "rest_quickstart.py"}


def test_every_example_has_a_test() -> None:
    names = {p.name for p in EXAMPLES.glob("*.py")}
    assert names == TESTED_HERE | set(TESTED_ELSEWHERE)
    for name, test in TESTED_ELSEWHERE.items():
        assert name.removesuffix(".py") in test.read_text()


def test_rest_quickstart_against_the_emulator(emulator, tmp_path: Path) -> None:
    env = {**os.environ, **emulator_info(emulator)["env"], "WEBEX_TOKEN_STORE": "memory"}
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / "rest_quickstart.py"), "--url", "https://va.test/x"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "integration authorized" in proc.stdout
    ds_id = re.search(r"data source (\S+) for https://va.test/x", proc.stdout).group(1)
    assert f"deleted {ds_id}" in proc.stdout
    assert "extended: token now expires" in proc.stdout
    assert emulator.data_sources == []
    assert emulator.count("POST", "/v1/dataSources") == 1
    assert emulator.count("PUT", "/v1/dataSources") == 1


def test_minimal_media_server_via_byova_serve(runner, tmp_path: Path) -> None:
    """`byova serve examples/media_server_minimal.py`, called by `byova simulate`."""
    env = {**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false", "WEBEX_MEDIA_HOST": "127.0.0.1"}
    proc = subprocess.Popen(
        [str(BYOVA), "serve", str(EXAMPLES / "media_server_minimal.py"), "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r" on (127\.0\.0\.1:\d+) \(plaintext, tokens NOT verified\)", line)
        assert match, line
        result = runner.invoke(
            app,
            ["simulate", "--target", match.group(1), "--dtmf", "0", "--fast", "--json"],
        )
        assert result.exit_code == 0, result.output
        call = json.loads(result.stdout)
        assert call["outcome"] == "transferred"
        assert call["turns"][0]["texts"] == ["Hello! Say something, or press 0 for an agent."]
        assert call["turns"][1]["texts"][0].startswith("You spoke for")
        assert call["turns"][-1]["texts"] == ["Connecting you to an agent."]
    finally:
        proc.send_signal(2)
        assert proc.wait(timeout=20) == 0
        proc.stderr.close()


def test_minimal_server_verifying_tokens_with_simulate_mint_token(runner, emulator) -> None:
    """Production-like: the server trusts the emulator's issuer and requires the URL claim;
    `simulate --mint-token` registers the data source there and presents its JWS."""
    url = "https://va.example.com/minimal"
    env = {
        **os.environ,
        "WEBEX_MEDIA_HOST": "127.0.0.1",
        "WEBEX_MEDIA_EXTRA_ISSUERS": emulator.issuer,
        "WEBEX_MEDIA_EXPECTED_URL": url,
    }
    proc = subprocess.Popen(
        [str(BYOVA), "serve", f"{EXAMPLES / 'media_server_minimal.py'}:server", "--port", "0"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        match = re.search(r" on (127\.0\.0\.1:\d+) \(plaintext, tokens verified\)", line)
        assert match, line
        target = match.group(1)
        cli_env = {**emulator_info(emulator)["env"], "WEBEX_TOKEN_STORE": "memory"}
        denied = runner.invoke(app, ["simulate", "--target", target, "--fast", "--json"])
        assert denied.exit_code == 1
        assert json.loads(denied.stdout)["turns"][0]["status"] == "UNAUTHENTICATED"
        result = runner.invoke(
            app,
            [
                "simulate",
                "--target",
                target,
                "--mint-token",
                url,
                "--dtmf",
                "0",
                "--fast",
                "--json",
            ],
            env=cli_env,
        )
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["outcome"] == "transferred"
        assert [ds.url for ds in emulator.data_sources] == [url]
    finally:
        proc.send_signal(2)
        assert proc.wait(timeout=20) == 0
        proc.stderr.close()
