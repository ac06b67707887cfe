"""Sans-IO builders of the agent responses a turn sends (:class:`~._messages.AgentResponse`).

Every response the call core sends is built here, transport-neutral; each front end's codec
turns it into its wire form (protobuf ``VoiceVAResponse`` or a JSON envelope).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Literal, get_args

from ._messages import AgentResponse, OutputEventSpec, OutputEventType, PromptSpec, TextSpec
from ._model import InputSettings

__all__ = [
    "MAX_CHUNK",
    "MIN_CHUNK",
    "OutputKind",
    "PromptSpec",
    "TextSpec",
    "boundary_response",
    "chunk_response",
    "final_response",
    "is_terminal",
    "output_event",
]

MIN_CHUNK = 100
MAX_CHUNK = 64 * 1024

OutputKind = OutputEventType
_OUTPUT_KINDS: frozenset[str] = frozenset(get_args(OutputEventType))
BoundaryType = Literal["final", "chunk", "partial"]


def _check_struct(value: Any, where: str) -> None:
    """Metadata must map onto a protobuf ``Struct`` / JSON object (checked when it is set)."""
    if value is None or isinstance(value, bool | str):
        return
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{where}: metadata numbers must be finite, got {value!r}")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where}: metadata keys must be str, got {key!r}")
            _check_struct(item, f"{where}.{key}")
        return
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            _check_struct(item, f"{where}[{i}]")
        return
    raise ValueError(f"{where}: metadata value of type {type(value).__name__} is not JSON-like")


def output_event(
    kind: str, name: str = "", metadata: Mapping[str, Any] | None = None
) -> OutputEventSpec:
    """Build an output event; ``kind`` is e.g. ``"transfer_to_agent"`` or ``"custom_event"``."""
    if kind not in _OUTPUT_KINDS:
        known = sorted(_OUTPUT_KINDS)
        raise ValueError(f"unknown output event {kind!r}; expected one of {known}")
    data = dict(metadata) if metadata else None
    if data is not None:
        _check_struct(data, "metadata")
    return OutputEventSpec(type=kind, name=name, metadata=data)  # type: ignore[arg-type]


def is_terminal(response: AgentResponse) -> bool:
    """True if the first output event (the only one Webex honours) ends the VA session."""
    return response.is_terminal


def boundary_response(
    kind: Literal["start_of_input", "end_of_input"],
    *,
    response_type: BoundaryType = "chunk",
    name: str = "",
    settings: InputSettings | None = None,
) -> AgentResponse:
    """A speech-boundary event (``START_OF_INPUT``/``END_OF_INPUT``).

    ``"final"`` is the reference gateway's form: a standalone event-only FINAL that carries the
    next-input ``settings`` (START_OF_INPUT without ``input_mode``), so Webex keeps forwarding
    caller audio; it is not the turn's reply FINAL. ``"chunk"``/``"partial"`` send it as a
    non-FINAL response instead, leaving the response stream a single FINAL.
    """
    event = output_event(kind, name)
    if response_type == "final":
        return AgentResponse(
            response_type="final",
            output_events=(event,),
            settings=settings,
            omit_input_mode=kind == "start_of_input",
        )
    return AgentResponse(response_type=response_type, output_events=(event,))


def chunk_response(audio: bytes) -> AgentResponse:
    """One streamed audio piece (raw µ-law, no header) in CHUNK mode."""
    if not MIN_CHUNK <= len(audio) <= MAX_CHUNK:
        raise ValueError(f"a CHUNK carries {MIN_CHUNK}..{MAX_CHUNK} bytes, got {len(audio)}")
    return AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=audio),))


def final_response(
    *,
    prompts: Sequence[PromptSpec] = (),
    events: Sequence[OutputEventSpec] = (),
    settings: InputSettings | None = None,
    transcript: TextSpec | None = None,
    summary: TextSpec | None = None,
    sensitive: bool = False,
    response_type: Literal["final", "partial"] = "final",
) -> AgentResponse:
    """The closing response of a turn.

    ``settings`` adds the next-input configuration (and ``input_sensitive``); it is dropped
    when the first event is terminal (``SESSION_END``/``TRANSFER_TO_AGENT``), whose responses
    carry no next-input configuration.
    """
    terminal = bool(events) and events[0].type in ("session_end", "transfer_to_agent")
    keep = settings is not None and not terminal
    return AgentResponse(
        response_type=response_type,
        prompts=tuple(prompts),
        output_events=tuple(events),
        settings=settings if keep else None,
        input_sensitive=sensitive if keep else False,
        transcript=transcript,
        summary=summary,
    )
