"""Sans-IO builders of ``VoiceVAResponse`` messages and outbound audio framing.

Every response the server sends is built here; the RPC shell only writes them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import struct_pb2

from ._model import InputSettings, enums_from_digits, input_mode_enum
from ._proto import byova_common_pb2 as common
from ._proto import voicevirtualagent_pb2 as vva

__all__ = [
    "MAX_CHUNK",
    "MIN_CHUNK",
    "OutputKind",
    "PromptSpec",
    "TextSpec",
    "boundary_response",
    "chunk_response",
    "final_response",
    "input_handling_config",
    "is_terminal",
    "output_event",
]

MIN_CHUNK = 100
MAX_CHUNK = 64 * 1024

OutputKind = Literal[
    "session_end", "transfer_to_agent", "custom_event", "start_of_input", "end_of_input",
    "no_match", "no_input",
]  # fmt: skip

_OUTPUT_TYPES: dict[str, int] = {
    "session_end": common.OutputEvent.SESSION_END,
    "transfer_to_agent": common.OutputEvent.TRANSFER_TO_AGENT,
    "custom_event": common.OutputEvent.CUSTOM_EVENT,
    "start_of_input": common.OutputEvent.START_OF_INPUT,
    "end_of_input": common.OutputEvent.END_OF_INPUT,
    "no_match": common.OutputEvent.NO_MATCH,
    "no_input": common.OutputEvent.NO_INPUT,
}
_TERMINAL = frozenset({common.OutputEvent.SESSION_END, common.OutputEvent.TRANSFER_TO_AGENT})
_RESPONSE_TYPES = {"CHUNK": vva.VoiceVAResponse.CHUNK, "PARTIAL": vva.VoiceVAResponse.PARTIAL}


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


def _struct(data: Mapping[str, Any] | None) -> struct_pb2.Struct | None:
    if not data:
        return None
    msg = struct_pb2.Struct()
    msg.update(dict(data))
    return msg


def output_event(
    kind: str, name: str = "", metadata: Mapping[str, Any] | None = None
) -> common.OutputEvent:
    """Build an ``OutputEvent``; ``kind`` is e.g. ``"transfer_to_agent"`` or ``"custom_event"``."""
    try:
        event_type = _OUTPUT_TYPES[kind]
    except KeyError:
        known = sorted(_OUTPUT_TYPES)
        raise ValueError(f"unknown output event {kind!r}; expected one of {known}") from None
    event = common.OutputEvent(event_type=event_type, name=name)  # type: ignore[arg-type]
    struct = _struct(metadata)
    if struct is not None:
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


def is_terminal(response: vva.VoiceVAResponse) -> bool:
    """True if the first output event (the only one Webex honours) ends the VA session."""
    return bool(response.output_events) and response.output_events[0].event_type in _TERMINAL


def boundary_response(
    kind: Literal["start_of_input", "end_of_input"],
    *,
    response_type: Literal["CHUNK", "PARTIAL"] = "CHUNK",
    name: str = "",
) -> vva.VoiceVAResponse:
    """A speech-boundary event (``START_OF_INPUT``/``END_OF_INPUT``).

    Sent as a non-FINAL response so the turn's single FINAL stays available for the reply.
    """
    return vva.VoiceVAResponse(
        output_events=[output_event(kind, name)],
        response_type=_RESPONSE_TYPES[response_type],
    )


def chunk_response(audio: bytes) -> vva.VoiceVAResponse:
    """One streamed audio piece (raw µ-law, no header) in CHUNK mode."""
    if not MIN_CHUNK <= len(audio) <= MAX_CHUNK:
        raise ValueError(f"a CHUNK carries {MIN_CHUNK}..{MAX_CHUNK} bytes, got {len(audio)}")
    return vva.VoiceVAResponse(
        prompts=[vva.Prompt(audio_content=audio)], response_type=vva.VoiceVAResponse.CHUNK
    )


def final_response(
    *,
    prompts: Sequence[PromptSpec] = (),
    events: Sequence[common.OutputEvent] = (),
    settings: InputSettings | None = None,
    transcript: TextSpec | None = None,
    summary: TextSpec | None = None,
    sensitive: bool = False,
    response_type: Literal["FINAL", "PARTIAL"] = "FINAL",
) -> vva.VoiceVAResponse:
    """The closing response of a turn.

    ``settings`` adds ``input_mode``/``input_handling_config`` (and ``input_sensitive``); it is
    ignored when the first event is terminal (``SESSION_END``/``TRANSFER_TO_AGENT``), whose
    responses carry no next-input configuration.
    """
    resp = vva.VoiceVAResponse(
        prompts=[
            vva.Prompt(
                text=p.text,
                audio_uri=p.audio_uri,
                audio_content=p.audio,
                is_barge_in_enabled=p.barge_in,
            )
            for p in prompts
        ],
        output_events=list(events),
        response_type=(
            vva.VoiceVAResponse.PARTIAL if response_type == "PARTIAL" else vva.VoiceVAResponse.FINAL
        ),
    )
    if settings is not None and not is_terminal(resp):
        resp.input_mode = input_mode_enum(settings.mode)  # type: ignore[assignment]
        resp.input_handling_config.CopyFrom(input_handling_config(settings))
        resp.input_sensitive = sensitive
    if transcript is not None:
        resp.session_transcript.CopyFrom(_text_content(transcript))
    if summary is not None:
        resp.session_summary.CopyFrom(_text_content(summary))
    return resp
