"""What `byova demo` prints and writes: arrows pointing from sender to receiver, a timeline in
order, what the audio and "latency" are, and a bot WAV that Python's `wave` opens."""

from __future__ import annotations

import json
import re
import wave
from pathlib import Path

from typer.testing import CliRunner

from webex_byova.cli import app
from webex_byova.cli._demo_agent import AUDIO_NOTE
from webex_byova.cli._media_cmds import LATENCY_NOTE

TIMELINE = re.compile(r"^\s*(\d+) ms  (.*)$")


def test_demo_timeline_reads_in_order_and_explains_itself(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "bot.wav"
    result = runner.invoke(app, ["demo", "--fast", "--output", str(out)], env={"COLUMNS": "300"})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    timeline = [(int(m.group(1)), m.group(2)) for m in map(TIMELINE.match, lines) if m]
    stamps = [at for at, _ in timeline]
    assert stamps == sorted(stamps), timeline  # printed in the order the times say
    events = [text for _, text in timeline]
    assert events[0] == "caller → server  SESSION_START"
    assert events[1].startswith("server → caller  reply to SESSION_START: “Welcome")
    assert "caller → server  DTMF 5" in events
    assert any(e.startswith("server → caller  reply to DTMF 5: TRANSFER_TO_AGENT") for e in events)
    assert not any("server ←" in e for e in events)
    text = " ".join(result.output.split())
    assert AUDIO_NOTE in text
    assert "chime followed by the caller's own words echoed back" in AUDIO_NOTE
    assert LATENCY_NOTE in text
    assert "(16-bit PCM WAV, 8 kHz mono: the chimes and the echo of the caller's words)" in text


def test_bot_audio_is_a_wav_that_the_standard_library_opens(
    runner: CliRunner, tmp_path: Path
) -> None:
    out = tmp_path / "bot.wav"
    result = runner.invoke(app, ["demo", "--fast", "--json", "--output", str(out)])
    assert result.exit_code == 0, result.output
    call = json.loads(result.stdout)["call"]
    with wave.open(str(out), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        frames = w.getnframes()
        pcm = w.readframes(frames)
    assert frames == round(call["bot_audio_ms"] * 8)
    assert frames > 5 * 8000  # welcome chime, the echoed utterance, menu, transfer
    assert len(pcm) == 2 * frames
    assert any(pcm)  # audio, not silence
