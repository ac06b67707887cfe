"""Prometheus metrics of the media server: :class:`MediaMetrics` and the ``/metrics`` exporter.

Naming follows Prometheus conventions: every family starts with ``webex_byova_``, durations are
in seconds, counters end in ``_total``. Labels are bounded (``transport``, ``outcome``,
``reason``); no conversation id, tracking id, org id or caller value is ever a label, and
label values outside the documented sets are counted as ``other``.

The call core owns one :class:`MediaMetrics` and calls its small typed methods at the points
documented on each method. The exporter (:func:`start_metrics_server`) is off by default in
the library; ``byova serve --metrics-port`` (or ``WEBEX_MEDIA_METRICS_PORT``) starts it.

Several processes (``byova serve --workers N``): prometheus-client's multiprocess mode. The
launcher sets ``PROMETHEUS_MULTIPROC_DIR`` to an empty directory *before* the workers start
(prometheus-client reads it at import); each worker's values go to files there, and the one
endpoint (in the supervisor) aggregates them with :func:`exposition_registry`. Gauges of live
things use ``livesum`` so a dead worker's share disappears once
:func:`mark_process_dead` is called for it.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client import multiprocess as _mp

__all__ = [
    "AUTH_REASONS",
    "DROP_REASONS",
    "EVICTION_REASONS",
    "MULTIPROC_DIR_ENV",
    "OUTCOMES",
    "TRANSPORTS",
    "MediaMetrics",
    "MetricsServer",
    "conversation_outcome",
    "exposition_registry",
    "mark_process_dead",
    "start_metrics_server",
]

PREFIX: Final = "webex_byova_"
MULTIPROC_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"

TRANSPORTS: Final = frozenset({"grpc", "websocket"})
#: How a turn or a conversation ended.
OUTCOMES: Final = frozenset(
    {"completed", "transfer", "ended", "caller_hangup", "barge_in", "error", "timeout", "cancelled"}
)
#: ``JWSVerificationError.reason`` up to its first ``:``, plus the interceptor's own causes.
AUTH_REASONS: Final = frozenset(
    {
        "missing_token",
        "malformed",
        "alg_not_allowed",
        "missing_kid",
        "issuer_not_allowed",
        "unknown_kid",
        "bad_signature",
        "expired",
        "not_yet_valid",
        "missing_claim",
        "invalid_claim",
        "claim_mismatch",
        "jwks_unavailable",
        "verifier_error",
    }
)
#: Why a caller frame was not used: shorter than ``min_frame_bytes``, over 64 KiB, an
#: unsupported or changed sample rate, or arriving after the turn's input closed.
DROP_REASONS: Final = frozenset({"small", "large", "bad_rate", "after_close"})
#: Why a conversation was forgotten without a SESSION_END.
EVICTION_REASONS: Final = frozenset({"idle", "capacity", "server_stop"})

#: Seconds; spans a fast text bot (tens of ms) to a slow LLM + TTS chain (seconds).
LATENCY_BUCKETS: Final = (0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)
#: Seconds; the end-pointer's silence window is typically 0.3-1.5 s.
END_OF_INPUT_BUCKETS: Final = (0.1, 0.2, 0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 3.0, 5.0)


#: ``Session.end_reason`` -> conversation outcome label.
_END_REASONS: Final = {
    "caller_ended": "caller_hangup",
    "transfer_to_agent": "transfer",
    "session_end": "ended",
    "idle_timeout": "timeout",
    "server_stop": "cancelled",
    "connection_lost": "cancelled",
}


def conversation_outcome(end_reason: str) -> str:
    """The ``outcome`` label for a session's ``end_reason`` (``other`` if unknown)."""
    return _END_REASONS.get(end_reason, "other")


def _bounded(value: str, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


class MediaMetrics:
    """The media server's metric families, registered in their own registry.

    Every method is cheap (a dict look-up and an increment) and safe from any thread.

    Args:
        registry: Where the families are registered (default: a new private registry, so
            several servers or tests in one process do not collide).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        reg = self.registry
        self.conversations_active = Gauge(
            PREFIX + "conversations_active",
            "Conversations (calls) currently live in this server.",
            ["transport"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.conversations_started = Counter(
            PREFIX + "conversations_started_total",
            "Conversations started (SESSION_START accepted).",
            ["transport"],
            registry=reg,
        )
        self.conversations_ended = Counter(
            PREFIX + "conversations_ended_total",
            "Conversations ended, by outcome.",
            ["transport", "outcome"],
            registry=reg,
        )
        self.streams_active = Gauge(
            PREFIX + "streams_active",
            "Open ProcessCallerInput RPCs (grpc) or WebSocket connections (websocket).",
            ["transport"],
            registry=reg,
            multiprocess_mode="livesum",
        )
        self.streams_opened = Counter(
            PREFIX + "streams_opened_total",
            "ProcessCallerInput RPCs (grpc) or WebSocket connections (websocket) accepted.",
            ["transport"],
            registry=reg,
        )
        self.turns = Counter(
            PREFIX + "turns_total",
            "Caller turns answered, by outcome.",
            ["transport", "outcome"],
            registry=reg,
        )
        self.turn_latency = Histogram(
            PREFIX + "turn_latency_seconds",
            "End of caller input to the first byte of the reply sent.",
            ["transport"],
            registry=reg,
            buckets=LATENCY_BUCKETS,
        )
        self.end_of_input_delay = Histogram(
            PREFIX + "end_of_input_delay_seconds",
            "Last caller speech frame to END_OF_INPUT sent (the end-pointer's delay).",
            ["transport"],
            registry=reg,
            buckets=END_OF_INPUT_BUCKETS,
        )
        self.handler_errors = Counter(
            PREFIX + "handler_errors_total",
            "Handler exceptions answered with the error reply.",
            ["transport"],
            registry=reg,
        )
        self.handler_timeouts = Counter(
            PREFIX + "handler_timeouts_total",
            "Turns answered as a handler error because no reply came within handler_timeout_s.",
            ["transport"],
            registry=reg,
        )
        self.auth_refusals = Counter(
            PREFIX + "auth_refusals_total",
            "RPCs or WebSocket upgrades refused for their token, by reason.",
            ["transport", "reason"],
            registry=reg,
        )
        self.frames_received = Counter(
            PREFIX + "frames_received_total",
            "Caller audio frames received.",
            ["transport"],
            registry=reg,
        )
        self.frames_sent = Counter(
            PREFIX + "frames_sent_total",
            "Audio frames (CHUNKs, WAV prompts, binary messages) sent to Webex.",
            ["transport"],
            registry=reg,
        )
        self.frames_dropped = Counter(
            PREFIX + "frames_dropped_total",
            "Caller frames not used, by reason.",
            ["transport", "reason"],
            registry=reg,
        )
        self.frames_late = Counter(
            PREFIX + "frames_late_total",
            "Outbound frames sent after their real-time pacing slot.",
            ["transport"],
            registry=reg,
        )
        self._children: dict[tuple[Any, ...], Any] = {}
        self.evictions = Counter(
            PREFIX + "conversations_evicted_total",
            "Conversations forgotten without SESSION_END, by reason.",
            ["reason"],
            registry=reg,
        )

    def _child(self, family: Any, *labels: str) -> Any:
        """``family.labels(*labels)``, kept: label values are bounded, and the look-up in
        prometheus-client (validation, a lock) cost more than the increment itself."""
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    # -- conversations ---------------------------------------------------------------------

    def conversation_started(self, transport: str) -> None:
        """A conversation became live (core: when its SESSION_START is accepted)."""
        transport = _bounded(transport, TRANSPORTS)
        self._child(self.conversations_started, transport).inc()
        self._child(self.conversations_active, transport).inc()

    def conversation_ended(self, transport: str, outcome: str) -> None:
        """A live conversation ended (core: once, where the session is dropped)."""
        transport = _bounded(transport, TRANSPORTS)
        self._child(self.conversations_active, transport).dec()
        self._child(self.conversations_ended, transport, _bounded(outcome, OUTCOMES)).inc()

    def conversation_resumed(self, transport: str) -> None:
        """A conversation started elsewhere became live here (loaded from a shared store):
        counted as active, not as started (the process that took its SESSION_START did)."""
        self._child(self.conversations_active, _bounded(transport, TRANSPORTS)).inc()

    def conversation_released(self, transport: str) -> None:
        """This process forgot its copy of a conversation another process continued (the
        counterpart of :meth:`conversation_resumed`; not an end)."""
        self._child(self.conversations_active, _bounded(transport, TRANSPORTS)).dec()

    def conversation_evicted(self, reason: str) -> None:
        """A conversation was forgotten without SESSION_END (idle sweep, capacity, stop).

        Call this in addition to :meth:`conversation_ended` (outcome ``timeout`` or ``ended``).
        """
        self._child(self.evictions, _bounded(reason, EVICTION_REASONS)).inc()

    # -- transport streams -----------------------------------------------------------------

    def stream_opened(self, transport: str) -> None:
        """An RPC (grpc) or socket (websocket) was accepted past authentication."""
        transport = _bounded(transport, TRANSPORTS)
        self._child(self.streams_opened, transport).inc()
        self._child(self.streams_active, transport).inc()

    def stream_closed(self, transport: str) -> None:
        """The RPC or socket of :meth:`stream_opened` ended (in a ``finally``)."""
        self._child(self.streams_active, _bounded(transport, TRANSPORTS)).dec()

    def auth_refused(self, transport: str, reason: str) -> None:
        """A token was refused; ``reason`` is ``JWSVerificationError.reason`` or ours."""
        label = _bounded(reason.partition(":")[0], AUTH_REASONS)
        self._child(self.auth_refusals, _bounded(transport, TRANSPORTS), label).inc()

    # -- turns -----------------------------------------------------------------------------

    def turn_finished(self, transport: str, outcome: str, latency_s: float | None = None) -> None:
        """A turn got its final reply; ``latency_s`` = end of caller input → first reply byte.

        Pass ``latency_s=None`` for turns without caller input (SESSION_START greeting).
        """
        transport = _bounded(transport, TRANSPORTS)
        self._child(self.turns, transport, _bounded(outcome, OUTCOMES)).inc()
        if latency_s is not None and latency_s >= 0:
            self._child(self.turn_latency, transport).observe(latency_s)

    def end_of_input(self, transport: str, delay_s: float) -> None:
        """END_OF_INPUT was sent ``delay_s`` after the last frame that held speech."""
        if delay_s >= 0:
            self._child(self.end_of_input_delay, _bounded(transport, TRANSPORTS)).observe(delay_s)

    def handler_error(self, transport: str) -> None:
        """A handler raised (core: in the error path that logs the traceback)."""
        self._child(self.handler_errors, _bounded(transport, TRANSPORTS)).inc()

    def handler_timeout(self, transport: str) -> None:
        """A turn hit ``handler_timeout_s`` (core: where HandlerTimeoutError is raised)."""
        self._child(self.handler_timeouts, _bounded(transport, TRANSPORTS)).inc()

    # -- frames ----------------------------------------------------------------------------

    def frames_in(self, transport: str, count: int = 1) -> None:
        """``count`` caller audio frames arrived."""
        self._child(self.frames_received, _bounded(transport, TRANSPORTS)).inc(count)

    def frames_out(self, transport: str, count: int = 1) -> None:
        """``count`` audio frames were sent."""
        self._child(self.frames_sent, _bounded(transport, TRANSPORTS)).inc(count)

    def frame_dropped(self, transport: str, reason: str, count: int = 1) -> None:
        """``count`` caller frames were not used (``small``, ``large``, ``bad_rate``,
        ``after_close``)."""
        self._child(
            self.frames_dropped, _bounded(transport, TRANSPORTS), _bounded(reason, DROP_REASONS)
        ).inc(count)

    def frame_late(self, transport: str, count: int = 1) -> None:
        """``count`` outbound frames left after their pacing slot."""
        self._child(self.frames_late, _bounded(transport, TRANSPORTS)).inc(count)


# --------------------------------------------------------------------------- exposition


def multiprocess_dir(environ: dict[str, str] | None = None) -> Path | None:
    """The multiprocess directory, if this process runs in multiprocess mode."""
    raw = (os.environ if environ is None else environ).get(MULTIPROC_DIR_ENV, "")
    return Path(raw) if raw else None


def exposition_registry(
    metrics: MediaMetrics | None = None, *, directory: Path | None = None
) -> CollectorRegistry:
    """What ``/metrics`` serves: every worker's files in multiprocess mode, else ``metrics``.

    ``directory`` (default ``PROMETHEUS_MULTIPROC_DIR``) selects multiprocess mode.

    Raises:
        ValueError: Neither multiprocess mode nor ``metrics`` was given.
    """
    directory = directory if directory is not None else multiprocess_dir()
    if directory is not None:
        registry = CollectorRegistry()
        _mp.MultiProcessCollector(registry, path=str(directory))  # type: ignore[no-untyped-call]
        return registry
    if metrics is None:
        raise ValueError(f"no metrics to export: pass MediaMetrics or set {MULTIPROC_DIR_ENV}")
    return metrics.registry


def mark_process_dead(pid: int, directory: Path | None = None) -> None:
    """Forget a dead worker's live gauges (multiprocess mode; no-op otherwise)."""
    directory = directory if directory is not None else multiprocess_dir()
    if directory is not None:
        _mp.mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


@dataclass
class MetricsServer:
    """A running ``/metrics`` HTTP endpoint (a daemon thread); :meth:`stop` ends it."""

    host: str
    port: int
    _server: object
    _thread: threading.Thread

    @property
    def url(self) -> str:
        """``http://host:port/metrics``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def stop(self) -> None:
        """Stop serving and join the thread."""
        server = self._server
        server.shutdown()  # type: ignore[attr-defined]
        server.server_close()  # type: ignore[attr-defined]
        self._thread.join(timeout=5)


def start_metrics_server(
    port: int,
    host: str = "0.0.0.0",
    *,
    metrics: MediaMetrics | None = None,
    directory: Path | None = None,
) -> MetricsServer:
    """Serve :func:`exposition_registry` over HTTP on ``host:port`` (0 picks a free port)."""
    registry = exposition_registry(metrics, directory=directory)
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(host, int(server.server_port), server, thread)


def clear_multiprocess_dir(directory: Path, keep: Iterable[Path] = ()) -> None:
    """Remove the ``*.db`` files of a previous run (prometheus-client requires a clean dir)."""
    kept = {p.resolve() for p in keep}
    for path in directory.glob("*.db"):
        if path.resolve() not in kept:
            path.unlink(missing_ok=True)
