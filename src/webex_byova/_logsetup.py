"""Process logging for servers: ``configure_logging()`` installs one stderr handler.

The library itself only adds a :class:`logging.NullHandler` (see :mod:`._logging`); a server
process (``BYOVAMediaServer.serve()``, ``byova serve``) calls :func:`configure_logging` so
handler exceptions, refused tokens and call outcomes are visible. It does nothing when the
application already configured logging (the root logger has a handler).

Two formats:

* ``text``: ``2026-12-01 09:00:00,123 ERROR webex_byova.media.handler: [conv-1] ...``. The
  message is redacted (:func:`._logging.redact`) and escaped: newlines, tabs and every other
  control or line-separator character become ``\\n``, ``\\t``, ``\\x1b`` … so a caller-supplied
  value cannot forge a second log line or drive a terminal. A traceback follows on its own
  lines (redacted).
* ``json``: one JSON object per line: ``time``, ``level``, ``logger``, ``message`` and, when the
  record carries them (``extra=`` or the session's logger adapter), ``conversation_id``,
  ``tracking_id``, ``turn``, ``event``, ``outcome``, ``reason``, ``transport``; ``exc_type`` and
  ``traceback`` for exceptions. JSON string escaping covers control characters.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, Literal, TextIO

from ._logging import redact

__all__ = [
    "CONTEXT_FIELDS",
    "LOG_FORMATS",
    "LOG_LEVEL_ENV",
    "JsonFormatter",
    "TextFormatter",
    "check_log_options",
    "configure_logging",
    "escape_control",
]

LOG_LEVEL_ENV = "WEBEX_MEDIA_LOG_LEVEL"
LOG_FORMAT_ENV = "WEBEX_MEDIA_LOG_FORMAT"
LOG_FORMATS = ("text", "json")
LogFormat = Literal["text", "json"]

#: record attribute -> JSON key. ``trackingid`` is the name the media code puts on records.
CONTEXT_FIELDS: Mapping[str, str] = {
    "conversation_id": "conversation_id",
    "trackingid": "tracking_id",
    "tracking_id": "tracking_id",
    "turn": "turn",
    "event": "event",
    "outcome": "outcome",
    "reason": "reason",
    "transport": "transport",
}

#: Third-party loggers that are chatty at INFO.
_QUIET_AT_INFO = ("httpx", "httpcore")

# C0 controls, DEL, C1 controls and the Unicode line/paragraph separators.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def escape_control(text: str) -> str:
    """``text`` with every control or line-separator character written as an escape."""

    def sub(match: re.Match[str]) -> str:
        char = match.group()
        named = _NAMED.get(char)
        if named is not None:
            return named
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _CONTROL.sub(sub, text)


def _message(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a bad %-format must not lose the record
        text = f"{record.msg!r} % {record.args!r}"
    return redact(text)


class TextFormatter(logging.Formatter):
    """Human-readable lines; the message is redacted and control characters escaped."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        safe = logging.makeLogRecord(record.__dict__)
        safe.msg = escape_control(_message(record))
        safe.args = None
        safe.exc_info = None
        safe.exc_text = None
        safe.stack_info = None
        line = super().format(safe)
        extra = self._traceback(record)
        return f"{line}\n{extra}" if extra else line

    def _traceback(self, record: logging.LogRecord) -> str:
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return redact("\n".join(parts))


class JsonFormatter(logging.Formatter):
    """One JSON object per record (no newline inside: JSON escapes control characters)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
        }
        for attr, key in CONTEXT_FIELDS.items():
            value = record.__dict__.get(attr)
            if value is None or value == "" or key in out:
                continue
            out[key] = value if isinstance(value, int | float | bool) else redact(str(value))
        if record.exc_info and record.exc_info[0] is not None:
            out["exc_type"] = record.exc_info[0].__name__
            out["traceback"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["traceback"] = redact(record.exc_text)
        return json.dumps(out, ensure_ascii=False, default=str)


def _level(level: str | int | None, environ: Mapping[str, str]) -> int:
    raw: str | int = level if level is not None else environ.get(LOG_LEVEL_ENV, "") or "INFO"
    if isinstance(raw, int):
        return raw
    value = logging.getLevelName(raw.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {raw!r} (DEBUG, INFO, WARNING, ERROR, CRITICAL)")
    return value


def _format(fmt: str | None, environ: Mapping[str, str]) -> LogFormat:
    chosen = (fmt or environ.get(LOG_FORMAT_ENV, "") or "text").strip().lower()
    if chosen == "json":
        return "json"
    if chosen == "text":
        return "text"
    raise ValueError(f"unknown log format {chosen!r} (text or json)")


def check_log_options(level: str | int | None, fmt: str | None) -> None:
    """Raise :class:`ValueError` for an unknown level or format (before anything starts)."""
    _level(level, {})
    _format(fmt, {})


def configure_logging(
    level: str | int | None = None,
    fmt: str | None = None,
    *,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
    force: bool = False,
) -> bool:
    """Send log records to ``stream`` (stderr) unless the application configured logging.

    Args:
        level: Level name or number; default ``WEBEX_MEDIA_LOG_LEVEL``, else ``INFO``.
        fmt: ``"text"`` or ``"json"``; default ``WEBEX_MEDIA_LOG_FORMAT``, else ``"text"``.
        stream: Where lines go (default ``sys.stderr`` at call time).
        environ: Environment to read (default ``os.environ``).
        force: Replace existing root handlers (the CLI's explicit ``--log-format``).

    Returns:
        True if a handler was installed; False if the root logger already had one.
    """
    env = os.environ if environ is None else environ
    chosen = _format(fmt, env)
    number = _level(level, env)
    root = logging.getLogger()
    if root.handlers and not force:
        return False
    for old in list(root.handlers):
        root.removeHandler(old)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(number)
    # The media server sets its own logger's level from its config at start; keep the tree
    # below webex_byova at the chosen level too so DEBUG really shows library detail.
    logging.getLogger("webex_byova").setLevel(number)
    # httpx logs every request (JWKS, token refreshes) at INFO: keep that for DEBUG only.
    for noisy in _QUIET_AT_INFO:
        logging.getLogger(noisy).setLevel(logging.WARNING if number > logging.DEBUG else number)
    return True
