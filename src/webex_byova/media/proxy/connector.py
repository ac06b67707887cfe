"""``WebSocketProxyConnector``: relay each BYOVA conversation to a backend over one WebSocket.

Attach it with ``server.use_proxy(connector)``. Per conversation it opens one WebSocket when
the session starts, keeps it across the conversation's RPCs and closes it when the session
ends (caller hang-up, transfer, end, idle expiry or server stop). Caller audio, DTMF and client
events go out through a bounded queue; backend prompts, streamed audio, input settings,
transfers and session ends are applied to the turn that is waiting for a reply.

A dropped connection is re-opened with backoff and the conversation resumed (``session.start``
with ``resumed: true``); when the backend cannot be reached the configured
:class:`ProxyFallback` answers instead, so proxy errors never end a call by surprise.
The I/O here is a thin shell over the sans-IO protocol, adapters and flow control.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI
from websockets.typing import Subprotocol

from ..._logging import get_logger, redact
from .. import audio as _audio
from .._bounds import printable
from ..audio import WavFormatError
from ..events import (
    AudioInput,
    BargeIn,
    CustomEvent,
    DtmfInput,
    MediaEvent,
    NoInput,
    SessionEnd,
    SessionStart,
    StartOfDtmf,
    StartOfInput,
    TurnEnded,
    TurnStarted,
    Utterance,
)
from ._flow import BackpressurePolicy, QueueStats, ReconnectPolicy, SendQueue
from ._protocol import (
    AudioChunk,
    AudioEnd,
    AudioFrame,
    BackendEvent,
    ClientEvent,
    Dtmf,
    EndSession,
    InboundMessage,
    InputConfig,
    InvalidMessage,
    OutboundMessage,
    Prompt,
    SessionEnded,
    SessionStarted,
    Transfer,
    UnknownMessage,
)
from .adapters import AdapterFactory, JsonAdapter, ProxyAdapter

if TYPE_CHECKING:
    from ..session import Session, Turn

__all__ = ["ProxyFallback", "ProxyStats", "WebSocketProxyConnector"]

_log = get_logger("webex_byova.media.proxy")

HeadersArg = Mapping[str, str] | Callable[["Session"], Mapping[str, str]] | None
MetadataArg = Callable[["Session"], Mapping[str, Any]] | None


@dataclass(frozen=True, slots=True)
class ProxyFallback:
    """What to do when the backend cannot be reached (or the send queue overflows).

    ``action``: ``transfer`` (to a human agent, default), ``end`` (end the session) or
    ``prompt`` (say ``text`` and keep the call; the connector keeps trying to reconnect).
    With the ``end_call`` backpressure policy an overflow uses ``end`` for ``prompt``.
    """

    action: Literal["transfer", "end", "prompt"] = "transfer"
    text: str = "Sorry, our virtual assistant is unavailable. Let me transfer you to an agent."

    def __post_init__(self) -> None:
        if self.action not in ("transfer", "end", "prompt"):
            raise ValueError(f"unknown fallback action {self.action!r}")


@dataclass(slots=True)
class ProxyStats:
    """Counters of one conversation's link (see :meth:`WebSocketProxyConnector.stats`)."""

    connects: int = 0
    reconnects: int = 0
    failed_connects: int = 0
    received: int = 0
    invalid: int = 0
    unknown: int = 0
    fallbacks: int = 0
    replies_timed_out: int = 0
    reply_audio_dropped: int = 0


_State = Literal["connecting", "open", "reconnecting", "down", "closed"]
_REPLY_KINDS = (SessionStart, Utterance, DtmfInput, NoInput, CustomEvent)
_ANSWERABLE = ("session_start", "audio", "dtmf", "no_input", "custom_event")
_MAX_PENDING = 32
_MAX_REPLY_BYTES = 8 * 1024 * 1024  # µ-law bytes of one streamed reply (~17 minutes)


class _Stream:
    """One streamed backend reply feeding ``turn.stream`` (bounded in bytes)."""

    def __init__(self, turn: Turn, barge_in: bool) -> None:
        self.turn = turn
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.bytes = 0
        self.closed = False
        turn.stream(self._iter(), barge_in=barge_in)

    async def _iter(self) -> AsyncIterator[bytes]:
        while True:
            piece = await self.queue.get()
            if piece is None:
                return
            self.bytes -= len(piece)
            yield piece

    def feed(self, ulaw: bytes) -> bool:
        if self.closed or self.bytes + len(ulaw) > _MAX_REPLY_BYTES:
            return False
        self.bytes += len(ulaw)
        self.queue.put_nowait(ulaw)
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.queue.put_nowait(None)


class _Link:
    """One conversation's WebSocket, its send queue and reply routing."""

    def __init__(self, owner: WebSocketProxyConnector, session: Session) -> None:
        self.owner = owner
        self.session = session
        self.cid = session.conversation_id
        self.adapter: ProxyAdapter = owner._adapter_factory()
        self.queue = SendQueue(
            max_items=owner._queue_max, max_bytes=owner._queue_max_bytes, policy=owner._policy
        )
        self.stats = ProxyStats()
        self.state: _State = "connecting"
        self.ws: ClientConnection | None = None
        self.wake = asyncio.Event()
        self.changed = asyncio.Event()  # set on every state change
        self.seq = 0
        self.start: SessionStarted | None = None
        self.reply: tuple[Turn, asyncio.Future[None]] | None = None
        self.pending: deque[InboundMessage] = deque()
        self.stream: _Stream | None = None
        self.overflowed = False
        self.task: asyncio.Task[None] | None = None
        self.log_prefix = f"[{printable(self.cid)}]"  # a caller-supplied id: escaped

    # ------------------------------------------------------------------ state

    def set_state(self, state: _State) -> None:
        self.state = state
        self.changed.set()
        self.changed = asyncio.Event()

    def is_closed(self) -> bool:
        return self.state == "closed"

    def ensure_running(self) -> None:
        if self.task is None or self.task.done():
            if self.state == "down":
                self.set_state("reconnecting")
            self.task = asyncio.get_running_loop().create_task(self._run())

    # ------------------------------------------------------------------ outbound

    def send(self, message: OutboundMessage) -> None:
        """Encode and queue ``message``; apply the backpressure policy."""
        if self.state in ("closed",):
            return
        is_audio = isinstance(message, AudioFrame)
        if is_audio and self.state == "down":
            return  # nobody to deliver to; do not even queue
        try:
            frames = self.adapter.encode(message)
        except Exception:
            _log.exception("%s adapter failed to encode %s", self.log_prefix, message.type)
            return
        for frame in frames:
            result = self.queue.push(
                frame, audio=is_audio, tag=message.seq if isinstance(message, AudioFrame) else -1
            )
            if result == "overflow":
                self.on_overflow()
                return
            if result == "dropped" and self.queue.stats.dropped_frames in (1, 100, 1000, 10000):
                _log.warning(
                    "%s backend too slow: %d caller audio frames dropped so far",
                    self.log_prefix,
                    self.queue.stats.dropped_frames,
                )
        self.wake.set()

    def on_overflow(self) -> None:
        if self.overflowed:
            return
        self.overflowed = True
        _log.warning(
            "%s send queue full (%d frames, %d bytes; policy %s): ending the call via fallback",
            self.log_prefix,
            len(self.queue),
            self.queue.nbytes,
            self.queue.policy,
        )
        turn = self._target()
        if turn is not None:
            self.apply_fallback(turn, terminal=True)

    async def _pump(self, ws: ClientConnection) -> None:
        """Send queued frames in order; a frame leaves the queue only once written."""
        while True:
            frame = self.queue.peek()
            if frame is None:
                self.wake.clear()
                await self.wake.wait()
                continue
            await ws.send(frame)
            self.queue.pop()

    # ------------------------------------------------------------------ connection loop

    async def _connect(self) -> ClientConnection:
        owner = self.owner
        headers = owner._headers(self.session) if callable(owner._headers) else owner._headers
        return await connect(
            owner.url,
            additional_headers=dict(headers or {}),
            subprotocols=owner._subprotocols,
            open_timeout=owner._reconnect.connect_timeout,
            ping_interval=owner._ping_interval,
            ping_timeout=owner._ping_timeout,
            close_timeout=owner._close_timeout,
            max_size=owner._max_message_bytes,
            max_queue=owner._max_inbound_queue,
            write_limit=owner._write_limit,
            compression=None,  # base64 audio barely compresses; deflate would cost CPU per frame
        )

    async def _run(self) -> None:
        policy = self.owner._reconnect
        attempt = 0
        resumed = self.stats.connects > 0
        while not self.is_closed():
            if attempt:
                delay = policy.delay(attempt, self.owner._random())
                if delay is None:
                    self.went_down()
                    return
                await self.owner._sleep(delay)
                if self.is_closed():
                    return
            try:
                ws = await self._connect()
            except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
                self.stats.failed_connects += 1
                attempt += 1
                _log.warning(
                    "%s backend connect failed (attempt %d): %s",
                    self.log_prefix,
                    attempt,
                    redact(str(exc)),
                )
                if isinstance(exc, InvalidURI):
                    self.went_down()
                    return
                continue
            if self.is_closed():
                await ws.close()
                return
            received = self.stats.received
            await self._serve(ws, resumed)
            resumed = True
            if self.is_closed() or self.session.ended:
                return
            self.stats.reconnects += 1
            # Only a backend that spoke on the connection proves healthy and resets the
            # schedule; one that accepts and hangs up at once (e.g. refuses the call with a
            # close frame) uses up attempts, so the fallback answers instead of a reconnect loop.
            attempt = 1 if self.stats.received > received else attempt + 1
            self.set_state("reconnecting")
            _log.warning("%s backend connection lost; reconnecting", self.log_prefix)

    async def _serve(self, ws: ClientConnection, resumed: bool) -> None:
        self.ws = ws
        sndbuf = self.owner._socket_send_buffer
        sock = ws.transport.get_extra_info("socket")
        if sndbuf and sock is not None:
            # Bound what the kernel buffers too: audio queued there is stale and invisible to
            # the backpressure policy (Linux would otherwise grow it to megabytes).
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        self.stats.connects += 1
        try:
            start = self.start_message(resumed)
            for frame in self.adapter.encode(start):
                await ws.send(frame)
            self.set_state("open")
            pump = asyncio.get_running_loop().create_task(self._pump(ws))
            try:
                async for frame in ws:
                    self.on_frame(frame)
                    if pump.done():
                        break
            finally:
                pump.cancel()
                with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                    await pump
        except ConnectionClosed:
            pass
        finally:
            self.ws = None
            with contextlib.suppress(Exception):
                await ws.close()

    def start_message(self, resumed: bool) -> SessionStarted:
        assert self.start is not None
        # Audio before next_seq was written to an earlier connection (what the backend did not
        # receive was lost with it); frames from next_seq on follow (gaps = dropped frames).
        next_seq = self.queue.last_audio_tag + 1
        return self.start.model_copy(update={"resumed": resumed, "next_seq": next_seq})

    def went_down(self) -> None:
        _log.error("%s backend unreachable; using the fallback", self.log_prefix)
        self.queue.clear()
        self.set_state("down")
        if self.reply is not None:
            turn, fut = self.reply
            self.apply_fallback(turn)
            if not fut.done():
                fut.set_result(None)

    async def close(self, reason: str) -> None:
        """Say goodbye, flush briefly, close the socket and stop the loop. Never raises."""
        if self.state == "closed":
            return
        if self.stream is not None:
            self.stream.close()
        ws = self.ws
        if ws is not None and self.state == "open":
            with contextlib.suppress(Exception):
                self.send(SessionEnded(reason=reason))
                async with asyncio.timeout(self.owner._close_timeout):
                    while self.queue.peek() is not None and self.ws is ws:
                        self.wake.set()
                        await asyncio.sleep(0.005)
        self.set_state("closed")
        self.queue.clear()
        task = self.task
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        if self.reply is not None and not self.reply[1].done():
            self.reply[1].set_result(None)

    # ------------------------------------------------------------------ inbound

    def on_frame(self, frame: str | bytes) -> None:
        try:
            messages = self.adapter.decode(frame)
        except Exception:
            _log.exception("%s adapter failed to decode a frame; ignored", self.log_prefix)
            return
        for msg in messages:
            self.stats.received += 1
            if isinstance(msg, InvalidMessage):
                self.stats.invalid += 1
                _log.warning("%s invalid backend message ignored: %s", self.log_prefix, msg.error)
                continue
            if isinstance(msg, UnknownMessage):
                self.stats.unknown += 1
                _log.info("%s unknown backend message %r ignored", self.log_prefix, msg.type)
                continue
            try:
                self.apply(msg)
            except Exception:
                _log.exception("%s applying backend %s failed; ignored", self.log_prefix, msg.type)

    def _target(self) -> Turn | None:
        if self.reply is not None:
            turn = self.reply[0]
            if not turn.finished and not turn.closed:
                return turn
        if self.session.ended:
            return None
        return self.session.current_turn

    def apply(self, msg: InboundMessage) -> None:
        if isinstance(msg, InputConfig):
            self.session.set_input(**_input_kwargs(msg))
            return
        turn = self._target()
        if turn is None:
            if isinstance(msg, AudioChunk | AudioEnd) and self.stream is None:
                self.stats.reply_audio_dropped += 1 if isinstance(msg, AudioChunk) else 0
                if isinstance(msg, AudioChunk):
                    return
            if len(self.pending) >= _MAX_PENDING:
                dropped = self.pending.popleft()
                _log.warning("%s no turn to answer on; dropped %s", self.log_prefix, dropped.type)
            self.pending.append(msg)
            return
        self.apply_to(turn, msg)

    def apply_to(self, turn: Turn, msg: InboundMessage) -> None:
        if isinstance(msg, AudioChunk):
            if self.stream is None or self.stream.turn is not turn:
                if self.stream is not None:
                    self.stream.close()
                self.stream = _Stream(turn, msg.barge_in)
            ulaw = _audio.to_webex_ulaw(
                msg.audio, encoding=msg.encoding, sample_rate=msg.sample_rate
            )
            if not self.stream.feed(ulaw):
                self.stats.reply_audio_dropped += 1
            return
        if isinstance(msg, BackendEvent):
            turn.custom_event(msg.name, msg.metadata)
            if msg.text:
                turn.say(msg.text)
            return
        # The rest complete the reply.
        if self.stream is not None:
            self.stream.close()
            self.stream = None
        if isinstance(msg, Prompt):
            _say(turn, msg)
            if msg.input is not None:
                self.session.set_input(**_input_kwargs(msg.input))
            turn.finish()
        elif isinstance(msg, AudioEnd):
            if msg.input is not None:
                self.session.set_input(**_input_kwargs(msg.input))
            turn.finish()
        elif isinstance(msg, Transfer):
            turn.transfer_to_agent(
                msg.text or None,
                wav=_wav(msg.audio),
                name=msg.reason or "transfer_requested",
                metadata=msg.metadata or None,
            )
        elif isinstance(msg, EndSession):
            turn.end_session(
                msg.text or None,
                wav=_wav(msg.audio),
                metadata=msg.metadata or None,
                transcript=msg.transcript or None,
                summary=msg.summary or None,
            )
        self.resolve(turn)

    def resolve(self, turn: Turn) -> None:
        if self.reply is not None and self.reply[0] is turn and not self.reply[1].done():
            self.reply[1].set_result(None)

    def flush_pending(self, turn: Turn) -> None:
        while self.pending and not turn.finished and not turn.closed:
            msg = self.pending.popleft()
            try:
                self.apply_to(turn, msg)
            except Exception:
                _log.exception("%s applying held %s failed; ignored", self.log_prefix, msg.type)

    def apply_fallback(self, turn: Turn, *, terminal: bool = False) -> None:
        if turn.finished or turn.closed:
            return
        self.stats.fallbacks += 1
        fb = self.owner._fallback
        text = fb.text or None
        try:
            if fb.action == "transfer":
                turn.transfer_to_agent(text, name="proxy_unavailable")
            elif fb.action == "end" or terminal:
                turn.end_session(text, name="proxy_unavailable")
            else:
                if text:
                    turn.say(text)
                turn.finish()
        except Exception:
            _log.exception("%s fallback failed", self.log_prefix)

    async def await_reply(self, turn: Turn) -> None:
        """Hold ``turn`` open until the backend answered it, the fallback did, or timeout."""
        if turn.finished or turn.closed:
            return
        if self.overflowed:
            self.apply_fallback(turn, terminal=True)
            return
        if self.state == "down":
            if self.owner._fallback.action == "prompt":
                self.ensure_running()  # keep trying in the background for later turns
            self.apply_fallback(turn)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reply = (turn, fut)
        try:
            self.flush_pending(turn)
            if turn.finished:
                return
            try:
                async with asyncio.timeout(self.owner._reply_timeout):
                    await fut
            except TimeoutError:
                self.stats.replies_timed_out += 1
                _log.warning(
                    "%s no backend reply to turn #%d within %.1fs",
                    self.log_prefix,
                    turn.index,
                    self.owner._reply_timeout,
                )
                if self.state != "open" and not turn.finished:
                    self.apply_fallback(turn)
        finally:
            if self.reply is not None and self.reply[1] is fut:
                self.reply = None


def _input_kwargs(cfg: InputConfig) -> dict[str, Any]:
    changes = cfg.changes()
    names = {
        "dtmf_input_length": "dtmf_length",
        "dtmf_inter_digit_timeout_ms": "inter_digit_timeout_ms",
        "dtmf_terminator": "terminator",
    }
    return {names.get(k, k): v for k, v in changes.items()}


def _wav(data: bytes) -> bytes | None:
    return data or None


def _say(turn: Turn, msg: Prompt) -> None:
    text = msg.text or None
    if not msg.audio:
        if text:
            turn.say(text, barge_in=msg.barge_in)
        return
    try:
        if msg.audio_format == "wav":
            turn.say(text, wav=msg.audio, barge_in=msg.barge_in)
        else:
            ulaw = _audio.to_webex_ulaw(
                msg.audio, encoding=msg.audio_format, sample_rate=msg.sample_rate
            )
            turn.say(text, audio=ulaw, barge_in=msg.barge_in)
    except (WavFormatError, ValueError) as exc:
        _log.warning("backend prompt audio unusable (%s); sending its text only", exc)
        if text:
            turn.say(text, barge_in=msg.barge_in)


class WebSocketProxyConnector:
    """Relay every conversation of a media server to a WebSocket backend.

    Args:
        url: ``ws://`` or ``wss://`` URL of the backend.
        headers: Extra handshake headers (e.g. ``Authorization``), or a callable
            ``(session) -> headers`` for per-call values. Never logged.
        subprotocols: WebSocket subprotocols to offer.
        adapter: Factory of a :class:`~webex_byova.media.proxy.adapters.ProxyAdapter` per
            conversation (default :class:`JsonAdapter`, the documented JSON protocol).
        queue_max: Most frames waiting to be sent per conversation.
        queue_max_bytes: Most bytes waiting to be sent per conversation.
        policy: ``drop_oldest_audio`` (default) or ``end_call`` when the queue is full.
        reconnect: Backoff for (re)connecting; ``ReconnectPolicy(max_attempts=0)`` disables.
        ping_interval: Seconds between WebSocket pings (``None`` disables heartbeats).
        ping_timeout: Seconds to wait for a pong before treating the backend as gone.
        fallback: What answers when the backend is unreachable.
        reply_timeout: Longest wait for the backend's reply to one turn (session start,
            utterance, DTMF, no-input, custom event) before the turn is answered without it.
        send_audio_as: ``received`` (the caller's encoding, normally 8 kHz µ-law) or
            ``LINEAR16`` (16-bit PCM at the caller's rate).
        metadata: ``(session) -> dict`` merged into ``session.start`` metadata.
        close_timeout: Longest wait to flush ``session.end`` and close the WebSocket.
        max_message_bytes: Largest backend message accepted.
        socket_send_buffer: ``SO_SNDBUF`` of the connection, so the kernel does not hold
            seconds of stale audio out of the policy's reach (``None``: system default).
        sleep: Injected ``asyncio.sleep`` for backoff (tests); ``rand`` picks backoff jitter.
    """

    def __init__(
        self,
        url: str,
        *,
        headers: HeadersArg = None,
        subprotocols: Sequence[str] | None = None,
        adapter: AdapterFactory = JsonAdapter,
        queue_max: int = 500,
        queue_max_bytes: int = 1_000_000,
        policy: BackpressurePolicy = "drop_oldest_audio",
        reconnect: ReconnectPolicy | None = None,
        ping_interval: float | None = 20.0,
        ping_timeout: float | None = 20.0,
        fallback: ProxyFallback | None = None,
        reply_timeout: float = 10.0,
        send_audio_as: Literal["received", "LINEAR16"] = "received",
        metadata: MetadataArg = None,
        close_timeout: float = 2.0,
        max_message_bytes: int = 8 * 1024 * 1024,
        socket_send_buffer: int | None = 64 * 1024,
        sleep: Callable[[float], Any] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not url.startswith(("ws://", "wss://")):
            raise ValueError("url must start with ws:// or wss://")
        if policy not in ("drop_oldest_audio", "end_call"):
            raise ValueError(f"unknown backpressure policy {policy!r}")
        if reply_timeout <= 0:
            raise ValueError("reply_timeout must be positive")
        self.url = url
        self._headers = headers
        self._subprotocols = [Subprotocol(p) for p in subprotocols] if subprotocols else None
        self._adapter_factory = adapter
        self._queue_max = queue_max
        self._queue_max_bytes = queue_max_bytes
        self._policy: BackpressurePolicy = policy
        self._reconnect = reconnect or ReconnectPolicy()
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._fallback = fallback or ProxyFallback()
        self._reply_timeout = reply_timeout
        self._send_pcm = send_audio_as == "LINEAR16"
        self._metadata = metadata
        self._close_timeout = close_timeout
        self._max_message_bytes = max_message_bytes
        self._socket_send_buffer = socket_send_buffer
        self._max_inbound_queue = 16
        self._write_limit = 64 * 1024
        self._sleep = sleep
        self._random = rand
        self._links: dict[str, _Link] = {}
        SendQueue(max_items=queue_max, max_bytes=queue_max_bytes, policy=policy)  # validate

    def __repr__(self) -> str:
        return f"WebSocketProxyConnector(url={redact(self.url)!r}, links={len(self._links)})"

    # ------------------------------------------------------------------ introspection

    @property
    def open_connections(self) -> int:
        """Conversations with a live (or reconnecting) backend WebSocket."""
        return sum(1 for link in self._links.values() if link.state != "closed")

    def stats(self, conversation_id: str) -> tuple[ProxyStats, QueueStats] | None:
        """Link and send-queue counters of a live conversation (None if unknown)."""
        link = self._links.get(conversation_id)
        return None if link is None else (link.stats, link.queue.stats)

    def state(self, conversation_id: str) -> str | None:
        """``connecting``, ``open``, ``reconnecting`` or ``down`` (None if unknown)."""
        link = self._links.get(conversation_id)
        return None if link is None else link.state

    async def wait_state(self, conversation_id: str, state: str) -> None:
        """Wait until the conversation's link reaches ``state`` (for tests and tooling)."""
        while True:
            link = self._links.get(conversation_id)
            if link is None:
                raise KeyError(conversation_id)
            if link.state == state:
                return
            await link.changed.wait()

    # ------------------------------------------------------------------ MediaConnector

    async def on_event(self, event: MediaEvent) -> None:
        """Forward ``event`` to the conversation's backend; wait for replies where due."""
        session = event.session
        cid = session.conversation_id
        if isinstance(event, SessionEnd):
            link = self._links.pop(cid, None)
            if link is not None:
                await link.close(event.reason or "session_end")
            return
        link = self._links.get(cid)
        if link is None:
            if session.ended or isinstance(event, TurnStarted | TurnEnded):
                return
            link = self._open(session, event)
        if isinstance(event, AudioInput):
            if self._send_pcm:
                audio, encoding = event.pcm16, "LINEAR16"
            else:
                audio, encoding = event.audio, event.encoding
            link.send(
                AudioFrame(
                    seq=link.seq,
                    turn=_index(event),
                    audio=audio,
                    encoding=encoding,
                    sample_rate=event.sample_rate,
                    offset_ms=event.offset_ms,
                )
            )
            link.seq += 1
            return
        message = _client_message(event)
        if message is not None:
            link.send(message)
        turn = event.turn
        if turn is None:
            return
        if isinstance(event, TurnStarted):
            if link.overflowed:
                link.apply_fallback(turn, terminal=True)
            elif link.pending and turn.kind in _ANSWERABLE:
                link.flush_pending(turn)
            return
        if isinstance(event, _REPLY_KINDS):
            await link.await_reply(turn)

    def _open(self, session: Session, event: MediaEvent) -> _Link:
        link = _Link(self, session)
        metadata: dict[str, Any] = {"tracking_id": session.tracking_id}
        if isinstance(event, SessionStart):
            metadata["event_name"] = event.event_name
            if event.parameters:
                metadata["parameters"] = event.parameters
        if self._metadata is not None:
            try:
                metadata.update(self._metadata(session))
            except Exception:
                _log.exception("[%s] metadata callable failed", session.log_id)
        link.start = SessionStarted(
            conversation_id=session.conversation_id,
            org_id=session.customer_org_id,
            agent_id=session.virtual_agent_id,
            language=session.record.language_code,
            audio_encoding="LINEAR16" if self._send_pcm else "MULAW",
            sample_rate=8000,
            metadata=metadata,
        )
        self._links[session.conversation_id] = link
        link.ensure_running()
        return link

    async def aclose(self) -> None:
        """Close every backend connection (the server calls this when it stops)."""
        links = list(self._links.values())
        self._links.clear()
        await asyncio.gather(*(link.close("server_stop") for link in links))


def _index(event: MediaEvent) -> int:
    return event.turn.index if event.turn is not None else 0


def _client_message(event: MediaEvent) -> OutboundMessage | None:
    turn = _index(event)
    if isinstance(event, Utterance):
        return ClientEvent(
            name="end_of_input",
            parameters={"reason": event.reason, "duration_ms": round(event.duration_ms)},
            turn=turn,
        )
    if isinstance(event, StartOfInput):
        return ClientEvent(
            name="start_of_input", parameters={"offset_ms": event.offset_ms}, turn=turn
        )
    if isinstance(event, DtmfInput):
        return Dtmf(digits=event.digits, turn=turn)
    if isinstance(event, StartOfDtmf):
        return ClientEvent(name="start_of_dtmf", turn=turn)
    if isinstance(event, NoInput):
        return ClientEvent(
            name="no_input", event_name=event.event_name, parameters=event.parameters, turn=turn
        )
    if isinstance(event, CustomEvent):
        return ClientEvent(
            name="custom_event",
            event_name=event.event_name,
            parameters=event.parameters,
            turn=turn,
        )
    if isinstance(event, BargeIn):
        return ClientEvent(name="barge_in", parameters={"source": event.source}, turn=turn)
    return None
