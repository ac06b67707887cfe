"""WAV sample formats beyond 16-bit PCM: 8/24/32-bit integer PCM, IEEE float, extensible.

Files are written by the standard library's ``wave`` module where it can (integer PCM) and
packed by hand for float and WAVE_FORMAT_EXTENSIBLE; every one must decode to the 16-bit
signal it was made from, reach Webex as 8 kHz µ-law, and play through a real server's
``say(wav=...)``.
"""

from __future__ import annotations

import io
import math
import struct
import wave
from typing import Any

import pytest

from tests.media_audio.conftest import pack, sine, unpack
from webex_byova.media import audio
from webex_byova.media.audio import WavFormatError
from webex_byova.media.config import MediaServerConfig
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.testing import WebexCaller

from .test_audio_wav import chunk, extensible_fmt, fmt_body, riff

SIGNAL = sine(440, 16000, 0.05, amp=12000) + pack([32767, -32768, 0, 1, -1, 255, -256])


def stdlib_wav(samples16: list[int], width: int, rate: int = 16000, channels: int = 1) -> bytes:
    """A WAV of ``width``-byte integer samples written by :mod:`wave` (8-bit is unsigned)."""
    frames = bytearray()
    for s in samples16:
        if width == 1:
            frames.append((s >> 8) + 128)
        else:
            frames += (s << (8 * (width - 2))).to_bytes(width, "little", signed=True)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(width)
        w.setframerate(rate)
        w.writeframes(bytes(frames))
    return buf.getvalue()


def float_wav(values: list[float], width: int, *, rate: int = 16000, extensible: bool = False):
    code = "f" if width == 4 else "d"
    data = struct.pack(f"<{len(values)}{code}", *values)
    fmt = extensible_fmt(3, 1, rate, 8 * width) if extensible else fmt_body(3, 1, rate, 8 * width)
    return riff(
        chunk(b"fmt ", fmt), chunk(b"fact", struct.pack("<I", len(values))), chunk(b"data", data)
    )


@pytest.mark.parametrize(
    ("width", "name"), [(1, "pcm_u8"), (2, "pcm_s16"), (3, "pcm_s24"), (4, "pcm_s32")]
)
def test_integer_pcm_of_every_width(width: int, name: str) -> None:
    samples = unpack(SIGNAL)
    wav = audio.read_wav(stdlib_wav(samples, width))
    assert (wav.sample_format, wav.bits_per_sample, wav.encoding) == (
        name,
        8 * width,
        audio.AudioEncoding.LINEAR16,
    )
    expected = [(s >> 8) << 8 for s in samples] if width == 1 else samples
    assert unpack(wav.pcm16) == expected
    assert wav.frames == len(samples)
    assert len(wav.payload) == width * len(samples)


def test_wider_samples_keep_their_top_16_bits() -> None:
    """24/32-bit detail below 16 bits is dropped (truncation), never wrapped around."""
    fine = [0x7FFFFF, -0x800000, 0x0001FF, -1, 0x123456]
    data = b"".join(v.to_bytes(3, "little", signed=True) for v in fine)
    wav = audio.read_wav(riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 24)), chunk(b"data", data)))
    assert unpack(wav.pcm16) == [v >> 8 for v in fine]


@pytest.mark.parametrize("width", [4, 8])
@pytest.mark.parametrize("extensible", [False, True])
def test_ieee_float(width: int, extensible: bool) -> None:
    values = [0.0, 0.5, -0.5, 1.0, -1.0, 1.5, -7.0, math.nan, math.inf, -math.inf, 1 / 32768]
    wav = audio.read_wav(float_wav(values, width, extensible=extensible))
    assert wav.sample_format == f"float{8 * width}"
    assert unpack(wav.pcm16) == [
        0,
        16384,
        -16384,
        32767,
        -32768,
        32767,
        -32768,
        0,
        32767,
        -32768,
        1,
    ]


@pytest.mark.parametrize("width", [4, 8])
def test_float_numpy_and_pure_python_agree(width: int) -> None:
    values = [math.sin(i / 7) * 1.2 for i in range(3000)] + [math.nan, 0.49999 / 32768]
    raw = struct.pack(f"<{len(values)}{'f' if width == 4 else 'd'}", *values)
    pure = audio.float_to_pcm16(raw, width, use_numpy=False)
    fast = audio.float_to_pcm16(raw, width, use_numpy=True)
    assert pure == fast
    assert len(pure) == 2 * len(values)
    with pytest.raises(ValueError, match="4 or 8 bytes"):
        audio.float_to_pcm16(raw, 2)


def test_extensible_24_bits_in_32_bit_containers() -> None:
    """Valid bits are left-justified in the container: the top 16 bits are the sample."""
    samples = [1000, -1000, 32767, -32768]
    data = b"".join((s << 16).to_bytes(4, "little", signed=True) for s in samples)
    fmt = extensible_fmt(1, 1, 8000, 32, valid=24)
    wav = audio.read_wav(riff(chunk(b"fmt ", fmt), chunk(b"data", data)))
    assert (wav.sample_format, unpack(wav.pcm16)) == ("pcm_s32", samples)


def test_stereo_24_bit_96khz_reaches_webex_as_8khz_ulaw() -> None:
    left = unpack(sine(300, 96000, 0.1, amp=9000))
    right = unpack(sine(700, 96000, 0.1, amp=9000))
    inter = [s for pair in zip(left, right, strict=True) for s in pair]
    data = stdlib_wav(inter, 3, rate=96000, channels=2)
    wav = audio.read_wav(data)
    assert (wav.channels, wav.sample_rate, wav.frames) == (2, 96000, 9600)
    ulaw = audio.wav_to_webex(data)
    assert len(ulaw) == 800  # 100 ms at 8 kHz
    mono = audio.downmix_pcm16(pack(inter), 2)
    assert ulaw == audio.pcm16_to_ulaw(audio.resample_pcm16(mono, 96000, 8000))


def test_unsupported_rate_is_named() -> None:
    data = stdlib_wav([0] * 10, 2, rate=44056)
    with pytest.raises(WavFormatError, match="sample rate 44056 Hz is not supported"):
        audio.wav_to_webex(data)


async def test_say_plays_float_and_8_bit_wavs_and_refuses_at_the_call_site() -> None:
    """Through a real server: the prompt Webex receives is the converted audio; an
    unsupported WAV raises WavFormatError inside the handler, where say() was called."""
    float_prompt = float_wav([math.sin(i / 5) * 0.8 for i in range(1600)], 4)
    byte_prompt = stdlib_wav(unpack(sine(500, 8000, 0.1)), 1, rate=8000)
    refused: list[Exception] = []
    server = BYOVAMediaServer(MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False))

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("float", wav=float_prompt)
        event.turn.play_wav(byte_prompt)
        try:
            event.turn.say(wav=float_wav([0.0] * 10, 4, rate=12345))
        except WavFormatError as exc:
            refused.append(exc)

    await server.start()
    try:
        async with WebexCaller(server.address, realtime=False) as caller:
            turn = await caller.start_session()
    finally:
        await server.stop(0.2)
    assert turn.ok
    heard = [audio.wav_to_webex(p.audio_content) for p in turn.prompts]
    assert heard == [audio.wav_to_webex(float_prompt), audio.wav_to_webex(byte_prompt)]
    assert len(heard[0]) == 800  # 1600 samples at 16 kHz = 100 ms
    assert [str(e) for e in refused] == [
        "sample rate 12345 Hz is not supported (supported: "
        + ", ".join(str(r) for r in audio.SUPPORTED_SAMPLE_RATES)
        + ")"
    ]
