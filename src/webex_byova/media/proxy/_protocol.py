"""Sans-IO JSON message protocol between the media server and a WebSocket voice-AI backend.

Version :data:`PROTOCOL_VERSION`. Every message is one JSON object in one WebSocket text frame
with a ``type`` and a ``v`` (protocol major version; optional when received, 1 by default).
Unknown fields are ignored so either side may add fields without a version bump. Audio travels
base64-encoded. See ``docs/proxy-protocol.md`` for the normative description.

Nothing here does I/O: :func:`encode_message` turns a message into text,
:func:`decode_inbound` / :func:`decode_outbound` turn text back into a message and never raise:
malformed input becomes :class:`InvalidMessage`, an unknown ``type`` becomes
:class:`UnknownMessage`, so a connector can log and ignore them.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
)

__all__ = [
    "INBOUND_TYPES",
    "OUTBOUND_TYPES",
    "PROTOCOL_VERSION",
    "AudioChunk",
    "AudioEnd",
    "AudioFrame",
    "BackendEvent",
    "ClientEvent",
    "Dtmf",
    "EndSession",
    "InboundMessage",
    "InputConfig",
    "InvalidMessage",
    "OutboundMessage",
    "Prompt",
    "ProxyMessage",
    "SessionEnded",
    "SessionStarted",
    "Transfer",
    "UnknownMessage",
    "decode_inbound",
    "decode_outbound",
    "encode_message",
]

#: Protocol major version spoken by this implementation.
PROTOCOL_VERSION = 1

#: Largest text frame accepted from a backend (base64 of a 64 KiB chunk is ~88 KiB; a WAV
#: prompt of a minute at 8 kHz µ-law is ~640 KiB).
MAX_MESSAGE_CHARS = 8 * 1024 * 1024


def _b64decode(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError("audio must be standard base64") from exc
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ValueError("audio must be a base64 string")


def _b64encode(value: bytes) -> str:
    return base64.b64encode(value).decode("ascii")


#: Bytes carried as standard base64 text in JSON.
B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(_b64encode, return_type=str, when_used="json"),
]

Encoding = Literal["MULAW", "ALAW", "LINEAR16"]
AudioFormat = Literal["wav", "MULAW", "ALAW", "LINEAR16"]


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _audio_format(value: Any) -> Any:
    if isinstance(value, str) and value.lower() == "wav":
        return "wav"
    return _upper(value)


UpperEncoding = Annotated[Encoding, BeforeValidator(_upper)]


class ProxyMessage(BaseModel):
    """Base of every protocol message: ``type`` names it, ``v`` is the protocol version."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    type: str
    v: int = PROTOCOL_VERSION
    direction: ClassVar[Literal["outbound", "inbound"]] = "outbound"


# --------------------------------------------------------------------------------------------
# media server -> backend ("outbound")


class SessionStarted(ProxyMessage):
    """The call started (or, with ``resumed``, the WebSocket was re-opened mid-call)."""

    type: Literal["session.start"] = "session.start"
    conversation_id: str
    org_id: str = ""
    agent_id: str = ""
    language: str = ""
    audio_encoding: UpperEncoding = "MULAW"
    sample_rate: int = 8000
    metadata: dict[str, Any] = Field(default_factory=dict)
    resumed: bool = False
    #: Sequence number of the next ``audio`` message (after a resume: frames before it were
    #: either delivered on the previous connection or dropped by the backpressure policy).
    next_seq: int = 0


class AudioFrame(ProxyMessage):
    """One caller audio frame, in the order received. ``seq`` grows by one per frame."""

    type: Literal["audio"] = "audio"
    seq: int
    turn: int = 0
    audio: B64Bytes
    encoding: UpperEncoding = "MULAW"
    sample_rate: int = 8000
    offset_ms: float = 0.0


class Dtmf(ProxyMessage):
    """Keys the caller entered (``0-9 * # A-D``; empty means nothing was entered)."""

    type: Literal["dtmf"] = "dtmf"
    digits: str = Field("", pattern=r"^[0-9*#A-Da-d]*$")
    turn: int = 0


ClientEventName = Literal[
    "start_of_input", "end_of_input", "start_of_dtmf", "no_input", "custom_event", "barge_in",
]  # fmt: skip


class ClientEvent(ProxyMessage):
    """Something happened on the call.

    ``start_of_input`` / ``end_of_input``: the caller started / finished speaking (the backend
    should answer after ``end_of_input``); ``start_of_dtmf``: digits are being collected;
    ``no_input``: Webex timed out waiting for the caller; ``custom_event``: a Webex custom event
    (``event_name``, ``parameters``); ``barge_in``: the caller interrupted a prompt.
    """

    type: Literal["event"] = "event"
    name: ClientEventName
    event_name: str = ""
    parameters: dict[str, Any] = Field(default_factory=dict)
    turn: int = 0


class SessionEnded(ProxyMessage):
    """The call is over (``reason``: ``caller_ended``, ``transfer_to_agent``, ``session_end``,
    ``idle_timeout``, ``server_stop``, ``backpressure`` …). The connection closes after it."""

    type: Literal["session.end"] = "session.end"
    reason: str = ""


# --------------------------------------------------------------------------------------------
# backend -> media server ("inbound")


class InputConfig(ProxyMessage):
    """What Webex collects next. Only the fields present are changed."""

    type: Literal["input"] = "input"
    direction: ClassVar[Literal["outbound", "inbound"]] = "inbound"
    mode: Literal["voice", "dtmf", "voice_dtmf"] | None = None
    dtmf_input_length: int | None = Field(None, ge=1, le=64)
    dtmf_inter_digit_timeout_ms: int | None = Field(None, ge=0, le=60000)
    dtmf_terminator: str | None = Field(None, pattern=r"^[0-9*#A-Da-d]?$")
    complete_timeout_ms: int | None = Field(None, ge=0, le=60000)
    no_input_timeout_ms: int | None = Field(None, ge=0, le=600000)
    max_speech_timeout_ms: int | None = Field(None, ge=0, le=600000)

    def changes(self) -> dict[str, Any]:
        """The settings this message changes, as ``InputSettings`` field names."""
        names = (
            "mode",
            "dtmf_input_length",
            "dtmf_inter_digit_timeout_ms",
            "dtmf_terminator",
            "complete_timeout_ms",
            "no_input_timeout_ms",
            "max_speech_timeout_ms",
        )
        out = {n: getattr(self, n) for n in names if getattr(self, n) is not None}
        if "dtmf_terminator" in out:
            out["dtmf_terminator"] = out["dtmf_terminator"].upper()
        return out


class Prompt(ProxyMessage):
    """A complete reply: text (spoken by Webex TTS when there is no audio) and/or audio.

    ``audio_format`` ``wav`` means ``audio`` is a whole WAV file; otherwise it is raw audio in that
    encoding at ``sample_rate``. ``input`` optionally changes what is collected next.
    """

    type: Literal["prompt"] = "prompt"
    direction: ClassVar[Literal["outbound", "inbound"]] = "inbound"
    text: str = ""
    audio: B64Bytes = b""
    audio_format: Annotated[AudioFormat, BeforeValidator(_audio_format)] = "wav"
    sample_rate: int = Field(8000, ge=8000, le=48000)
    barge_in: bool = False
    input: InputConfig | None = None


class AudioChunk(ProxyMessage):
    """Streamed reply audio (raw, no header). Chunks play in order; ``audio.end`` finishes."""

    type: Literal["audio"] = "audio"
    direction: ClassVar[Literal["outbound", "inbound"]] = "inbound"
    audio: B64Bytes
    encoding: UpperEncoding = "MULAW"
    sample_rate: int = Field(8000, ge=8000, le=48000)
    barge_in: bool = False


class AudioEnd(ProxyMessage):
    """The streamed reply is complete (optionally changing what is collected next)."""

    type: Literal["audio.end"] = "audio.end"
    direction: ClassVar[Literal["outbound", "inbound"]] = "inbound"
    input: InputConfig | None = None


class Transfer(ProxyMessage):
    """Escalate the call to a human agent, optionally after a prompt. Ends the session."""

    type: Literal["transfer"] = "transfer"
    direction: ClassVar[Literal["outbound", "inbound"]] = "inbound"
    text: str = ""
    audio: B64Bytes = b""
    reason: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class EndSession(ProxyMessage):
    """End the session (the flow's *handled* branch) with an optional goodbye and records."""

    type: Literal["end"] = "end"
    direction: ClassVar[Literal["outbound", "inbound"]] = "inbound"
    text: str = ""
    audio: B64Bytes = b""
    transcript: str = ""
    summary: str = ""
    metadata: dict[str, Any] = Field(default_factory=dict)


class BackendEvent(ProxyMessage):
    """A custom output event for the flow (``CUSTOM_EVENT`` with ``name`` and ``metadata``)."""

    type: Literal["event"] = "event"
    direction: ClassVar[Literal["outbound", "inbound"]] = "inbound"
    name: str = Field(min_length=1)
    metadata: dict[str, Any] = Field(default_factory=dict)
    text: str = ""


class UnknownMessage(BaseModel):
    """A well-formed message whose ``type`` this version does not know (logged, ignored)."""

    model_config = ConfigDict(frozen=True)
    type: str
    data: dict[str, Any]


class InvalidMessage(BaseModel):
    """Input that is not a valid message (bad JSON, missing field, bad base64 …)."""

    model_config = ConfigDict(frozen=True)
    error: str
    raw_prefix: str = ""


OutboundMessage = SessionStarted | AudioFrame | Dtmf | ClientEvent | SessionEnded
InboundMessage = Prompt | AudioChunk | AudioEnd | InputConfig | Transfer | EndSession | BackendEvent

OUTBOUND_TYPES: dict[str, type[ProxyMessage]] = {
    "session.start": SessionStarted,
    "audio": AudioFrame,
    "dtmf": Dtmf,
    "event": ClientEvent,
    "session.end": SessionEnded,
}
INBOUND_TYPES: dict[str, type[ProxyMessage]] = {
    "prompt": Prompt,
    "audio": AudioChunk,
    "audio.end": AudioEnd,
    "input": InputConfig,
    "transfer": Transfer,
    "end": EndSession,
    "event": BackendEvent,
}


def encode_message(message: ProxyMessage) -> str:
    """Serialise a message of either direction to its JSON text."""
    return message.model_dump_json()


def _prefix(raw: str | bytes) -> str:
    text = raw if isinstance(raw, str) else raw[:200].decode("utf-8", "replace")
    return text[:120]


def _decode(
    raw: str | bytes, table: dict[str, type[ProxyMessage]]
) -> ProxyMessage | UnknownMessage | InvalidMessage:
    if len(raw) > MAX_MESSAGE_CHARS:
        return InvalidMessage(error=f"message larger than {MAX_MESSAGE_CHARS}", raw_prefix="")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        return InvalidMessage(error=f"not JSON: {exc}", raw_prefix=_prefix(raw))
    if not isinstance(data, dict):
        return InvalidMessage(error="not a JSON object", raw_prefix=_prefix(raw))
    kind = data.get("type")
    if not isinstance(kind, str):
        return InvalidMessage(error="missing string 'type'", raw_prefix=_prefix(raw))
    version = data.get("v", PROTOCOL_VERSION)
    if version != PROTOCOL_VERSION:
        return InvalidMessage(
            error=f"unsupported protocol version {version!r} (speaking {PROTOCOL_VERSION})",
            raw_prefix=_prefix(raw),
        )
    cls = table.get(kind)
    if cls is None:
        return UnknownMessage(type=kind, data=data)
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or kind}: {err['msg']}"
            for err in exc.errors(include_url=False)
        )
        return InvalidMessage(error=f"invalid {kind!r}: {problems}", raw_prefix=_prefix(raw))


def decode_inbound(raw: str | bytes) -> InboundMessage | UnknownMessage | InvalidMessage:
    """Parse a backend -> media server message. Never raises."""
    return _decode(raw, INBOUND_TYPES)  # type: ignore[return-value]


def decode_outbound(raw: str | bytes) -> OutboundMessage | UnknownMessage | InvalidMessage:
    """Parse a media server -> backend message (what a backend written in Python receives)."""
    return _decode(raw, OUTBOUND_TYPES)  # type: ignore[return-value]
