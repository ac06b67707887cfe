"""`byova simulate` rejects bad input with one clear line before placing any call."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from webex_byova.cli import app
from webex_byova.cli._call import CallScript, parse_target
from webex_byova.media.assets import load


@pytest.fixture
def dead_target() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def _one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert "SESSION_START" not in result.output  # no call was placed
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines, result.output
    assert lines[0].startswith("error:"), result.output
    return result.output


@pytest.mark.parametrize(
    ("target", "why"),
    [
        ("nonsense", "host:port"),
        ("127.0.0.1:99999", "port"),
        ("127.0.0.1:0", "port"),
        ("127.0.0.1:http", "port"),
        (":50051", "host"),
        ("[::1:50051", "host:port"),
    ],
)
def test_bad_target_is_rejected_up_front(runner, target, why) -> None:
    result = runner.invoke(app, ["simulate", "--target", target, "--fast"])
    out = _one_line_error(result)
    assert "--target" in out
    assert why in out


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("127.0.0.1:50051", "127.0.0.1:50051"),
        (" localhost:8080 ", "localhost:8080"),
        ("[::1]:50051", "[::1]:50051"),
        ("bot.example.com:443", "bot.example.com:443"),
    ],
)
def test_good_targets_pass(target, expected) -> None:
    assert parse_target(target) == expected


def test_bad_wav_is_rejected_before_calling(runner, dead_target, tmp_path: Path) -> None:
    bad = tmp_path / "speech.wav"
    bad.write_bytes(b"not a wav file at all")
    result = runner.invoke(app, ["simulate", "--target", dead_target, "--wav", str(bad)])
    assert "WavFormatError" in _one_line_error(result)


def test_bad_dtmf_is_rejected_before_calling(runner, dead_target) -> None:
    result = runner.invoke(app, ["simulate", "--target", dead_target, "--dtmf", "1x"])
    assert "not a DTMF key" in _one_line_error(result)


def test_negative_turns_are_rejected(runner, dead_target) -> None:
    result = runner.invoke(app, ["simulate", "--target", dead_target, "--turns", "-1"])
    assert "utterances" in _one_line_error(result)


def test_call_script_validates_its_inputs() -> None:
    wav = load("speech_hello.wav")
    assert CallScript(wav=wav, dtmf=("12#", "*")).dtmf == ("12#", "*")
    with pytest.raises(ValueError, match="DTMF"):
        CallScript(wav=wav, dtmf=("",))
    with pytest.raises(ValueError, match="WAV"):
        CallScript(wav=b"RIFF")
