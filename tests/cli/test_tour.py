"""The README's tour and the guides' shell commands, run as a user types them.

Every ```bash block of the README and the guides runs (``bash no-run`` blocks are skipped: the
Quickstart's ``dev.py`` lines, which would run this suite itself). Each line is one ``bash -c``
in the repository root with the ``bin`` of a fresh virtualenv first on ``PATH`` (the built
wheel installed with ``pip install 'webex-byova-sdk[media,cli]'``, as a new user has it; not
the dev ``.venv``), a fresh user data directory and no ``WEBEX_*`` variables. ``byova emulator`` and
``byova serve`` keep running, as in their own terminals; the ``export`` lines the emulator
prints apply to every later line, as a user pastes them.

Changed for a shared test machine, and nothing else: fixed ports (``byova emulator`` gets
``--port 0``, ``50051`` and ``WEBEX_MEDIA_PORT`` become a free port) and
``WEBEX_MEDIA_HOST=127.0.0.1`` (the servers of the tests stay on loopback).
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from .conftest import ROOT

DOCS = ("README.md", "docs/administration.md", "docs/media-server.md")
FENCE = re.compile(r"^```bash([^\n]*)\n(.*?)^```$", re.DOTALL | re.MULTILINE)
LONG_RUNNING = ("byova emulator", "byova serve")
#: What a line's output must show besides exit status 0 (first matching prefix).
EXPECT = {
    "byova simulate": "outcome=transferred",
    "python examples/rest_quickstart.py": "deleted ",
    "byova auth login": "Integration authorized",
    "byova datasources list": "va.example.com",
    "byova webhooks ensure": "deauthorized",
}


def bash_blocks(text: str) -> list[tuple[bool, list[str]]]:
    """``(runs, command lines)`` of every ```bash block (comments and blank lines dropped)."""
    blocks = []
    for match in FENCE.finditer(text):
        info = match.group(1).split()
        if info not in ([], ["no-run"]):
            raise ValueError(f"unknown bash fence info {match.group(1)!r}")
        lines = [
            line.strip()
            for line in match.group(2).splitlines()
            if line.strip() and not line.strip().startswith("#")
        ]
        blocks.append((info != ["no-run"], lines))
    return blocks


def test_fence_parser() -> None:
    text = "```bash\na  # x\n# c\n\nb\n```\n```bash no-run\nc\n```\n```python\nd\n```\n"
    assert bash_blocks(text) == [(True, ["a  # x", "b"]), (False, ["c"])]
    with pytest.raises(ValueError, match="unknown bash fence"):
        bash_blocks("```bash norun\nx\n```\n")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


class Terminal:
    """What the user's shells share: exported variables and the commands left running."""

    def __init__(self, tmp_path: Path, bin_dir: Path) -> None:
        self.tmp = tmp_path
        self.media_port = _free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith("WEBEX_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")
        }
        env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
        env["XDG_DATA_HOME"] = str(tmp_path / "data")
        env["WEBEX_MEDIA_HOST"] = "127.0.0.1"
        env["WEBEX_MEDIA_PORT"] = str(self.media_port)  # `byova serve` without --port
        env["COLUMNS"] = "200"
        self.env = env
        self.running: list[tuple[str, subprocess.Popen[str]]] = []

    def adapt(self, line: str) -> str:
        line = line.replace("50051", str(self.media_port))
        if line.startswith("byova emulator"):
            line = re.sub(r"--port \d+", "--port 0", line)
            if "--port" not in line:
                line += " --port 0"
        return line

    def run(self, line: str) -> str:
        command = self.adapt(line.split("  #", 1)[0].strip())
        if command.startswith(LONG_RUNNING):
            self._start(command)
            return ""
        proc = subprocess.run(
            ["bash", "-c", command],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, f"{line}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        return proc.stdout + proc.stderr

    def _start(self, command: str) -> None:
        log = (self.tmp / f"bg{len(self.running)}.log").open("w")
        proc = subprocess.Popen(
            ["bash", "-c", "exec " + command],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE if command.startswith("byova emulator") else log,
            stderr=log,
            text=True,
        )
        log.close()
        self.running.append((command, proc))
        if command.startswith("byova emulator"):
            self._paste_exports(proc)
        else:
            self._wait_listening(command, proc)

    def _paste_exports(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        exported = 0
        for line in proc.stdout:  # ends when it says how to stop it (or exits)
            if line.startswith("export "):
                name, _, value = line[len("export ") :].strip().partition("=")
                self.env[name] = shlex.split(value)[0] if value else ""
                exported += 1
            if "Ctrl-C to stop" in line:
                break
        assert exported, f"byova emulator printed no export lines: {self._log(0)}"

    def _wait_listening(self, command: str, proc: subprocess.Popen[str]) -> None:
        deadline = time.monotonic() + 60  # a bound for a broken server, not a measurement
        while not _listening(self.media_port):
            assert proc.poll() is None, f"{command} exited: {self._log(len(self.running) - 1)}"
            assert time.monotonic() < deadline, f"{command} never listened"
            time.sleep(0.1)

    def _log(self, index: int) -> str:
        return (self.tmp / f"bg{index}.log").read_text()

    def stop(self) -> list[tuple[str, int | None]]:
        codes = []
        for command, proc in reversed(self.running):
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)  # Ctrl-C in its terminal
            try:
                codes.append((command, proc.wait(timeout=20)))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                codes.append((command, None))
            if proc.stdout is not None:
                proc.stdout.close()
        self.running.clear()
        return codes


@pytest.mark.parametrize("doc", DOCS)
def test_shell_commands_of_the_docs_run_as_written(
    doc: str, tmp_path: Path, fresh_user_bin: Path
) -> None:
    blocks = bash_blocks((ROOT / doc).read_text())
    runnable = [lines for runs, lines in blocks if runs]
    if doc != "docs/media-server.md":
        assert runnable, f"{doc} should show its shell commands"
    for lines in runnable:
        terminal = Terminal(tmp_path, fresh_user_bin)
        try:
            for line in lines:
                output = terminal.run(line)
                for prefix, expected in EXPECT.items():
                    if line.startswith(prefix):
                        assert expected in output, f"{line}\n{output}"
                        break
        finally:
            codes = terminal.stop()
        assert all(code == 0 for _, code in codes), codes


def test_the_readme_tour_uses_a_verifying_server_and_the_sdk() -> None:
    """The tour is the one the README promises: emulator, serve, simulate, SDK."""
    (lines,) = [lines for runs, lines in bash_blocks((ROOT / "README.md").read_text()) if runs]
    assert [line.split()[:2] for line in lines] == [
        ["byova", "emulator"],
        ["byova", "serve"],
        ["byova", "simulate"],
        ["python", "examples/rest_quickstart.py"],
    ]
    assert "--mint-token" in lines[2]
    assert "--token" not in lines[2].replace("--mint-token", "")


def test_the_tour_runs_the_installed_wheel_not_the_source_tree(
    tmp_path: Path, fresh_user_bin: Path
) -> None:
    terminal = Terminal(tmp_path, fresh_user_bin)
    assert terminal.run("command -v byova").strip() == str(fresh_user_bin / "byova")
    where = terminal.run("python -c 'import webex_byova; print(webex_byova.__file__)'")
    assert where.strip().startswith(str(fresh_user_bin.parent))
