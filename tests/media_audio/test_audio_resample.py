"""Resampling: frequency and level preserved, anti-alias filter works, streaming == one-shot."""

from __future__ import annotations

import math

import pytest

from tests.media_audio.conftest import noise, sine, unpack
from webex_byova.media import audio
from webex_byova.media.audio import Resampler

PATHS = [pytest.param(False, id="pure"), pytest.param(True, id="numpy")]


def tone_level_db(pcm: bytes, rate: int, freq: float) -> float:
    """Level (dB re. amplitude 1) of ``freq`` in the middle half of ``pcm`` (single DFT bin)."""
    x = unpack(pcm)
    x = x[len(x) // 4 : 3 * len(x) // 4]
    re = sum(v * math.cos(2 * math.pi * freq * i / rate) for i, v in enumerate(x))
    im = sum(v * math.sin(2 * math.pi * freq * i / rate) for i, v in enumerate(x))
    amp = 2 * math.hypot(re, im) / len(x)
    return 20 * math.log10(max(amp, 1e-9))


def dominant_freq(pcm: bytes, rate: int) -> float:
    """Frequency estimated from zero crossings."""
    x = unpack(pcm)[rate // 20 : -rate // 20]
    crossings = sum(1 for a, b in zip(x, x[1:]) if (a < 0) != (b < 0))
    return crossings / 2 / (len(x) / rate)


@pytest.mark.parametrize("use_numpy", PATHS)
@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (8000, 16000),
        (16000, 8000),
        (24000, 8000),
        (48000, 8000),
        (8000, 48000),
        (24000, 16000),
        (44100, 8000),
        (22050, 16000),
    ],
)
def test_1khz_keeps_frequency_and_level(src: int, dst: int, use_numpy: bool) -> None:
    pcm = sine(1000, src, 0.5)
    out = audio.resample_pcm16(pcm, src, dst, use_numpy=use_numpy)
    assert len(out) // 2 == math.ceil(len(pcm) // 2 * dst / src)
    assert dominant_freq(out, dst) == pytest.approx(1000, rel=0.01)
    assert audio.rms_dbfs(out[dst // 5 : -dst // 5]) == pytest.approx(audio.rms_dbfs(pcm), abs=0.2)
    assert tone_level_db(out, dst, 1000) == pytest.approx(20 * math.log10(10000), abs=0.2)


@pytest.mark.parametrize("use_numpy", PATHS)
def test_anti_alias_filter(use_numpy: bool) -> None:
    ref = 20 * math.log10(10000)
    # 3.5 kHz is inside the 8 kHz band but in the filter's transition: attenuated.
    out = audio.resample_pcm16(sine(3500, 16000, 0.5), 16000, 8000, use_numpy=use_numpy)
    assert -8.0 < tone_level_db(out, 8000, 3500) - ref < -3.0
    # 3 kHz passes almost untouched.
    out = audio.resample_pcm16(sine(3000, 16000, 0.5), 16000, 8000, use_numpy=use_numpy)
    assert tone_level_db(out, 8000, 3000) - ref > -0.5
    # 5 kHz would alias to 3 kHz without the filter: it is gone.
    out = audio.resample_pcm16(sine(5000, 16000, 0.5), 16000, 8000, use_numpy=use_numpy)
    assert tone_level_db(out, 8000, 3000) - ref < -60
    out = audio.resample_pcm16(sine(6000, 48000, 0.5), 48000, 8000, use_numpy=use_numpy)
    assert tone_level_db(out, 8000, 2000) - ref < -60
    # Upsampling leaves no image of 1 kHz at 7 kHz.
    out = audio.resample_pcm16(sine(1000, 8000, 0.5), 8000, 16000, use_numpy=use_numpy)
    assert tone_level_db(out, 16000, 7000) - ref < -60


@pytest.mark.parametrize(
    ("src", "dst"), [(16000, 8000), (8000, 16000), (48000, 8000), (44100, 8000), (24000, 16000)]
)
def test_pure_and_numpy_agree_and_streaming_equals_one_shot(src: int, dst: int) -> None:
    pcm = noise(src, 0.3, 3000, seed=src)
    pure = audio.resample_pcm16(pcm, src, dst, use_numpy=False)
    fast = audio.resample_pcm16(pcm, src, dst, use_numpy=True)
    assert max(abs(a - b) for a, b in zip(unpack(pure), unpack(fast), strict=True)) <= 1
    for use_numpy in (False, True):
        r = Resampler(src, dst, use_numpy=use_numpy)
        pieces = []
        pos, step = 0, 1
        while pos < len(pcm):  # uneven pieces, some splitting a sample in half
            pieces.append(r.process(pcm[pos : pos + step]))
            pos += step
            step = step * 3 % 1001 + 1
        streamed = b"".join(pieces) + r.flush()
        one_shot = pure if not use_numpy else fast
        assert streamed == one_shot
        # after flush the resampler is reusable
        assert r.process(pcm) + r.flush() == one_shot


def test_clipping_and_edge_cases() -> None:
    square = sine(1000, 16000, 0.1, amp=40000)  # clipped square-ish wave
    out = audio.resample_pcm16(square, 16000, 8000)
    assert max(unpack(out)) <= 32767
    assert min(unpack(out)) >= -32768
    assert audio.resample_pcm16(b"", 16000, 8000) == b""
    assert audio.resample_pcm16(b"\x01\x02\x03", 8000, 8000) == b"\x01\x02"
    assert len(audio.resample_pcm16(b"\x10\x00", 8000, 16000)) == 4
    r = Resampler(8000, 8000)
    assert r.process(b"\x01") == b""
    assert r.process(b"\x02") == b"\x01\x02"
    assert r.flush() == b""
    with pytest.raises(ValueError, match="source sample rate 11000 Hz is not supported"):
        Resampler(11000, 8000)
    with pytest.raises(ValueError, match="target sample rate 7999 Hz"):
        audio.resample_pcm16(b"", 8000, 7999)
