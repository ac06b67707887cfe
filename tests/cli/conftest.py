"""Fixtures of the CLI tests: a started emulator, its WEBEX_* environment, a CliRunner."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from webex_byova.cli._emulator_cmd import emulator_info, start_emulator
from webex_byova.testing import WebexEmulator

ROOT = Path(__file__).resolve().parents[2]
BYOVA = Path(sys.executable).with_name("byova")


@pytest.fixture(scope="session")
def fresh_user_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``bin`` of a fresh virtualenv with ``webex-byova-sdk[media,cli]`` installed from the
    built wheel, as a new user gets it with pip (not the source tree, not the dev env)."""
    import venv

    base = tmp_path_factory.mktemp("fresh-user")
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(dist)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        timeout=180,
    )
    (wheel,) = dist.glob("*.whl")
    env_dir = base / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    bin_dir = env_dir / ("Scripts" if os.name == "nt" else "bin")
    subprocess.run(
        [
            str(bin_dir / "python"),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"{wheel}[media,cli]",
        ],  # fmt: skip
        check=True,
        capture_output=True,
        timeout=600,
    )
    return bin_dir


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def emulator() -> Iterator[WebexEmulator]:
    emu = start_emulator("127.0.0.1", 0, authorize=True)
    try:
        yield emu
    finally:
        emu.stop()


@pytest.fixture
def emu_env(emulator: WebexEmulator, tmp_path: Path) -> dict[str, str]:
    """What `byova emulator` tells users to export, plus a per-test SQLite token store."""
    env = dict(emulator_info(emulator)["env"])
    env["WEBEX_TOKEN_STORE"] = f"sqlite:///{tmp_path / 'tokens.db'}"
    return env


class Background:
    """A CLI process that prints one JSON line on stdout and runs until SIGINT."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [str(BYOVA), *args],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            err = self.proc.stderr.read() if self.proc.stderr else ""
            raise AssertionError(f"{args} printed nothing; stderr:\n{err}")
        self.info: dict[str, Any] = json.loads(line)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            return self.proc.wait(timeout=20)
        finally:
            for stream in (self.proc.stdout, self.proc.stderr):
                if stream is not None:
                    stream.close()


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    """`byova demo --serve-only` in a subprocess (its own emulator and token)."""
    bg = Background(["demo", "--serve-only", "--port", "0"], tmp_path_factory.mktemp("demo"))
    try:
        yield bg
    finally:
        assert bg.stop() == 0
