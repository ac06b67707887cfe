"""`byova serve` as a user runs it: the real bind address, a loud warning off loopback, one
clear line for a busy port or a broken app (the app's own frames only for an import error),
and SIGHUP stopping a `--reload` supervisor together with its child."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from webex_byova.cli._serve import (
    PortInUseError,
    bind_address,
    check_port_free,
    exposure_warning,
    is_loopback,
)

from .conftest import BYOVA
from .test_serve_reload import APP, Lines, children_of, greeting

ENV = {**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false"}


def run_serve(args: list[str], cwd: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BYOVA), *args], cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout
    )


@contextlib.contextmanager
def serving(args: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    proc = subprocess.Popen(
        [str(BYOVA), "serve", *args],
        cwd=cwd,
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines = Lines(proc.stderr)
    try:
        yield proc, lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        lines.thread.join(timeout=20)
        assert proc.stderr is not None
        proc.stderr.close()


@contextlib.contextmanager
def listener(host: str = "127.0.0.1") -> Iterator[int]:
    """A port some other program listens on."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        sock.listen()
        yield sock.getsockname()[1]


@pytest.fixture
def app_file(tmp_path: Path) -> Path:
    path = tmp_path / "app.py"
    path.write_text(APP.format(text="hello"))
    return path


# --------------------------------------------------------------------------- bind address


def test_loopback_prints_the_bound_address_and_no_warning(app_file: Path) -> None:
    with serving([str(app_file), "--host", "127.0.0.1", "--port", "0"], app_file.parent) as (
        proc,
        lines,
    ):
        line = lines.wait_for(r"^serving ").string
        assert re.match(r"^serving \S+app\.py on 127\.0\.0\.1:\d+ \(plaintext, ", line), line
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    assert not [s for s in lines.seen if "WARNING" in s]


async def test_all_interfaces_is_printed_as_such_with_a_warning(app_file: Path) -> None:
    """The default host is 0.0.0.0: say so (not 127.0.0.1) and warn, loudly, on its own line."""
    with serving([str(app_file), "--host", "0.0.0.0", "--port", "0"], app_file.parent) as (
        proc,
        lines,
    ):
        match = lines.wait_for(r"^serving \S+ on 0\.0\.0\.0:(\d+) .*connect to (127\.0\.0\.1:\d+)")
        port, address = match.group(1), match.group(2)
        assert address == f"127.0.0.1:{port}"
        warning = lines.wait_for(r"^WARNING: ").string
        assert warning == (
            f"WARNING: listening on ALL network interfaces at 0.0.0.0:{port}: other machines can "
            "connect (plaintext, tokens NOT verified). Use --host 127.0.0.1 to stay local."
        )
        assert await greeting(address) == ["hello"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0


def test_bind_helpers() -> None:
    assert [is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost")] == [
        True
    ] * 5
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "", "10.1.2.3", "bot.example.com"))
    assert bind_address("::", 5) == "[::]:5"
    assert bind_address("[::1]", 5) == "[::1]:5"
    assert bind_address("", 5) == "0.0.0.0:5"
    assert exposure_warning("127.0.0.1", 5, tls=False, verify_tokens=False) is None
    assert exposure_warning("10.1.2.3", 5, tls=True, verify_tokens=True) == (
        "WARNING: listening on 10.1.2.3 (not loopback) at 10.1.2.3:5: other machines can "
        "connect. Use --host 127.0.0.1 to stay local."
    )


# --------------------------------------------------------------------------- one clear line


def assert_one_line(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.splitlines() == [expected], proc.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0"])
def test_busy_port_is_one_line(app_file: Path, host: str) -> None:
    with listener() as port:
        proc = run_serve(
            ["serve", str(app_file), "--host", host, "--port", str(port)], app_file.parent
        )
    assert_one_line(
        proc,
        f"error: port {port} is already in use on {host}:{port}: another process is "
        "listening there; stop it or choose another --port",
    )


@pytest.mark.parametrize("port", ["0", "50999"])
def test_an_address_of_another_machine_is_one_line(app_file: Path, port: str) -> None:
    """192.0.2.1 (TEST-NET-1) is no address of this machine: nothing can listen there."""
    proc = run_serve(
        ["serve", str(app_file), "--host", "192.0.2.1", "--port", port], app_file.parent
    )
    assert_one_line(
        proc, f"error: cannot listen on 192.0.2.1:{port}: Cannot assign requested address"
    )
    demo = run_serve(
        ["demo", "--serve-only", "--host", "192.0.2.1", "--port", port], app_file.parent
    )
    assert_one_line(
        demo, f"error: cannot listen on 192.0.2.1:{port}: Cannot assign requested address"
    )


def test_demo_serve_only_on_a_busy_port_is_one_line(tmp_path: Path) -> None:
    with listener() as port:
        proc = run_serve(["demo", "--serve-only", "--port", str(port)], tmp_path)
    assert_one_line(
        proc,
        f"error: port {port} is already in use on 127.0.0.1:{port}: another process is "
        "listening there; stop it or choose another --port",
    )
    assert proc.stdout == ""


def test_check_port_free() -> None:
    check_port_free("127.0.0.1", 0)
    with listener() as port:
        with pytest.raises(PortInUseError, match=f"port {port} is already in use"):
            check_port_free("127.0.0.1", port)
        with pytest.raises(PortInUseError):
            check_port_free("localhost", port)
    check_port_free("127.0.0.1", port)  # closed again: free (SO_REUSEADDR, like gRPC)


def test_syntax_error_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "broken.py").write_text("x = 1\ndef f(:\n    pass\n")
    proc = run_serve(["serve", "broken.py"], tmp_path)
    assert_one_line(
        proc,
        "error: cannot load broken.py: SyntaxError in broken.py line 2, column 7: invalid syntax",
    )


def test_syntax_error_in_a_module_the_app_imports_names_that_module(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("def f(:\n")
    (tmp_path / "app.py").write_text("import helpers\n")
    proc = run_serve(["serve", "app.py"], tmp_path)
    assert_one_line(
        proc,
        "error: cannot load app.py: SyntaxError in helpers.py line 1, column 7: invalid syntax",
    )


def test_failing_import_shows_the_apps_frames_only(tmp_path: Path) -> None:
    (tmp_path / "settings.py").write_text("import not_installed_anywhere_xyz\n")
    (tmp_path / "app.py").write_text("import json\n\nimport settings\n")
    proc = run_serve(["serve", "app.py"], tmp_path)
    assert proc.returncode == 1
    app, settings = tmp_path / "app.py", tmp_path / "settings.py"
    assert proc.stderr.splitlines() == [
        "error: cannot load app.py: ModuleNotFoundError: No module named "
        "'not_installed_anywhere_xyz'",
        "App traceback (most recent call last):",
        f'  File "{app}", line 3, in <module>',
        "    import settings",
        f'  File "{settings}", line 1, in <module>',
        "    import not_installed_anywhere_xyz",
    ]


def test_app_raising_inside_a_library_shows_the_app_line(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text('import json\n\nCONFIG = json.loads("{")\n')
    proc = run_serve(["serve", "app.py"], tmp_path)
    assert proc.returncode == 1
    lines = proc.stderr.splitlines()
    assert lines[0].startswith("error: cannot load app.py: JSONDecodeError: Expecting")
    assert lines[2:4] == [
        f'  File "{tmp_path / "app.py"}", line 3, in <module>',
        '    CONFIG = json.loads("{")',
    ]
    assert "json/decoder.py" not in proc.stderr
    assert "Traceback" not in proc.stderr.replace("App traceback", "")


def test_module_app_failing_import(tmp_path: Path) -> None:
    (tmp_path / "mybot.py").write_text("import missing_dependency_xyz\n")
    proc = run_serve(["serve", "mybot"], tmp_path)
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[0] == (
        "error: cannot load mybot: ModuleNotFoundError: No module named 'missing_dependency_xyz'"
    )
    assert "<frozen" not in proc.stderr
    proc = run_serve(["serve", "no_such_bot_xyz"], tmp_path)
    assert_one_line(
        proc,
        "error: cannot import module 'no_such_bot_xyz': No module named 'no_such_bot_xyz'",
    )


# --------------------------------------------------------------------------- SIGHUP


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGTERM])
def test_reload_supervisor_takes_its_child_down_on_sighup(app_file: Path, sig: int) -> None:
    args = [str(app_file), "--host", "127.0.0.1", "--port", "0", "--reload"]
    with serving(args, app_file.parent) as (proc, lines):
        lines.wait_for(r"^serving ")
        children = children_of(proc.pid)
        assert len(children) == 1
        os.kill(proc.pid, sig)  # the supervisor only, as `kill -HUP <pid>` does
        assert proc.wait(timeout=20) == 0
        child = Path(f"/proc/{children[0]}")
        # the child was stopped (and reaped) by the supervisor before it exited
        assert not child.exists()


def test_serve_stops_gracefully_on_sighup(app_file: Path) -> None:
    with serving([str(app_file), "--host", "127.0.0.1", "--port", "0"], app_file.parent) as (
        proc,
        lines,
    ):
        lines.wait_for(r"^serving ")
        proc.send_signal(signal.SIGHUP)
        assert proc.wait(timeout=20) == 0  # without a handler SIGHUP kills: -1
