"""`byova simulate --wav` with a 24-bit stereo 48 kHz WAV: the caller converts it like say()."""

from __future__ import annotations

import io
import json
import wave
from pathlib import Path

from webex_byova.cli import app
from webex_byova.media import assets, audio


def speech_as_24_bit_stereo_48k() -> bytes:
    hello = audio.read_wav(assets.load("speech_hello.wav"))
    pcm = audio.resample_pcm16(hello.mono_pcm16(), hello.sample_rate, 48000)
    frames = bytearray()
    for i in range(0, len(pcm), 2):
        sample = b"\x00" + pcm[i : i + 2]  # 24-bit little-endian: a zero low byte
        frames += sample + sample  # both channels
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(3)
        w.setframerate(48000)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def test_simulate_speaks_a_24_bit_stereo_wav(runner, demo_server, tmp_path: Path) -> None:
    wav = tmp_path / "hello24.wav"
    wav.write_bytes(speech_as_24_bit_stereo_48k())
    info = demo_server.info
    args = ["simulate", "--target", info["target"], "--token", info["token"], "--json"]
    args += ["--agent", info["virtual_agent_id"], "--wav", str(wav), "--fast"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    speech = json.loads(result.stdout)["turns"][1]
    assert speech["events"][:2] == ["START_OF_INPUT", "END_OF_INPUT"]
    assert any(t.startswith("You spoke for") for t in speech["texts"])
