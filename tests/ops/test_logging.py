"""Logging of `byova serve`: tracebacks on stderr, JSON lines, escaping and redaction."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from webex_byova._logsetup import (
    JsonFormatter,
    TextFormatter,
    check_log_options,
    configure_logging,
    escape_control,
)
from webex_byova.testing import WebexCaller

from ..cli.conftest import BYOVA

APP = """\
from webex_byova import BYOVAMediaServer

server = BYOVAMediaServer.from_env()


@server.on("session_start")
def welcome(event):
    raise RuntimeError("handler broke on purpose")
"""
SERVING = re.compile(r"serving .* on (127\.0\.0\.1:\d+) ")


@contextlib.contextmanager
def served(tmp_path: Path, *args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    app = tmp_path / "app.py"
    app.write_text(APP)
    env = {**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false"}
    env.pop("WEBEX_MEDIA_LOG_LEVEL", None)
    env.pop("WEBEX_MEDIA_LOG_FORMAT", None)
    proc = subprocess.Popen(
        [str(BYOVA), "serve", str(app), "--host", "127.0.0.1", "--port", "0", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    try:
        address = ""
        for line in proc.stderr:
            match = SERVING.search(line)
            if match:
                address = match.group(1)
                break
        assert address, "the server never printed its address"
        yield proc, address
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        proc.stderr.close()


async def call_once(address: str) -> list[str]:
    async with WebexCaller(address, realtime=False) as caller:
        turn = await caller.start_session()
        texts = turn.texts
        await caller.end_session()
        return texts


async def test_a_raising_handler_prints_its_traceback_on_stderr(tmp_path: Path) -> None:
    with served(tmp_path) as (proc, address):
        texts = await call_once(address)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
    assert texts == ["Sorry, something went wrong. Please try again."]
    assert "ERROR webex_byova.media.handler:" in rest
    assert "Traceback (most recent call last):" in rest
    assert 'in welcome\n    raise RuntimeError("handler broke on purpose")' in rest
    assert "RuntimeError: handler broke on purpose" in rest
    assert "session ended" in rest  # INFO is on by default


async def test_log_format_json_lines_parse(tmp_path: Path) -> None:
    with served(tmp_path, "--log-format", "json", "--log-level", "debug") as (proc, address):
        await call_once(address)
        proc.send_signal(signal.SIGINT)
        assert proc.stderr is not None
        rest = proc.stderr.read()
        assert proc.wait(timeout=30) == 0
    records = [json.loads(line) for line in rest.splitlines() if line.startswith("{")]
    assert records, rest
    errors = [r for r in records if r["logger"] == "webex_byova.media.handler"]
    assert len(errors) == 1
    error = errors[0]
    assert error["level"] == "ERROR"
    assert error["exc_type"] == "RuntimeError"
    assert "handler broke on purpose" in error["traceback"]
    assert error["conversation_id"]
    assert any(r["level"] == "DEBUG" for r in records)
    ended = [r for r in records if "session ended" in r["message"]]
    assert ended
    assert ended[0]["conversation_id"] == error["conversation_id"]
    # everything on stderr that is not a JSON object is the CLI's own banner
    others = [line for line in rest.splitlines() if line and not line.startswith("{")]
    assert all(line.startswith(("serving ", "metrics ")) for line in others), others


def test_an_unknown_log_format_is_refused(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    result = subprocess.run(
        [str(BYOVA), "serve", str(app), "--log-format", "xml"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "unknown log format 'xml'" in result.stdout + result.stderr


def record(msg: str, *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("webex_byova.media", logging.INFO, __file__, 1, msg, args, None)
    rec.__dict__.update(extra)
    return rec


def test_text_format_escapes_caller_values_and_redacts_secrets() -> None:
    line = TextFormatter().format(
        record("[%s] said %s", "conv\n2026 ERROR forged", "token=abcdefgh12345 \x1b[31m")
    )
    assert "\n" not in line
    assert "conv\\n2026 ERROR forged" in line
    assert "\\x1b[31m" in line
    assert "abcdefgh12345" not in line
    assert "token=abcd***" in line


def test_json_format_carries_context_fields() -> None:
    out = json.loads(
        JsonFormatter().format(
            record(
                "turn done",
                conversation_id="c-1",
                trackingid="t\n1",
                turn=3,
                event="audio",
                unrelated="x",
            )
        )
    )
    assert out["message"] == "turn done"
    assert out["conversation_id"] == "c-1"
    assert out["tracking_id"] == "t\n1"  # JSON escapes it on the wire
    assert out["turn"] == 3
    assert out["event"] == "audio"
    assert "unrelated" not in out


def test_text_format_keeps_the_traceback_and_redacts_it() -> None:
    try:
        raise ValueError("bad Bearer abcdefghijklmnop")
    except ValueError:
        rec = logging.LogRecord(
            "x", logging.ERROR, __file__, 1, "failed", None, exc_info=__import__("sys").exc_info()
        )
    text = TextFormatter().format(rec)
    assert text.splitlines()[1] == "Traceback (most recent call last):"
    assert "abcdefghijklmnop" not in text
    assert "Bearer abcd***" in text


def test_escape_control() -> None:
    assert escape_control("a\tb\r\nc\u2028d\x7f") == "a\\tb\\r\\nc\\u2028d\\x7f"
    assert escape_control("plain, ünicode ok") == "plain, ünicode ok"


@contextlib.contextmanager
def bare_root() -> Iterator[logging.Logger]:
    """The root logger without handlers (pytest adds its capture handlers around each test
    body, so this runs inside the test), restored afterwards."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    levels = {n: logging.getLogger(n).level for n in ("webex_byova", "httpx", "httpcore")}
    for handler in handlers:
        root.removeHandler(handler)
    try:
        yield root
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        root.setLevel(level)
        for name, saved in levels.items():
            logging.getLogger(name).setLevel(saved)


def test_configure_logging_respects_an_app_that_configured_logging() -> None:
    with bare_root() as clean_root:
        _respects(clean_root)


def _respects(clean_root: logging.Logger) -> None:
    stream = io.StringIO()
    assert configure_logging("WARNING", "json", stream=stream, environ={})
    assert len(clean_root.handlers) == 1
    assert clean_root.level == logging.WARNING
    # second call: the root has a handler now, so nothing changes
    assert not configure_logging("DEBUG", "text", stream=io.StringIO(), environ={})
    assert clean_root.level == logging.WARNING
    logging.getLogger("webex_byova.media").warning("hello %s", "there")
    assert json.loads(stream.getvalue())["message"] == "hello there"
    assert logging.getLogger("httpx").level == logging.WARNING


def test_configure_logging_reads_the_environment() -> None:
    stream = io.StringIO()
    env = {"WEBEX_MEDIA_LOG_LEVEL": "debug", "WEBEX_MEDIA_LOG_FORMAT": "json"}
    with bare_root() as clean_root:
        assert configure_logging(stream=stream, environ=env)
        assert clean_root.level == logging.DEBUG
        assert logging.getLogger("httpx").level == logging.DEBUG
        logging.getLogger("webex_byova.x").debug("d")
    assert json.loads(stream.getvalue())["level"] == "DEBUG"


def test_check_log_options() -> None:
    check_log_options("info", "json")
    check_log_options(None, None)
    with pytest.raises(ValueError, match="unknown log level"):
        check_log_options("loud", None)
    with pytest.raises(ValueError, match="unknown log format"):
        check_log_options(None, "yaml")
