"""`byova simulate`'s wording: --calls 0 refused, a load test where every call failed, what
"late" frames and latency mean (summary and --help)."""

from __future__ import annotations

import json
import socket

from typer.testing import CliRunner

from webex_byova.cli import app
from webex_byova.cli._call import LoadStats
from webex_byova.cli._media_cmds import load_rows

WIDE = {"COLUMNS": "250"}


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_calls_zero_is_refused(runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "--target", "127.0.0.1:9", "--calls", "0"], env=WIDE)
    assert result.exit_code == 2
    assert (
        "Invalid value for '--calls': Input should be greater than or equal to 1" in result.output
    )
    result = runner.invoke(
        app, ["simulate", "--target", "127.0.0.1:9", "--calls", "2", "--rate", "0"], env=WIDE
    )
    assert result.exit_code == 2
    assert "--rate must be > 0 calls per second, got 0.0" in result.output


def test_every_call_failed_reads_as_such(runner: CliRunner) -> None:
    target = f"127.0.0.1:{closed_port()}"
    args = ["simulate", "--target", target, "--calls", "3", "--rate", "100", "--turns", "0"]
    result = runner.invoke(app, args, env=WIDE)
    assert result.exit_code == 1
    out = result.stdout
    assert "3 placed: 0 succeeded, 3 failed" in out
    assert "completed" not in out
    assert "None" not in out
    assert "turn latency p50/p95/p99 │ n/a (no turn was answered)" in out
    assert "late caller frames       │ n/a (no audio sent)" in out
    assert "hint: the server is unreachable, or it expects TLS" in out

    data = json.loads(runner.invoke(app, [*args, "--json"], env=WIDE).stdout)
    assert (data["calls"], data["succeeded"], data["failed"]) == (3, 0, 3)


def test_late_frames_and_latency_are_explained(runner: CliRunner) -> None:
    result = runner.invoke(app, ["simulate", "--help"], env=WIDE)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "late caller frames: 20 ms audio frames sent more than 20 ms behind their" in text
    assert "Turn latency is the time from the end of the caller's input" in text


def test_load_rows() -> None:
    stats = LoadStats(calls=4, completed=4, failed=1, turns=8, frames_sent=500, late_frames=7)
    stats.latencies_ms = [10.0, 20.0, 30.0]
    rows = dict(load_rows(stats.to_json(), realtime=True))
    assert rows["calls"] == "4 placed: 3 succeeded, 1 failed"
    assert rows["turn latency p50/p95/p99"] == "20.0 / 30.0 / 30.0 ms (3 turns)"
    assert rows["late caller frames"] == "7 of 500 frames"
    fast = dict(load_rows(stats.to_json(), realtime=False))
    assert fast["late caller frames"] == "not measured (--fast sends audio unpaced)"
    unfinished = LoadStats(calls=5, completed=2).to_json()
    assert dict(load_rows(unfinished, realtime=True))["calls"] == (
        "5 placed: 2 succeeded, 0 failed, 3 unfinished"
    )
