"""G.711 golden tests: every code and every PCM16 value, pure and numpy paths.

The reference here is written independently of the module (closed-form segment formulas
and ``int.bit_length`` instead of segment tables) and pinned to known values of the ITU
reference / CPython's historic ``audioop``.
"""

from __future__ import annotations

import random
import struct

import pytest

from webex_byova.media import audio
from webex_byova.media.audio import AudioEncoding

ALL_CODES = bytes(range(256))
ALL_PCM = struct.pack("<65536h", *range(-32768, 32768))
PATHS = [pytest.param(False, id="pure"), pytest.param(True, id="numpy")]


def ref_ulaw_decode(code: int) -> int:
    c = ~code & 0xFF
    exponent, mantissa = (c >> 4) & 7, c & 15
    magnitude = 4 * ((2 * mantissa + 33) * 2**exponent - 33)
    return magnitude if c & 0x80 == 0 else -magnitude


def ref_ulaw_encode(sample: int) -> int:
    v = sample // 4  # floor, as the reference's arithmetic shift
    positive = v >= 0
    mag = min(abs(v), 8159) + 33  # 33 = bias (0x84) in the 14-bit domain
    exponent = mag.bit_length() - 6
    mantissa = (mag >> (exponent + 1)) & 15
    if exponent > 7:
        exponent, mantissa = 7, 15
    return (exponent << 4 | mantissa) ^ (0xFF if positive else 0x7F)


def ref_alaw_decode(code: int) -> int:
    a = code ^ 0x55
    exponent, mantissa = (a >> 4) & 7, a & 15
    mag = 8 * (2 * mantissa + 1) if exponent == 0 else 4 * (2 * mantissa + 33) * 2**exponent
    return mag if a & 0x80 else -mag


def ref_alaw_encode(sample: int) -> int:
    v = sample // 8
    mask = 0xD5 if v >= 0 else 0x55
    if v < 0:
        v = -v - 1
    exponent = max(0, v.bit_length() - 5)
    mantissa = (v >> max(exponent, 1)) & 15
    return (exponent << 4 | mantissa) ^ mask


def s16(pcm: bytes) -> list[int]:
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


@pytest.mark.parametrize("use_numpy", PATHS)
def test_ulaw_decode_all_256_codes(use_numpy: bool) -> None:
    assert s16(audio.ulaw_to_pcm16(ALL_CODES, use_numpy=use_numpy)) == [
        ref_ulaw_decode(c) for c in range(256)
    ]


@pytest.mark.parametrize("use_numpy", PATHS)
def test_alaw_decode_all_256_codes(use_numpy: bool) -> None:
    assert s16(audio.alaw_to_pcm16(ALL_CODES, use_numpy=use_numpy)) == [
        ref_alaw_decode(c) for c in range(256)
    ]


@pytest.mark.parametrize("use_numpy", PATHS)
def test_ulaw_encode_all_65536_values(use_numpy: bool) -> None:
    expected = bytes(ref_ulaw_encode(s) for s in range(-32768, 32768))
    assert audio.pcm16_to_ulaw(ALL_PCM, use_numpy=use_numpy) == expected


@pytest.mark.parametrize("use_numpy", PATHS)
def test_alaw_encode_all_65536_values(use_numpy: bool) -> None:
    expected = bytes(ref_alaw_encode(s) for s in range(-32768, 32768))
    assert audio.pcm16_to_alaw(ALL_PCM, use_numpy=use_numpy) == expected


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0xFF, 0),
        (0x7F, 0),
        (0x00, -32124),
        (0x80, 32124),
        (0x7E, -8),
        (0xFE, 8),
        (0xF0, 120),
        (0x70, -120),
    ],
)
def test_ulaw_known_decode_vectors(code: int, value: int) -> None:
    assert s16(audio.ulaw_to_pcm16(bytes([code]))) == [value]
    assert ref_ulaw_decode(code) == value


@pytest.mark.parametrize(
    ("code", "value"),
    [
        (0xD5, 8),
        (0x55, -8),
        (0xAA, 32256),
        (0x2A, -32256),
        (0xD4, 24),
        (0x54, -24),
        (0x80, 5504),
        (0x00, -5504),
    ],
)
def test_alaw_known_decode_vectors(code: int, value: int) -> None:
    assert s16(audio.alaw_to_pcm16(bytes([code]))) == [value]
    assert ref_alaw_decode(code) == value


@pytest.mark.parametrize(
    ("sample", "ulaw", "alaw"),
    [
        (0, 0xFF, 0xD5),
        (-1, 0x7E, 0x55),
        (1, 0xFF, 0xD5),
        (4, 0xFE, 0xD5),
        (-5, 0x7E, 0x55),
        (100, 0xF2, 0xD3),
        (-100, 0x72, 0x53),
        (1000, 0xCE, 0xFA),
        (32767, 0x80, 0xAA),
        (-32768, 0x00, 0x2A),
        (32124, 0x80, 0xAA),
    ],
)
def test_known_encode_vectors(sample: int, ulaw: int, alaw: int) -> None:
    pcm = struct.pack("<h", sample)
    assert audio.pcm16_to_ulaw(pcm) == bytes([ulaw])
    assert audio.pcm16_to_alaw(pcm) == bytes([alaw])


@pytest.mark.parametrize("use_numpy", PATHS)
def test_round_trips(use_numpy: bool) -> None:
    # Every code survives decode->encode, except µ-law's negative zero (0x7F -> 0 -> 0xFF).
    u = audio.pcm16_to_ulaw(
        audio.ulaw_to_pcm16(ALL_CODES, use_numpy=use_numpy), use_numpy=use_numpy
    )
    assert u == ALL_CODES.replace(b"\x7f", b"\xff")
    a = audio.pcm16_to_alaw(
        audio.alaw_to_pcm16(ALL_CODES, use_numpy=use_numpy), use_numpy=use_numpy
    )
    assert a == ALL_CODES
    # PCM -> µ-law -> PCM stays within the quantisation step of the segment.
    back = s16(audio.ulaw_to_pcm16(audio.pcm16_to_ulaw(ALL_PCM, use_numpy=use_numpy)))
    for x, y in zip(range(-32768, 32768, 7), back[::7], strict=True):
        assert abs(x - y) <= max(8, abs(x) // 15) or abs(x) > 32124


def test_generic_decode_encode_dispatch() -> None:
    pcm = struct.pack("<4h", 0, 1000, -1000, 32767)
    assert audio.decode(pcm, AudioEncoding.LINEAR16) == pcm
    assert audio.decode(pcm + b"\x01", 1) == pcm  # odd trailing byte ignored
    ulaw = audio.pcm16_to_ulaw(pcm)
    assert audio.encode(pcm, AudioEncoding.MULAW) == ulaw
    assert audio.encode(pcm, AudioEncoding.UNSPECIFIED) == ulaw  # missing = µ-law
    assert audio.decode(ulaw, 0) == audio.ulaw_to_pcm16(ulaw)
    assert audio.encode(pcm, "alaw") == audio.pcm16_to_alaw(pcm)
    assert audio.decode(b"\xd5", "ALAW_FORMAT") == struct.pack("<h", 8)
    assert audio.encode(pcm, "linear16") == pcm


def test_encoding_coerce() -> None:
    assert AudioEncoding.coerce(None) is AudioEncoding.MULAW
    assert AudioEncoding.coerce(0) is AudioEncoding.MULAW
    assert AudioEncoding.coerce(3) is AudioEncoding.ALAW
    assert AudioEncoding.coerce("MULAW_FORMAT") is AudioEncoding.MULAW
    assert AudioEncoding.coerce("pcm") is AudioEncoding.LINEAR16
    assert AudioEncoding.coerce("u-law") is AudioEncoding.MULAW
    assert AudioEncoding.LINEAR16.sample_width == 2
    assert AudioEncoding.ALAW.sample_width == 1
    with pytest.raises(ValueError, match="unknown audio encoding 9"):
        AudioEncoding.coerce(9)
    with pytest.raises(ValueError, match="'opus'"):
        AudioEncoding.coerce("opus")


def test_numpy_and_pure_agree_on_odd_lengths_and_buffers() -> None:
    data = bytearray(range(256)) * 3
    for fn in (audio.ulaw_to_pcm16, audio.alaw_to_pcm16):
        assert fn(data, use_numpy=True) == fn(bytes(data), use_numpy=False)
        assert fn(memoryview(data), use_numpy=False) == fn(bytes(data), use_numpy=True)
    odd = bytes(data) + b"\x07"  # 769 bytes: the last byte is half a sample
    for fn in (audio.pcm16_to_ulaw, audio.pcm16_to_alaw):
        assert fn(odd, use_numpy=True) == fn(odd, use_numpy=False) == fn(bytes(data))
    assert audio.ulaw_to_pcm16(b"") == b""
    assert audio.pcm16_to_ulaw(b"\x01") == b""


@pytest.mark.parametrize("numpy", [True, False])
def test_frame_energy_from_codes_matches_decoded(
    numpy: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not numpy:
        monkeypatch.setattr(audio, "_ULAW_F8", None)
    # every code (the numpy lookup from 32 codes on), short frames (pure Python), bytes-likes
    for frame in (bytes(range(0, 256, 3)), bytes(range(256)), bytes(range(7)), b"\x00" * 31):
        pcm = audio.ulaw_to_pcm16(frame)
        expected = sum(v * v for v in s16(pcm))
        assert audio.ulaw_frame_energy(frame) == expected
        assert audio.ulaw_frame_energy(bytearray(frame)) == expected
        assert audio.ulaw_frame_energy(memoryview(frame)) == expected
        assert audio.pcm16_frame_energy(pcm, use_numpy=False) == expected
        assert audio.pcm16_frame_energy(pcm, use_numpy=True) == expected
    assert audio.ulaw_frame_energy(b"") == 0


@pytest.mark.parametrize("numpy", [True, False])
@pytest.mark.parametrize("samples", [160, 31, 32, 256])
def test_energy_meter_of_a_stream_gives_the_frame_energy(
    numpy: bool, samples: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not numpy:
        monkeypatch.setattr(audio, "_ULAW_F8", None)
    meter = audio.ulaw_energy_meter(samples)
    assert (meter is audio.ulaw_frame_energy) == (not numpy or samples < 32)
    rng = random.Random(samples)
    # frames of the stream's size one after another (each overwrites the meter's buffer),
    # and of other sizes in between
    frames = [rng.randbytes(samples) for _ in range(20)] + [bytes(range(256))[:samples]]
    frames += [rng.randbytes(samples - 1), rng.randbytes(samples + 1), b"", bytes(samples)]
    # digital silence over and over, and frames equal to the one before after other sizes
    silence = b"\xff" * samples
    frames += [silence, silence, frames[0], silence, rng.randbytes(samples + 1), silence]
    for frame in frames + frames[:3]:
        assert meter(frame) == audio.ulaw_frame_energy(frame)
        assert meter(frame) == sum(v * v for v in s16(audio.ulaw_to_pcm16(frame)))
    # one buffer refilled in place for every frame (a reader's reused bytearray)
    buffer = bytearray(samples)
    for frame in [rng.randbytes(samples) for _ in range(5)] + [silence, silence]:
        buffer[:] = frame
        assert meter(buffer) == audio.ulaw_frame_energy(frame)
        assert meter(memoryview(buffer)) == audio.ulaw_frame_energy(frame)


def test_rms_dbfs() -> None:
    assert audio.rms_dbfs(b"") == float("-inf")
    assert audio.rms_dbfs(bytes(320)) == float("-inf")
    square = struct.pack("<4h", 32767, -32768, 32767, -32768)
    assert audio.rms_dbfs(square) == pytest.approx(0.0, abs=0.01)
    half = struct.pack("<2h", 16384, -16384)
    assert audio.rms_dbfs(half) == pytest.approx(-6.02, abs=0.01)


def test_silence() -> None:
    assert audio.silence(20) == b"\xff" * 160
    assert audio.silence(10, AudioEncoding.ALAW, 16000) == b"\xd5" * 160
    assert audio.silence(20, "linear16") == bytes(320)
    assert audio.ulaw_to_pcm16(audio.silence(5)) == bytes(80)
