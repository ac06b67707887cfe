"""`byova serve --workers`: a supervisor of real processes sharing one port."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from webex_byova.cli._workers import free_port

from ..cli.conftest import BYOVA

WORKER = Path(__file__).with_name("_pid_worker.py")
SUPERVISE = """
import sys
from webex_byova.cli._workers import WorkerSupervisor
port, metrics_port = sys.argv[1], int(sys.argv[2])
command = [sys.executable, {worker!r}, port]
sys.exit(WorkerSupervisor(command, 2, metrics_port=metrics_port, metrics_host="127.0.0.1",
                          restart_delay_s=0.1, stop_timeout_s=15).run())
"""


class Lines:
    """Lines of a pipe, read by a thread; ``wait_for`` fails at EOF or after ``timeout``."""

    def __init__(self, stream: object) -> None:
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        self.thread = threading.Thread(target=self._pump, args=(stream,), daemon=True)
        self.thread.start()

    def _pump(self, stream: object) -> None:
        for line in stream:  # type: ignore[attr-defined]
            self.queue.put(line.rstrip("\n"))
        self.queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 60) -> re.Match[str]:
        while True:
            try:
                line = self.queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}") from None
            if line is None:
                self.queue.put(None)
                raise AssertionError(f"EOF before {pattern!r}; saw {self.seen}")
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match


@contextlib.contextmanager
def supervisor(argv: list[str], cwd: Path) -> Iterator[tuple[subprocess.Popen[str], Lines]]:
    """A supervisor process (its own session); it and its workers are killed on failure."""
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        env={**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false"},
    )
    lines = Lines(proc.stdout)
    try:
        yield proc, lines
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        lines.thread.join(timeout=20)
        assert proc.stdout is not None
        proc.stdout.close()


def pids_answering(port: int, connections: int) -> set[int]:
    """The PIDs that answer ``connections`` RPCs, each on a new connection."""
    pids = set()
    for _ in range(connections):
        with grpc.insecure_channel(
            f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
        ) as channel:
            get = channel.unary_unary("/test.Pid/Get")
            pids.add(int(get(b"", timeout=30, wait_for_ready=True)))
    return pids


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(url, timeout=10).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_two_workers_share_one_port_are_replaced_when_killed_and_stop_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    argv = [sys.executable, "-c", SUPERVISE.format(worker=str(WORKER)), str(port), "0"]
    with supervisor(argv, tmp_path) as (proc, lines):
        url = lines.wait_for(r"^workers: metrics of all workers on (http://\S+)$").group(1)
        started = {int(lines.wait_for(r"^worker (\d+) ready$").group(1)) for _ in range(2)}
        assert len(started) == 2

        answered = pids_answering(port, 40)
        assert answered == started  # one port, both processes serve

        samples = scrape(url)
        assert samples[("webex_byova_streams_opened_total", (("transport", "grpc"),))] == 40

        victim = sorted(started)[0]
        os.kill(victim, signal.SIGKILL)
        lines.wait_for(rf"^workers: worker \d \(pid {victim}\) exited with code -9; restarting$")
        replacement = int(lines.wait_for(r"^worker (\d+) ready$").group(1))
        assert replacement not in started
        survivors = (started - {victim}) | {replacement}
        assert pids_answering(port, 40) == survivors
        # the dead worker's counts stay in the aggregate
        samples = scrape(url)
        assert samples[("webex_byova_streams_opened_total", (("transport", "grpc"),))] == 80

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        lines.wait_for(r"^workers: stopping 2 worker\(s\)$")
        for pid in survivors:
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(pid)
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)


def test_sigint_stops_the_supervisor_and_its_workers(tmp_path: Path) -> None:
    port = free_port()
    argv = [sys.executable, "-c", SUPERVISE.format(worker=str(WORKER)), str(port), "0"]
    with supervisor(argv, tmp_path) as (proc, lines):
        started = {int(lines.wait_for(r"^worker (\d+) ready$").group(1)) for _ in range(2)}
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0
        for pid in started:
            deadline = time.monotonic() + 10
            while alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not alive(pid)


BROKEN_APP = "this is not python\n"


def test_a_worker_that_keeps_failing_stops_byova_serve(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(BROKEN_APP)
    argv = [str(BYOVA), "serve", str(app), "--workers", "2", "--port", "0"]
    with supervisor(argv, tmp_path) as (proc, lines):
        assert proc.wait(timeout=120) == 1
        lines.wait_for(r"^workers: worker \d failed 5 times within 3 s of starting; stopping$")
        assert len([line for line in lines.seen if " started (pid " in line]) >= 5


APP = """\
import os
from webex_byova import BYOVAMediaServer

server = BYOVAMediaServer.from_env()


@server.on("session_start")
def welcome(event):
    event.turn.say(f"pid {os.getpid()}")
"""


async def test_byova_serve_workers_2_answers_from_two_pids(tmp_path: Path) -> None:
    from webex_byova.testing import WebexCaller

    app = tmp_path / "app.py"
    app.write_text(APP)
    argv = [str(BYOVA), "serve", str(app), "--workers", "2", "--host", "127.0.0.1"]
    argv += ["--port", str(free_port())]
    with supervisor(argv, tmp_path) as (proc, lines):
        addresses = {lines.wait_for(r"serving .* on (127\.0\.0\.1:\d+) ").group(1) for _ in "12"}
        assert len(addresses) == 1
        address = addresses.pop()
        seen = set()
        for _ in range(30):
            async with WebexCaller(address, realtime=False) as caller:
                seen.update((await caller.start_session()).texts)
                await caller.end_session()
        assert len(seen) == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_supervisor_in_process_clears_a_given_metrics_dir_and_stops_on_request(
    tmp_path: Path,
) -> None:
    from webex_byova.cli._workers import WorkerSupervisor

    directory = tmp_path / "prom"
    directory.mkdir()
    stale = directory / "counter_999999.db"
    stale.write_bytes(b"stale")
    port = free_port()
    out = tmp_path / "supervisor.log"
    with out.open("w") as stream:
        sup = WorkerSupervisor(
            [sys.executable, str(WORKER), str(port)],
            2,
            env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(directory)},
            metrics_port=0,
            metrics_host="127.0.0.1",
            out=stream,
        )
        result: list[int] = []
        thread = threading.Thread(target=lambda: result.append(sup.run(install_signals=False)))
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while len(sup.pids) < 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(sup.pids) == 2
            assert not stale.exists()
            assert pids_answering(port, 10) <= set(sup.pids)
            assert (
                scrape(sup.metrics_url)[
                    ("webex_byova_streams_opened_total", (("transport", "grpc"),))
                ]
                == 10
            )
        finally:
            sup.stop()
            thread.join(timeout=60)
    assert result == [0]
    assert sup.pids == []
    assert directory.exists()  # a directory the launcher gave is kept
    log = out.read_text()
    assert "workers: stopping 2 worker(s)" in log
    with pytest.raises(ValueError, match="at least 1"):
        WorkerSupervisor(["true"], 0)
