"""Transport-neutral BYOVA messages: what one caller request or one agent response says.

Both wire formats speak the same ``VoiceVARequest`` / ``VoiceVAResponse`` model: gRPC as
protobuf (numeric enums, ``bytes``), WebSocket as JSON envelopes (enum names as strings,
Base64 audio, ``voice_va_input_type`` wrapper). Each front end translates its wire format to and
from these plain dataclasses in its own codec module (``_grpc_codec``, ``_ws_codec``); the call
core consumes :class:`CallerRequest` and produces :class:`AgentResponse` and never sees a proto,
a JSON document, a socket or a clock.

Conventions:

* DTMF is a key string (``"0"``-``"9"``, ``"*"``, ``"#"``, ``"A"``-``"D"``); codecs map wire
  enums (``DTMF_DIGIT_ZERO`` = 10 on gRPC, the name on WebSocket) to keys and skip unknown ones.
* Enumerations are lower-case literals (``"mulaw"``, ``"session_start"``, ``"final"``); a wire
  value the codec does not know becomes ``"unspecified"``.
* Audio is raw bytes as Webex sent them (codecs Base64-decode on WebSocket).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._model import InputSettings

__all__ = [
    "AgentResponse",
    "AudioEncoding",
    "AudioIn",
    "CallerInput",
    "CallerRequest",
    "DtmfIn",
    "EventIn",
    "InputEventType",
    "OutputEventSpec",
    "OutputEventType",
    "PromptSpec",
    "ResponseType",
    "TextSpec",
]

AudioEncoding = Literal["unspecified", "linear16", "mulaw", "alaw"]
InputEventType = Literal[
    "unspecified", "session_start", "session_end", "no_input", "start_of_dtmf", "custom_event"
]
ResponseType = Literal["final", "partial", "chunk"]
OutputEventType = Literal[
    "session_end", "transfer_to_agent", "custom_event", "start_of_input", "end_of_input",
    "no_match", "no_input",
]  # fmt: skip


@dataclass(frozen=True, slots=True)
class PromptSpec:
    """One prompt: text (or SSML markup) and/or complete audio (a WAV file in WAV mode)."""

    text: str = ""
    audio: bytes = b""
    audio_uri: str = ""
    barge_in: bool = False


@dataclass(frozen=True, slots=True)
class TextSpec:
    """Text or SSML content for ``session_transcript`` / ``session_summary``."""

    text: str | None = None
    ssml: str | None = None
    language_code: str = ""

    def __post_init__(self) -> None:
        if (self.text is None) == (self.ssml is None):
            raise ValueError("TextSpec needs exactly one of text= or ssml=")
        for name in ("text", "ssml", "language_code"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise TypeError(f"TextSpec {name} must be a str, got {type(value).__name__}")


@dataclass(slots=True)
class AudioIn:
    """One piece of caller audio (``VoiceInput``).

    Not frozen, unlike the other messages: one is built per 20 ms caller frame, and a frozen
    dataclass's ``__init__`` costs about three times a plain one's. Treat it as read-only.
    """

    audio: bytes = b""
    encoding: AudioEncoding = "unspecified"
    sample_rate_hz: int = 0
    language_code: str = ""
    is_single_utterance: bool = False
    #: ``audio_timestamp`` as POSIX seconds, when the wire carried one.
    timestamp: float | None = None

    def with_audio(self, audio: bytes) -> AudioIn:
        """This input with other audio, the same metadata (the next frame of a stream)."""
        return AudioIn(
            audio,
            self.encoding,
            self.sample_rate_hz,
            self.language_code,
            self.is_single_utterance,
            self.timestamp,
        )


@dataclass(frozen=True, slots=True)
class DtmfIn:
    """A completed DTMF sequence (``DTMFInputs``), as keys; includes a terminator if sent."""

    digits: str = ""


@dataclass(frozen=True, slots=True)
class EventIn:
    """A caller-side event (``EventInput``)."""

    type: InputEventType = "unspecified"
    name: str = ""
    parameters: Mapping[str, Any] = field(default_factory=dict)


CallerInput = AudioIn | DtmfIn | EventIn


@dataclass(frozen=True, slots=True)
class CallerRequest:
    """One ``VoiceVARequest`` from Webex. ``input`` is ``None`` when the oneof was empty."""

    conversation_id: str
    customer_org_id: str = ""
    virtual_agent_id: str = ""
    allow_partial_responses: bool = False
    vendor_specific_config: str = ""
    input: CallerInput | None = None
    additional_info: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class OutputEventSpec:
    """One ``OutputEvent`` (only the first of a response is honoured by Webex)."""

    type: OutputEventType
    name: str = ""
    metadata: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class AgentResponse:
    """One ``VoiceVAResponse`` to Webex.

    ``settings`` carries what Webex should collect next (``input_mode`` from
    ``settings.mode`` plus ``input_handling_config``); ``None`` leaves both unset on the wire.
    ``omit_input_mode`` writes ``input_handling_config`` from ``settings`` but leaves
    ``input_mode`` unset (the shape of the reference gateway's standalone START_OF_INPUT).
    A codec writes ``input_sensitive`` only together with ``settings``.
    """

    response_type: ResponseType = "final"
    prompts: tuple[PromptSpec, ...] = ()
    output_events: tuple[OutputEventSpec, ...] = ()
    settings: InputSettings | None = None
    input_sensitive: bool = False
    transcript: TextSpec | None = None
    summary: TextSpec | None = None
    omit_input_mode: bool = False

    @property
    def is_terminal(self) -> bool:
        """True if the first output event (the only one Webex honours) ends the VA session."""
        return bool(self.output_events) and self.output_events[0].type in (
            "session_end",
            "transfer_to_agent",
        )
