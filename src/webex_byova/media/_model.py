"""Plain data of the call model: input settings, DTMF mapping and conversation records.

Everything here is pure and serialisable (``to_dict``/``from_dict``) so a conversation store may
keep it anywhere.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

from ._proto import byova_common_pb2 as common
from ._proto import voicevirtualagent_pb2 as vva

__all__ = [
    "DIGIT_TO_ENUM",
    "ENUM_TO_DIGIT",
    "ConversationRecord",
    "InputMode",
    "InputSettings",
    "digits_from_enums",
    "enums_from_digits",
    "input_mode_enum",
]

InputMode = Literal["voice", "dtmf", "voice_dtmf"]

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


def digits_from_enums(values: list[int] | tuple[int, ...]) -> str:
    """Wire ``DTMFDigits`` values to a key string (``[5, 10, 16]`` -> ``"50#"``).

    Unknown or unspecified values are skipped.
    """
    return "".join(ENUM_TO_DIGIT[v] for v in values if v in ENUM_TO_DIGIT)


def enums_from_digits(digits: str) -> list[int]:
    """Key string to wire ``DTMFDigits`` values; raises :class:`ValueError` on other characters."""
    out = []
    for ch in digits.upper():
        if ch not in DIGIT_TO_ENUM:
            raise ValueError(f"not a DTMF key: {ch!r} (expected one of 0-9 * # A-D)")
        out.append(DIGIT_TO_ENUM[ch])
    return out


def input_mode_enum(mode: str) -> int:
    """``"voice"|"dtmf"|"voice_dtmf"`` to the ``VoiceVAInputMode`` wire value."""
    try:
        return _MODES[mode]
    except KeyError:
        raise ValueError(f"unknown input mode {mode!r}; expected one of {sorted(_MODES)}") from None


@dataclass(frozen=True, slots=True)
class InputSettings:
    """What Webex should collect next; sent in every non-terminal FINAL response."""

    mode: InputMode = "voice_dtmf"
    dtmf_input_length: int = 1
    dtmf_inter_digit_timeout_ms: int = 3000
    dtmf_terminator: str = "#"
    complete_timeout_ms: int = 800
    incomplete_timeout_ms: int = 0
    max_speech_timeout_ms: int = 30000
    no_input_timeout_ms: int = 5000

    def __post_init__(self) -> None:
        input_mode_enum(self.mode)
        if self.dtmf_terminator:
            enums_from_digits(self.dtmf_terminator)
        for name in (
            "dtmf_input_length",
            "dtmf_inter_digit_timeout_ms",
            "complete_timeout_ms",
            "incomplete_timeout_ms",
            "max_speech_timeout_ms",
            "no_input_timeout_ms",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 2**31:
                raise ValueError(f"{name} must be a non-negative int32, got {value!r}")

    def updated(self, **changes: Any) -> InputSettings:
        """Copy with ``changes`` applied (validated)."""
        return replace(self, **changes)


_SETTINGS_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(InputSettings))


@dataclass(slots=True)
class ConversationRecord:
    """Persistent state of one conversation (a call), shared by all its RPCs.

    ``user_state`` is the handler's own per-conversation data; keep it JSON-serialisable if the
    store persists outside the process.
    """

    conversation_id: str
    virtual_agent_id: str
    customer_org_id: str = ""
    created_at: float = 0.0
    last_active: float = 0.0
    started: bool = False
    turns: int = 0
    language_code: str = ""
    settings: InputSettings = field(default_factory=InputSettings)
    user_state: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain-data form (JSON-serialisable if ``user_state`` is), detached from ``self``.

        Written out by hand: it runs after every RPC, and ``dataclasses.asdict`` (a recursive
        deep copy) was a measurable share of the media server's CPU under load.
        """
        settings = self.settings
        return {
            "conversation_id": self.conversation_id,
            "virtual_agent_id": self.virtual_agent_id,
            "customer_org_id": self.customer_org_id,
            "created_at": self.created_at,
            "last_active": self.last_active,
            "started": self.started,
            "turns": self.turns,
            "language_code": self.language_code,
            "settings": {name: getattr(settings, name) for name in _SETTINGS_FIELDS},
            "user_state": copy.deepcopy(self.user_state) if self.user_state else {},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversationRecord:
        """Inverse of :meth:`to_dict` (the result shares no mutable state with ``data``)."""
        data = dict(data)
        data["settings"] = InputSettings(**data.get("settings", {}))
        data["user_state"] = copy.deepcopy(data.get("user_state") or {})
        return cls(**data)
