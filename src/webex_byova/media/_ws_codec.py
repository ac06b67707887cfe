"""Sans-IO codec of BYOVA over WebSocket: JSON envelopes to and from the transport-neutral model.

No socket, no clock: every function takes the text it parses or the time (POSIX seconds) it
stamps. The WebSocket front end (``_ws_frontend``) is a thin shell around :class:`VaConnection`
(one per ``/v1/va`` socket) and the ``/v1/listVirtualAgents`` helpers at the bottom.

Inbound (Webex to us), per text frame:

* The envelope must be a JSON object with ``type``. ``VOICE_VA_REQUEST``, ``PING`` and ``ERROR``
  are understood; ``VOICE_VA_RESPONSE``/``PONG`` (our own directions) and unknown types are
  ignored with a warning result (:class:`Ignored`), as the Cisco README says.
* ``seq``: an integer in ``1..2**63-1``, strictly increasing per socket (gaps allowed);
  ``ts``: an RFC 3339 date-time; ``conversation_id``: a non-empty string, the same for the whole
  socket and equal to ``payload.conversation_id``. ``metadata`` is ignored.
* The first ``VOICE_VA_REQUEST`` must be ``SESSION_START`` (PINGs may come before it); a second
  ``SESSION_START`` is a protocol error. ``customer_org_id`` and a non-empty
  ``virtual_agent_id`` stay fixed for the socket, and the org must be the one of the upgrade's
  JWS when the connection was told it.
* Payload (``VoiceVARequest``): snake_case fields, enums as value names (proto numbers are
  accepted too), ``voice_va_input_type`` wrapping exactly one of ``audio_input`` /
  ``dtmf_input`` / ``event_input`` (none gives ``input=None``). Tolerance for what real Webex
  sends: map fields as JSON objects or ``[{"key", "value"}]`` lists (``[]`` = empty), ``null`` for
  any optional field (booleans included) meaning its default, unknown fields ignored. A
  present field of the wrong JSON type is an error.
* Caller audio: strict Base64, at most ``max_audio_bytes`` decoded; ``MULAW``/``ALAW`` at 8 kHz
  or ``LINEAR16`` at 8/16 kHz (``UNSPECIFIED`` and rate 0 mean the Webex default, µ-law 8 kHz);
  anything else is ``unsupported_media`` and ends the conversation.

Outbound (us to Webex): ``VOICE_VA_RESPONSE`` and ``ERROR`` take the next own ``seq`` (1, 2, …)
and a fresh ``ts``; a ``PONG`` echoes the PING's ``seq`` (the guide's rule), so it stands outside
the own counter. Responses always carry ``response_type``, never ``no_input_timeout_msec``.
Reply audio is raw µ-law (a WAV from the call core is converted, never forwarded with its
header) in pieces of 320..32,000 decoded bytes: a response whose audio fits one piece carries
it inline; longer audio goes out as CHUNK responses of ``reply_chunk_bytes`` before the response
itself, which then keeps its text, events and settings. Streamed CHUNK audio shorter than 320
bytes is held until more arrives (never longer than the next non-CHUNK response, which flushes
it padded with µ-law silence). Nothing here paces: Webex buffers and paces (DEV-TS).

Errors and close codes (the spec has no official table, §12; these follow the Cisco Python
gateway where it has a rule). ``code`` / ``status`` / close code:

* malformed envelope or payload, bad or repeated ``seq``, conversation mismatch, a second
  SESSION_START, a request before SESSION_START: ``bad_request`` / 400 / 1002;
* a message over ``max_message_bytes``: ``bad_request`` / 413 / 1009;
* a binary frame, an unsupported encoding or rate: ``unsupported_media`` / 415 / 1003;
* no SESSION_START in time: ``timeout`` / 408 / 1008;
* ``customer_org_id`` not the JWS org: ``unauthorized`` / 403 / 1008;
* call-core rejections (:func:`rejection_error`): unknown agent ``bad_request`` / 404 / 1008,
  conversation already live on another socket ``bad_request`` / 409 / 1008, capacity
  ``rate_limit`` / 429 / 1013, shutting down ``upstream_error`` / 503 / 1001, failures
  ``upstream_error`` / 500 / 1011.

A terminal response (SESSION_END / TRANSFER_TO_AGENT) and the caller's SESSION_END end the
conversation with close code 1000; an ERROR from Webex ends it too (the guide makes errors
conversation-terminal) with 1000 and no ERROR back.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, Final, Literal, Protocol

from .._ids import org_uuid
from . import audio as _audio
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
    PromptSpec,
    TextSpec,
)
from ._model import InputSettings
from .config import DEFAULT_WS_SCHEMA_ID

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_INTERNAL_ERROR",
    "CLOSE_NORMAL",
    "CLOSE_POLICY_VIOLATION",
    "CLOSE_PROTOCOL_ERROR",
    "CLOSE_TOO_BIG",
    "CLOSE_TRY_AGAIN_LATER",
    "CLOSE_UNSUPPORTED_DATA",
    "DTMF_KEY_TO_NAME",
    "DTMF_NAME_TO_KEY",
    "ERROR_CODES",
    "LIST_PATH",
    "MAX_REPLY_CHUNK",
    "MIN_REPLY_CHUNK",
    "VA_PATH",
    "WS_SCHEMA_ID",
    "Fatal",
    "Ignored",
    "Inbound",
    "ListRequest",
    "ListedAgent",
    "PeerError",
    "PingIn",
    "RequestIn",
    "VaConnection",
    "WsLimits",
    "WsProtocolError",
    "check_ts",
    "format_ts",
    "list_error",
    "list_response",
    "parse_list_request",
    "parse_ts",
    "rejection_error",
    "response_payload",
]

#: The BYOVA-over-WebSocket data-source schema (``com.cisco.datasource.schema.uuid``).
WS_SCHEMA_ID: Final = DEFAULT_WS_SCHEMA_ID
#: The conversation endpoint and the discovery endpoint, on the registered origin.
VA_PATH: Final = "/v1/va"
LIST_PATH: Final = "/v1/listVirtualAgents"

#: Decoded bytes per reply audio piece (GUIDE: minimum 320 B = 40 ms, maximum 32 KB).
MIN_REPLY_CHUNK: Final = 320
MAX_REPLY_CHUNK: Final = 32_000  # "32 KB": the decimal reading is inside either reading
_ULAW_SILENCE: Final = b"\xff"

CLOSE_NORMAL: Final = 1000
CLOSE_GOING_AWAY: Final = 1001
CLOSE_PROTOCOL_ERROR: Final = 1002
CLOSE_UNSUPPORTED_DATA: Final = 1003
CLOSE_POLICY_VIOLATION: Final = 1008
CLOSE_TOO_BIG: Final = 1009
CLOSE_INTERNAL_ERROR: Final = 1011
CLOSE_TRY_AGAIN_LATER: Final = 1013

ErrorCode = Literal[
    "unauthorized", "bad_request", "unsupported_media", "upstream_error", "rate_limit", "timeout"
]
#: The only ERROR codes the AsyncAPI allows.
ERROR_CODES: Final[frozenset[str]] = frozenset(
    {"unauthorized", "bad_request", "unsupported_media", "upstream_error", "rate_limit", "timeout"}
)
_DEFAULT_CLOSE: Final[dict[str, int]] = {
    "unauthorized": CLOSE_POLICY_VIOLATION,
    "bad_request": CLOSE_PROTOCOL_ERROR,
    "unsupported_media": CLOSE_UNSUPPORTED_DATA,
    "upstream_error": CLOSE_INTERNAL_ERROR,
    "rate_limit": CLOSE_TRY_AGAIN_LATER,
    "timeout": CLOSE_POLICY_VIOLATION,
}
_DEFAULT_STATUS: Final[dict[str, int]] = {
    "unauthorized": 401,
    "bad_request": 400,
    "unsupported_media": 415,
    "upstream_error": 502,
    "rate_limit": 429,
    "timeout": 408,
}
MAX_DETAIL: Final = 200
_MAX_SEQ: Final = 2**63 - 1

# --------------------------------------------------------------------------- enum tables

#: DTMF enum value names and keypad keys (``DTMF_DIGIT_ZERO`` is ``"0"``).
DTMF_NAME_TO_KEY: Final[dict[str, str]] = {
    **{
        f"DTMF_DIGIT_{word}": str(i)
        for i, word in enumerate(
            ("ZERO", "ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE")
        )
    },
    "DTMF_DIGIT_A": "A",
    "DTMF_DIGIT_B": "B",
    "DTMF_DIGIT_C": "C",
    "DTMF_DIGIT_D": "D",
    "DTMF_DIGIT_STAR": "*",
    "DTMF_DIGIT_POUND": "#",
}
DTMF_KEY_TO_NAME: Final[dict[str, str]] = {v: k for k, v in DTMF_NAME_TO_KEY.items()}
# proto numbers (tolerated in place of names): 1..9, ZERO = 10, A..D = 11..14, * = 15, # = 16
_DTMF_NUMBER_TO_KEY: Final[dict[int, str]] = {
    **{i: str(i) for i in range(1, 10)},
    10: "0",
    11: "A",
    12: "B",
    13: "C",
    14: "D",
    15: "*",
    16: "#",
}
_ENCODINGS: Final[tuple[tuple[str, AudioEncoding], ...]] = (
    ("UNSPECIFIED_FORMAT", "unspecified"),
    ("LINEAR16_FORMAT", "linear16"),
    ("MULAW_FORMAT", "mulaw"),
    ("ALAW_FORMAT", "alaw"),
)
_INPUT_EVENTS: Final[tuple[tuple[str, InputEventType], ...]] = (
    ("UNSPECIFIED_INPUT", "unspecified"),
    ("SESSION_START", "session_start"),
    ("SESSION_END", "session_end"),
    ("NO_INPUT", "no_input"),
    ("START_OF_DTMF", "start_of_dtmf"),
    ("CUSTOM_EVENT", "custom_event"),
)
_OUTPUT_EVENT_NAMES: Final[dict[str, str]] = {
    "session_end": "SESSION_END",
    "transfer_to_agent": "TRANSFER_TO_AGENT",
    "custom_event": "CUSTOM_EVENT",
    "start_of_input": "START_OF_INPUT",
    "end_of_input": "END_OF_INPUT",
    "no_match": "NO_MATCH",
    "no_input": "NO_INPUT",
}
_INPUT_MODE_NAMES: Final[dict[str, str]] = {
    "voice": "INPUT_VOICE",
    "dtmf": "INPUT_EVENT_DTMF",
    "voice_dtmf": "INPUT_VOICE_DTMF",
}
_RESPONSE_TYPE_NAMES: Final[dict[str, str]] = {
    "final": "FINAL",
    "partial": "PARTIAL",
    "chunk": "CHUNK",
}
#: Supported caller media: encoding -> accepted declared rates (0 = not declared).
_SUPPORTED_RATES: Final[dict[str, tuple[int, ...]]] = {
    "unspecified": (0, 8000),
    "mulaw": (0, 8000),
    "alaw": (0, 8000),
    "linear16": (0, 8000, 16000),
}


# --------------------------------------------------------------------------- errors


def bound_detail(text: str) -> str:
    """``text`` made safe for an ERROR ``detail``: printable, one line, at most 200 chars."""
    clean = "".join(ch if ch.isprintable() else " " for ch in str(text))
    clean = " ".join(clean.split())
    return clean if len(clean) <= MAX_DETAIL else clean[: MAX_DETAIL - 1] + "…"


class WsProtocolError(Exception):
    """A condition that ends the conversation with an ERROR envelope and a close code.

    Attributes:
        code: One of :data:`ERROR_CODES`; ``status`` its HTTP-style number; ``detail`` a
            bounded, caller-safe explanation; ``close_code`` the WebSocket close code.
    """

    def __init__(
        self,
        code: ErrorCode,
        detail: str,
        *,
        status: int | None = None,
        close_code: int | None = None,
    ) -> None:
        if code not in ERROR_CODES:
            raise ValueError(f"not an ERROR code of the protocol: {code!r}")
        self.code: ErrorCode = code
        self.detail = bound_detail(detail)
        self.status = _DEFAULT_STATUS[code] if status is None else status
        self.close_code = _DEFAULT_CLOSE[code] if close_code is None else close_code
        super().__init__(f"{code} ({self.status}): {self.detail}")


def _bad(detail: str) -> WsProtocolError:
    return WsProtocolError("bad_request", detail)


#: ``CallRejected.kind`` of the call core -> (code, status, close code).
_REJECTIONS: Final[dict[str, tuple[ErrorCode, int, int]]] = {
    "invalid_argument": ("bad_request", 400, CLOSE_PROTOCOL_ERROR),
    "unauthenticated": ("unauthorized", 401, CLOSE_POLICY_VIOLATION),
    "permission_denied": ("unauthorized", 403, CLOSE_POLICY_VIOLATION),
    "not_found": ("bad_request", 404, CLOSE_POLICY_VIOLATION),
    "failed_precondition": ("bad_request", 409, CLOSE_POLICY_VIOLATION),
    "resource_exhausted": ("rate_limit", 429, CLOSE_TRY_AGAIN_LATER),
    "unavailable": ("upstream_error", 503, CLOSE_GOING_AWAY),
    "internal": ("upstream_error", 500, CLOSE_INTERNAL_ERROR),
}


def rejection_error(kind: str, detail: str) -> WsProtocolError:
    """The ERROR for a call-core rejection kind (``not_found``, ``resource_exhausted`` …)."""
    code, status, close = _REJECTIONS.get(kind, _REJECTIONS["internal"])
    return WsProtocolError(code, detail, status=status, close_code=close)


# --------------------------------------------------------------------------- time

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?([Zz]|[+-]\d{2}:\d{2})"
)


def parse_ts(value: Any) -> float:
    """An RFC 3339 date-time string to POSIX seconds; raises :class:`ValueError` otherwise."""
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not an RFC 3339 date-time string")
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("not an RFC 3339 date-time string")
    year, month, day, hour, minute, second = (int(g) for g in match.groups()[:6])
    frac, zone = match.group(7), match.group(8)
    if zone in ("Z", "z"):
        tz = UTC
    else:
        hours, minutes = int(zone[1:3]), int(zone[4:6])
        if hours > 23 or minutes > 59:
            raise ValueError("bad UTC offset")
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=hours, minutes=minutes))
    leap = second == 60  # RFC 3339 allows a leap second; count it as :59
    stamp = datetime(year, month, day, hour, minute, 59 if leap else second, tzinfo=tz)
    seconds = stamp.timestamp() + (int(frac) / 10 ** len(frac) if frac else 0.0)
    return seconds + 1.0 if leap else seconds


@lru_cache(maxsize=64)
def _valid_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return True


def check_ts(value: Any) -> None:
    """Validate an RFC 3339 date-time without computing it (the envelope's ``ts``, per message).

    Same acceptance as :func:`parse_ts`; the calendar check of the date part is cached.
    """
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("not an RFC 3339 date-time string")
    match = _RFC3339.fullmatch(value)
    if match is None or not _valid_date(value[:10]):
        raise ValueError("not an RFC 3339 date-time string")
    if int(match[4]) > 23 or int(match[5]) > 59 or int(match[6]) > 60:
        raise ValueError("time out of range")
    zone = match[8]
    if zone not in ("Z", "z") and (int(zone[1:3]) > 23 or int(zone[4:6]) > 59):
        raise ValueError("bad UTC offset")


def format_ts(now: float) -> str:
    """POSIX seconds to RFC 3339 UTC with milliseconds (``2026-12-01T09:10:00.123Z``)."""
    stamp = datetime.fromtimestamp(now, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


# --------------------------------------------------------------------------- limits


@dataclass(frozen=True, slots=True)
class WsLimits:
    """Bounds of one socket (the spec publishes none; these follow the Cisco Python gateway).

    Attributes:
        max_message_bytes: Largest inbound text message (UTF-8 bytes).
        max_audio_bytes: Largest decoded ``caller_audio_b64`` of one message.
        reply_chunk_bytes: Decoded bytes per outbound audio piece when a reply is split
            (8,000 = 1 s of µ-law, the low end of the guide's recommended 8-16 KB).
        max_id_chars: Longest conversation/org/agent id accepted.
        max_dtmf_events: Most ``dtmf_events`` in one ``dtmf_input``.
        max_map_entries: Most entries of one map field (``additional_info``, ``parameters``).
    """

    max_message_bytes: int = 128 * 1024
    max_audio_bytes: int = 64 * 1024
    reply_chunk_bytes: int = 8000
    max_id_chars: int = 256
    max_dtmf_events: int = 64
    max_map_entries: int = 256

    def __post_init__(self) -> None:
        if not MIN_REPLY_CHUNK <= self.reply_chunk_bytes <= MAX_REPLY_CHUNK:
            raise ValueError(
                f"reply_chunk_bytes must be {MIN_REPLY_CHUNK}..{MAX_REPLY_CHUNK}, "
                f"got {self.reply_chunk_bytes}"
            )
        if self.max_message_bytes < 1024 or self.max_audio_bytes < 1:
            raise ValueError("max_message_bytes must be >= 1024 and max_audio_bytes >= 1")


# --------------------------------------------------------------------------- field readers


def _loads(text: str | bytes, limits: WsLimits) -> Any:
    size = len(text)  # a str of n characters has n..4n UTF-8 bytes
    if isinstance(text, str) and size <= limits.max_message_bytes < size * 4:
        size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_message_bytes:
        raise WsProtocolError(
            "bad_request",
            f"message of {size} bytes exceeds {limits.max_message_bytes}",
            status=413,
            close_code=CLOSE_TOO_BIG,
        )
    try:
        return json.loads(text)
    except RecursionError:
        raise _bad("message nests too deeply") from None
    except (ValueError, UnicodeDecodeError):  # JSONDecodeError, huge integer literals
        raise _bad("message is not valid JSON") from None


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"{where} must be a JSON object")
    return value


def _string(data: Mapping[str, Any], key: str, where: str, max_len: int | None = None) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise _bad(f"{where}.{key} must be a string")
    if max_len is not None and len(value) > max_len:
        raise _bad(f"{where}.{key} is longer than {max_len} characters")
    return value


def _bool(data: Mapping[str, Any], key: str, where: str) -> bool:
    value = data.get(key)
    if value is None:  # real Webex sends null for unset booleans
        return False
    if not isinstance(value, bool):
        raise _bad(f"{where}.{key} must be a boolean")
    return value


def _int(data: Mapping[str, Any], key: str, where: str, high: int) -> int:
    value = data.get(key)
    if value is None:
        return 0
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= high:
        raise _bad(f"{where}.{key} must be an integer in 0..{high}")
    return value


def _enum(value: Any, table: tuple[tuple[str, Any], ...], where: str) -> Any:
    """A wire enum (value name, or proto number) to its model literal; unknown -> ``None``."""
    if value is None:
        return table[0][1]
    if isinstance(value, str):
        for name, literal in table:
            if value == name:
                return literal
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return table[value][1] if 0 <= value < len(table) else None
    raise _bad(f"{where} must be an enum value name")


def _map(value: Any, where: str, limits: WsLimits, *, strings: bool) -> dict[str, Any]:
    """A map field given as a JSON object or as ``[{"key": k, "value": v}, …]`` (real Webex)."""
    if value is None or (not value and isinstance(value, dict | list)):
        return {}
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for entry in value:
            if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
                raise _bad(f"{where} entries must be objects with a string key")
            items.append((entry["key"], entry.get("value")))
    else:
        raise _bad(f"{where} must be an object or a list of key/value entries")
    if len(items) > limits.max_map_entries:
        raise _bad(f"{where} has more than {limits.max_map_entries} entries")
    out: dict[str, Any] = {}
    for key, item in items:
        if strings:
            if item is None:
                item = ""
            elif not isinstance(item, str):
                raise _bad(f"{where} values must be strings")
        out[key] = item
    return out


# --------------------------------------------------------------------------- payload -> model


def _audio_input(data: dict[str, Any], limits: WsLimits) -> AudioIn:
    where = "audio_input"
    encoding = _enum(data.get("encoding"), _ENCODINGS, f"{where}.encoding")
    rate = _int(data, "sample_rate_hertz", where, 2**31 - 1)
    if encoding is None or rate not in _SUPPORTED_RATES[encoding]:
        raise WsProtocolError(
            "unsupported_media",
            f"caller audio must be 8 kHz MULAW/ALAW or 8/16 kHz LINEAR16 "
            f"(got {str(data.get('encoding'))[:40]} at {rate} Hz)",
        )
    raw = data.get("caller_audio_b64")
    if raw is None:
        audio = b""
    elif not isinstance(raw, str):
        raise _bad(f"{where}.caller_audio_b64 must be a Base64 string")
    elif len(raw) > (limits.max_audio_bytes + 2) // 3 * 4:
        raise _bad(f"caller audio exceeds {limits.max_audio_bytes} decoded bytes")
    else:
        try:
            audio = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"{where}.caller_audio_b64 is not valid Base64") from None
        if len(audio) > limits.max_audio_bytes:
            raise _bad(f"caller audio exceeds {limits.max_audio_bytes} decoded bytes")
    stamp = data.get("audio_timestamp")
    try:
        timestamp = None if stamp is None else parse_ts(stamp)
    except ValueError:
        raise _bad(f"{where}.audio_timestamp must be an RFC 3339 date-time") from None
    return AudioIn(
        audio=audio,
        encoding=encoding,
        sample_rate_hz=rate,
        language_code=_string(data, "language_code", where, 64),
        is_single_utterance=_bool(data, "is_single_utterance", where),
        timestamp=timestamp,
    )


def _dtmf_input(data: dict[str, Any], limits: WsLimits) -> DtmfIn:
    events = data.get("dtmf_events")
    if events is None:
        return DtmfIn()
    if not isinstance(events, list):
        raise _bad("dtmf_input.dtmf_events must be a list")
    if len(events) > limits.max_dtmf_events:
        raise _bad(f"dtmf_input carries more than {limits.max_dtmf_events} events")
    keys = []
    for event in events:
        if isinstance(event, str):
            key = DTMF_NAME_TO_KEY.get(event)
        elif isinstance(event, int) and not isinstance(event, bool):
            key = _DTMF_NUMBER_TO_KEY.get(event)
        else:
            raise _bad("dtmf_input.dtmf_events entries must be DTMF value names")
        if key is not None:  # DTMF_EVENT_UNSPECIFIED and unknown names are skipped
            keys.append(key)
    return DtmfIn("".join(keys))


def _event_input(data: dict[str, Any], limits: WsLimits) -> EventIn:
    where = "event_input"
    kind = _enum(data.get("event_type"), _INPUT_EVENTS, f"{where}.event_type")
    return EventIn(
        type=kind if kind is not None else "unspecified",
        name=_string(data, "name", where, 1024),
        parameters=_map(data.get("parameters"), f"{where}.parameters", limits, strings=False),
    )


_INPUT_READERS: Final[dict[str, Callable[[dict[str, Any], WsLimits], CallerInput]]] = {
    "audio_input": _audio_input,
    "dtmf_input": _dtmf_input,
    "event_input": _event_input,
}


def parse_request_payload(payload: Any, limits: WsLimits) -> CallerRequest:
    """A ``VoiceVARequest`` JSON object to a :class:`CallerRequest` (raises on bad input)."""
    data = _object(payload, "payload")
    cid = _string(data, "conversation_id", "payload", limits.max_id_chars)
    if not cid:
        raise _bad("payload.conversation_id is required")
    wrapper = data.get("voice_va_input_type")
    caller_input: CallerInput | None = None
    if wrapper is not None:
        wrapper = _object(wrapper, "voice_va_input_type")
        present = [k for k in _INPUT_READERS if wrapper.get(k) is not None]
        if len(present) > 1:
            raise _bad("voice_va_input_type must hold exactly one input")
        if present:
            key = present[0]
            caller_input = _INPUT_READERS[key](_object(wrapper[key], key), limits)
    return CallerRequest(
        conversation_id=cid,
        customer_org_id=_string(data, "customer_org_id", "payload", limits.max_id_chars),
        virtual_agent_id=_string(data, "virtual_agent_id", "payload", limits.max_id_chars),
        allow_partial_responses=_bool(data, "allow_partial_responses", "payload"),
        vendor_specific_config=_string(data, "vendor_specific_config", "payload"),
        input=caller_input,
        additional_info=_map(
            data.get("additional_info"), "payload.additional_info", limits, strings=True
        ),
    )


# --------------------------------------------------------------------------- model -> payload


def _reply_audio(data: bytes) -> bytes:
    """Raw 8 kHz µ-law for the wire: a WAV (WAV-mode reply) is converted, never forwarded."""
    if data[:4] == b"RIFF":
        return _audio.wav_to_webex(data)
    return data


def _text_content(spec: TextSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"ssml": spec.ssml} if spec.ssml is not None else {"text": spec.text}
    if spec.language_code:
        out["language_code"] = spec.language_code
    return out


def _input_handling(settings: InputSettings) -> dict[str, Any]:
    dtmf: dict[str, Any] = {
        "inter_digit_timeout_msec": settings.dtmf_inter_digit_timeout_ms,
        "dtmf_input_length": settings.dtmf_input_length,
    }
    if settings.dtmf_terminator:
        dtmf["termchar"] = DTMF_KEY_TO_NAME[settings.dtmf_terminator.upper()]
    return {
        "dtmf_config": dtmf,
        # no no_input_timeout_msec: not in the WebSocket schema (GUIDE: do not emit it)
        "speech_timers": {
            "max_speech_timeout_msec": settings.max_speech_timeout_ms,
            "complete_timeout_msec": settings.complete_timeout_ms,
            "incomplete_timeout_msec": settings.incomplete_timeout_ms,
        },
    }


def _prompt(text: str, audio: bytes, audio_uri: str, barge_in: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if text or not audio:
        out["text"] = text  # the schema wants text or audio in every prompt
    if audio_uri:
        out["audio_uri"] = audio_uri
    if audio:
        out["audio_content_b64"] = base64.b64encode(audio).decode("ascii")
    out["is_barge_in_enabled"] = barge_in
    return out


def _event(spec: OutputEventSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"event_type": _OUTPUT_EVENT_NAMES[spec.type], "name": spec.name}
    if spec.metadata:
        out["metadata"] = dict(spec.metadata)
    return out


def response_payload(resp: AgentResponse) -> dict[str, Any]:
    """The ``VoiceVAResponse`` JSON object of ``resp`` (prompt audio as given, Base64)."""
    payload: dict[str, Any] = {
        "prompts": [_prompt(p.text, p.audio, p.audio_uri, p.barge_in) for p in resp.prompts],
        "output_events": [_event(e) for e in resp.output_events],
        "response_type": _RESPONSE_TYPE_NAMES[resp.response_type],
    }
    if resp.settings is not None and not resp.is_terminal:
        if not resp.omit_input_mode:
            payload["input_mode"] = _INPUT_MODE_NAMES[resp.settings.mode]
        payload["input_handling_config"] = _input_handling(resp.settings)
        payload["input_sensitive"] = resp.input_sensitive
    if resp.transcript is not None:
        payload["session_transcript"] = _text_content(resp.transcript)
    if resp.summary is not None:
        payload["session_summary"] = _text_content(resp.summary)
    return payload


def _pieces(audio: bytes, size: int) -> list[bytes]:
    """Split ``audio`` into pieces of ``size`` whose last one is at least 320 bytes (padded)."""
    if len(audio) < MIN_REPLY_CHUNK:
        return [audio + _ULAW_SILENCE * (MIN_REPLY_CHUNK - len(audio))] if audio else []
    out = [audio[i : i + size] for i in range(0, len(audio), size)]
    if len(out) > 1 and len(out[-1]) < MIN_REPLY_CHUNK:
        tail = out.pop()
        out[-1] += tail  # size + < 320 stays <= 32,000 (size <= 16,000 keeps it far below)
        if len(out[-1]) > MAX_REPLY_CHUNK:  # size close to the maximum: split evenly instead
            last = out.pop()
            half = len(last) // 2
            out += [last[:half], last[half:]]
    return out


# --------------------------------------------------------------------------- connection state


@dataclass(frozen=True, slots=True)
class RequestIn:
    """A ``VOICE_VA_REQUEST`` to hand to the call core."""

    request: CallerRequest
    seq: int


@dataclass(frozen=True, slots=True)
class PingIn:
    """A ``PING``; send ``pong`` (already built) right away."""

    seq: int
    pong: str


@dataclass(frozen=True, slots=True)
class PeerError:
    """An ``ERROR`` from Webex; the conversation is over (close with 1000, send nothing)."""

    code: str
    status: int
    detail: str


@dataclass(frozen=True, slots=True)
class Ignored:
    """A message that changes nothing (unknown type, input after the end …); log ``reason``."""

    reason: str


@dataclass(frozen=True, slots=True)
class Fatal:
    """The conversation must end: send ``frame`` (an ERROR), then close with ``close_code``."""

    error: WsProtocolError
    frame: str

    @property
    def close_code(self) -> int:
        """The WebSocket close code for this error."""
        return self.error.close_code


Inbound = RequestIn | PingIn | PeerError | Ignored | Fatal

_INBOUND_TYPES: Final = frozenset({"VOICE_VA_REQUEST", "PING", "ERROR"})
_OUTBOUND_TYPES: Final = frozenset({"VOICE_VA_RESPONSE", "PONG"})


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class VaConnection:
    """Protocol state of one ``/v1/va`` socket (sans-IO).

    Feed every inbound text frame to :meth:`receive_text` (binary ones to
    :meth:`receive_bytes`) and act on the result; turn every :class:`AgentResponse` of the call
    core into frames with :meth:`respond`; report shell-side failures (SESSION_START deadline,
    rejections, capacity) with :meth:`fail`. After a :class:`Fatal` the connection is
    :attr:`closed` and ignores everything.

    Args:
        expected_org: The org of the upgrade's verified JWS (UUID or Hydra id); every
            ``customer_org_id`` must be it. ``None`` binds the first request's org instead.
        limits: Size bounds.
    """

    expected_org: str | None = None
    limits: WsLimits = field(default_factory=WsLimits)
    conversation_id: str | None = None
    customer_org_id: str | None = None
    virtual_agent_id: str = ""
    started: bool = False
    #: The conversation is over (terminal response sent, caller SESSION_END, peer ERROR):
    #: further caller input is ignored; close the socket with 1000 once the peer is done.
    ended: bool = False
    #: A SESSION_END / TRANSFER_TO_AGENT response went out: nothing more is sent after it.
    #: (After the caller's SESSION_END the core may still acknowledge it with one.)
    terminal_sent: bool = False
    #: Webex sent ERROR: nothing more is sent.
    peer_failed: bool = False
    #: A :class:`Fatal` was returned: send its frame, close, ignore everything else.
    closed: bool = False
    last_peer_seq: int = 0
    last_own_seq: int = 0
    _pending: bytearray = field(default_factory=bytearray)
    _pending_barge: bool = False

    def __post_init__(self) -> None:
        if self.expected_org is not None:
            self.expected_org = org_uuid(self.expected_org)

    # -- inbound
    def receive_text(self, text: str | bytes, now: float) -> Inbound:
        """Handle one inbound text frame received at ``now``."""
        if self.closed:
            return Ignored("connection closed")
        try:
            return self._receive(text, now)
        except WsProtocolError as exc:
            return self.fail(exc, now)

    def receive_bytes(self, data: bytes, now: float) -> Inbound:
        """Handle one inbound binary frame: never valid on this protocol."""
        if self.closed:
            return Ignored("connection closed")
        return self.fail(
            WsProtocolError("unsupported_media", "binary frames are not supported; send JSON text"),
            now,
        )

    def _receive(self, text: str | bytes, now: float) -> Inbound:
        envelope = _object(_loads(text, self.limits), "message")
        kind = envelope.get("type")
        if not isinstance(kind, str):
            raise _bad("type must be a string")
        if kind not in _INBOUND_TYPES and kind not in _OUTBOUND_TYPES:
            return Ignored(f"unknown message type {kind[:40]!r}")
        seq = envelope.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool) or not 1 <= seq <= _MAX_SEQ:
            raise _bad("seq must be an integer >= 1")
        if seq <= self.last_peer_seq:
            raise _bad(f"seq {seq} is not above the previous {self.last_peer_seq}")
        try:
            check_ts(envelope.get("ts"))
        except ValueError:
            raise _bad("ts must be an RFC 3339 date-time") from None
        cid = envelope.get("conversation_id")
        if not isinstance(cid, str) or not cid or len(cid) > self.limits.max_id_chars:
            raise _bad("conversation_id must be a non-empty string")
        if self.conversation_id is None:
            self.conversation_id = cid
        elif cid != self.conversation_id:
            raise _bad("conversation_id differs from the one bound to this socket")
        self.last_peer_seq = seq
        if kind == "PING":
            return PingIn(seq, self._envelope("PONG", now, seq=seq))
        if kind == "ERROR":
            self.ended = self.peer_failed = True
            status = envelope.get("status")
            return PeerError(
                code=bound_detail(str(envelope.get("code", ""))[:40]),
                status=status if isinstance(status, int) and not isinstance(status, bool) else 0,
                detail=bound_detail(str(envelope.get("detail", ""))),
            )
        if kind in _OUTBOUND_TYPES:
            return Ignored(f"{kind} is not sent by Webex")
        request = parse_request_payload(envelope.get("payload"), self.limits)
        if request.conversation_id != cid:
            raise _bad("payload.conversation_id differs from the envelope's")
        return self._accept(request, seq)

    def _accept(self, request: CallerRequest, seq: int) -> Inbound:
        event = request.input if isinstance(request.input, EventIn) else None
        is_start = event is not None and event.type == "session_start"
        if not self.started:
            if not is_start:
                raise _bad("the first request must be SESSION_START")
        elif is_start:
            raise _bad("SESSION_START was already received on this socket")
        self._bind_org(request.customer_org_id)
        if request.virtual_agent_id:
            if not self.virtual_agent_id:
                self.virtual_agent_id = request.virtual_agent_id
            elif request.virtual_agent_id != self.virtual_agent_id:
                raise _bad("virtual_agent_id differs from the one bound to this socket")
        elif self.virtual_agent_id:
            request = replace(request, virtual_agent_id=self.virtual_agent_id)
        self.started = True
        if self.ended:
            return Ignored("caller input after the end of the conversation")
        if event is not None and event.type == "session_end":
            self.ended = True
        return RequestIn(request, seq)

    def _bind_org(self, org: str) -> None:
        if self.expected_org is not None:
            try:
                same = bool(org) and org_uuid(org) == self.expected_org
            except ValueError:
                same = False
            if not same:
                raise WsProtocolError(
                    "unauthorized",
                    "customer_org_id is not the org of the token",
                    status=403,
                    close_code=CLOSE_POLICY_VIOLATION,
                )
        if self.customer_org_id is None:
            self.customer_org_id = org
        elif org != self.customer_org_id:
            raise _bad("customer_org_id differs from the one bound to this socket")

    # -- outbound
    def _envelope(self, kind: str, now: float, *, seq: int | None = None, **extra: Any) -> str:
        if seq is None:
            self.last_own_seq += 1
            seq = self.last_own_seq
        body: dict[str, Any] = {
            "type": kind,
            "seq": seq,
            "ts": format_ts(now),
            "conversation_id": self.conversation_id or "",
        }
        body.update(extra)
        return _dumps(body)

    def fail(self, error: WsProtocolError, now: float) -> Fatal:
        """End the conversation with ``error``: the ERROR frame to send before closing."""
        frame = self._envelope(
            "ERROR", now, code=error.code, status=error.status, detail=error.detail
        )
        self.closed = True
        self.ended = True
        return Fatal(error, frame)

    def _response(self, resp: AgentResponse, now: float) -> str:
        return self._envelope("VOICE_VA_RESPONSE", now, payload=response_payload(resp))

    def _chunk(self, audio: bytes, barge_in: bool, now: float) -> str:
        prompt = PromptSpec(audio=audio, barge_in=barge_in)
        return self._response(AgentResponse(response_type="chunk", prompts=(prompt,)), now)

    def _flush(self, now: float, *, pad: bool) -> list[str]:
        data = bytes(self._pending)
        if not data or (len(data) < MIN_REPLY_CHUNK and not pad):
            return []
        self._pending.clear()
        return [self._chunk(p, self._pending_barge, now) for p in _pieces(data, self._chunk_size)]

    @property
    def _chunk_size(self) -> int:
        return self.limits.reply_chunk_bytes

    def respond(self, resp: AgentResponse, now: float) -> list[str]:
        """Frames for one response of the call core, in order (none after a terminal response,
        a Webex ERROR or a :class:`Fatal`).

        Raises :class:`~webex_byova.media.audio.WavFormatError` for an undecodable WAV prompt.
        """
        if self.closed or self.terminal_sent or self.peer_failed:
            return []
        prompts = [replace(p, audio=_reply_audio(p.audio)) if p.audio else p for p in resp.prompts]
        out: list[str] = []
        if resp.response_type == "chunk":
            rest = []
            for p in prompts:
                if p.audio:
                    self._pending += p.audio
                    self._pending_barge = p.barge_in
                if p.text or p.audio_uri:
                    rest.append(replace(p, audio=b""))
            if not rest and not resp.output_events and resp.settings is None:
                return self._flush(now, pad=False)
            out += self._flush(now, pad=True)
            return [*out, self._response(replace(resp, prompts=tuple(rest)), now)]
        out += self._flush(now, pad=True)
        total = sum(len(p.audio) for p in prompts)
        if total > MAX_REPLY_CHUNK:
            kept = []
            for p in prompts:
                for piece in _pieces(p.audio, self._chunk_size):
                    out.append(self._chunk(piece, p.barge_in, now))
                if p.text or p.audio_uri:
                    kept.append(replace(p, audio=b""))
            prompts = kept
        else:
            prompts = [
                replace(p, audio=_pieces(p.audio, MAX_REPLY_CHUNK)[0]) if p.audio else p
                for p in prompts
            ]
        out.append(self._response(replace(resp, prompts=tuple(prompts)), now))
        if resp.is_terminal:
            self.ended = True
            self.terminal_sent = True
        return out


# --------------------------------------------------------------------------- listVirtualAgents


@dataclass(frozen=True, slots=True)
class ListRequest:
    """A bare ``/v1/listVirtualAgents`` request."""

    customer_org_id: str
    is_default_virtual_agent_enabled: bool = False


class ListedAgent(Protocol):
    """What :func:`list_response` reads of an agent (``VirtualAgent`` has these)."""

    @property
    def virtual_agent_id(self) -> str: ...

    @property
    def name(self) -> str: ...

    @property
    def is_default(self) -> bool: ...

    @property
    def attributes(self) -> Mapping[str, str]: ...


def parse_list_request(
    text: str | bytes, *, expected_org: str | None = None, limits: WsLimits | None = None
) -> ListRequest:
    """Parse the bare request; ``expected_org`` (the JWS org) must equal ``customer_org_id``."""
    limits = limits or WsLimits()
    data = _object(_loads(text, limits), "request")
    org = _string(data, "customer_org_id", "request", limits.max_id_chars)
    if not org:
        raise _bad("customer_org_id is required")
    if expected_org is not None:
        try:
            same = org_uuid(org) == org_uuid(expected_org)
        except ValueError:
            same = False
        if not same:
            raise WsProtocolError(
                "unauthorized", "customer_org_id is not the org of the token", status=403
            )
    return ListRequest(org, _bool(data, "is_default_virtual_agent_enabled", "request"))


def list_response(agents: Iterable[ListedAgent]) -> str:
    """The bare response ``{"virtual_agents": [{"id", "name", "description"?}]}``.

    The WebSocket shape has no default flag, so the default agent (the first flagged, else
    the first) is listed first; ``attributes["description"]`` becomes ``description``.
    """
    items = list(agents)
    default = next((i for i, a in enumerate(items) if a.is_default), 0)
    ordered = items[default : default + 1] + items[:default] + items[default + 1 :]
    out = []
    for agent in ordered:
        item = {"id": agent.virtual_agent_id, "name": agent.name or agent.virtual_agent_id}
        description = agent.attributes.get("description")
        if description:
            item["description"] = description
        out.append(item)
    return _dumps({"virtual_agents": out})


def list_error(error: WsProtocolError) -> str:
    """A bare error answer on the discovery socket (no envelope there): code/status/detail."""
    return _dumps({"code": error.code, "status": error.status, "detail": error.detail})
