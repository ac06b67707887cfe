"""Bounds on caller-supplied text: size limits of a first message, log-safe rendering.

Transport-neutral (every front end's first message goes through :func:`check_first_request`
in :meth:`BYOVAMediaServer.open_turn <webex_byova.media.server.BYOVAMediaServer.open_turn>`),
pure, no I/O. What Webex (or anyone reaching the port) sends is never written to a log or a
status message as is: :func:`printable` escapes control characters and bounds the length, so
a conversation id with a newline and a fake log line stays on one line.
"""

from __future__ import annotations

from typing import Any

from ._frontend import CallRejected
from ._messages import CallerRequest

__all__ = [
    "MAX_ADDITIONAL_INFO_BYTES",
    "MAX_AGENT_ID",
    "MAX_CONVERSATION_ID",
    "MAX_ORG_ID",
    "MAX_VENDOR_CONFIG_BYTES",
    "check_first_request",
    "printable",
]

#: Longest ``conversation_id`` accepted (characters); longer is ``invalid_argument``.
MAX_CONVERSATION_ID = 1024
#: Longest ``virtual_agent_id`` accepted (characters).
MAX_AGENT_ID = 256
#: Longest ``customer_org_id`` accepted (a Hydra org id is about 80 characters).
MAX_ORG_ID = 256
#: Largest ``vendor_specific_config`` accepted (UTF-8 bytes).
MAX_VENDOR_CONFIG_BYTES = 64 * 1024
#: Largest ``additional_info`` accepted (keys plus values, UTF-8 bytes; at most 256 entries).
MAX_ADDITIONAL_INFO_BYTES = 64 * 1024
MAX_ADDITIONAL_INFO_ENTRIES = 256
#: How much of a caller-supplied value a log line or a status message shows.
SHOWN = 80


def printable(value: Any, limit: int = SHOWN) -> str:
    """``value`` as one safe line: control characters escaped, at most ``limit`` characters.

    Each non-printable character becomes a backslash escape (``\\n``, ``\\x1b``, ``\\u2028``
    …); printable text, backslashes included, is kept, so escaping twice changes nothing. Longer
    values end in ``…``. Use it for every caller-supplied value in a log message, a log context
    field or a status message.
    """
    text = value if isinstance(value, str) else str(value)
    if len(text) > limit * 4:
        text = text[: limit * 4]
    if not text.isprintable():
        text = "".join(
            ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text
        )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_first_request(first: CallerRequest) -> None:
    """Refuse (``invalid_argument``) a first message whose ids or extras are out of bounds."""
    if not first.conversation_id:
        raise CallRejected("invalid_argument", "conversation_id is required")
    for name, value, limit in (
        ("conversation_id", first.conversation_id, MAX_CONVERSATION_ID),
        ("virtual_agent_id", first.virtual_agent_id, MAX_AGENT_ID),
        ("customer_org_id", first.customer_org_id, MAX_ORG_ID),
    ):
        if len(value) > limit:
            raise CallRejected("invalid_argument", f"{name} longer than {limit} characters")
    if _utf8_len(first.vendor_specific_config) > MAX_VENDOR_CONFIG_BYTES:
        raise CallRejected(
            "invalid_argument",
            f"vendor_specific_config larger than {MAX_VENDOR_CONFIG_BYTES} bytes",
        )
    info = first.additional_info
    if info:
        size = sum(_utf8_len(k) + _utf8_len(v) for k, v in info.items())
        if len(info) > MAX_ADDITIONAL_INFO_ENTRIES or size > MAX_ADDITIONAL_INFO_BYTES:
            raise CallRejected(
                "invalid_argument",
                f"additional_info larger than {MAX_ADDITIONAL_INFO_ENTRIES} entries or "
                f"{MAX_ADDITIONAL_INFO_BYTES} bytes",
            )
