"""Helpers for the audio/VAD tests: deterministic signal generators (no randomness unseeded)."""

from __future__ import annotations

import math
import random
import struct

import pytest

from webex_byova.media import assets
from webex_byova.media.audio import read_wav


def pack(samples: list[int]) -> bytes:
    """LINEAR16 little-endian bytes of ``samples`` (clipped to int16)."""
    return struct.pack(f"<{len(samples)}h", *(max(-32768, min(32767, s)) for s in samples))


def unpack(pcm: bytes) -> list[int]:
    """Samples of LINEAR16 little-endian bytes."""
    return list(struct.unpack(f"<{len(pcm) // 2}h", pcm))


def sine(freq: float, rate: int, seconds: float, amp: float = 10000.0) -> bytes:
    """A sine tone as LINEAR16."""
    n = int(rate * seconds)
    return pack([round(amp * math.sin(2 * math.pi * freq * i / rate)) for i in range(n)])


def noise(rate: int, seconds: float, rms: float, seed: int = 1) -> bytes:
    """Gaussian white noise with the given RMS (in sample units) as LINEAR16."""
    rng = random.Random(seed)
    return pack([round(rng.gauss(0.0, rms)) for _ in range(int(rate * seconds))])


def mix(a: bytes, b: bytes) -> bytes:
    """Sample-wise sum of two LINEAR16 buffers (length of the shorter)."""
    return pack([x + y for x, y in zip(unpack(a), unpack(b), strict=False)])


@pytest.fixture(scope="session")
def hello_ulaw() -> bytes:
    """Raw 8 kHz µ-law of the shipped speech fixture."""
    wav = read_wav(assets.load("speech_hello.wav"))
    assert wav.sample_rate == 8000
    assert wav.channels == 1
    return wav.payload
