"""``byova serve APP --workers N``: N server processes sharing one port.

A supervisor (stdlib plus prometheus-client; it never imports gRPC or the app) starts N
children ``python -B -m webex_byova.cli serve APP --reuse-port ...``: each child is a fresh
interpreter that loads the app and binds the same port with ``SO_REUSEPORT`` (Linux spreads
incoming *connections* across the processes; macOS does not balance). No gRPC object exists in
the supervisor, so nothing gRPC-related crosses a fork.

* A child that exits is restarted (after ``restart_delay_s``); a child that dies within
  ``fast_failure_s`` of its start ``max_fast_failures`` times in a row (a bind error, a broken
  app) stops everything with exit code 1 instead of looping.
* SIGINT/SIGTERM: every child gets SIGTERM (the server's graceful stop), then SIGKILL after
  ``stop_timeout_s``; the supervisor returns 0.
* ``--metrics-port``: the supervisor sets ``PROMETHEUS_MULTIPROC_DIR`` (a fresh directory) for
  the children and serves their aggregate on one endpoint; a dead child's live gauges are
  dropped with ``mark_process_dead``.

Each child sees ``WEBEX_BYOVA_WORKER=<slot>`` (1-based) in its environment.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

__all__ = ["WORKER_ENV", "WorkerSupervisor", "free_port", "run_workers"]

WORKER_ENV = "WEBEX_BYOVA_WORKER"
#: Variables a child must not inherit: it would start its own exporter or supervisor.
_CHILD_DROPS = ("WEBEX_MEDIA_METRICS_PORT", "WEBEX_MEDIA_WORKERS")


@dataclass
class _Slot:
    index: int
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    fast_failures: int = 0
    restart_at: float | None = None
    pids: list[int] = field(default_factory=list)


class WorkerSupervisor:
    """Keep ``workers`` copies of ``command`` running until told to stop.

    Args:
        command: argv of one worker.
        workers: How many to keep running.
        env: Environment of the workers (default: this process's).
        metrics_port: Serve the workers' aggregated metrics here (multiprocess mode).
        metrics_host: Interface of the metrics endpoint.
        out: Where the supervisor's own lines go (stderr).
    """

    def __init__(
        self,
        command: Sequence[str],
        workers: int,
        *,
        env: Mapping[str, str] | None = None,
        metrics_port: int | None = None,
        metrics_host: str = "0.0.0.0",
        out: TextIO | None = None,
        restart_delay_s: float = 0.5,
        fast_failure_s: float = 3.0,
        max_fast_failures: int = 5,
        stop_timeout_s: float = 30.0,
        poll_s: float = 0.1,
    ) -> None:
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.command = list(command)
        self.workers = workers
        base = dict(os.environ if env is None else env)
        for name in _CHILD_DROPS:
            base.pop(name, None)
        self.env = base
        self.metrics_port = metrics_port
        self.metrics_host = metrics_host
        self.metrics_url = ""
        self._out = out
        self.restart_delay_s = restart_delay_s
        self.fast_failure_s = fast_failure_s
        self.max_fast_failures = max_fast_failures
        self.stop_timeout_s = stop_timeout_s
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._slots = [_Slot(i + 1) for i in range(workers)]
        self._metrics_dir: Path | None = None
        self._own_metrics_dir = False

    # -- public ----------------------------------------------------------------------------

    @property
    def pids(self) -> list[int]:
        """PIDs of the workers running now."""
        return [s.proc.pid for s in self._slots if s.proc is not None and s.proc.poll() is None]

    def stop(self) -> None:
        """Ask :meth:`run` to stop every worker and return (safe from any thread)."""
        self._stop.set()

    def run(self, *, install_signals: bool = True) -> int:
        """Start the workers and supervise them; 0 after a stop, 1 after a crash loop."""
        previous: dict[signal.Signals, Any] = {}
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        exporter = None
        try:
            exporter = self._start_metrics()
            for slot in self._slots:
                self._spawn(slot)
            code = self._supervise()
        finally:
            self._stop_all()
            if exporter is not None:
                exporter.stop()
            self._cleanup_metrics_dir()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return code

    # -- internals -------------------------------------------------------------------------

    def _say(self, text: str) -> None:
        import sys

        stream = self._out if self._out is not None else sys.stderr
        stream.write(f"workers: {text}\n")
        stream.flush()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self._stop.set()

    def _start_metrics(self) -> Any:
        if self.metrics_port is None:
            return None
        from ..media._metrics import MULTIPROC_DIR_ENV, clear_multiprocess_dir, start_metrics_server

        given = self.env.get(MULTIPROC_DIR_ENV, "")
        if given:
            directory = Path(given)
            directory.mkdir(parents=True, exist_ok=True)
            clear_multiprocess_dir(directory)
        else:
            directory = Path(tempfile.mkdtemp(prefix="byova-metrics-"))
            self._own_metrics_dir = True
        self._metrics_dir = directory
        self.env[MULTIPROC_DIR_ENV] = str(directory)
        exporter = start_metrics_server(self.metrics_port, self.metrics_host, directory=directory)
        self.metrics_url = exporter.url
        self._say(f"metrics of all workers on {exporter.url}")
        return exporter

    def _cleanup_metrics_dir(self) -> None:
        if self._metrics_dir is not None and self._own_metrics_dir:
            shutil.rmtree(self._metrics_dir, ignore_errors=True)

    def _spawn(self, slot: _Slot) -> None:
        env = {**self.env, WORKER_ENV: str(slot.index)}
        slot.proc = subprocess.Popen(self.command, env=env)
        slot.started_at = time.monotonic()
        slot.restart_at = None
        slot.pids.append(slot.proc.pid)
        self._say(f"worker {slot.index} started (pid {slot.proc.pid})")

    def _reaped(self, slot: _Slot, code: int) -> None:
        assert slot.proc is not None
        pid = slot.proc.pid
        slot.proc = None
        if self._metrics_dir is not None:
            from ..media._metrics import mark_process_dead

            mark_process_dead(pid, self._metrics_dir)
        now = time.monotonic()
        if now - slot.started_at < self.fast_failure_s:
            slot.fast_failures += 1
        else:
            slot.fast_failures = 0
        delay = self.restart_delay_s * max(1, slot.fast_failures)
        slot.restart_at = now + delay
        self._say(f"worker {slot.index} (pid {pid}) exited with code {code}; restarting")

    def _supervise(self) -> int:
        while not self._stop.wait(self.poll_s):
            for slot in self._slots:
                if slot.proc is not None:
                    code = slot.proc.poll()
                    if code is None:
                        continue
                    self._reaped(slot, code)
                    if slot.fast_failures >= self.max_fast_failures:
                        self._say(
                            f"worker {slot.index} failed {slot.fast_failures} times within "
                            f"{self.fast_failure_s:g} s of starting; stopping"
                        )
                        return 1
                if slot.restart_at is not None and time.monotonic() >= slot.restart_at:
                    self._spawn(slot)
        return 0

    def _stop_all(self) -> None:
        live = [s.proc for s in self._slots if s.proc is not None and s.proc.poll() is None]
        if live:
            self._say(f"stopping {len(live)} worker(s)")
        for proc in live:
            _signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout_s
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                _signal(proc, signal.SIGKILL)
                proc.wait()
        for slot in self._slots:
            slot.proc = None


def _signal(proc: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # already gone
        proc.send_signal(sig)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago on ``host``."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def run_workers(
    target: str,
    workers: int,
    port: int | None,
    metrics_port: int | None,
    host: str | None,
    options: Mapping[str, object | None],
) -> int:
    """``byova serve --workers``: run ``workers`` children of ``serve target``.

    ``port`` 0 is replaced by one free port shared by every child; ``None`` keeps the app's
    configured port (it must be a fixed one).
    """
    from ._reload import child_command

    if port == 0:
        port = free_port(host or "0.0.0.0")
    argv = [*child_command(target, {**options, "--port": port}), "--reuse-port"]
    supervisor = WorkerSupervisor(
        argv,
        workers,
        metrics_port=metrics_port,
        metrics_host=host or "0.0.0.0",
        stop_timeout_s=_drain_bound(),
    )
    return supervisor.run()


def _drain_bound(environ: Mapping[str, str] | None = None) -> float:
    """How long a worker may take to stop: its graceful drain (``WEBEX_MEDIA_DRAIN_TIMEOUT_S``,
    default 30 s) plus the drain action's wait for a turn and the final grace."""
    env = os.environ if environ is None else environ
    try:
        drain = float(env.get("WEBEX_MEDIA_DRAIN_TIMEOUT_S", "") or 30.0)
    except ValueError:
        drain = 30.0  # the worker itself refuses the value and exits
    return max(0.0, drain) + 15.0
