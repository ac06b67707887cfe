"""CHUNK-mode framing and pacing helpers, optional extras, and the pure path without numpy."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from webex_byova import _optional
from webex_byova.media import audio
from webex_byova.media.audio import AudioEncoding


def test_iter_chunks_exact_and_merged_tail() -> None:
    data = bytes(range(256)) * 10  # 2560 bytes
    chunks = list(audio.iter_chunks(data, 640))
    assert [len(c) for c in chunks] == [640] * 4
    assert b"".join(chunks) == data
    chunks = list(audio.iter_chunks(data[:2000], 640))  # tail 80 < 100: merged, nothing added
    assert [len(c) for c in chunks] == [640, 640, 720]
    assert b"".join(chunks) == data[:2000]
    chunks = list(audio.iter_chunks(data[:2000], 640, max_bytes=700))  # merge would exceed: pad
    assert [len(c) for c in chunks] == [640, 640, 640, 100]
    assert chunks[-1] == data[1920:2000] + b"\xff" * 20
    assert b"".join(chunks)[:2000] == data[:2000]
    tail_ok = list(audio.iter_chunks(data[:1400], 640))  # tail 120 >= 100: kept as is
    assert [len(c) for c in tail_ok] == [640, 640, 120]


def test_iter_chunks_short_input_and_limits() -> None:
    assert list(audio.iter_chunks(b"", 640)) == []
    assert list(audio.iter_chunks(b"\x01" * 30, 640)) == [b"\x01" * 30 + b"\xff" * 70]
    big = b"\x02" * 200_000
    chunks = list(audio.iter_chunks(big, 65536))
    assert all(100 <= len(c) <= 65536 for c in chunks)
    assert b"".join(chunks) == big
    for bad in (99, 65537, 0):
        with pytest.raises(ValueError, match="chunk_bytes must be within"):
            list(audio.iter_chunks(big, bad))


def test_chunk_duration_and_pacing() -> None:
    assert audio.chunk_duration(160) == pytest.approx(0.02)
    assert audio.chunk_duration(640, AudioEncoding.LINEAR16, 16000) == pytest.approx(0.02)
    assert audio.chunk_duration(320, "alaw", 16000) == pytest.approx(0.02)
    with pytest.raises(ValueError, match="rate must be positive"):
        audio.chunk_duration(1, rate=0)
    # 1 s of audio sent after 0.5 s: may lead by 0.2 s, so wait 0.3 s.
    assert audio.pace_delay(1.0, 0.5) == pytest.approx(0.3)
    assert audio.pace_delay(1.0, 0.9) == 0.0
    assert audio.pace_delay(1.0, 0.5, lead_s=0.0) == pytest.approx(0.5)


def test_require_names_the_extra() -> None:
    with pytest.raises(_optional.MissingExtraError) as info:
        _optional.require("webex_byova_no_such_module", "shiny")
    err = info.value
    assert isinstance(err, ImportError)
    assert err.extra == "shiny"
    assert err.module == "webex_byova_no_such_module"
    assert "pip install 'webex-byova-sdk[shiny]'" in str(err)
    assert _optional.optional_import("webex_byova_no_such_module") is None
    assert _optional.require("math", "none").sqrt(4) == 2


SCRIPT = textwrap.dedent(
    """
    import sys
    sys.modules["numpy"] = None          # numpy "not installed"
    sys.modules["webrtcvad"] = None      # webrtcvad "not installed"
    from webex_byova._optional import MissingExtraError
    from webex_byova.media import audio, vad, assets
    assert not audio.numpy_available()
    pcm = bytes(range(256)) * 20
    u = audio.pcm16_to_ulaw(pcm)         # large input: auto would pick numpy if present
    assert audio.ulaw_to_pcm16(u) == audio.ulaw_to_pcm16(u, use_numpy=False)
    assert len(audio.resample_pcm16(pcm, 16000, 8000)) == len(pcm) // 2
    wav = assets.load("speech_hello.wav")
    assert audio.wav_to_webex(wav) == audio.read_wav(wav).payload
    ev = vad.EnergyVAD().feed_ulaw(audio.read_wav(wav).payload + audio.silence(1500))
    assert [type(e).__name__ for e in ev] == ["SpeechStarted", "SpeechEnded"], ev
    for fn in (lambda: audio.ulaw_to_pcm16(b"x", use_numpy=True), lambda: vad.WebRtcVAD()):
        try:
            fn()
        except MissingExtraError as exc:
            print(exc.extra)
        else:
            raise AssertionError("no MissingExtraError")
    """
)


def test_pure_python_without_numpy_or_webrtcvad() -> None:
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["fast", "webrtcvad"]
