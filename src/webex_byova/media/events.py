"""Events the media server dispatches to handlers (and to a proxy connector).

Each event carries the :class:`~webex_byova.media.session.Session` (the call) and, except for
session-level events raised outside an RPC, the :class:`~webex_byova.media.session.Turn` (the
RPC that carried the input). Handlers answer through ``event.turn`` / ``event.session``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

if TYPE_CHECKING:
    from .session import Session, Turn

__all__ = [
    "EVENT_NAMES",
    "EVENT_TYPES",
    "AudioInput",
    "BargeIn",
    "CustomEvent",
    "DtmfInput",
    "ErrorEvent",
    "MediaEvent",
    "NoInput",
    "SessionEnd",
    "SessionStart",
    "StartOfDtmf",
    "StartOfInput",
    "TurnEnded",
    "TurnStarted",
    "Utterance",
]

TurnKind = Literal[
    "session_start", "audio", "start_of_dtmf", "dtmf", "no_input", "custom_event",
    "session_end", "other",
]  # fmt: skip


@dataclass(eq=False, slots=True, kw_only=True)
class MediaEvent:
    """Base of all events: ``name`` is the registration name (``"utterance"`` …)."""

    name: ClassVar[str] = ""
    session: Session
    turn: Turn | None = None

    @property
    def conversation_id(self) -> str:
        """The Webex conversation (call) id."""
        return self.session.conversation_id


@dataclass(eq=False, slots=True, kw_only=True)
class SessionStart(MediaEvent):
    """Webex started the virtual-agent session (``SESSION_START``); answer with a welcome."""

    name: ClassVar[str] = "session_start"
    event_name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False, slots=True, kw_only=True)
class SessionEnd(MediaEvent):
    """The conversation is over.

    ``reason``: ``caller_ended`` (Webex ``SESSION_END``), ``session_end`` / ``transfer_to_agent``
    (a handler ended it, including the server ending the call after a handler error when
    ``end_call_on_error`` is set), ``idle_timeout``, ``evicted`` (made room at
    ``max_conversations``), ``server_stop``, or what a front end passed to
    ``BYOVAMediaServer.end_conversation`` (``connection_lost`` by default).
    """

    name: ClassVar[str] = "session_end"
    reason: str = ""
    event_name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False, slots=True, kw_only=True)
class TurnStarted(MediaEvent):
    """A new ``ProcessCallerInput`` RPC of this conversation began."""

    name: ClassVar[str] = "turn_started"
    kind: TurnKind = "other"


@dataclass(eq=False, slots=True, kw_only=True)
class TurnEnded(MediaEvent):
    """An RPC completed. ``outcome``: ``completed``, ``terminal`` or ``cancelled``."""

    name: ClassVar[str] = "turn_ended"
    kind: TurnKind = "other"
    outcome: str = "completed"


@dataclass(eq=False, slots=True, kw_only=True)
class AudioInput(MediaEvent):
    """One caller audio frame, decoded to 16-bit little-endian PCM (``pcm16``).

    ``audio`` is the frame as received, ``encoding`` its wire encoding name (``MULAW``,
    ``ALAW`` or ``LINEAR16``), ``offset_ms`` its start within the turn's audio.
    """

    name: ClassVar[str] = "audio_input"
    pcm16: bytes = b""
    audio: bytes = b""
    encoding: str = "MULAW"
    sample_rate: int = 8000
    offset_ms: float = 0.0
    language_code: str = ""


@dataclass(eq=False, slots=True, kw_only=True)
class StartOfInput(MediaEvent):
    """The caller started speaking (``START_OF_INPUT`` was sent)."""

    name: ClassVar[str] = "start_of_input"
    offset_ms: float = 0.0


@dataclass(eq=False, slots=True, kw_only=True)
class Utterance(MediaEvent):
    """The caller finished an utterance (``END_OF_INPUT`` was sent).

    ``pcm16`` holds the whole utterance (16-bit LE PCM at ``sample_rate``) from a little before
    the detected start; ``reason`` is ``silence``, ``max_speech``, ``handler`` (a handler called
    ``turn.end_input()``) or ``half_close`` (Webex closed the stream mid-speech).
    """

    name: ClassVar[str] = "utterance"
    pcm16: bytes = b""
    sample_rate: int = 8000
    reason: str = "silence"
    language_code: str = ""

    @property
    def duration_ms(self) -> float:
        """Length of the utterance audio in milliseconds."""
        return len(self.pcm16) / 2 / self.sample_rate * 1000


@dataclass(eq=False, slots=True, kw_only=True)
class StartOfDtmf(MediaEvent):
    """The caller pressed a key; Webex is collecting digits (``START_OF_DTMF``)."""

    name: ClassVar[str] = "start_of_dtmf"


@dataclass(eq=False, slots=True, kw_only=True)
class DtmfInput(MediaEvent):
    """Collected DTMF keys as a string of ``0-9 * # A-D`` (empty = nothing entered).

    ``digits`` is what Webex sent, the terminator included when the caller pressed it
    (``"12345#"``); :attr:`entered` is the same without it (``"12345"``). ``terminator`` is
    the terminator key in force when the keys were collected (``""`` if none).
    """

    name: ClassVar[str] = "dtmf_input"
    digits: str = ""
    terminator: str = ""

    @property
    def entered(self) -> str:
        """The keys without a trailing terminator (``"12345#"`` -> ``"12345"``)."""
        if self.terminator and self.digits.endswith(self.terminator):
            return self.digits[: -len(self.terminator)]
        return self.digits


@dataclass(eq=False, slots=True, kw_only=True)
class NoInput(MediaEvent):
    """Webex reported no caller input within the no-input timeout (``NO_INPUT``)."""

    name: ClassVar[str] = "no_input"
    event_name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False, slots=True, kw_only=True)
class CustomEvent(MediaEvent):
    """A ``CUSTOM_EVENT`` from Webex with its ``event_name`` and ``parameters``."""

    name: ClassVar[str] = "custom_event"
    event_name: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False, slots=True, kw_only=True)
class BargeIn(MediaEvent):
    """Caller input interrupted a barge-in-enabled prompt.

    ``source`` is ``speech`` or ``dtmf``; ``interrupted`` is the turn whose playback was cut
    (for CHUNK streaming the remaining audio was not sent).
    """

    name: ClassVar[str] = "barge_in"
    source: str = "speech"
    interrupted: Turn | None = None


@dataclass(eq=False, slots=True, kw_only=True)
class ErrorEvent(MediaEvent):
    """A handler raised. ``source`` is the event being handled; dispatched once per failure."""

    name: ClassVar[str] = "error"
    exception: BaseException | None = None
    source: MediaEvent | None = None


EVENT_TYPES: dict[str, type[MediaEvent]] = {
    cls.name: cls
    for cls in (
        SessionStart,
        SessionEnd,
        TurnStarted,
        TurnEnded,
        AudioInput,
        StartOfInput,
        Utterance,
        StartOfDtmf,
        DtmfInput,
        NoInput,
        CustomEvent,
        BargeIn,
        ErrorEvent,
    )
}
#: Every name accepted by ``BYOVAMediaServer.on``.
EVENT_NAMES: frozenset[str] = frozenset(EVENT_TYPES)
