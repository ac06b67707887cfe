"""gRPC codec: protobuf ``VoiceVARequest``/``VoiceVAResponse`` <-> the transport-neutral model.

Pure functions, no I/O. The gRPC front end (:mod:`._grpc_frontend`) decodes each request with
:func:`caller_request`, hands it to the call core, and encodes each
:class:`~._messages.AgentResponse` the core produces with :func:`voice_va_response`. This is,
with the front end, the only place of the media server that knows the proto stubs.

Wire conventions handled here: DTMF keys as ``DTMFDigits`` values (zero is 10, not 0), input
modes as ``VoiceVAInputMode``, ``Struct`` parameters/metadata, ``FINAL`` = 0 (absent on the
wire), ``VirtualAgentInfo`` for ``ListVirtualAgents``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from google.protobuf import struct_pb2
from google.protobuf.json_format import MessageToDict

from ._frontend import CallRejected
from ._messages import (
    AgentResponse,
    AudioEncoding,
    AudioIn,
    CallerInput,
    CallerRequest,
    DtmfIn,
    EventIn,
    InputEventType,
    OutputEventSpec,
    TextSpec,
)
from ._model import InputSettings, check_dtmf_keys, check_input_mode
from ._proto import byova_common_pb2 as common
from ._proto import voicevirtualagent_pb2 as vva

if TYPE_CHECKING:
    from .server import VirtualAgent

__all__ = [
    "DIGIT_TO_ENUM",
    "ENUM_TO_DIGIT",
    "CallerInputDecoder",
    "caller_request",
    "decode_caller_input",
    "decode_list_va_request",
    "decode_voice_va_request",
    "digits_from_enums",
    "enums_from_digits",
    "input_handling_config",
    "input_mode_enum",
    "list_va_response",
    "virtual_agent_info",
    "voice_va_response",
]

#: Keypad key -> DTMFDigits value (zero is 10 on the wire, not 0).
DIGIT_TO_ENUM: dict[str, int] = {
    **{str(d): d for d in range(1, 10)},
    "0": common.DTMF_DIGIT_ZERO,
    "A": common.DTMF_DIGIT_A,
    "B": common.DTMF_DIGIT_B,
    "C": common.DTMF_DIGIT_C,
    "D": common.DTMF_DIGIT_D,
    "*": common.DTMF_DIGIT_STAR,
    "#": common.DTMF_DIGIT_POUND,
}
ENUM_TO_DIGIT: dict[int, str] = {v: k for k, v in DIGIT_TO_ENUM.items()}

_MODES: dict[str, int] = {
    "voice": vva.INPUT_VOICE,
    "dtmf": vva.INPUT_EVENT_DTMF,
    "voice_dtmf": vva.INPUT_VOICE_DTMF,
}
_ENCODINGS: dict[int, AudioEncoding] = {
    vva.VoiceInput.LINEAR16_FORMAT: "linear16",
    vva.VoiceInput.MULAW_FORMAT: "mulaw",
    vva.VoiceInput.ALAW_FORMAT: "alaw",
}
_EVENT_TYPES: dict[int, InputEventType] = {
    common.EventInput.SESSION_START: "session_start",
    common.EventInput.SESSION_END: "session_end",
    common.EventInput.NO_INPUT: "no_input",
    common.EventInput.START_OF_DTMF: "start_of_dtmf",
    common.EventInput.CUSTOM_EVENT: "custom_event",
}
_OUTPUT_TYPES: dict[str, int] = {
    "session_end": common.OutputEvent.SESSION_END,
    "transfer_to_agent": common.OutputEvent.TRANSFER_TO_AGENT,
    "custom_event": common.OutputEvent.CUSTOM_EVENT,
    "start_of_input": common.OutputEvent.START_OF_INPUT,
    "end_of_input": common.OutputEvent.END_OF_INPUT,
    "no_match": common.OutputEvent.NO_MATCH,
    "no_input": common.OutputEvent.NO_INPUT,
}
_RESPONSE_TYPES: dict[str, int] = {
    "final": vva.VoiceVAResponse.FINAL,
    "partial": vva.VoiceVAResponse.PARTIAL,
    "chunk": vva.VoiceVAResponse.CHUNK,
}


def digits_from_enums(values: Iterable[int]) -> str:
    """Wire ``DTMFDigits`` values to a key string (``[5, 10, 16]`` -> ``"50#"``).

    Unknown or unspecified values are skipped.
    """
    return "".join(ENUM_TO_DIGIT[v] for v in values if v in ENUM_TO_DIGIT)


def enums_from_digits(digits: str) -> list[int]:
    """Key string to wire ``DTMFDigits`` values; raises :class:`ValueError` on other characters."""
    return [DIGIT_TO_ENUM[ch] for ch in check_dtmf_keys(digits)]


def input_mode_enum(mode: str) -> int:
    """``"voice"|"dtmf"|"voice_dtmf"`` to the ``VoiceVAInputMode`` wire value."""
    return _MODES[check_input_mode(mode)]


# ---------------------------------------------------------------------------------- requests


def _caller_input(request: vva.VoiceVARequest) -> CallerInput | None:
    # Runs for every 20 ms caller frame: positional construction, no needless copies.
    which = request.WhichOneof("voice_va_input_type")
    if which == "audio_input":
        voice = request.audio_input
        timestamp = None
        if voice.HasField("audio_timestamp"):
            ts = voice.audio_timestamp
            timestamp = ts.seconds + ts.nanos / 1e9
        return AudioIn(
            voice.caller_audio,
            _ENCODINGS.get(voice.encoding, "unspecified"),
            voice.sample_rate_hertz,
            voice.language_code,
            voice.is_single_utterance,
            timestamp,
        )
    if which == "dtmf_input":
        return DtmfIn(digits_from_enums(request.dtmf_input.dtmf_events))
    if which == "event_input":
        event = request.event_input
        params: dict[str, Any] = (
            MessageToDict(event.parameters) if event.HasField("parameters") else {}
        )
        return EventIn(_EVENT_TYPES.get(event.event_type, "unspecified"), event.name, params)
    return None


_NO_INFO: Mapping[str, str] = MappingProxyType({})


def caller_request(request: vva.VoiceVARequest) -> CallerRequest:
    """Decode one protobuf ``VoiceVARequest``."""
    info = request.additional_info
    return CallerRequest(
        request.conversation_id,
        request.customer_org_id,
        request.virtual_agent_id,
        request.allow_partial_responses,
        request.vendor_specific_config,
        _caller_input(request),
        dict(info) if info else _NO_INFO,
    )


#: The status text of an undecodable request (neutral: no parser or exception names).
UNDECODABLE = "request is not a valid {}"


def _undecodable(message: str) -> CallRejected:
    """The refusal of wire bytes that are not a valid ``message`` (one text for every case)."""
    return CallRejected("invalid_argument", UNDECODABLE.format(message))


def decode_voice_va_request(data: bytes) -> CallerRequest:
    """Parse and decode one ``VoiceVARequest`` from its wire bytes.

    Anything that is not a valid message (random bytes, bad UTF-8 in a string field, a
    ``Struct`` nested deeper than protobuf parses) raises
    :class:`~._frontend.CallRejected` ``invalid_argument`` with a neutral detail.
    """
    try:
        return caller_request(vva.VoiceVARequest.FromString(data))
    except Exception:  # DecodeError, RecursionError, a Struct value json_format refuses
        raise _undecodable("VoiceVARequest") from None


def decode_caller_input(data: bytes) -> CallerInput | None:
    """Parse one ``VoiceVARequest`` like :func:`decode_voice_va_request`; decode only its input.

    For the messages after an RPC's first (fed with ``TurnHandle.feed_input``): the whole
    message is parsed and checked the same way, the conversation fields are not converted.
    """
    try:
        return _caller_input(vva.VoiceVARequest.FromString(data))
    except Exception:  # as above
        raise _undecodable("VoiceVARequest") from None


#: Byte ``b`` -> ``b ^ 0xFF``: audio with every byte changed (see :class:`CallerInputDecoder`).
_FLIP = bytes(b ^ 0xFF for b in range(256))


class CallerInputDecoder:
    """:func:`decode_caller_input` for the messages of one RPC: same results, same refusals,
    with a fast path for its audio frames.

    Webex streams a turn's audio as messages that differ only in their ``caller_audio`` bytes
    (the same conversation fields and metadata every 20 ms; Cisco's clients send no per-frame
    timestamp). Once one such frame is decoded, its bytes before and after the audio are kept
    as a template, and a message of the same length with the same prefix and suffix is that
    frame with other audio: its input is the template's with the audio sliced out, no parse.

    A template is kept only when protobuf itself shows that the audio's bytes are opaque
    content: the frame with every audio byte changed parses to the same input with just the
    changed audio. The parser reads an identical prefix the same way and then skips a
    length-delimited field's bytes without looking at them, so any audio of that length gives
    the same message (valid or not, the same as the frame was). A stream whose frames never
    match (a timestamp per frame) stops trying after ``_TEMPLATE_TRIES`` templates.
    """

    __slots__ = ("_end", "_prefix", "_size", "_start", "_suffix", "_tries", "model")

    def __init__(self) -> None:
        self._size = -1  # no template: no message has this length
        self._prefix = self._suffix = b""
        self._start = self._end = 0
        self._tries = 0
        #: The input of the frame the template was made from (an empty one before).
        self.model = AudioIn()

    def decode(self, data: bytes) -> CallerInput | None:
        """The input of one ``VoiceVARequest`` (see :func:`decode_caller_input`)."""
        item = self.decode_frame(data)
        if isinstance(item, bytes):
            return self.model.with_audio(item)
        return item

    def decode_frame(self, data: bytes) -> CallerInput | bytes | None:
        """:meth:`decode`, except that a frame like the template's comes as its audio alone.

        ``bytes`` means: the input is :attr:`model` with these bytes as its audio (for
        :meth:`TurnHandle.feed_audio <webex_byova.media._frontend.TurnHandle.feed_audio>`).
        """
        if self._like(data):
            return data[self._start : self._end]
        item = decode_caller_input(data)
        if type(item) is AudioIn and self._tries < _TEMPLATE_TRIES:
            self._learn(data, item)
        return item

    def check(self, data: bytes) -> None:
        """:func:`check_voice_va_request`; a frame like the template's is valid without a parse."""
        if not self._like(data):
            check_voice_va_request(data)

    def _like(self, data: bytes) -> bool:
        """Whether ``data`` is the template's frame with other audio (same length and bytes
        around the audio)."""
        return (
            len(data) == self._size
            and data.startswith(self._prefix)
            and data.endswith(self._suffix)
        )

    def _learn(self, data: bytes, item: AudioIn) -> None:
        audio = item.audio  # verbatim in the message: its first occurrence is a candidate
        if len(audio) < _TEMPLATE_MIN_AUDIO:
            return
        self._tries += 1
        start = data.find(audio)
        end = start + len(audio)
        prefix, suffix, changed = data[:start], data[end:], audio.translate(_FLIP)
        try:
            trial = _caller_input(vva.VoiceVARequest.FromString(prefix + changed + suffix))
        except Exception:  # the bytes were not the audio (they were in a string field)
            return
        if trial == item.with_audio(changed):
            self._size, self._prefix, self._suffix = len(data), prefix, suffix
            self._start, self._end, self.model = start, end, item


#: Templates a :class:`CallerInputDecoder` tries before it decodes every message in full.
_TEMPLATE_TRIES = 4
#: Shorter audio is not templated (Webex's first tiny "sample" packets; too short to place).
_TEMPLATE_MIN_AUDIO = 16


def check_voice_va_request(data: bytes) -> None:
    """Parse one ``VoiceVARequest`` only to check it (refused like
    :func:`decode_voice_va_request`): for the messages after a turn's FINAL, whose input
    nothing reads."""
    try:
        vva.VoiceVARequest.FromString(data)
    except Exception:  # as above
        raise _undecodable("VoiceVARequest") from None


def decode_list_va_request(data: bytes) -> str:
    """The ``customer_org_id`` of a ``ListVARequest`` from its wire bytes (see above)."""
    try:
        return common.ListVARequest.FromString(data).customer_org_id
    except Exception:
        raise _undecodable("ListVARequest") from None


# --------------------------------------------------------------------------------- responses


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _output_event(spec: OutputEventSpec) -> common.OutputEvent:
    event = common.OutputEvent(
        event_type=_OUTPUT_TYPES[spec.type],  # type: ignore[arg-type]
        name=spec.name,
    )
    if spec.metadata:
        struct = struct_pb2.Struct()
        struct.update(_plain(spec.metadata))
        event.metadata.CopyFrom(struct)
    return event


def input_handling_config(settings: InputSettings) -> common.InputHandlingConfig:
    """Timers and DTMF collection settings for the next caller input."""
    term = enums_from_digits(settings.dtmf_terminator)[0] if settings.dtmf_terminator else 0
    return common.InputHandlingConfig(
        dtmf_config=common.DTMFInputConfig(
            inter_digit_timeout_msec=settings.dtmf_inter_digit_timeout_ms,
            termchar=term,  # type: ignore[arg-type]
            dtmf_input_length=settings.dtmf_input_length,
        ),
        speech_timers=common.InputSpeechTimers(
            max_speech_timeout_msec=settings.max_speech_timeout_ms,
            complete_timeout_msec=settings.complete_timeout_ms,
            incomplete_timeout_msec=settings.incomplete_timeout_ms,
            no_input_timeout_msec=settings.no_input_timeout_ms,
        ),
    )


def _text_content(spec: TextSpec) -> common.TextContent:
    if spec.ssml is not None:
        return common.TextContent(ssml=spec.ssml, language_code=spec.language_code)
    return common.TextContent(text=spec.text or "", language_code=spec.language_code)


def voice_va_response(response: AgentResponse) -> vva.VoiceVAResponse:
    """Encode one agent response as a protobuf ``VoiceVAResponse``."""
    msg = vva.VoiceVAResponse(
        prompts=[
            vva.Prompt(
                text=p.text,
                audio_uri=p.audio_uri,
                audio_content=p.audio,
                is_barge_in_enabled=p.barge_in,
            )
            for p in response.prompts
        ],
        output_events=[_output_event(e) for e in response.output_events],
        response_type=_RESPONSE_TYPES[response.response_type],  # type: ignore[arg-type]
    )
    settings = response.settings
    if settings is not None:
        if not response.omit_input_mode:
            msg.input_mode = input_mode_enum(settings.mode)  # type: ignore[assignment]
        msg.input_handling_config.CopyFrom(input_handling_config(settings))
        msg.input_sensitive = response.input_sensitive
    if response.transcript is not None:
        msg.session_transcript.CopyFrom(_text_content(response.transcript))
    if response.summary is not None:
        msg.session_summary.CopyFrom(_text_content(response.summary))
    return msg


# ------------------------------------------------------------------------------------ agents


def virtual_agent_info(agent: VirtualAgent, *, default: bool) -> common.VirtualAgentInfo:
    """One ``VirtualAgentInfo`` of ``ListVirtualAgents``."""
    return common.VirtualAgentInfo(
        virtual_agent_id=agent.virtual_agent_id,
        virtual_agent_name=agent.name or agent.virtual_agent_id,
        is_default=default,
        attributes=dict(agent.attributes),
    )


def list_va_response(agents: Iterable[VirtualAgent]) -> common.ListVAResponse:
    """``ListVAResponse`` for agents whose ``is_default`` the core already resolved."""
    return common.ListVAResponse(
        virtual_agents=[virtual_agent_info(a, default=a.is_default) for a in agents]
    )
