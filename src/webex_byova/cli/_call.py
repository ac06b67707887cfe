"""Placing scripted calls with :class:`~webex_byova.testing.WebexCaller` (gRPC) or
:class:`~webex_byova.testing.WebexWsCaller` (WebSocket) and measuring them.

Shared by ``byova demo`` (one call, checked against expectations) and ``byova simulate``
(one call or a load test). The pieces that compute (latency, percentiles, lateness, the
summary) are pure functions over :class:`~webex_byova.testing._caller.TurnResult` data.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import grpc

from ..media import audio as _audio
from ..media._grpc_codec import enums_from_digits
from ..testing._caller import TurnResult, WebexCaller

if TYPE_CHECKING:
    from ..testing._ws_caller import WebexWsCaller

#: Either Webex-side caller: both have the same script API and produce ``TurnResult``s.
Caller: TypeAlias = "WebexCaller | WebexWsCaller"

__all__ = [
    "CallReport",
    "CallScript",
    "Caller",
    "LoadStats",
    "TurnReport",
    "connection_hint",
    "late_frames",
    "parse_target",
    "parse_ws_target",
    "percentile",
    "run_call",
    "run_load",
    "summarize_turn",
    "tls_credentials",
    "turn_latency",
]

Observer = Callable[["TurnReport"], None]


@dataclass(frozen=True)
class CallScript:
    """What the simulated caller does.

    ``utterances`` audio turns (each the same WAV), then one ``press`` per entry of
    ``dtmf`` (``["0", "5"]`` presses 0 then 5), then a caller hang-up unless the server
    ended or transferred the call first.
    """

    wav: bytes
    utterances: int = 1
    dtmf: tuple[str, ...] = ()
    hang_up: bool = True
    trailing_silence_ms: int = 2500

    def __post_init__(self) -> None:
        # Bad input must fail here, before a call is placed, not half-way through it.
        if self.utterances < 0:
            raise ValueError(f"utterances (--turns) must be >= 0, got {self.utterances}")
        for keys in self.dtmf:
            if not keys:
                raise ValueError("empty DTMF entry (expected keys from 0-9 * # A-D)")
            enums_from_digits(keys)
        _audio.read_wav(self.wav)


_GRPC_SCHEMES = ("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")


def tls_credentials(
    *,
    tls: bool = False,
    ca_cert: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> grpc.ChannelCredentials | None:
    """Channel credentials for ``simulate``'s TLS options (``None``: plaintext).

    Any of the files implies TLS; ``ca_cert`` replaces the system's root CAs; a client
    certificate and its key (mutual TLS) come together. Unreadable files raise ``OSError``.
    """
    if (client_cert is None) != (client_key is None):
        raise ValueError("--client-cert and --client-key go together (mutual TLS)")
    if not (tls or ca_cert or client_cert):
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=ca_cert.read_bytes() if ca_cert else None,
        private_key=client_key.read_bytes() if client_key else None,
        certificate_chain=client_cert.read_bytes() if client_cert else None,
    )


def ws_ssl_context(
    *,
    ca_cert: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
) -> ssl.SSLContext:
    """The TLS context of a ``wss://`` call: the system's roots or ``ca_cert``, and an optional
    client certificate (BYOVA over WebSocket has no mutual TLS, but a proxy in front may)."""
    if (client_cert is None) != (client_key is None):
        raise ValueError("--client-cert and --client-key go together (mutual TLS)")
    context = ssl.create_default_context(cafile=str(ca_cert) if ca_cert else None)
    if client_cert is not None and client_key is not None:
        context.load_cert_chain(str(client_cert), str(client_key))
    return context


def connection_hint(statuses: Sequence[str], *, tls: bool) -> str | None:
    """What to try when calls failed with ``UNAVAILABLE`` (``statuses``: codes or errors)."""
    if not any(s.startswith("UNAVAILABLE") for s in statuses):
        return None
    if tls:
        return (
            "the server is unreachable or the TLS handshake failed: check --target, --ca-cert "
            "(the CA that signed the server's certificate), --tls-server-name, or drop --tls "
            "for a plaintext server"
        )
    return (
        "the server is unreachable, or it expects TLS (a plaintext call to a TLS server "
        "fails with 'Socket closed'): check --target, or add --tls (and --ca-cert for a "
        "private CA)"
    )


def parse_target(target: str) -> str:
    """Check a gRPC ``host:port`` target (``[v6addr]:port`` too) and return it stripped.

    gRPC itself would resolve ``host`` without a port on 443 and silently wrap a port above
    65535, so a typo would call some other server; raise :class:`ValueError` instead.
    Targets with an explicit gRPC scheme (``unix:``, ``dns:``...) pass unchanged.
    """
    text = target.strip()
    if text.startswith(_GRPC_SCHEMES):
        return text
    usage = f"--target must be host:port (e.g. 127.0.0.1:50051), got {target!r}"
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise ValueError(usage)
    if host.startswith("["):
        if not host.endswith("]") or len(host) < 3:
            raise ValueError(usage)
    elif any(c in host for c in ":[]/ "):
        raise ValueError(usage + " (write IPv6 addresses as [addr]:port)")
    if not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"--target port must be a number from 1 to 65535, got {port!r}")
    return text


def parse_ws_target(target: str) -> str:
    """Check a WebSocket target: ``ws://`` / ``wss://`` origin or URL, or ``host:port``
    (plain ``ws://``); return it as a URL."""
    text = target.strip()
    if "://" not in text:
        return "ws://" + parse_target(text)
    scheme, _, rest = text.partition("://")
    if scheme not in ("ws", "wss") or not rest or rest.startswith(("/", ":")):
        raise ValueError(f"--target must be ws://host:port or wss://host, got {target!r}")
    return text


@dataclass
class TurnReport:
    """One RPC of a call, summarised for display and JSON."""

    index: int
    kind: str
    sent: str
    started_at: float  # seconds since the call started
    ok: bool
    code: str
    details: str
    latency_ms: float | None
    duration_ms: float
    events: list[str]
    texts: list[str]
    audio_ms: float
    frames_sent: int
    late_frames: int
    terminal: bool
    result: TurnResult = field(repr=False)
    finished_at: float = 0.0  # seconds since the call started, when the caller saw the end

    def to_json(self) -> dict[str, Any]:
        """JSON form (no protobufs)."""
        return {
            "index": self.index,
            "kind": self.kind,
            "sent": self.sent,
            "started_at_ms": round(self.started_at * 1000, 1),
            "finished_at_ms": round(self.finished_at * 1000, 1),
            "ok": self.ok,
            "status": self.code,
            "details": self.details,
            "latency_ms": None if self.latency_ms is None else round(self.latency_ms, 1),
            "duration_ms": round(self.duration_ms, 1),
            "events": self.events,
            "texts": self.texts,
            "audio_ms": round(self.audio_ms, 1),
            "frames_sent": self.frames_sent,
            "late_frames": self.late_frames,
            "terminal": self.terminal,
        }


@dataclass
class CallReport:
    """A whole call."""

    conversation_id: str
    turns: list[TurnReport] = field(default_factory=list)
    error: str | None = None
    duration_s: float = 0.0
    interrupted: bool = False  # Ctrl-C: hung up before the script ended

    @property
    def ok(self) -> bool:
        """Every RPC completed with OK and nothing raised."""
        return self.error is None and all(t.ok for t in self.turns)

    @property
    def outcome(self) -> str:
        """``transferred``, ``ended_by_agent``, ``caller_hung_up``, ``error`` or ``open``."""
        if not self.ok:
            return "error"
        for turn in self.turns:
            if "TRANSFER_TO_AGENT" in turn.events:
                return "transferred"
            if "SESSION_END" in turn.events and turn.kind != "session_end":
                return "ended_by_agent"
        if self.interrupted:
            return "interrupted"
        if self.turns and self.turns[-1].kind == "session_end":
            return "caller_hung_up"
        return "open"

    @property
    def bot_audio(self) -> bytes:
        """Every prompt's audio of the call as raw 8 kHz µ-law, in order."""
        return b"".join(t.result.audio for t in self.turns)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        latencies = [t.latency_ms for t in self.turns if t.latency_ms is not None]
        return {
            "conversation_id": self.conversation_id,
            "ok": self.ok,
            "outcome": self.outcome,
            "interrupted": self.interrupted,
            "error": self.error,
            "duration_s": round(self.duration_s, 3),
            "turns": [t.to_json() for t in self.turns],
            "bot_audio_ms": round(len(self.bot_audio) / 8, 1),
            "max_latency_ms": round(max(latencies), 1) if latencies else None,
            "late_frames": sum(t.late_frames for t in self.turns),
        }


# --------------------------------------------------------------------------- pure measurements


def turn_latency(result: TurnResult) -> float | None:
    """Seconds from the caller's end of input to the server's first reply.

    The end of input is ``END_OF_INPUT`` for audio turns (the server decided the caller
    finished) and the half-close for event/DTMF turns. The reply is the first response with a
    prompt or a non-boundary event (time to first audio in CHUNK mode), else the FINAL.
    ``None`` when the server sent no reply at all.
    """
    start = result.event_time("END_OF_INPUT") if result.kind == "audio" else None
    if start is None:
        start = result.half_closed_at or 0.0
    reply_at = None
    for rec in result.responses:
        boundary = all(e in _BOUNDARY for e in rec.event_types)
        if rec.at >= start and (rec.response.prompts or not boundary):
            reply_at = rec.at
            break
        if rec.response_type == "FINAL" and not boundary:
            reply_at = rec.at
    if reply_at is None:
        finals = [r.at for r in result.responses if r.response_type == "FINAL"]
        if not finals or result.kind == "audio":
            return None
        reply_at = finals[-1]
    return max(0.0, reply_at - start)


_BOUNDARY = ("START_OF_INPUT", "END_OF_INPUT")


def late_frames(frame_times: Sequence[float], frame_s: float, *, tolerance_s: float = 0.02) -> int:
    """Caller frames sent more than ``tolerance_s`` behind their real-time schedule.

    Frame ``i`` is due at ``first + i * frame_s``; lateness means the event loop (caller or
    server side, both share the machine) could not keep up with real time.
    """
    if not frame_times:
        return 0
    first = frame_times[0]
    return sum(1 for i, t in enumerate(frame_times) if t - (first + i * frame_s) > tolerance_s)


def percentile(values: Sequence[float], pct: float) -> float | None:
    """Nearest-rank percentile (``pct`` in 0..100); ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summarize_turn(
    index: int,
    sent: str,
    started_at: float,
    result: TurnResult,
    *,
    frame_s: float,
    realtime: bool,
    finished_at: float | None = None,
) -> TurnReport:
    """Build a :class:`TurnReport` from a caller's :class:`TurnResult`.

    ``finished_at`` defaults to ``started_at`` plus the RPC's duration.
    """
    latency = turn_latency(result)
    audio = result.audio
    return TurnReport(
        index=index,
        kind=result.kind,
        sent=sent,
        started_at=started_at,
        ok=result.ok,
        code=result.code.name,
        details=result.details,
        latency_ms=None if latency is None else latency * 1000,
        duration_ms=result.duration * 1000,
        events=result.event_types,
        texts=result.texts,
        audio_ms=len(audio) / 8,
        frames_sent=result.frames_sent,
        late_frames=late_frames(result.frame_times, frame_s) if realtime else 0,
        terminal=result.terminal,
        result=result,
        finished_at=started_at + result.duration if finished_at is None else finished_at,
    )


# --------------------------------------------------------------------------- running a call


async def run_call(
    caller: Caller,
    script: CallScript,
    *,
    observe: Observer | None = None,
    on_send: Callable[[str, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    start_time: float | None = None,
    stop: asyncio.Event | None = None,
) -> CallReport:
    """Play ``script`` through ``caller``; never raises for server misbehaviour.

    When ``stop`` is set (Ctrl-C) the turn in progress is abandoned and the call hangs up
    (``SESSION_END``) at once; the report then has ``interrupted`` set.

    ``on_send(what, seconds_since_call_start)`` runs as each RPC starts, ``observe(turn)``
    when it completes. Times count from ``start_time`` (a ``clock()`` value; default: now),
    so that other observers of the call (the demo's server events) can share the timeline.
    """
    report = CallReport(conversation_id=caller.conversation_id)
    t0 = clock() if start_time is None else start_time
    frame_s = caller.frame_ms / 1000

    def begin(sent: str) -> float:
        now = clock()
        if on_send is not None:
            on_send(sent, now - t0)
        return now

    def add(sent: str, started: float, result: TurnResult) -> TurnReport:
        turn = summarize_turn(
            len(report.turns) + 1,
            sent,
            started - t0,
            result,
            frame_s=frame_s,
            realtime=caller.realtime,
            finished_at=clock() - t0,
        )
        report.turns.append(turn)
        if observe is not None:
            observe(turn)
        return turn

    async def step(coro: Awaitable[TurnResult]) -> TurnResult:
        if stop is None:
            return await coro
        work = asyncio.ensure_future(coro)
        halt = asyncio.ensure_future(stop.wait())
        try:
            await asyncio.wait({work, halt}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            raise _Interrupted
        return work.result()

    turn: TurnReport | None = None
    try:
        started = begin("SESSION_START")
        turn = add("SESSION_START", started, await step(caller.start_session()))
        steps: list[tuple[str, str]] = [("say", "") for _ in range(script.utterances)]
        steps += [("press", d) for d in script.dtmf]
        for what, digits in steps:
            if turn.terminal or not turn.ok:
                break
            if stop is not None and stop.is_set():
                raise _Interrupted
            started = begin("caller speech" if what == "say" else "START_OF_DTMF")
            if what == "say":
                result = await step(
                    caller.say(wav=script.wav, trailing_silence_ms=script.trailing_silence_ms)
                )
                turn = add("caller speech", started, result)
            else:
                start_result = await step(caller.start_dtmf())
                add("START_OF_DTMF", started, start_result)
                started = begin(f"DTMF {digits}")
                turn = add(f"DTMF {digits}", started, await step(caller.send_dtmf(digits)))
        if script.hang_up and turn.ok and not turn.terminal:
            started = begin("SESSION_END (hang up)")
            add("SESSION_END (hang up)", started, await caller.end_session())
    except _Interrupted:
        report.interrupted = True
        if turn is None or not turn.terminal:
            started = begin("SESSION_END (interrupted)")
            with contextlib.suppress(Exception):
                add("SESSION_END (interrupted)", started, await caller.end_session())
    except Exception as exc:
        report.error = f"{type(exc).__name__}: {exc}"
    report.duration_s = clock() - t0
    return report


def wav_duration_ms(wav: bytes) -> float:
    """Length of a WAV file in milliseconds."""
    return _audio.read_wav(wav).duration * 1000


# --------------------------------------------------------------------------- load test


@dataclass
class LoadStats:
    """Aggregate of a load test."""

    calls: int = 0
    completed: int = 0  # finished, with or without success
    failed: int = 0
    active: int = 0
    peak_concurrency: int = 0
    turns: int = 0
    turn_errors: int = 0
    late_frames: int = 0
    frames_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    duration_s: float = 0.0
    interrupted: bool = False  # Ctrl-C: no more calls placed, live ones hung up

    def add(self, report: CallReport) -> None:
        """Fold one finished call in."""
        self.completed += 1
        if not report.ok:
            self.failed += 1
            key = report.error or next(
                (f"{t.code}: {t.details}" for t in report.turns if not t.ok), "unknown"
            )
            self.errors[key[:200]] = self.errors.get(key[:200], 0) + 1
        self.outcomes[report.outcome] = self.outcomes.get(report.outcome, 0) + 1
        for turn in report.turns:
            self.turns += 1
            self.turn_errors += 0 if turn.ok else 1
            self.late_frames += turn.late_frames
            self.frames_sent += turn.frames_sent
            if turn.latency_ms is not None and turn.kind in ("audio", "dtmf", "session_start"):
                self.latencies_ms.append(turn.latency_ms)

    def to_json(self) -> dict[str, Any]:
        """JSON form with p50/p95/p99 of turn latency."""

        def pct(p: float) -> float | None:
            v = percentile(self.latencies_ms, p)
            return None if v is None else round(v, 1)

        return {
            "calls": self.calls,
            "completed": self.completed,
            "succeeded": self.completed - self.failed,
            "failed": self.failed,
            "peak_concurrency": self.peak_concurrency,
            "turns": self.turns,
            "turn_errors": self.turn_errors,
            "latency_ms": {
                "p50": pct(50),
                "p95": pct(95),
                "p99": pct(99),
                "max": round(max(self.latencies_ms), 1) if self.latencies_ms else None,
                "samples": len(self.latencies_ms),
            },
            "frames_sent": self.frames_sent,
            "late_frames": self.late_frames,
            "outcomes": self.outcomes,
            "errors": self.errors,
            "duration_s": round(self.duration_s, 3),
            "interrupted": self.interrupted,
        }


async def run_load(
    make_caller: Callable[[int], Caller],
    script: CallScript,
    *,
    calls: int,
    rate: float,
    on_update: Callable[[LoadStats], None] | None = None,
    sleep: Callable[[float], Any] = asyncio.sleep,
    clock: Callable[[], float] = time.monotonic,
    stop: asyncio.Event | None = None,
) -> LoadStats:
    """Start ``calls`` calls at ``rate`` calls per second (open loop) and aggregate them.

    When ``stop`` is set (Ctrl-C) no further call is placed and the live ones hang up; the
    stats are those of the calls placed so far, with ``interrupted`` set.
    """
    if calls < 1 or rate <= 0:
        raise ValueError("calls must be >= 1 and rate > 0")
    stats = LoadStats(calls=calls)
    t0 = clock()

    async def one(i: int) -> None:
        caller = make_caller(i)
        stats.active += 1
        stats.peak_concurrency = max(stats.peak_concurrency, stats.active)
        try:
            report = await run_call(caller, script, stop=stop)
        finally:
            stats.active -= 1
            await caller.aclose()
        stats.add(report)
        if on_update is not None:
            on_update(stats)

    tasks: list[asyncio.Task[None]] = []
    for i in range(calls):
        delay = t0 + i / rate - clock()
        if delay > 0 and stop is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), delay)
        elif delay > 0:
            await sleep(delay)
        if stop is not None and stop.is_set():
            stats.interrupted = True
            break
        tasks.append(asyncio.get_running_loop().create_task(one(i)))
        if on_update is not None:
            on_update(stats)
    await asyncio.gather(*tasks)
    if stop is not None and stop.is_set():
        stats.interrupted = True
        stats.calls = len(tasks)  # the calls actually placed
    stats.duration_s = clock() - t0
    return stats


class _Interrupted(Exception):
    """run_call: the stop event was set."""
