"""Authorizing on a machine without a browser, or with the emulator down, says what happens.

`authorize()` used to ignore a failed browser open and wait 300 s in silence; `byova auth
login --auto-consent` swallowed the connection error and waited 300 s too.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from webex_byova.cli import app
from webex_byova.cli._emulator_cmd import emulator_info

SCRIPT = """
import asyncio, sys
from webex_byova import BYOVA

with BYOVA.from_env() as sdk:
    if sys.argv[1] == "sync":
        token = sdk.integration.authorize(timeout=float(sys.argv[2]))
    else:
        token = asyncio.run(sdk.integration.aauthorize(timeout=float(sys.argv[2])))
    print("authorized", bool(token.access_token))
"""


def _headless_env(emulator, tmp_path: Path) -> dict[str, str]:
    """A machine without a browser: no desktop, and the only 'browser' fails to start."""
    bare = tmp_path / "bin"
    bare.mkdir(exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER", "TERM")
    }
    env.update(emulator_info(emulator)["env"])
    env.update(
        WEBEX_TOKEN_STORE="memory",
        BROWSER="/bin/false",
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{bare}",
    )
    return env


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_headless_authorize_prints_the_url_and_the_wait(emulator, tmp_path, mode) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, mode, "60"],
        env=_headless_env(emulator, tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        lines = [proc.stderr.readline() for _ in range(3)]
        assert lines[0].startswith("Could not open a browser."), lines
        url = lines[1].strip()
        assert url.startswith(emulator.authorize_url + "?")
        assert lines[2].startswith("Waiting up to 60 s for the redirect to http://127.0.0.1:")
        # the person copies the URL into a browser elsewhere: the emulator consents at once
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(url, timeout=20) as resp:
            assert resp.status == 200
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip() == "authorized True"


def test_headless_authorize_logs_the_failed_browser_and_times_out(emulator, tmp_path) -> None:
    logs = "import logging; logging.basicConfig(level='INFO', format='%(levelname)s %(message)s')"
    script = logs + "\n" + SCRIPT
    proc = subprocess.run(
        [sys.executable, "-c", script, "sync", "0.2"],
        env=_headless_env(emulator, tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    assert "WARNING could not open a browser for the authorize URL" in proc.stderr
    assert "INFO authorize URL: " + emulator.authorize_url in proc.stderr
    assert "Waiting up to 0.2 s" in proc.stderr
    assert "no redirect reached http://127.0.0.1:" in proc.stderr
    assert "within 0.2s" in proc.stderr


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_auto_consent_fails_at_once_when_the_emulator_is_down(runner, emu_env) -> None:
    env = {**emu_env, "WEBEX_BASE_URL": f"http://127.0.0.1:{_closed_port()}/v1"}
    # the default --timeout is 300 s; pytest-timeout (120 s) bounds the test, no timing assert
    outcome = runner.invoke(app, ["auth", "login", "--auto-consent"], env=env)
    text = " ".join(outcome.output.split())  # rich wraps long lines
    assert outcome.exit_code == 1, outcome.output
    assert "APIConnectionError: cannot reach the authorize URL http://127.0.0.1:" in text
    assert "Connection refused" in text
    assert "byova emulator" in text


def test_auto_consent_reports_a_refusing_authorize_endpoint(runner, emu_env) -> None:
    env = {**emu_env, "WEBEX_INTEGRATION_CLIENT_ID": "Cnot-a-client"}
    outcome = runner.invoke(app, ["auth", "login", "--auto-consent"], env=env)
    assert outcome.exit_code == 1, outcome.output
    assert "AuthenticationError" in outcome.output
    assert "answered HTTP 4" in outcome.output


def test_login_message_says_how_long_it_waits(runner, emu_env) -> None:
    outcome = runner.invoke(
        app, ["auth", "login", "--auto-consent", "--timeout", "20"], env=emu_env
    )
    assert outcome.exit_code == 0, outcome.output
    assert "waiting up to 20 s for the redirect" in outcome.output
