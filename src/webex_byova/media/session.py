"""Conversations (:class:`Session`) and their turns (:class:`Turn`): what a handler acts on.

This is the transport-neutral call core: it consumes :class:`~._messages.CallerRequest` and
produces :class:`~._messages.AgentResponse` (built by :mod:`._responses`); front ends translate
their wire format (gRPC protobuf, WebSocket JSON) and drive turns through
:class:`~._frontend.TurnHandle`. Nothing here knows a wire format, a socket or the wall clock
(time comes from the hub's injected clock; timers run on the event loop).

A Webex call is one *session* (keyed by ``conversation_id``) served in many *turns*, one per
step: session start, each audio turn, start of DTMF, each DTMF entry, client events, session
end. On gRPC each turn is one ``ProcessCallerInput`` RPC; on WebSocket turns follow each other
on the conversation's socket.

A turn answers with exactly one FINAL reply. Prompts added with :meth:`Turn.say` (and
friends) are collected and sent in that FINAL (WAV mode) or streamed as CHUNK responses
followed by one empty FINAL (CHUNK mode). The FINAL goes out when the handlers dealing with the
turn's input have returned (or when :meth:`Turn.finish`, :meth:`Turn.collect_input`,
:meth:`Turn.transfer_to_agent` or :meth:`Turn.end_session` is called); a gRPC turn is
completed once Webex has half-closed its side (bounded by ``half_close_timeout_s``), at once
after a terminal response, and a WebSocket turn right after its FINAL.

Action methods are usable from sync and async handlers: the ones that send audio return an
awaitable :class:`asyncio.Future` (``True`` when fully played, ``False`` when cut by barge-in or
the call went away) that async handlers may await and sync handlers may ignore.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from .._logging import get_logger
from . import audio as _audio
from ._bounds import printable
from ._messages import (
    AgentResponse,
    AudioIn,
    CallerInput,
    CallerRequest,
    DtmfIn,
    EventIn,
    OutputEventSpec,
    PromptSpec,
    TextSpec,
)
from ._model import ConversationRecord, InputSettings, PlainState, plain_data_problem
from ._responses import boundary_response, chunk_response, final_response, output_event
from ._tracing import ConversationSpan
from ._vad_batch import BatchedDetector
from .events import (
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
    TurnKind,
    Utterance,
)
from .vad import SpeechDetector, SpeechEnded, SpeechStarted, VADEvent

if TYPE_CHECKING:
    from ._metrics import MediaMetrics
    from .config import MediaServerConfig

__all__ = [
    "HandlerCancelledError",
    "HandlerTimeoutError",
    "Session",
    "SessionEndedError",
    "Turn",
    "TurnFinishedError",
]

_log = get_logger("webex_byova.media")
_MAX_FRAME = 64 * 1024
_PREROLL_MS = 300

InputEvent = Utterance | DtmfInput | NoInput | CustomEvent
_REPLY_KINDS = frozenset({"session_start", "audio", "dtmf", "no_input", "custom_event"})
_EVENT_KINDS: dict[str, TurnKind] = {
    "session_start": "session_start",
    "session_end": "session_end",
    "no_input": "no_input",
    "start_of_dtmf": "start_of_dtmf",
    "custom_event": "custom_event",
}
Transport = Literal["grpc", "websocket"]
#: Turn.__init__'s ``_dropped`` keys -> the metric's drop reasons (``empty`` is no frame).
_DROP_METRIC = {"small": "small", "large": "large", "bad": "bad_rate", "after_close": "after_close"}
_NO_SPAN = ConversationSpan(None, None, {})
#: Caller audio's decoder until a frame declares another encoding (µ-law is Webex's default).
_DECODE_MULAW = _audio.frame_decoder(_audio.AudioEncoding.MULAW)


def turn_kind(request: CallerRequest) -> TurnKind:
    """What kind of step a turn is, from its first message."""
    return input_kind(request.input)


def input_kind(item: CallerInput | None) -> TurnKind:
    """What kind of step a message's input makes a turn (``"other"`` for none)."""
    if isinstance(item, AudioIn):
        return "audio"
    if isinstance(item, DtmfIn):
        return "dtmf"
    if isinstance(item, EventIn):
        return _EVENT_KINDS.get(item.type, "other")
    return "other"


class TurnFinishedError(RuntimeError):
    """The turn already sent (or queued) its FINAL response; answer on a later turn."""


class SessionEndedError(RuntimeError):
    """The conversation ended while a handler was waiting for caller input."""


class HandlerTimeoutError(TimeoutError):
    """A turn's handlers did not request its reply within ``handler_timeout_s``.

    Passed to ``error`` handlers (as :attr:`ErrorEvent.exception`) like a handler exception.
    """


class HandlerCancelledError(RuntimeError):
    """A handler raised :class:`asyncio.CancelledError` without the server cancelling it.

    Handled like any handler exception (``error`` handlers, apology); the original
    ``CancelledError`` is the ``__cause__``.
    """


class _Hub(Protocol):
    """What sessions need from the server (implemented by ``BYOVAMediaServer``)."""

    config: MediaServerConfig
    metrics: MediaMetrics

    def clock(self) -> float: ...

    def dispatch(self, event: MediaEvent) -> None: ...

    async def run_handlers(self, event: MediaEvent) -> None: ...

    def wants(self, event_name: str, virtual_agent_id: str) -> bool: ...

    def make_detector(self, sample_rate: int, settings: InputSettings) -> SpeechDetector: ...

    def session_ended(self, session: Session, reason: str, event: SessionEnd | None) -> None: ...

    def report_error(
        self, turn: Turn, exc: Exception, what: str, event: MediaEvent | None = None
    ) -> None: ...


def _text_spec(value: str | TextSpec | None, what: str = "text") -> TextSpec | None:
    if value is None or isinstance(value, TextSpec):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str or TextSpec, got {type(value).__name__}")
    return TextSpec(text=value)


def _check_type(what: str, value: Any, kinds: type | tuple[type, ...], expected: str) -> None:
    """``TypeError`` at the handler's call site unless ``value`` is None or of ``kinds``."""
    if value is not None and not isinstance(value, kinds):
        raise TypeError(f"{what} must be {expected}, got {type(value).__name__}")


def _check_metadata(what: str, metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, Mapping):
        raise TypeError(f"{what} must be a mapping, got {type(metadata).__name__}")
    problem = plain_data_problem(dict(metadata), what)
    if problem:
        raise TypeError(
            f"{what} must be plain data (str keys; str, number, bool, None, lists, "
            f"dicts): {problem}"
        )


def _piece_bytes(piece: Any) -> bytes:
    if isinstance(piece, bytes):
        return piece
    if isinstance(piece, bytearray | memoryview):
        return bytes(piece)
    raise TypeError(f"an audio source must yield bytes, got {type(piece).__name__}")


def _completed(value: bool) -> asyncio.Future[bool]:
    fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    fut.set_result(value)
    return fut


@dataclass(slots=True)
class _Stream:
    source: bytes | AsyncIterable[bytes] | Iterable[bytes]
    barge_in: bool
    done: asyncio.Future[bool]
    slot: int | None = None  # WAV mode: index of the prompt the collected audio fills


class _Log(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes ``[<conversation id> #<turn>]``; the context values are already escaped."""

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        extra = self.extra or {}
        kwargs.setdefault("extra", {}).update(extra)
        return f"[{extra.get('conversation_id')} #{extra.get('turn')}] {msg}", kwargs


def log_context(conversation_id: str, tracking_id: str) -> dict[str, str]:
    """The ``extra`` of a log record of a call: caller-supplied ids escaped and bounded."""
    return {
        "conversation_id": printable(conversation_id, 200),
        "trackingid": printable(tracking_id, 200),
    }


class Turn:
    """One turn of a conversation (a gRPC ``ProcessCallerInput`` RPC) and the reply it sends.

    Attributes:
        session: The conversation this turn belongs to.
        index: 1-based number of this turn within the conversation.
        kind: What the turn's first message carried (``session_start``, ``audio``, ``dtmf`` …).
        tracking_id: Webex ``trackingid`` of the turn (gRPC metadata), if sent.
        transport: ``"grpc"`` or ``"websocket"``: the front end that carries the turn.
    """

    def __init__(
        self,
        session: Session,
        index: int,
        kind: TurnKind,
        *,
        tracking_id: str = "",
        transport: Transport = "grpc",
    ) -> None:
        self.session = session
        self.index = index
        self.kind: TurnKind = kind
        self.tracking_id = tracking_id
        self.transport: Transport = transport
        hub = session._hub
        self._hub = hub
        self._config = hub.config
        self.log = _Log(_log, {**log_context(session.conversation_id, tracking_id), "turn": index})
        # reply
        self._prompts: list[PromptSpec] = []
        self._events: list[OutputEventSpec] = []
        self._error_tasks: set[asyncio.Task[Any]] = set()
        self._error_answered = False
        self._requires_reply = kind in _REPLY_KINDS
        self._final_requested = False
        self._final_sent = False
        self._terminal = False
        self._complete_requested = False
        self._closed = False
        self._dropped_call = False
        self._outcome = "completed"
        # output pipeline (consumed by the RPC writer)
        self._urgent: deque[AgentResponse] = deque()
        self._ops: deque[_Stream | Literal["final", "complete"]] = deque()
        self._wakeup = asyncio.Event()
        self._cut = False
        self._current_stream: _Stream | None = None
        self._streaming_barge_in = False
        self._play_origin: float | None = None
        self._play_sent_s = 0.0
        #: The bound of the async audio source read the writer is waiting in, if any.
        self._source_wait: asyncio.Timeout | None = None
        # input
        self._half_closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._half_close_timer: asyncio.TimerHandle | None = None
        self._reply_timer: asyncio.TimerHandle | None = None
        self._reply_deadline: float | None = None
        self._reply_event: MediaEvent | None = None
        self._detector: SpeechDetector | None = None
        self._encoding = _audio.AudioEncoding.MULAW
        #: The declared encoding name ``_encoding`` was coerced from (frames repeat it).
        self._encoding_name = ""
        self._decode: Callable[[bytes], bytes] = _DECODE_MULAW
        self._rate = 0
        self._language = ""
        self._offset_ms = 0.0
        self._speaking = False
        self._input_ended = False
        self._preroll: deque[bytes] = deque()
        self._preroll_bytes = 0
        self._utterance: list[bytes] = []
        self._utterance_bytes = 0
        #: The pre-roll and utterance hold µ-law frames as they came (decoded on delivery).
        self._buffer_ulaw = False
        #: The last frame ``_on_audio`` took whole, when no message came since: a frame like it
        #: (same metadata and size, see ``_handle_like``) passes the same checks.
        self._steady: AudioIn | None = None
        # Byte bounds of the buffers, fixed with the rate when the detector is made; like the
        # byte counts, in the units stored (a µ-law byte is two LINEAR16 bytes).
        self._preroll_limit = 0
        self._utterance_limit = 0
        self._dropped = {"small": 0, "large": 0, "empty": 0, "bad": 0, "after_close": 0}
        # metrics, recorded once per turn (_after_final / _close)
        self._span = session._span.turn(index, kind, tracking_id=tracking_id)
        self._frames_in = 0
        self._frames_out = 0
        self._frames_late = 0
        self._input_end_at: float | None = None  # END_OF_INPUT / DTMF / event arrival
        self._first_reply_at: float | None = None
        self._failure: str | None = None  # "error" | "timeout": answered by the error path
        self._recorded = False
        self._first_handled = False
        self._input_delivered = False
        # audio_input events, handed to one consumer task in order (bounded by drain())
        self._audio_events: deque[AudioInput] = deque()
        self._audio_ready = asyncio.Event()
        self._audio_room = asyncio.Event()
        self._audio_eof = False
        self._audio_task: asyncio.Task[None] | None = None

    # ------------------------------------------------------------------ properties

    @property
    def conversation_id(self) -> str:
        """The conversation (call) id."""
        return self.session.conversation_id

    @property
    def finished(self) -> bool:
        """True once the FINAL response was sent or queued (no more prompts allowed)."""
        return self._final_requested

    @property
    def closed(self) -> bool:
        """True once the RPC is over (completed or cancelled)."""
        return self._closed

    @property
    def outcome(self) -> str:
        """``completed``, ``terminal``, ``cancelled`` or ``error`` (meaningful once closed)."""
        return self._outcome

    @property
    def state(self) -> dict[str, Any]:
        """The conversation's user state (same as ``session.state``)."""
        return self.session.state

    @property
    def settings(self) -> InputSettings:
        """The input settings the next FINAL will carry."""
        return self.session.settings

    def __repr__(self) -> str:
        return (
            f"Turn(conversation_id={self.conversation_id!r}, index={self.index}, "
            f"kind={self.kind!r}, finished={self.finished})"
        )

    # ------------------------------------------------------------------ prompts

    def _check_open(self) -> bool:
        """Raise if the FINAL is already queued; False if the RPC is gone (call the no-op)."""
        if self._final_requested:
            raise TurnFinishedError(
                f"turn #{self.index} of {self.conversation_id} already sent its FINAL; answer "
                "on the next turn (e.g. the event returned by collect_input())"
            )
        return not self._closed

    def say(
        self,
        text: str | None = None,
        *,
        audio: bytes | None = None,
        wav: bytes | None = None,
        ssml: str | None = None,
        audio_uri: str | None = None,
        barge_in: bool | None = None,
    ) -> asyncio.Future[bool]:
        """Play a prompt: text (Webex TTS), SSML markup, raw 8 kHz µ-law ``audio`` or a ``wav``.

        A WAV in any supported format is converted to what Webex plays (8 kHz µ-law);
        a malformed one raises :class:`~webex_byova.media.audio.WavFormatError` here.
        ``barge_in`` defaults to the server's ``barge_in`` setting. In WAV mode the prompt is
        sent with the turn's FINAL; in CHUNK mode audio is streamed now, paced near real time
        so caller speech can cut it. Returns a future: ``True`` when played, ``False`` if cut.
        """
        _check_type("say(text=)", text, str, "a str")
        _check_type("say(ssml=)", ssml, str, "a str")
        _check_type("say(audio=)", audio, (bytes, bytearray, memoryview), "bytes")
        _check_type("say(wav=)", wav, (bytes, bytearray, memoryview), "bytes")
        _check_type("say(audio_uri=)", audio_uri, str, "a str")
        _check_type("say(barge_in=)", barge_in, bool, "a bool")
        if audio is not None:
            audio = bytes(audio)
        if wav is not None:
            wav = bytes(wav)
        if text is not None and ssml is not None:
            raise ValueError("pass text= or ssml=, not both")
        if audio is not None and wav is not None:
            raise ValueError("pass audio= (raw µ-law) or wav=, not both")
        if not self._check_open():
            return _completed(False)
        rate = self._config.sample_rate
        ulaw = audio
        if wav is not None:
            ulaw = _audio.wav_to_webex(wav, target_rate=rate)
        barge = self._config.barge_in if barge_in is None else bool(barge_in)
        label = ssml if ssml is not None else (text or "")
        if not ulaw:
            if not label and not audio_uri:
                raise ValueError("a prompt needs text, ssml, audio, wav or audio_uri")
            self._prompts.append(PromptSpec(text=label, audio_uri=audio_uri or "", barge_in=barge))
            return _completed(True)
        if self._config.audio_mode == "wav":
            payload = _audio.make_wav(ulaw, sample_rate=rate)
            self._prompts.append(
                PromptSpec(text=label, audio=payload, audio_uri=audio_uri or "", barge_in=barge)
            )
            return _completed(True)
        if label or audio_uri:
            # Text on audio chunks makes Webex speak it as well; keep it on the FINAL only as
            # a label is not possible, so text with streamed audio is dropped deliberately.
            self.log.debug("CHUNK mode: prompt text not sent alongside streamed audio")
        return self._enqueue_stream(ulaw, barge)

    def play_audio(self, ulaw: bytes, *, barge_in: bool | None = None) -> asyncio.Future[bool]:
        """Play raw 8 kHz µ-law audio (see :meth:`say`)."""
        return self.say(audio=ulaw, barge_in=barge_in)

    def play_wav(self, wav: bytes, *, barge_in: bool | None = None) -> asyncio.Future[bool]:
        """Play a WAV file, converting it to 8 kHz µ-law (see :meth:`say`)."""
        return self.say(wav=wav, barge_in=barge_in)

    def play_ssml(self, ssml: str, *, barge_in: bool | None = None) -> asyncio.Future[bool]:
        """Send SSML markup as the prompt text for Webex to synthesise (see :meth:`say`)."""
        return self.say(ssml=ssml, barge_in=barge_in)

    def stream(
        self,
        source: bytes | AsyncIterable[bytes] | Iterable[bytes],
        *,
        barge_in: bool | None = None,
    ) -> asyncio.Future[bool]:
        """Stream raw 8 kHz µ-law audio from ``source`` (e.g. a TTS generator).

        CHUNK mode: re-cut into ``chunk_bytes`` pieces and paced near real time; a
        barge-in-enabled stream stops when the caller speaks. WAV mode: collected into one WAV
        prompt sent with the FINAL. The source must yield ``bytes`` (``TypeError`` in the
        writer otherwise, handled as a handler error); an async source that yields nothing for
        ``handler_timeout_s`` is a :class:`HandlerTimeoutError` (the caller gets the apology).
        """
        if isinstance(source, str) or not isinstance(
            source, bytes | bytearray | memoryview | AsyncIterable | Iterable
        ):
            raise TypeError(
                f"stream() needs bytes or an (async) iterable of bytes, got {type(source).__name__}"
            )
        _check_type("stream(barge_in=)", barge_in, bool, "a bool")
        if not self._check_open():
            return _completed(False)
        barge = self._config.barge_in if barge_in is None else bool(barge_in)
        if self._config.audio_mode == "wav":
            if isinstance(source, bytes | bytearray):
                return self.say(audio=bytes(source), barge_in=barge)
            # Collected by the writer into a WAV prompt at this position (never CHUNKs).
            self._prompts.append(PromptSpec(barge_in=barge))
            return self._enqueue_stream(source, barge, slot=len(self._prompts) - 1)
        return self._enqueue_stream(source, barge)

    def _enqueue_stream(
        self,
        source: bytes | AsyncIterable[bytes] | Iterable[bytes],
        barge_in: bool,
        *,
        slot: int | None = None,
    ) -> asyncio.Future[bool]:
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._ops.append(_Stream(source, barge_in, done, slot))
        self._wakeup.set()
        return done

    # ------------------------------------------------------------------ settings & events

    def set_input(
        self,
        mode: Literal["voice", "dtmf", "voice_dtmf"] | None = None,
        *,
        sensitive: bool | None = None,
        **timers: Any,
    ) -> InputSettings:
        """Set what Webex collects next: same as :meth:`Session.set_input` (one rule for every
        setting, ``sensitive`` included: it applies to this turn's reply and every later one
        until changed).
        """
        return self.session.set_input(mode, sensitive=sensitive, **timers)

    def send_event(
        self,
        kind: Literal["custom_event", "no_match", "no_input"],
        name: str = "",
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        """Add an output event to the FINAL (Webex honours only the first one)."""
        _check_type("event name", name, str, "a str")
        _check_metadata("event metadata", metadata)
        if kind not in ("custom_event", "no_match", "no_input"):
            raise ValueError("use transfer_to_agent()/end_session() for terminal events")
        if self._check_open():
            self._events.append(output_event(kind, name, metadata))

    def custom_event(self, name: str, metadata: Mapping[str, Any] | None = None) -> None:
        """Send a ``CUSTOM_EVENT`` with ``name`` and ``metadata`` in the FINAL."""
        self.send_event("custom_event", name, metadata)

    def no_match(self, name: str = "no_match") -> None:
        """Tell Webex the input matched nothing (``NO_MATCH``)."""
        self.send_event("no_match", name)

    def set_transcript(self, value: str | TextSpec) -> None:
        """Session transcript, kept for the call's last (terminal) response.

        Webex honours it only there, so it is not sent with non-terminal replies; a later
        call replaces it.
        """
        self.session._transcript = _text_spec(value, "transcript")

    def set_summary(self, value: str | TextSpec) -> None:
        """Session summary, kept for the call's last (terminal) response (see set_transcript)."""
        self.session._summary = _text_spec(value, "summary")

    # ------------------------------------------------------------------ ending

    def finish(self) -> asyncio.Future[bool]:
        """Send the FINAL now (after any queued audio). Idempotent: a repeat call resolves like
        the first (``True`` once that one FINAL is sent)."""
        done: asyncio.Future[bool] | None = getattr(self, "_final_done", None)
        if self._final_requested and done is not None and not self._closed:
            if done.done():
                return _completed(done.result())
            return asyncio.shield(done)  # a cancelled awaiter must not cancel the turn's own
        if self._final_requested or self._closed:
            return _completed(self._final_sent)
        return self._request_final()

    def _request_final(self) -> asyncio.Future[bool]:
        self._final_requested = True
        self._stop_reply_timer()
        # The FINAL is the turn's last response: no speech boundaries (or utterance) after it.
        self._input_ended = True
        self._audio_done()
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._final_done = done
        self._ops.append("final")
        self._wakeup.set()
        # The caller gets a shield: giving up on it (a wait_for() that timed out) must not
        # cancel the turn's own future, which later finish() calls report.
        return asyncio.shield(done)

    def _terminal_response(
        self,
        kind: Literal["transfer_to_agent", "session_end"],
        text: str | None,
        audio: bytes | None,
        wav: bytes | None,
        name: str,
        metadata: Mapping[str, Any] | None,
        transcript: str | TextSpec | None,
        summary: str | TextSpec | None,
    ) -> asyncio.Future[bool]:
        # Check everything before changing anything: a wrong type raises here, in the handler,
        # and the error path still has a whole turn to answer on.
        transcript_spec = _text_spec(transcript, "transcript")
        summary_spec = _text_spec(summary, "summary")
        _check_type(f"{kind}(name=)", name, str, "a str")
        _check_metadata(f"{kind}(metadata=)", metadata)
        for what, value in (("text", text), ("audio", audio), ("wav", wav)):
            kinds = str if what == "text" else (bytes, bytearray, memoryview)
            _check_type(f"{kind}({what}=)", value, kinds, "a str" if what == "text" else "bytes")
        if not self._check_open():
            return _completed(False)
        if text is not None or audio is not None or wav is not None:
            self.say(text, audio=audio, wav=wav, barge_in=False)
        self._events.insert(0, output_event(kind, name, metadata))
        if transcript_spec is not None:
            self.session._transcript = transcript_spec
        if summary_spec is not None:
            self.session._summary = summary_spec
        self._terminal = True
        return self._request_final()

    def transfer_to_agent(
        self,
        text: str | None = None,
        *,
        audio: bytes | None = None,
        wav: bytes | None = None,
        name: str = "transfer_requested",
        metadata: Mapping[str, Any] | None = None,
        transcript: str | TextSpec | None = None,
        summary: str | TextSpec | None = None,
    ) -> asyncio.Future[bool]:
        """Escalate to a human agent (``TRANSFER_TO_AGENT``), optionally with a last prompt.

        The RPC completes right after and the conversation is dropped.
        """
        return self._terminal_response(
            "transfer_to_agent", text, audio, wav, name, metadata, transcript, summary
        )

    def end_session(
        self,
        text: str | None = None,
        *,
        audio: bytes | None = None,
        wav: bytes | None = None,
        name: str = "session_ended",
        metadata: Mapping[str, Any] | None = None,
        transcript: str | TextSpec | None = None,
        summary: str | TextSpec | None = None,
    ) -> asyncio.Future[bool]:
        """End the virtual-agent session (``SESSION_END``), optionally with a goodbye prompt."""
        return self._terminal_response(
            "session_end", text, audio, wav, name, metadata, transcript, summary
        )

    def end_input(self) -> None:
        """End the caller's input now (sends ``END_OF_INPUT``; dispatches ``utterance``)."""
        if self.kind != "audio" or self._input_ended or self._closed:
            return
        self._end_input("handler")

    async def collect_input(self, timeout: float | None = None) -> InputEvent:  # noqa: ASYNC109
        """Send this turn's FINAL, then wait for the caller's next input on a later RPC.

        Returns the next :class:`Utterance`, :class:`DtmfInput`, :class:`NoInput` or
        :class:`CustomEvent` (delivered here instead of to the event handlers); answer on its
        ``.turn``. Raises :class:`TimeoutError` or :class:`SessionEndedError`.
        """
        self.finish()
        return await self.session.collect_input(timeout)

    # ------------------------------------------------------------------ writer side

    async def _responses(self) -> AsyncGenerator[AgentResponse, None]:
        """The turn's response stream (consumed by a front end through its TurnHandle)."""
        try:
            while True:
                while self._urgent:
                    yield self._urgent.popleft()
                if not self._ops:
                    self._wakeup.clear()
                    await self._wakeup.wait()
                    continue
                op = self._ops.popleft()
                if op == "complete":
                    return
                if op == "final":
                    while self._urgent:
                        yield self._urgent.popleft()
                    # A failing audio source's error path (bounded) may still add the apology.
                    while self._error_tasks:
                        await asyncio.wait(set(self._error_tasks))
                    if self._closed or self._dropped_call:
                        return  # over meanwhile (caller gone, call ended elsewhere): no FINAL
                    response = self._build_final()
                    if self._first_reply_at is None:
                        self._first_reply_at = self._hub.clock()
                    yield response
                    self._after_final(response)
                    continue
                assert isinstance(op, _Stream)
                self._current_stream = op
                if op.slot is not None:
                    played = await self._collect_wav(op, op.slot)
                    if not op.done.done():
                        op.done.set_result(played)
                    self._maybe_complete()  # the handlers may have returned meanwhile
                    continue
                played = True
                chunks = self._stream_chunks(op)
                try:
                    async for item in chunks:
                        if item is None:
                            played = False
                            break
                        yield item
                except Exception as exc:  # the handler's audio source raised
                    played = False
                    self._hub.report_error(self, exc, "prompt audio source")
                finally:
                    await chunks.aclose()
                if not op.done.done():
                    # A cut stops barge-in prompts only: one without barge-in played whole.
                    op.done.set_result(played and not (self._cut and op.barge_in))
                # The reply may be complete now: handlers that returned while this audio
                # was queued found it pending, and nothing else asks again.
                self._maybe_complete()
        finally:
            self._close()

    async def _collect_wav(self, op: _Stream, slot: int) -> bool:
        """WAV mode: gather a streamed source into the prompt reserved at ``slot``."""
        try:
            ulaw = b"".join([piece async for piece in self._pieces(op.source)])
        except Exception as exc:  # the handler's audio source raised
            self._hub.report_error(self, exc, "prompt audio source")
            return False
        if ulaw:
            wav = _audio.make_wav(ulaw, sample_rate=self._config.sample_rate)
            self._prompts[slot] = PromptSpec(audio=wav, barge_in=op.barge_in)
        return True

    async def _stream_chunks(self, op: _Stream) -> AsyncGenerator[AgentResponse | None, None]:
        """Paced CHUNK responses of one stream op; yields None when cut."""
        if self._cut and op.barge_in:
            yield None
            return
        self._streaming_barge_in = op.barge_in
        self.session._playing = self
        chunk_bytes = self._config.chunk_bytes
        rate = self._config.sample_rate
        pending = b""
        try:
            async for piece in self._pieces(op.source):
                pending += piece
                while len(pending) >= chunk_bytes:
                    out, pending = pending[:chunk_bytes], pending[chunk_bytes:]
                    async for item in self._paced(out, rate, op.barge_in):
                        yield item
                        if item is None:
                            return
            if pending:
                for out in _audio.iter_chunks(pending, chunk_bytes=max(100, len(pending))):
                    async for item in self._paced(out, rate, op.barge_in):
                        yield item
                        if item is None:
                            return
        finally:
            self._streaming_barge_in = False
            if self.session._playing is self:
                self.session._playing = None

    async def _paced(
        self, chunk: bytes, rate: int, barge_in: bool
    ) -> AsyncIterator[AgentResponse | None]:
        clock = self._hub.clock
        if self._play_origin is None:
            self._play_origin = clock()
        if self._config.realtime_pacing:
            while True:
                now = clock()
                elapsed = now - self._play_origin
                if elapsed > self._play_sent_s:
                    # Playback ran dry (a pause between prompts, or a slow source): it cannot be
                    # ahead of what was sent, so pace from here instead of bursting the backlog.
                    if self._play_sent_s:
                        self._frames_late += 1  # this chunk leaves after its slot
                    self._play_origin = now - self._play_sent_s
                    # On time from here, exactly: recomputing it from the new origin leaves a
                    # float residue that made the chunk wait again and count as late twice.
                    elapsed = self._play_sent_s
                delay = _audio.pace_delay(
                    self._play_sent_s, elapsed, lead_s=self._config.pacing_lead_ms / 1000
                )
                while self._urgent:
                    yield self._urgent.popleft()
                if (self._cut and barge_in) or self._closed or self._dropped_call:
                    yield None
                    return
                if delay <= 0:
                    break
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), delay)
        else:
            while self._urgent:
                yield self._urgent.popleft()
            await asyncio.sleep(0)
        if (self._cut and barge_in) or self._closed or self._dropped_call:
            yield None
            return
        self._play_sent_s += len(chunk) / rate
        self._frames_out += 1
        if self._first_reply_at is None:
            self._first_reply_at = clock()
        yield chunk_response(chunk)

    def _build_final(self) -> AgentResponse:
        return final_response(
            prompts=[p for p in self._prompts if p.text or p.audio or p.audio_uri],
            events=self._events,
            settings=self.session.settings,
            transcript=self.session._transcript if self._terminal else None,
            summary=self.session._summary if self._terminal else None,
            sensitive=self.session.settings.sensitive,
        )

    async def _pieces(
        self, source: bytes | AsyncIterable[bytes] | Iterable[bytes]
    ) -> AsyncIterator[bytes]:
        """The pieces of a stream op; an async source is bounded by ``handler_timeout_s``."""
        if isinstance(source, bytes | bytearray | memoryview):
            yield bytes(source)
            return
        if not isinstance(source, AsyncIterable):
            for piece in source:
                yield _piece_bytes(piece)
            return
        timeout = self._config.handler_timeout_s or None
        pieces = aiter(source)
        try:
            while True:
                try:
                    async with asyncio.timeout(timeout) as scope:
                        self._source_wait = scope
                        try:
                            piece = await anext(pieces)
                        finally:
                            self._source_wait = None
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    if not scope.expired():
                        raise
                    if self._closed or self._dropped_call:
                        return  # abandoned (_abandon_output): nobody will hear the rest
                    raise HandlerTimeoutError(
                        f"the stream() audio source yielded nothing within "
                        f"handler_timeout_s={timeout:g}"
                    ) from None
                yield _piece_bytes(piece)
        finally:
            close = getattr(pieces, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    def _abandon_output(self) -> None:
        """The turn is over (caller gone, call ended elsewhere): the streams playing or queued
        and the FINAL resolve as not played/sent, and the writer stops waiting for the audio
        source it reads now, rather than when that yields or times out."""
        for op in (self._current_stream, *self._ops):
            if isinstance(op, _Stream) and not op.done.done():
                op.done.set_result(False)
        self._ops.clear()
        done = getattr(self, "_final_done", None)
        if done is not None and not done.done():
            done.set_result(False)
        wait = self._source_wait
        if wait is not None:
            wait.reschedule(asyncio.get_running_loop().time())

    def _error_reply(self, text: str | None, *, end_call: bool, error: str) -> bool:
        """The error path's answer (apology or ``error_occurred`` event, or the end of the call)
        on this turn, even if its FINAL is already queued (not yet built); False if too late."""
        if self._final_sent or self._closed or self._complete_requested:
            return False
        if self._error_answered:  # one apology per reply, however many failures
            return True
        self._error_answered = True
        if text:
            self._prompts.append(PromptSpec(text=text, barge_in=False))
        elif not end_call:
            self._events.append(output_event("custom_event", "error_occurred", {"error": error}))
        if end_call and not self._terminal:
            self._events.insert(0, output_event("session_end", "error_occurred", None))
            self._terminal = True
        if not self._final_requested:
            self._request_final()
        return True

    def _record(self, outcome: str) -> None:
        """Metrics and span of the turn's answer (once): outcome, latency, frames."""
        if self._recorded:
            return
        self._recorded = True
        start, first = self._input_end_at, self._first_reply_at
        latency = first - start if start is not None and first is not None else None
        self._hub.metrics.turn_finished(self.transport, outcome, latency)
        if latency is not None:
            self._span.event("first_reply_byte", latency_s=latency)
        self._span.end(outcome)

    def _record_frames(self) -> None:
        metrics, transport = self._hub.metrics, self.transport
        if self._frames_in:
            metrics.frames_in(transport, self._frames_in)
        if self._frames_out:
            metrics.frames_out(transport, self._frames_out)
        if self._frames_late:
            metrics.frame_late(transport, self._frames_late)
        for key, reason in _DROP_METRIC.items():
            if self._dropped[key]:
                metrics.frame_dropped(transport, reason, self._dropped[key])

    def _end_for_drain(self, action: str) -> bool:
        """The server drains: end the conversation on this turn with ``action``; False if it
        can no longer answer."""
        if self._final_requested or self._closed:
            return False
        self._first_handled = True
        if action == "end_session":
            self.end_session(name="server_draining")
        else:
            self.transfer_to_agent(name="server_draining")
        return True

    def _after_final(self, response: AgentResponse) -> None:
        self._final_sent = True
        self._frames_out += sum(1 for p in response.prompts if p.audio)
        if self._failure is not None:
            outcome = self._failure
        elif not self._terminal:
            outcome = "completed"
        elif self._events[0].type == "transfer_to_agent":
            outcome = "transfer"
        else:
            outcome = "caller_hangup" if self.session._hangup else "ended"
        self._record(outcome)
        done = getattr(self, "_final_done", None)
        if done is not None and not done.done():
            done.set_result(True)
        self.session._note_playback(self)
        if self._terminal:
            self._outcome = "terminal"
            transfer = self._events[0].type == "transfer_to_agent"
            kind = "transfer_to_agent" if transfer else "session_end"
            self.session._terminate(kind)
            self._request_complete()
            return
        self._maybe_complete()
        if (
            not self._complete_requested
            and self._awaits_half_close
            and self._half_close_timer is None
        ):
            loop = asyncio.get_running_loop()
            self._half_close_timer = loop.call_later(
                self._config.half_close_timeout_s, self._half_close_timed_out
            )

    def _drop(self) -> None:
        """The conversation ended on another RPC: complete this one now, without a FINAL."""
        if self._closed or self._complete_requested:
            return
        self._input_ended = True
        self._dropped_call = True
        self._outcome = "terminal"
        self._abandon_output()
        self._request_complete()

    def _cancel(self) -> None:
        """The caller went away: close now and end a running response stream."""
        self._close()
        self._urgent.clear()
        self._ops.append("complete")
        self._wakeup.set()

    def _half_close_timed_out(self) -> None:
        self.log.info(
            "no half-close %.1fs after FINAL; completing", self._config.half_close_timeout_s
        )
        self._request_complete()

    def _request_complete(self) -> None:
        if not self._complete_requested:
            self._complete_requested = True
            self._ops.append("complete")
            self._wakeup.set()

    @property
    def _awaits_half_close(self) -> bool:
        """gRPC: the RPC completes once Webex half-closed (WebSocket has no half-close)."""
        return self.transport == "grpc"

    @property
    def _input_over(self) -> bool:
        """No more caller input is due before this turn answers.

        After a half-close, or as soon as the turn's input is there: its first message for a
        non-audio turn, the utterance (or another input delivered on it) for an audio turn.
        The FINAL does not wait for Webex's half-close: Cisco's Java client waits for the
        reply before it half-closes.
        """
        if self._half_closed:
            return True
        if not self._first_handled:
            return False
        return self.kind != "audio" or self._input_delivered

    @property
    def _takes_input(self) -> bool:
        """Whether a further caller message still belongs to this turn.

        False once the turn is over, its FINAL (or terminal response) is out, or (WebSocket)
        it is a turn that answers nothing (``start_of_dtmf``, ``session_end``, an empty
        message) and its first message was handled: the next message starts a new turn.
        """
        if self._closed or self._complete_requested or self._final_sent or self._dropped_call:
            return False
        one_message = self.transport == "websocket" and not self._requires_reply
        return not (one_message and self._first_handled)

    def _maybe_complete(self) -> None:
        """Send the FINAL once the reply is complete; complete the turn when it is done.

        The reply is complete when the caller's input is over (:attr:`_input_over`) and the
        handlers dealing with it returned (idle turns that need an answer get an empty one).
        A gRPC turn then completes when Webex half-closed; a WebSocket turn right away.
        """
        if self._complete_requested or self._closed:
            return
        if self._final_sent:
            if self._half_closed or not self._awaits_half_close:
                self._request_complete()
            return
        if not self._input_over or self._final_requested or self._tasks or self._ops:
            return
        has_content = bool(self._prompts or self._events)
        if self._requires_reply or has_content:
            self._request_final()
        elif self._half_closed or not self._awaits_half_close:
            self._request_complete()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self._complete_requested:
            self._outcome = "cancelled"
        if self._half_close_timer is not None:
            self._half_close_timer.cancel()
        self._stop_reply_timer()
        if self._audio_task is not None:
            self._audio_task.cancel()
        self._audio_room.set()
        self._abandon_output()
        if any(self._dropped.values()):
            self.log.debug("dropped frames: %s", self._dropped)
        self.session._release_detector(self)
        self._record(
            "completed" if self._complete_requested and not self._dropped_call else "cancelled"
        )
        self._record_frames()
        self.session._turn_closed(self)

    # ------------------------------------------------------------------ reader side

    def _send_urgent(self, response: AgentResponse) -> None:
        if not self._closed and not self._complete_requested and not self._final_sent:
            self._urgent.append(response)
            self._wakeup.set()

    def _track(self, task: asyncio.Task[Any]) -> None:
        """Keep the turn open (no auto-FINAL) until ``task`` is done."""
        if task.done():
            return
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        self._maybe_complete()

    def _reply_due(self, event: MediaEvent) -> None:
        """``event`` awaits this turn's reply: start the handler timeout (once per turn).

        Only the wait for this reply counts: a handler parked in ``collect_input()`` has
        requested its own turn's FINAL, and the input it gets restarts the count on that
        input's turn.
        """
        timeout = self._config.handler_timeout_s
        if (
            not timeout
            or not self._requires_reply
            or self._reply_deadline is not None
            or self._final_requested
            or self._closed
        ):
            return
        self._reply_event = event
        self._reply_deadline = self._hub.clock() + timeout
        self._reply_timer = asyncio.get_running_loop().call_later(timeout, self._on_reply_timer)

    def _stop_reply_timer(self) -> None:
        self._reply_event = None
        if self._reply_timer is not None:
            self._reply_timer.cancel()
            self._reply_timer = None

    def _on_reply_timer(self) -> None:
        self._reply_timer = None
        self._reply_overdue()

    def _reply_overdue(self) -> bool:
        """If the reply is overdue by the hub's clock, answer as a handler error; True if so.

        The handler tasks holding the turn are cancelled; the error path (``error`` handlers,
        apology or custom event) answers. Re-arms the timer while the deadline is ahead.
        """
        event, deadline = self._reply_event, self._reply_deadline
        if event is None or deadline is None or self._final_requested or self._closed:
            return False
        now = self._hub.clock()
        if now < deadline:
            if self._reply_timer is None:
                loop = asyncio.get_running_loop()
                self._reply_timer = loop.call_later(deadline - now, self._on_reply_timer)
            return False
        self._stop_reply_timer()
        stuck = [
            task
            for task in self._tasks
            if task is not self._audio_task and task not in self._error_tasks
        ]
        if not stuck:  # handlers are done; the FINAL only waits for Webex's half-close
            return False
        timeout = self._config.handler_timeout_s
        exc = HandlerTimeoutError(
            f"no reply to {event.name} within handler_timeout_s={timeout:g}; handler cancelled"
        )
        # Report first: the error task holds the turn open while the stuck tasks wind down.
        self._hub.report_error(self, exc, f"{event.name} handler", event)
        for task in stuck:
            task.cancel()
        return True

    def _handle(self, item: CallerInput | None) -> None:
        """Process one caller message's input (called by its TurnHandle, never blocks)."""
        self._steady = None
        if self.kind == "other" and item is not None:
            self.kind = input_kind(item)
            self._requires_reply = self.kind in _REPLY_KINDS
        if isinstance(item, AudioIn):
            self._on_audio(item)
            if self._first_handled and not self._input_ended:
                # A 20 ms frame while the caller's input goes on: nothing the reply waits
                # for changed (the input ends, and is delivered, only with _input_ended).
                return
        elif isinstance(item, DtmfIn):
            self._input_end_at = self._hub.clock()
            self.session._deliver(
                DtmfInput(
                    session=self.session,
                    turn=self,
                    digits=item.digits,
                    terminator=self.session.settings.dtmf_terminator,
                )
            )
        elif isinstance(item, EventIn):
            self._on_event(item)
        else:
            self._dropped["empty"] += 1
        self._first_handled = True
        self._maybe_complete()

    def _on_event(self, event: EventIn) -> None:
        params = dict(event.parameters)
        session = self.session
        et = event.type
        if et == "session_start":
            if session.record.started:
                self.log.info("duplicate SESSION_START ignored")
                if self.kind == "session_start":
                    self._requires_reply = False
                return
            session.record.started = True
            start = SessionStart(
                session=session, turn=self, event_name=event.name, parameters=params
            )
            self._hub.dispatch(start)
            self._reply_due(start)
        elif et == "session_end":
            session._caller_ended(self, event.name, params)
        elif et == "no_input":
            self._input_end_at = self._hub.clock()
            session._deliver(
                NoInput(session=session, turn=self, event_name=event.name, parameters=params)
            )
        elif et == "start_of_dtmf":
            session._caller_input_started("dtmf", self)
            self._hub.dispatch(StartOfDtmf(session=session, turn=self))
        elif et == "custom_event":
            self._input_end_at = self._hub.clock()
            session._deliver(
                CustomEvent(session=session, turn=self, event_name=event.name, parameters=params)
            )
        else:
            self._dropped["empty"] += 1

    def _on_audio(self, voice: AudioIn) -> None:
        # Runs for every 20 ms caller frame: work that repeats frame after frame (coercing the
        # same encoding name, choosing the decoder, buffer bounds) is done once and kept.
        data = voice.audio
        self._frames_in += 1
        if self._input_ended:
            self._dropped["after_close"] += 1
            return
        # Metadata first: Webex may declare encoding/rate on a frame without (enough) audio
        # and send only caller_audio afterwards; later frames inherit what was declared.
        name = voice.encoding
        if name != "unspecified" and name != self._encoding_name:
            try:
                encoding = _audio.AudioEncoding.coerce(name)
            except ValueError:
                self._dropped["bad"] += 1
                return
            self._encoding, self._encoding_name = encoding, name
            self._decode = _audio.frame_decoder(encoding)
            if encoding is not _audio.AudioEncoding.MULAW:
                self._decode_buffered()
        declared = voice.sample_rate_hz
        if declared and declared != 8000 and declared != 16000:
            self._dropped["bad"] += 1
            return
        detector = self._detector
        if declared and detector is None:
            self._rate = declared
        if voice.language_code:
            self._language = voice.language_code
        size = len(data)
        if size < self._config.min_frame_bytes:
            self._dropped["small"] += 1
            return
        if size > _MAX_FRAME:
            if not self._dropped["large"]:
                self.log.warning("caller audio frame of %d bytes dropped (max 64 KiB)", size)
            self._dropped["large"] += 1
            return
        rate = declared or self._rate or self._config.input_sample_rate
        if detector is None:
            self._rate = rate
            detector = self._detector = self.session._detector_for(self, rate)
            # µ-law for a detector that reads it: no decoding per frame (see _buffer)
            self._buffer_ulaw = ulaw = self._encoding is _audio.AudioEncoding.MULAW and bool(
                getattr(detector, "reads_ulaw", False)
            )
            per_ms = rate // 1000 if ulaw else rate * 2 // 1000  # stored bytes per ms
            self._preroll_limit = _PREROLL_MS * per_ms
            self._utterance_limit = self._config.max_utterance_ms * per_ms
        elif rate != self._rate:
            self._dropped["bad"] += 1
            return
        self._steady = voice
        self._take_audio(data, detector)

    def _take_audio(self, data: bytes, detector: SpeechDetector) -> None:
        """Buffer, hand out (``audio_input``) and end-point one frame that passed the checks."""
        rate = self._rate
        offset = self._offset_ms
        if self._buffer_ulaw:
            raw = data if type(data) is bytes else bytes(data)
            self._offset_ms = offset + len(raw) / rate * 1000
            self._buffer(raw)
            if self._hub.wants("audio_input", self.session.virtual_agent_id):
                self._queue_audio_input(_DECODE_MULAW(raw), raw, rate, offset)
            events = detector.feed_ulaw(raw)
        else:
            pcm = self._decode(data)
            self._offset_ms = offset + len(pcm) / 2 / rate * 1000
            self._buffer(pcm)
            if self._hub.wants("audio_input", self.session.virtual_agent_id):
                self._queue_audio_input(pcm, data, rate, offset)
            events = detector.feed(pcm)
        if events:
            self._on_vad_events(events)

    def _handle_like(self, data: bytes, like: AudioIn) -> None:
        """``_handle`` of ``like`` with ``data`` as its audio (the same metadata).

        Per 20 ms frame of a stream whose frames differ only in their audio: when ``like`` is
        the frame taken last (``_steady``: nothing came between) and ``data`` is as long, every
        check that frame passed (encoding, rate, size) holds for this one, so the frame goes
        straight to the buffer and the end-pointer.
        """
        if like is self._steady and len(data) == len(like.audio) and not self._input_ended:
            self._frames_in += 1
            detector = self._detector
            assert detector is not None  # made by the frame that set _steady
            self._take_audio(data, detector)
            if self._input_ended:  # what _handle does once the input ended
                self._maybe_complete()
            return
        voice = like.with_audio(data)
        self._handle(voice)
        if self._steady is voice and len(data) == len(like.audio):
            self._steady = like  # the next frame like ``like`` takes the path above

    def _queue_audio_input(self, pcm: bytes, data: bytes, rate: int, offset: float) -> None:
        """An ``audio_input`` event for one frame (only when a handler listens)."""
        self._queue_audio(
            AudioInput(
                session=self.session,
                turn=self,
                pcm16=pcm,
                audio=bytes(data),
                encoding=self._encoding.name,
                sample_rate=rate,
                offset_ms=offset,
                language_code=self._language,
            )
        )

    def _on_vad_events(self, events: list[VADEvent]) -> None:
        """Apply the end-pointer's events (at once, or when the server's Silero batch ran)."""
        if self._input_ended:
            return
        for vad_event in events:
            if isinstance(vad_event, SpeechStarted) and not self._speaking:
                self._speech_started(vad_event.onset_ms)
            elif isinstance(vad_event, SpeechEnded):
                self._end_input(
                    "silence" if vad_event.reason == "complete_timeout" else "max_speech",
                    (vad_event.at_ms - vad_event.last_voice_ms) / 1000,
                )
                return

    def _boundary(
        self, kind: Literal["start_of_input", "end_of_input"], name: str = ""
    ) -> AgentResponse:
        configured = self._config.boundary_response_type
        response_type: Literal["final", "chunk", "partial"] = (
            "partial" if configured == "PARTIAL" else "chunk"
        )
        if configured == "FINAL" and self.transport == "grpc":
            # The reference gateway's form on gRPC (a standalone event-only FINAL). On
            # WebSocket a reply has exactly one FINAL, so boundaries stay non-FINAL there.
            response_type = "final"
        return boundary_response(
            kind, response_type=response_type, name=name, settings=self.session.settings
        )

    def _buffer(self, chunk: bytes) -> None:
        """Keep a frame for the utterance (or the pre-roll before it).

        The frames are kept as they came when the detector reads µ-law itself
        (``_buffer_ulaw``): only the utterance is decoded, once, when it is delivered. The
        byte counts and bounds are of what is stored (µ-law: half the LINEAR16 figures).
        """
        size = len(chunk)
        if self._speaking:
            if self._utterance_bytes < self._utterance_limit:
                self._utterance.append(chunk)
                self._utterance_bytes += size
            return
        preroll = self._preroll
        preroll.append(chunk)
        total = self._preroll_bytes + size
        limit = self._preroll_limit
        while total - len(preroll[0]) >= limit:
            total -= len(preroll.popleft())
        self._preroll_bytes = total

    def _decode_buffered(self) -> None:
        """The encoding changed mid-turn: keep the buffered µ-law frames as LINEAR16 from now."""
        if self._buffer_ulaw:
            self._buffer_ulaw = False
            self._preroll = deque(map(_DECODE_MULAW, self._preroll))
            self._utterance = list(map(_DECODE_MULAW, self._utterance))
            self._preroll_bytes *= 2
            self._utterance_bytes *= 2
            self._preroll_limit *= 2
            self._utterance_limit *= 2

    def _speech_started(self, onset_ms: float) -> None:
        self._speaking = True
        self._utterance = list(self._preroll)
        self._utterance_bytes = self._preroll_bytes
        self._preroll.clear()
        self._preroll_bytes = 0
        self._send_urgent(self._boundary("start_of_input"))
        self.session._caller_input_started("speech", self)
        self._hub.dispatch(StartOfInput(session=self.session, turn=self, offset_ms=onset_ms))

    def _end_input(self, reason: str, delay_s: float | None = None) -> None:
        """End the caller's input; ``delay_s``: the end-pointer's wait after the last speech."""
        self._input_ended = True
        self._audio_done()
        if not self._speaking and reason != "handler":
            return
        self._speaking = False
        self._input_end_at = self._hub.clock()
        if delay_s is not None:
            self._hub.metrics.end_of_input(self.transport, delay_s)
            self._span.event("end_of_input", delay_s=delay_s)
        self._send_urgent(self._boundary("end_of_input", "end_of_input"))
        pcm = b"".join(self._utterance)
        if self._buffer_ulaw:
            pcm = _audio.ulaw_to_pcm16(pcm)
        self._utterance = []
        self.session._deliver(
            Utterance(
                session=self.session,
                turn=self,
                pcm16=pcm,
                sample_rate=self._rate or self._config.input_sample_rate,
                reason=reason,
                language_code=self._language,
            )
        )

    def _queue_audio(self, event: AudioInput) -> None:
        """Hand an ``audio_input`` event to the turn's consumer task (started on first use)."""
        self._audio_events.append(event)
        self._audio_ready.set()
        if self._audio_task is None:
            self._audio_task = asyncio.get_running_loop().create_task(self._audio_consumer())
            self._track(self._audio_task)

    @property
    def _audio_backlogged(self) -> bool:
        """Whether :meth:`_audio_backlog` would wait: the audio queue is full and consumed."""
        if len(self._audio_events) < self._config.response_queue_size or self._closed:
            return False
        task = self._audio_task
        return task is not None and not task.done()

    async def _audio_backlog(self) -> None:
        """Wait while ``response_queue_size`` audio events wait for their handlers."""
        while self._audio_backlogged:
            self._audio_room.clear()
            await self._audio_room.wait()

    def _audio_done(self) -> None:
        """No more audio events: the consumer ends after the queued ones."""
        self._audio_eof = True
        self._audio_ready.set()

    async def _audio_consumer(self) -> None:
        events = self._audio_events
        while True:
            while events:
                event = events.popleft()
                self._audio_room.set()
                await self._hub.run_handlers(event)
            if self._audio_eof:
                return
            self._audio_ready.clear()
            await self._audio_ready.wait()

    def _on_half_close(self) -> None:
        """The caller finished sending this turn (gRPC half-close)."""
        if isinstance(self._detector, BatchedDetector):
            self._detector.flush()  # the audio still waiting for the batch decides first
        self._audio_done()
        self._half_closed = True
        if self.kind == "audio" and self._speaking and not self._input_ended:
            self._end_input("half_close")
        self._maybe_complete()


class Session:
    """One conversation (a Webex call), shared by all its RPCs.

    Attributes:
        conversation_id: Webex conversation id.
        virtual_agent_id: The agent this conversation is bound to.
        customer_org_id: Webex org id of the caller's tenant.
        record: The persistent :class:`~webex_byova.media._model.ConversationRecord`.
    """

    def __init__(self, hub: _Hub, record: ConversationRecord) -> None:
        self._hub = hub
        if not isinstance(record.user_state, PlainState):
            record.user_state = PlainState(record.user_state)
        self.record = record
        self.conversation_id = record.conversation_id
        #: The conversation id as it may appear in a log line (escaped, bounded).
        self.log_id = printable(record.conversation_id)
        self.virtual_agent_id = record.virtual_agent_id
        self.customer_org_id = record.customer_org_id
        self.tracking_id = ""
        self.turns: list[Turn] = []
        self._ended = False
        self.end_reason = ""
        self._waiter: tuple[asyncio.Future[InputEvent], asyncio.Task[Any] | None] | None = None
        self._playing: Turn | None = None
        self._wav_playback: tuple[Turn, float] | None = None
        self._state_reported = False
        # One end-pointer per conversation (it learns the line's noise and the caller's level);
        # lent to one audio turn at a time and reset, not rebuilt, between turns.
        self._detector: SpeechDetector | None = None
        self._detector_key: tuple[int, int, int] | None = None
        self._detector_owner: Turn | None = None
        # set by the server when the Session object is created in this process
        self._transport: Transport = "grpc"
        self._span: ConversationSpan = _NO_SPAN
        self._drain_action: str | None = None  # the server drains: end on the next turn
        self._hangup = False

    def __repr__(self) -> str:
        return (
            f"Session(conversation_id={self.conversation_id!r}, "
            f"virtual_agent_id={self.virtual_agent_id!r}, turns={self.record.turns}, "
            f"ended={self._ended})"
        )

    @property
    def state(self) -> dict[str, Any]:
        """Per-conversation user data, kept across RPCs until the call ends.

        Plain data only (``str``, numbers, ``bool``, ``None``, lists, ``str``-keyed dicts):
        setting a live object (a client, a socket, a lock …) raises :class:`TypeError` where
        the handler sets it; one mutated in place is reported on the server log when the turn
        ends (and the conversation record is then not saved).
        """
        return self.record.user_state

    @property
    def settings(self) -> InputSettings:
        """Current input settings (mode, DTMF, speech timers) sent with every FINAL."""
        return self.record.settings

    # transcript/summary live in the record (plain data), so they move with the conversation
    @property
    def _transcript(self) -> TextSpec | None:
        return _spec_of(self.record.transcript)

    @_transcript.setter
    def _transcript(self, value: TextSpec | None) -> None:
        self.record.transcript = _plain_spec(value)

    @property
    def _summary(self) -> TextSpec | None:
        return _spec_of(self.record.summary)

    @_summary.setter
    def _summary(self, value: TextSpec | None) -> None:
        self.record.summary = _plain_spec(value)

    @property
    def ended(self) -> bool:
        """True once the conversation is over."""
        return self._ended

    @property
    def current_turn(self) -> Turn | None:
        """The newest open turn that can still answer, if any."""
        for turn in reversed(self.turns):
            if not turn.finished and not turn.closed:
                return turn
        return None

    def _reply_turn(self) -> Turn:
        turn = self.current_turn
        if turn is None:
            raise TurnFinishedError(
                f"conversation {self.conversation_id} has no open turn to answer on"
            )
        return turn

    def say(self, text: str | None = None, **kwargs: Any) -> asyncio.Future[bool]:
        """:meth:`Turn.say` on the current turn."""
        return self._reply_turn().say(text, **kwargs)

    def set_input(
        self,
        mode: Literal["voice", "dtmf", "voice_dtmf"] | None = None,
        *,
        dtmf_length: int | None = None,
        inter_digit_timeout_ms: int | None = None,
        terminator: str | None = None,
        complete_timeout_ms: int | None = None,
        incomplete_timeout_ms: int | None = None,
        max_speech_timeout_ms: int | None = None,
        no_input_timeout_ms: int | None = None,
        sensitive: bool | None = None,
    ) -> InputSettings:
        """Change what Webex collects next. One rule for every setting: it is sent with the
        current turn's FINAL (if not out yet) and every later one, until changed again.

        ``mode``: ``voice``, ``dtmf`` or ``voice_dtmf``; DTMF: ``dtmf_length`` (max digits),
        ``inter_digit_timeout_ms``, ``terminator`` (one key or ``""``); speech timers in ms
        (``complete_timeout_ms`` is also the server's end-of-speech silence); ``sensitive``
        marks the replies ``input_sensitive`` (Webex masks the caller's input, e.g. a card
        number): set it back to ``False`` once the sensitive entry is over. Wrong types raise
        :class:`TypeError`, out-of-range values :class:`ValueError`.
        """
        _check_type("set_input(mode=)", mode, str, "a str")
        _check_type("set_input(terminator=)", terminator, str, "a str")
        _check_type("set_input(sensitive=)", sensitive, bool, "a bool")
        for what, number in (
            ("dtmf_length", dtmf_length),
            ("inter_digit_timeout_ms", inter_digit_timeout_ms),
            ("complete_timeout_ms", complete_timeout_ms),
            ("incomplete_timeout_ms", incomplete_timeout_ms),
            ("max_speech_timeout_ms", max_speech_timeout_ms),
            ("no_input_timeout_ms", no_input_timeout_ms),
        ):
            if number is not None and (not isinstance(number, int) or isinstance(number, bool)):
                raise TypeError(f"set_input({what}=) must be an int, got {type(number).__name__}")
        changes: dict[str, Any] = {
            k: v
            for k, v in {
                "mode": mode,
                "dtmf_input_length": dtmf_length,
                "dtmf_inter_digit_timeout_ms": inter_digit_timeout_ms,
                "dtmf_terminator": terminator.upper() if terminator is not None else None,
                "complete_timeout_ms": complete_timeout_ms,
                "incomplete_timeout_ms": incomplete_timeout_ms,
                "max_speech_timeout_ms": max_speech_timeout_ms,
                "no_input_timeout_ms": no_input_timeout_ms,
                "sensitive": sensitive,
            }.items()
            if v is not None
        }
        if changes:
            self.record.settings = self.record.settings.updated(**changes)
        return self.record.settings

    def transfer_to_agent(self, text: str | None = None, **kwargs: Any) -> asyncio.Future[bool]:
        """:meth:`Turn.transfer_to_agent` on the current turn."""
        return self._reply_turn().transfer_to_agent(text, **kwargs)

    def end_session(self, text: str | None = None, **kwargs: Any) -> asyncio.Future[bool]:
        """:meth:`Turn.end_session` on the current turn."""
        return self._reply_turn().end_session(text, **kwargs)

    async def collect_input(self, timeout: float | None = None) -> InputEvent:  # noqa: ASYNC109
        """Wait for the caller's next input (utterance, DTMF, no-input or custom event).

        The input is delivered here instead of to the event handlers. Only one waiter per
        conversation. Raises :class:`TimeoutError` or :class:`SessionEndedError`.
        """
        if self._ended:
            raise SessionEndedError(f"conversation {self.conversation_id} has ended")
        if self._waiter is not None and not self._waiter[0].done():
            raise RuntimeError("another handler is already waiting in collect_input()")
        fut: asyncio.Future[InputEvent] = asyncio.get_running_loop().create_future()
        self._waiter = (fut, asyncio.current_task())
        # The waiting handler no longer holds its turn open.
        task = asyncio.current_task()
        for turn in self.turns:
            if task in turn._tasks:
                turn._tasks.discard(task)
                turn._maybe_complete()
        try:
            if timeout is None:
                return await fut
            return await asyncio.wait_for(fut, timeout)
        finally:
            if self._waiter is not None and self._waiter[0] is fut:
                self._waiter = None

    # ------------------------------------------------------------------ internals

    def _open_turn(self, kind: TurnKind, tracking_id: str, transport: Transport = "grpc") -> Turn:
        self.record.turns += 1
        if tracking_id:
            self.tracking_id = tracking_id
        turn = Turn(self, self.record.turns, kind, tracking_id=tracking_id, transport=transport)
        self.turns.append(turn)
        self.record.last_active = self._hub.clock()
        return turn

    def _detector_for(self, turn: Turn, sample_rate: int) -> SpeechDetector:
        """The conversation's end-pointer for ``turn``'s audio, reset for a new turn.

        It is kept (with the noise floor and caller level it learned) while the sample rate
        and the speech timers stay the same and no other turn is using it; otherwise, or when a
        custom detector has no ``reset_turn``, a fresh one is made as before.
        """
        settings = self.settings
        key = (sample_rate, settings.complete_timeout_ms, settings.max_speech_timeout_ms)
        detector = self._detector
        reusable = (
            detector is not None
            and self._detector_owner is None
            and self._detector_key == key
            and callable(getattr(detector, "reset_turn", None))
        )
        if reusable:
            assert detector is not None
            detector.reset_turn()
        else:
            detector = self._hub.make_detector(sample_rate, settings)
        if isinstance(detector, BatchedDetector):
            detector.on_events = turn._on_vad_events
        if not reusable:
            if self._detector_owner is not None:  # overlapping audio turns: a private one
                return detector
            self._detector, self._detector_key = detector, key
        self._detector_owner = turn
        return detector

    def _release_detector(self, turn: Turn) -> None:
        if isinstance(turn._detector, BatchedDetector):
            turn._detector.release()  # its audio still in the batch is dropped
        if self._detector_owner is turn:
            self._detector_owner = None

    def _turn_closed(self, turn: Turn) -> None:
        with contextlib.suppress(ValueError):
            self.turns.remove(turn)
        self.record.last_active = self._hub.clock()
        if self._playing is turn:
            self._playing = None

    def _deliver(self, event: InputEvent) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter[0].done():
            fut, task = waiter
            self._waiter = None
            fut.set_result(event)
            if task is not None and event.turn is not None:
                event.turn._track(task)
        else:
            self._hub.dispatch(event)
        if event.turn is not None:
            event.turn._input_delivered = True
            event.turn._reply_due(event)

    def _caller_input_started(self, source: str, by: Turn) -> None:
        """Barge-in: cut a barge-in-enabled CHUNK stream, note an interrupted WAV prompt."""
        playing = self._playing
        if playing is not None and playing is not by and playing._streaming_barge_in:
            playing._cut = True
            playing._wakeup.set()
            self._hub.dispatch(BargeIn(session=self, turn=by, source=source, interrupted=playing))
            return
        wav = self._wav_playback
        if wav is not None and wav[0] is not by and self._hub.clock() < wav[1]:
            self._wav_playback = None
            self._hub.dispatch(BargeIn(session=self, turn=by, source=source, interrupted=wav[0]))

    def _note_playback(self, turn: Turn) -> None:
        barge = [p for p in turn._prompts if p.barge_in and p.audio]
        if barge:
            seconds = sum(max(0, len(p.audio) - 44) for p in turn._prompts) / (
                self._hub.config.sample_rate
            )
            self._wav_playback = (turn, self._hub.clock() + seconds)

    def _caller_ended(self, turn: Turn, name: str, params: dict[str, Any]) -> None:
        if self._ended:
            return
        # Acknowledge the hang-up with one terminal FINAL (no prompt: Webex can no longer play
        # one), as the reference gateway does; it also carries a transcript/summary if set.
        turn._events.insert(0, output_event("session_end", "session_ended_by_client", None))
        turn._terminal = True
        # The hang-up is this turn's input, also on an audio turn that had no utterance yet
        # (its FINAL must not wait for one, nor on WebSocket for a half-close that never comes).
        turn._input_delivered = True
        self._hangup = True
        event = SessionEnd(
            session=self, turn=turn, reason="caller_ended", event_name=name, parameters=params
        )
        self._end("caller_ended", event)

    def _terminate(self, kind: str) -> None:
        if not self._ended:
            self._end(kind, SessionEnd(session=self, turn=None, reason=kind))

    def _forget(self, reason: str) -> None:
        """Mark ended without ``session_end`` (the conversation went on in another process)."""
        self._ended = True
        self.end_reason = reason
        waiter = self._waiter
        if waiter is not None and not waiter[0].done():
            waiter[0].set_exception(SessionEndedError(f"conversation ended: {reason}"))
            waiter[0].exception()  # retrieved by the waiter; avoid "never retrieved" noise
        self._waiter = None

    def _end(self, reason: str, event: SessionEnd | None) -> None:
        """Mark ended, fail a waiting collect_input, let the hub drop and notify."""
        self._forget(reason)
        by = event.turn if event is not None else None
        for turn in list(self.turns):
            if turn is not by:
                turn._drop()
        self._hub.session_ended(self, reason, event)


def _plain_spec(value: TextSpec | None) -> dict[str, Any] | None:
    if value is None:
        return None
    return {"text": value.text, "ssml": value.ssml, "language_code": value.language_code}


def _spec_of(data: Mapping[str, Any] | None) -> TextSpec | None:
    if not data:
        return None
    return TextSpec(
        text=data.get("text"), ssml=data.get("ssml"), language_code=data.get("language_code", "")
    )
