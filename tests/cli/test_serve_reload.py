"""`byova serve APP --reload`: a supervisor restarts the served app when its .py files change."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from subprocess import Popen

import pytest
from typer.testing import CliRunner

from webex_byova.cli._reload import child_command, first_change, snapshot, watch_roots
from webex_byova.cli._serve import AppLoadError
from webex_byova.testing import WebexCaller

from .conftest import BYOVA

APP = """\
from webex_byova import BYOVAMediaServer

server = BYOVAMediaServer.from_env()


@server.on("session_start")
def welcome(event):
    event.turn.say("{text}")
"""
SERVING = re.compile(r"^serving .* on (127\.0\.0\.1:\d+) ")


class Lines:
    """Lines of a pipe, read by a thread so waiting for one can time out."""

    def __init__(self, stream: object) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.queue.put(line.rstrip("\n"))

    def wait_for(self, pattern: str | re.Pattern[str], timeout: float = 30) -> re.Match[str]:
        while True:
            try:
                line = self.queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}") from None
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


@contextlib.contextmanager
def supervisor(
    args: list[str], env: dict[str, str], cwd: Path
) -> Iterator[tuple[Popen[str], Lines]]:
    """`byova serve ... --reload` in its own process group, killed with its child on failure."""
    proc = subprocess.Popen(
        [str(BYOVA), "serve", *args, "--reload"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = Lines(proc.stderr)
    try:
        yield proc, lines
    finally:
        with contextlib.suppress(ProcessLookupError):  # the group is gone when all went well
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        lines.thread.join(timeout=20)  # EOF once every writer of the pipe is gone
        assert proc.stderr is not None
        proc.stderr.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == pid:
                found.append(int(entry))
    return found


async def greeting(address: str) -> list[str]:
    async with WebexCaller(address, realtime=False) as caller:
        turn = await caller.start_session()
        return turn.texts


def replace_file(path: Path, text: str, mtime_ns: int | None = None) -> None:
    """Change ``path`` in one step the supervisor's poll can observe (write, then set the
    mtime, then rename into place): an in-place write is truncate + write (+ utime), and a
    poll landing in between, as it can on a loaded machine, saw two changes."""
    tmp = path.with_name(path.name + ".tmp")  # not *.py: never part of a snapshot
    tmp.write_text(text)
    if mtime_ns is not None:
        os.utime(tmp, ns=(mtime_ns, mtime_ns))
    os.replace(tmp, path)


async def test_reload_restarts_the_app_on_change(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP.format(text="v1"))
    # v1 and v2 get the same size and mtime second (what a .pyc records), as quick edits can
    second_ns = (app.stat().st_mtime_ns // 10**9) * 10**9
    os.utime(app, ns=(second_ns, second_ns))
    env = {**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false", "WEBEX_MEDIA_HOST": "127.0.0.1"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # keeping stale .pyc files out is the CLI's job
    with supervisor([str(app), "--port", "0"], env, tmp_path) as (proc, lines):
        first = lines.wait_for(SERVING).group(1)
        assert await greeting(first) == ["v1"]

        replace_file(app, APP.format(text="v2"), second_ns + 5 * 10**8)
        lines.wait_for(f"^reloading: {re.escape(str(app))} changed$")
        second = lines.wait_for(SERVING).group(1)
        assert await greeting(second) == ["v2"]

        # a broken edit stops the app; the supervisor waits for the next change
        replace_file(app, "this is not python\n")
        lines.wait_for("^reloading: ")
        lines.wait_for(r"^app exited with code 1; waiting for a change to restart$")
        replace_file(app, APP.format(text="v3"))
        third = lines.wait_for(SERVING).group(1)
        assert await greeting(third) == ["v3"]

        children = children_of(proc.pid)
        assert len(children) == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)
        assert [line for line in lines.seen if line.startswith("reloading:")] == [
            f"reloading: {app} changed"
        ] * 3


def test_sigint_stops_the_supervisor_and_its_child(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP.format(text="hi"))
    env = {**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false"}
    args = [f"{app}:server", "--host", "127.0.0.1", "--port", "0"]
    with supervisor(args, env, tmp_path) as (proc, lines):
        lines.wait_for(SERVING)
        children = children_of(proc.pid)
        assert len(children) == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
        assert not any(Path(f"/proc/{pid}").exists() for pid in children)


def test_reload_of_a_missing_app_fails_fast(runner: CliRunner, tmp_path: Path) -> None:
    from webex_byova.cli import app

    result = runner.invoke(app, ["serve", str(tmp_path / "nope.py"), "--reload"])
    assert result.exit_code == 1
    assert "no such file" in result.output
    result = runner.invoke(app, ["serve", "no_such_module_xyz:server", "--reload"])
    assert result.exit_code == 1
    assert "cannot find module 'no_such_module_xyz'" in result.output


def test_watch_roots(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "single.py").write_text("")
    pkg = tmp_path / "mypkg_reload_probe"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("raise RuntimeError('must not be imported')\n")
    (pkg / "sub" / "__init__.py").write_text("")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert watch_roots(str(tmp_path / "single.py")) == [tmp_path.resolve()]
    assert watch_roots("single.py:server") == [tmp_path.resolve()]
    assert watch_roots("single") == [tmp_path.resolve()]
    assert watch_roots("mypkg_reload_probe.sub:server") == [pkg.resolve()]
    with pytest.raises(AppLoadError):
        watch_roots("missing.py")


def test_snapshot_and_first_change(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("a")
    (tmp_path / "notes.txt").write_text("ignored")
    for skipped in ("__pycache__", ".git", "node_modules", "venv"):
        (tmp_path / skipped).mkdir()
        (tmp_path / skipped / "x.py").write_text("")
    (tmp_path / "venv" / "pyvenv.cfg").write_text("")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "b.py").write_text("b")
    before = snapshot([tmp_path])
    assert sorted(before) == [str(tmp_path / "a.py"), str(tmp_path / "pkg" / "b.py")]
    assert first_change(before, snapshot([tmp_path])) is None

    (tmp_path / "pkg" / "b.py").write_text("bb")
    after = snapshot([tmp_path])
    assert first_change(before, after) == str(tmp_path / "pkg" / "b.py")
    (tmp_path / "c.py").write_text("")
    assert first_change(after, snapshot([tmp_path])) == str(tmp_path / "c.py")
    (tmp_path / "a.py").unlink()
    assert first_change(after, snapshot([tmp_path])) == str(tmp_path / "a.py")


def test_child_command_passes_set_options_without_reload() -> None:
    argv = child_command("app.py:server", {"--host": None, "--port": 0, "--tls-cert": Path("c")})
    assert argv == [
        sys.executable,
        "-B",
        "-m",
        "webex_byova.cli",
        "serve",
        "app.py:server",
        "--port",
        "0",
        "--tls-cert",
        "c",
    ]
