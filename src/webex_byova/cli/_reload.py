"""``byova serve APP --reload``: restart the served app when one of its ``.py`` files changes.

Stdlib only: a supervisor runs ``python -B -m webex_byova.cli serve APP ...`` (the same
options without ``--reload``) as a child process and polls the ``.py`` files under the app's
directory (a file ``APP``) or its top-level package's directory (a module ``APP``) every
``interval`` seconds. On a change it stops the child (SIGTERM, wait, kill) and starts a new
one; on SIGINT, SIGTERM or SIGHUP it stops the child and returns 0. ``-B`` keeps the child
from writing bytecode: a ``.pyc`` records its source's mtime in whole seconds, so an edit of
the same size within the same second would otherwise be served stale.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from ._serve import AppLoadError, is_file_target, split_spec

__all__ = ["child_command", "first_change", "run_with_reload", "snapshot", "watch_roots"]

Snapshot = dict[str, tuple[int, int]]
"""``.py`` path -> ``(mtime_ns, size)``."""

_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})
# The supervisor stops its child (SIGTERM, wait, kill) and exits on any of these: a closed
# terminal (SIGHUP) or a `kill` of the supervisor alone must not leave the app running.
_STOP_SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")


def child_command(target: str, options: Mapping[str, object | None]) -> list[str]:
    """The child's argv: ``serve target`` plus every ``--flag value`` whose value is set."""
    argv = [sys.executable, "-B", "-m", "webex_byova.cli", "serve", target]
    for flag, value in options.items():
        if value is not None:
            argv += [flag, str(value)]
    return argv


def watch_roots(spec: str) -> list[Path]:
    """Directories whose ``.py`` files belong to ``APP`` (raises :class:`AppLoadError`)."""
    target, _ = split_spec(spec)
    if is_file_target(target):
        path = Path(target)
        if not path.is_file():
            raise AppLoadError(f"no such file: {target}")
        return [path.resolve().parent]
    top = target.partition(".")[0]
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # as `serve` imports it: the current directory first
    try:
        found = importlib.util.find_spec(top)  # a top-level name: nothing is executed
    except (ImportError, ValueError) as exc:
        raise AppLoadError(f"cannot find module {top!r}: {exc}") from exc
    if found is None:
        raise AppLoadError(f"cannot find module {top!r}")
    if found.submodule_search_locations:
        return [Path(p).resolve() for p in found.submodule_search_locations]
    if found.origin and found.has_location:
        return [Path(found.origin).resolve().parent]
    raise AppLoadError(f"module {top!r} has no source directory to watch")


def snapshot(roots: Iterable[Path]) -> Snapshot:
    """``(mtime_ns, size)`` of every ``.py`` file under ``roots``.

    Hidden directories, ``__pycache__``, ``node_modules``, ``site-packages`` and virtualenvs
    (directories holding ``pyvenv.cfg``) are skipped.
    """
    result: Snapshot = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames[:] = [
                d
                for d in dirnames
                if not d.startswith(".")
                and d not in _SKIP_DIRS
                and not os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
            ]
            for name in filenames:
                if not name.endswith(".py"):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    st = os.stat(path)
                except OSError:  # removed between listing and stat
                    continue
                result[path] = (st.st_mtime_ns, st.st_size)
    return result


def first_change(
    old: Mapping[str, tuple[int, int]], new: Mapping[str, tuple[int, int]]
) -> str | None:
    """The first (sorted) path added, removed or modified between two snapshots, if any."""
    changed = {p for p in old.keys() | new.keys() if old.get(p) != new.get(p)}
    return min(changed) if changed else None


def _stop_child(child: subprocess.Popen[bytes], timeout: float) -> None:
    if child.poll() is None:
        child.terminate()
        try:
            child.wait(timeout)
            return
        except subprocess.TimeoutExpired:
            child.kill()
    child.wait()


def run_with_reload(
    command: Sequence[str],
    roots: Sequence[Path],
    *,
    interval: float = 0.5,
    stop_timeout: float = 10.0,
    out: TextIO | None = None,
) -> int:
    """Run ``command`` and restart it whenever a ``.py`` file under ``roots`` changes.

    Prints ``reloading: <file> changed`` on ``out`` (stderr) for every restart. Returns 0 once
    SIGINT, SIGTERM or SIGHUP (the terminal closed) arrives: the child is stopped first. A
    child that exits by itself (e.g. a syntax error) is reported and started again on the
    next change.
    """
    stream = out if out is not None else sys.stderr
    stop = threading.Event()
    previous: dict[int, Any] = {}

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        for name in _STOP_SIGNALS:
            if hasattr(signal, name):  # no SIGHUP on Windows
                sig = getattr(signal, name)
                previous[sig] = signal.signal(sig, on_signal)

    def say(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    child: subprocess.Popen[bytes] | None = None
    try:
        state = snapshot(roots)
        child = subprocess.Popen(command)
        while not stop.wait(interval):
            if child is not None and child.poll() is not None:
                say(f"app exited with code {child.returncode}; waiting for a change to restart")
                child = None
            current = snapshot(roots)
            changed = first_change(state, current)
            if changed is None:
                continue
            state = current
            say(f"reloading: {changed} changed")
            if child is not None:
                _stop_child(child, stop_timeout)
                child = None
            if not stop.is_set():
                child = subprocess.Popen(command)
    finally:
        if child is not None:
            _stop_child(child, stop_timeout)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return 0
