"""WAV read/write: every supported variant built on the fly, malformed files, Webex conversion."""

from __future__ import annotations

import struct

import pytest

from tests.media_audio.conftest import pack, sine, unpack
from webex_byova.media import audio
from webex_byova.media.audio import AudioEncoding, WavFormatError


def chunk(cid: bytes, body: bytes) -> bytes:
    return cid + struct.pack("<I", len(body)) + body + (b"\x00" if len(body) & 1 else b"")


def fmt_body(tag: int, channels: int, rate: int, bits: int, *, size: int = 16) -> bytes:
    block = channels * bits // 8
    body = struct.pack("<HHIIHH", tag, channels, rate, rate * block, block, bits)
    if size == 18:
        body += struct.pack("<H", 0)
    return body


def extensible_fmt(subtag: int, channels: int, rate: int, bits: int, valid: int = 0) -> bytes:
    block = channels * bits // 8
    guid = struct.pack("<H", subtag) + bytes.fromhex("000000001000800000aa00389b71")
    return (
        struct.pack(
            "<HHIIHHHHI", 0xFFFE, channels, rate, rate * block, block, bits, 22, valid or bits, 3
        )
        + guid
    )


def riff(*chunks: bytes) -> bytes:
    body = b"WAVE" + b"".join(chunks)
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize("rate", [8000, 16000, 24000, 48000])
def test_pcm16_mono_rates(rate: int) -> None:
    pcm = sine(440, rate, 0.1)
    wav = audio.read_wav(riff(chunk(b"fmt ", fmt_body(1, 1, rate, 16)), chunk(b"data", pcm)))
    assert (wav.sample_rate, wav.channels, wav.encoding, wav.bits_per_sample) == (
        rate,
        1,
        AudioEncoding.LINEAR16,
        16,
    )
    assert wav.pcm16 == pcm == wav.payload
    assert wav.frames == len(pcm) // 2
    assert wav.duration == pytest.approx(0.1)
    ulaw = audio.wav_to_webex(riff(chunk(b"fmt ", fmt_body(1, 1, rate, 16)), chunk(b"data", pcm)))
    assert len(ulaw) == 800  # 100 ms at 8 kHz
    back = audio.ulaw_to_pcm16(ulaw)
    assert audio.rms_dbfs(back[200:-200]) == pytest.approx(audio.rms_dbfs(pcm), abs=0.5)


def test_stereo_is_downmixed() -> None:
    left, right = unpack(sine(440, 16000, 0.05, amp=8000)), [1000] * 800
    inter = pack([s for pair in zip(left, right, strict=True) for s in pair])
    data = riff(chunk(b"fmt ", fmt_body(1, 2, 16000, 16)), chunk(b"data", inter))
    wav = audio.read_wav(data)
    assert wav.channels == 2
    assert wav.frames == 800
    assert wav.pcm16 == inter
    assert unpack(wav.mono_pcm16()) == [(a + b) // 2 for a, b in zip(left, right, strict=True)]
    assert audio.downmix_pcm16(inter, 2, use_numpy=True) == audio.downmix_pcm16(
        inter, 2, use_numpy=False
    )
    expected = audio.pcm16_to_ulaw(audio.resample_pcm16(wav.mono_pcm16(), 16000, 8000))
    assert audio.wav_to_webex(data) == expected


@pytest.mark.parametrize(("tag", "encoding"), [(6, AudioEncoding.ALAW), (7, AudioEncoding.MULAW)])
@pytest.mark.parametrize("fmt_size", [16, 18])
def test_g711_wavs(tag: int, encoding: AudioEncoding, fmt_size: int) -> None:
    payload = bytes(range(256))
    data = riff(
        chunk(b"fmt ", fmt_body(tag, 1, 8000, 8, size=fmt_size)),
        chunk(b"fact", struct.pack("<I", 256)),
        chunk(b"data", payload),
    )
    wav = audio.read_wav(data)
    assert wav.encoding is encoding
    assert wav.payload == payload
    assert wav.pcm16 == audio.decode(payload, encoding)
    webex = audio.wav_to_webex(data)
    if encoding is AudioEncoding.MULAW:
        assert webex == payload  # already what Webex plays: passed through bit for bit
    else:
        assert webex == audio.pcm16_to_ulaw(audio.alaw_to_pcm16(payload))


@pytest.mark.parametrize(("subtag", "bits"), [(1, 16), (7, 8), (6, 8)])
def test_extensible(subtag: int, bits: int) -> None:
    payload = bytes(range(200))
    wav = audio.read_wav(
        riff(chunk(b"fmt ", extensible_fmt(subtag, 1, 16000, bits)), chunk(b"data", payload))
    )
    assert (
        wav.encoding
        == {1: AudioEncoding.LINEAR16, 7: AudioEncoding.MULAW, 6: AudioEncoding.ALAW}[subtag]
    )
    assert wav.sample_rate == 16000
    assert wav.payload == payload


def test_list_chunk_odd_sizes_and_chunk_order() -> None:
    pcm = sine(300, 8000, 0.02)
    info = chunk(b"LIST", b"INFOISFT" + struct.pack("<I", 5) + b"test\x00")  # odd -> padded
    data = riff(
        info,
        chunk(b"junk", b"abc"),
        chunk(b"fmt ", fmt_body(1, 1, 8000, 16)),
        chunk(b"data", pcm),
        chunk(b"id3 ", b"x" * 9),
    )
    assert audio.read_wav(data).pcm16 == pcm
    # data before fmt is legal RIFF too
    data2 = riff(chunk(b"data", pcm), chunk(b"fmt ", fmt_body(1, 1, 8000, 16)))
    assert audio.read_wav(data2).pcm16 == pcm


def test_streaming_size_sentinel_and_partial_frame() -> None:
    pcm = sine(300, 8000, 0.02)
    head = riff(chunk(b"fmt ", fmt_body(1, 2, 8000, 16)))
    data = head + b"data" + struct.pack("<I", 0xFFFFFFFF) + pcm + b"\x01\x02"
    wav = audio.read_wav(data)
    assert wav.payload == pcm
    assert wav.channels == 2


@pytest.mark.parametrize(
    "encoding", [AudioEncoding.MULAW, AudioEncoding.ALAW, AudioEncoding.LINEAR16]
)
@pytest.mark.parametrize("rate", [8000, 16000])
def test_make_wav_round_trip(encoding: AudioEncoding, rate: int) -> None:
    payload = bytes(range(256)) * 2
    data = audio.make_wav(payload, encoding=encoding, sample_rate=rate)
    assert len(data) == 44 + len(payload)
    wav = audio.read_wav(data)
    assert (wav.encoding, wav.sample_rate, wav.channels, wav.payload) == (
        encoding,
        rate,
        1,
        payload,
    )


def test_make_wav_canonical_ulaw_header() -> None:
    data = audio.make_wav(b"\xff" * 160)
    assert data[:44] == (
        b"RIFF"
        + struct.pack("<I", 36 + 160)
        + b"WAVEfmt "
        + struct.pack("<IHHIIHH", 16, 7, 1, 8000, 8000, 1, 8)
        + b"data"
        + struct.pack("<I", 160)
    )
    pcm_header = audio.make_wav(bytes(4), encoding=AudioEncoding.LINEAR16, sample_rate=16000)
    assert struct.unpack_from("<HHIIHH", pcm_header, 20) == (1, 1, 16000, 32000, 2, 16)
    odd = audio.make_wav(b"\xff" * 3)
    assert len(odd) == 48
    assert struct.unpack_from("<I", odd, 4)[0] == 40
    assert audio.read_wav(odd).payload == b"\xff" * 3
    with pytest.raises(ValueError, match="sample_rate"):
        audio.make_wav(b"", sample_rate=0)


def test_shipped_assets_are_webex_wavs() -> None:
    from webex_byova.media import assets

    assert {"speech_hello.wav", "speech_yes.wav"} <= set(assets.names())
    for name in ("speech_hello.wav", "speech_yes.wav"):
        data = assets.load(name)
        assert len(data) < 100_000
        wav = audio.read_wav(data)
        assert (wav.encoding, wav.sample_rate, wav.channels) == (AudioEncoding.MULAW, 8000, 1)
        assert data[:44] == audio.make_wav(wav.payload)[:44]
        assert audio.rms_dbfs(wav.pcm16) > -35  # real speech, not silence
    assert assets.path("speech_yes.wav").is_file()
    with pytest.raises(FileNotFoundError, match="no asset 'nope.wav'"):
        assets.load("nope.wav")
    with pytest.raises(FileNotFoundError, match="invalid"):
        assets.load("../audio.py")


GOOD_FMT = chunk(b"fmt ", fmt_body(1, 1, 8000, 16))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "too short to be a WAV file (0 bytes)"),
        (b"OggS" + bytes(40), "not a RIFF/WAVE file"),
        (b"RIFF\x00\x00\x00\x00AVI " + bytes(40), "not a RIFF/WAVE file"),
        (b"RIFX" + bytes(4) + b"WAVE", "big-endian RIFX"),
        (b"RF64" + bytes(4) + b"WAVE", "RF64"),
        (riff(chunk(b"data", bytes(10))), "no fmt chunk"),
        (riff(GOOD_FMT), "no data chunk"),
        (
            riff(GOOD_FMT, b"data" + struct.pack("<I", 1000) + bytes(10)),
            "truncated data chunk (header says 1000 bytes, 10 present)",
        ),
        (riff(b"fmt " + struct.pack("<I", 16) + bytes(8)), "truncated fmt chunk"),
        (riff(chunk(b"fmt ", bytes(12)), chunk(b"data", b"")), "fmt chunk too short (12 bytes"),
        (
            riff(chunk(b"fmt ", fmt_body(3, 1, 8000, 16)), chunk(b"data", bytes(8))),
            "16-bit IEEE float samples are not supported (32 and 64-bit are)",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(0x55, 1, 8000, 16)), chunk(b"data", bytes(8))),
            "unsupported WAV format tag 85 (MPEG Layer 3)",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(0x1234, 1, 8000, 16)), chunk(b"data", bytes(8))),
            "unsupported WAV format tag 0x1234",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(1, 1, 8000, 40)), chunk(b"data", bytes(10))),
            "40-bit PCM samples are not supported (8-bit unsigned and 16, 24 or 32-bit",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(7, 1, 8000, 16)), chunk(b"data", bytes(6))),
            "16-bit samples (MULAW); only 8-bit",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(1, 1, 11000, 16)), chunk(b"data", bytes(6))),
            "sample rate 11000 Hz is not supported",
        ),
        (riff(chunk(b"fmt ", fmt_body(1, 0, 8000, 16)), chunk(b"data", bytes(6))), "0 channels"),
        (riff(chunk(b"fmt ", fmt_body(1, 9, 8000, 16)), chunk(b"data", bytes(6))), "9 channels"),
        (
            riff(
                chunk(b"fmt ", struct.pack("<HHIIHH", 1, 1, 8000, 16000, 4, 16)),
                chunk(b"data", bytes(8)),
            ),
            "block align 4 does not match",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(0xFFFE, 1, 8000, 16, size=18)), chunk(b"data", bytes(8))),
            "WAVE_FORMAT_EXTENSIBLE fmt chunk too short (18 bytes",
        ),
        (
            riff(
                chunk(b"fmt ", extensible_fmt(1, 1, 8000, 16)[:24] + bytes(16)),
                chunk(b"data", bytes(8)),
            ),
            "unsupported WAVE_FORMAT_EXTENSIBLE sub-format",
        ),
        (
            riff(
                chunk(b"fmt ", extensible_fmt(3, 1, 8000, 32, valid=24)), chunk(b"data", bytes(8))
            ),
            "24-bit samples in 32-bit float containers",
        ),
        (
            riff(
                chunk(b"fmt ", extensible_fmt(1, 1, 8000, 16, valid=20)), chunk(b"data", bytes(8))
            ),
            "20-bit samples in 16-bit containers",
        ),
        (
            riff(chunk(b"fmt ", fmt_body(0x0002, 1, 8000, 4)), chunk(b"data", bytes(8))),
            "supported: PCM (8-bit unsigned, 16/24/32-bit signed), IEEE float (32/64-bit)",
        ),
    ],
)
def test_malformed_wavs_name_the_problem(data: bytes, message: str) -> None:
    with pytest.raises(WavFormatError) as info:
        audio.read_wav(data)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)
    with pytest.raises(WavFormatError):
        audio.wav_to_webex(data)


def test_garbage_never_raises_anything_but_wav_format_error() -> None:
    import random

    rng = random.Random(7)
    header = riff(GOOD_FMT, chunk(b"data", bytes(100)))
    for i in range(3000):
        if i % 2:
            blob = bytearray(header)
            for _ in range(rng.randint(1, 6)):
                blob[rng.randrange(len(blob))] = rng.randrange(256)
            blob = blob[: rng.randint(0, len(blob))]
        else:
            blob = bytearray(rng.randbytes(rng.randint(0, 80)))
            if rng.random() < 0.5:
                blob[:12] = b"RIFF\x00\x00\x00\x00WAVE"
        try:
            wav = audio.read_wav(bytes(blob))
        except WavFormatError:
            continue
        assert len(wav.pcm16) == 2 * wav.frames * wav.channels


def test_to_webex_ulaw_raw_inputs() -> None:
    pcm8 = sine(1000, 8000, 0.05)
    assert audio.to_webex_ulaw(pcm8) == audio.pcm16_to_ulaw(pcm8)
    ulaw = audio.pcm16_to_ulaw(pcm8)
    assert audio.to_webex_ulaw(ulaw, encoding="mulaw") == ulaw
    up = audio.to_webex_ulaw(ulaw, encoding="mulaw", target_rate=16000)
    assert len(up) == 2 * len(ulaw)
    with pytest.raises(ValueError, match="target sample rate 12345 Hz"):
        audio.to_webex_ulaw(pcm8, target_rate=12345)
