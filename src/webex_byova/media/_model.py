"""Plain data of the call model: input settings, DTMF keys and conversation records.

Everything here is pure, wire-format free and serialisable (``to_dict``/``from_dict``) so a
conversation store may keep it anywhere. DTMF is a key string; the wire enums live in the
front ends' codecs (e.g. :mod:`webex_byova.media._grpc_codec`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal

__all__ = [
    "DTMF_KEYS",
    "INPUT_MODES",
    "ConversationRecord",
    "InputMode",
    "InputSettings",
    "PlainState",
    "check_dtmf_keys",
    "check_input_mode",
    "plain_data_problem",
]

InputMode = Literal["voice", "dtmf", "voice_dtmf"]
INPUT_MODES: tuple[InputMode, ...] = ("voice", "dtmf", "voice_dtmf")

#: The keypad keys BYOVA carries (each front end maps them to its wire form).
DTMF_KEYS = "0123456789*#ABCD"


def check_dtmf_keys(digits: str) -> str:
    """``digits`` upper-cased; raises :class:`ValueError` on a character that is not a key."""
    keys = digits.upper()
    for ch in keys:
        if ch not in DTMF_KEYS:
            raise ValueError(f"not a DTMF key: {ch!r} (expected one of 0-9 * # A-D)")
    return keys


def check_input_mode(mode: str) -> InputMode:
    """``mode`` if it is ``"voice"``, ``"dtmf"`` or ``"voice_dtmf"``, else :class:`ValueError`."""
    for known in INPUT_MODES:
        if mode == known:
            return known
    raise ValueError(f"unknown input mode {mode!r}; expected one of {sorted(INPUT_MODES)}")


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
    #: Mark replies ``input_sensitive`` (Webex masks what the caller enters, e.g. a card
    #: number); like every setting it stays in force until changed.
    sensitive: bool = False

    def __post_init__(self) -> None:
        check_input_mode(self.mode)
        if not isinstance(self.sensitive, bool):
            raise TypeError(f"sensitive must be a bool, got {type(self.sensitive).__name__}")
        if not isinstance(self.dtmf_terminator, str):
            raise TypeError("dtmf_terminator must be a str (one key or '')")
        if self.dtmf_terminator:
            check_dtmf_keys(self.dtmf_terminator)
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


_PLAIN_SCALARS = (str, int, float, bool, type(None))
_MAX_STATE_DEPTH = 32


def plain_data_problem(value: Any, where: str = "value", _depth: int = 0) -> str | None:
    """Why ``value`` is not plain data (``None`` if it is).

    Plain data is what any conversation store can keep: ``str``, ``int``, ``float``,
    ``bool``, ``None``, and lists, tuples and ``str``-keyed dicts of those (nested at most 32
    deep). Live objects (sockets, locks, clients, coroutines …) are not.
    """
    if isinstance(value, _PLAIN_SCALARS):
        return None
    if _depth >= _MAX_STATE_DEPTH:
        return f"{where} is nested deeper than {_MAX_STATE_DEPTH} levels"
    if isinstance(value, list | tuple):
        for i, item in enumerate(value):
            problem = plain_data_problem(item, f"{where}[{i}]", _depth + 1)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                return f"{where} has a key of type {type(key).__name__} (keys must be str)"
            problem = plain_data_problem(item, f"{where}[{key[:40]!r}]", _depth + 1)
            if problem:
                return problem
        return None
    return f"{where} is a {type(value).__name__}, not plain data"


def _check_plain(key: Any, value: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"session.state keys must be str, got {type(key).__name__}")
    problem = plain_data_problem(value, f"state[{key[:40]!r}]")
    if problem:
        raise TypeError(
            f"session.state holds plain data only (str, int, float, bool, None, lists and "
            f"str-keyed dicts): {problem}"
        )


class PlainState(dict[str, Any]):
    """``session.state``: a dict that refuses values that are not plain data (``TypeError``).

    Checked where the handler sets a key (``state[k] = v``, ``update``, ``setdefault``);
    something mutated inside a stored list or dict is checked when the turn ends.
    """

    def __setitem__(self, key: str, value: Any) -> None:
        _check_plain(key, value)
        super().__setitem__(key, value)

    def update(self, *args: Any, **kwargs: Any) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def setdefault(self, key: str, default: Any = None) -> Any:
        if key not in self:
            self[key] = default
        return self[key]

    def __ior__(self, other: Any) -> PlainState:  # type: ignore[override,misc]
        self.update(other)
        return self


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
    #: ``set_transcript``/``set_summary`` as plain ``{"text"|"ssml", "language_code"}``, kept
    #: in the record so a conversation that moves to another process keeps them.
    transcript: dict[str, Any] | None = None
    summary: dict[str, Any] | None = None

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
            "transcript": dict(self.transcript) if self.transcript else None,
            "summary": dict(self.summary) if self.summary else None,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ConversationRecord:
        """Inverse of :meth:`to_dict` (the result shares no mutable state with ``data``)."""
        data = dict(data)
        data["settings"] = InputSettings(**data.get("settings", {}))
        data["user_state"] = copy.deepcopy(data.get("user_state") or {})
        for name in ("transcript", "summary"):
            value = data.get(name)
            data[name] = dict(value) if value else None
        return cls(**data)
