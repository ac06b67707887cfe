"""`byova emulator` stops on SIGINT even when started as a background job of a script."""

from __future__ import annotations

import json
import signal
import subprocess

from .conftest import BYOVA


def test_emulator_stops_on_sigint_when_started_with_sigint_ignored(tmp_path) -> None:
    # `byova emulator &` in a non-interactive shell inherits SIGINT ignored; Ctrl-C semantics
    # (kill -INT) must still stop it, as they do for `byova demo --serve-only`.
    proc = subprocess.Popen(
        [str(BYOVA), "emulator", "--port", "0", "--json"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # noqa: PLW1509
    )
    try:
        assert proc.stdout is not None
        assert json.loads(proc.stdout.readline())["env"]["WEBEX_BASE_URL"].endswith("/v1")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
