"""Audio for BYOVA: G.711 codecs, LINEAR16 helpers, resampling, WAV read/write, chunking.

Everything here is pure (no I/O) and safe to call from an event loop.

* **G.711** µ-law and A-law, bit-exact with the ITU-T G.711 reference (the same values as the
  historic CPython ``audioop`` ``ulaw2lin``/``lin2ulaw``/``alaw2lin``/``lin2alaw`` with width 2).
  Decoding is table driven (``bytes.translate`` into the low and high byte planes); encoding
  looks every sample up in a 65,536-entry table. When numpy is importable (``fast`` extra)
  large buffers go through numpy; every function takes ``use_numpy`` (``None`` = automatic,
  ``False`` = pure Python, ``True`` = numpy or :class:`~webex_byova._optional.MissingExtraError`).
* **LINEAR16** is signed 16-bit little-endian PCM. A trailing odd byte is ignored.
* **Resampling** (:class:`Resampler`, :func:`resample_pcm16`) is a polyphase windowed-sinc FIR
  (Kaiser window, 70 dB stop band). The cut-off is 0.44 x the lower of the two rates with a
  transition band 0.16 x that rate wide: for 8 kHz output the pass band is flat to ~2.9 kHz,
  -6 dB at 3.52 kHz and >= 70 dB down from 4.16 kHz, so nothing audible aliases.
* **WAV**: :func:`read_wav` parses general RIFF/WAVE (any chunk order, ``LIST``/``fact``/other
  chunks skipped, 16/18/40-byte ``fmt``, ``WAVE_FORMAT_EXTENSIBLE``) holding integer PCM
  (8-bit unsigned, 16-, 24- or 32-bit signed, or fewer valid bits in such a container),
  IEEE float (32- or 64-bit), A-law or µ-law, 1 to 8 channels, at a rate of
  :data:`SUPPORTED_SAMPLE_RATES`; linear samples are converted to LINEAR16 (the top 16 bits
  of integers; floats scaled by 32768, clipped, NaN as 0). :func:`wav_to_webex` converts such
  a file to what Webex plays (raw 8 kHz µ-law, channels averaged, resampled);
  :func:`make_wav` writes the canonical 44-byte header. A malformed or unsupported file
  raises :class:`WavFormatError` naming what was found.
* **Chunking**: :func:`iter_chunks` cuts µ-law into CHUNK-mode pieces (100 B .. 64 KiB),
  :func:`chunk_duration` and :func:`pace_delay` support real-time pacing.
"""

from __future__ import annotations

import math
import struct
import sys
from array import array
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import IntEnum
from functools import cache
from operator import mul
from typing import Any, Final

from webex_byova._optional import optional_import, require

__all__ = [
    "ALAW_SILENCE",
    "SUPPORTED_SAMPLE_RATES",
    "ULAW_SILENCE",
    "WAV_FORMATS_ACCEPTED",
    "AudioEncoding",
    "Resampler",
    "WavAudio",
    "WavFormatError",
    "alaw_to_pcm16",
    "chunk_duration",
    "decode",
    "downmix_pcm16",
    "encode",
    "float_to_pcm16",
    "frame_decoder",
    "iter_chunks",
    "make_wav",
    "numpy_available",
    "pace_delay",
    "pcm16_frame_energy",
    "pcm16_to_alaw",
    "pcm16_to_ulaw",
    "read_wav",
    "resample_pcm16",
    "rms_dbfs",
    "silence",
    "to_webex_ulaw",
    "ulaw_energy_meter",
    "ulaw_frame_energy",
    "ulaw_to_pcm16",
    "wav_to_webex",
]

BytesLike = bytes | bytearray | memoryview

_np: Any = optional_import("numpy")

#: µ-law code of digital silence (decodes to 0).
ULAW_SILENCE: Final = 0xFF
#: A-law code closest to silence (decodes to +8).
ALAW_SILENCE: Final = 0xD5
#: Sample rates accepted by :func:`read_wav`, :class:`Resampler` and :func:`wav_to_webex`.
SUPPORTED_SAMPLE_RATES: Final = (
    8000,
    11025,
    12000,
    16000,
    22050,
    24000,
    32000,
    44100,
    48000,
    88200,
    96000,
    176400,
    192000,
)

# Below this many bytes the pure-Python paths beat numpy's per-call overhead.
_NUMPY_MIN_BYTES: Final = 2048
#: numpy dtypes of the per-frame paths, resolved once (``None`` without numpy).
_I2: Final = _np.dtype("<i2") if _np is not None else None
_I8: Final = _np.dtype("<i8") if _np is not None else None
_F8: Final = _np.dtype("<f8") if _np is not None else None
_U1: Final = _np.dtype("u1") if _np is not None else None
#: Up to this many samples a sum of int16 squares (< 2**30 each) is exact in a float64, whose
#: dot product numpy computes with less overhead than an int64 one.
_EXACT_F8_SAMPLES: Final = 1 << 22
_BIG_ENDIAN: Final = sys.byteorder == "big"


def numpy_available() -> bool:
    """Return whether the numpy fast path can be used (the ``fast`` extra is installed)."""
    return _np is not None


def _want_numpy(use_numpy: bool | None, nbytes: int) -> bool:
    if use_numpy is None:
        return _np is not None and nbytes >= _NUMPY_MIN_BYTES
    if use_numpy:
        require("numpy", "fast")
        return True
    return False


class AudioEncoding(IntEnum):
    """Audio encodings, numbered like the proto's ``VoiceInput.VoiceEncoding``."""

    UNSPECIFIED = 0
    LINEAR16 = 1
    MULAW = 2
    ALAW = 3

    @classmethod
    def coerce(cls, value: AudioEncoding | int | str | None) -> AudioEncoding:
        """Normalise an enum, proto number or name (``"mulaw"``, ``"MULAW_FORMAT"``, ``"pcm"``...).

        ``UNSPECIFIED`` (0) and ``None`` become ``MULAW``, what Webex sends when the field is
        missing. An unknown value raises :class:`ValueError`.
        """
        if value is None:
            return cls.MULAW
        if isinstance(value, str):
            key = value.strip().upper().replace("-", "").replace("_", "")
            key = key.removesuffix("FORMAT")
            aliases = {
                "": cls.MULAW,
                "UNSPECIFIED": cls.MULAW,
                "LINEAR16": cls.LINEAR16,
                "PCM": cls.LINEAR16,
                "PCM16": cls.LINEAR16,
                "L16": cls.LINEAR16,
                "MULAW": cls.MULAW,
                "ULAW": cls.MULAW,
                "µLAW": cls.MULAW,
                "PCMU": cls.MULAW,
                "ALAW": cls.ALAW,
                "PCMA": cls.ALAW,
            }
            if key not in aliases:
                raise ValueError(f"unknown audio encoding {value!r}")
            return aliases[key]
        try:
            enc = cls(int(value))
        except ValueError:
            raise ValueError(f"unknown audio encoding {value!r}") from None
        return cls.MULAW if enc is cls.UNSPECIFIED else enc

    @property
    def sample_width(self) -> int:
        """Bytes per sample (2 for LINEAR16, 1 for the G.711 codecs)."""
        return 2 if self is AudioEncoding.LINEAR16 else 1


# --------------------------------------------------------------------------- G.711 scalars
# These build the tables once; the hot paths never call them per sample.

_ULAW_SEG_END: Final = (0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF)
_ALAW_SEG_END: Final = (0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF)


def _ulaw_decode_code(code: int) -> int:
    u = ~code & 0xFF
    t = (((u & 0x0F) << 3) + 0x84) << ((u & 0x70) >> 4)
    return 0x84 - t if u & 0x80 else t - 0x84


def _ulaw_encode_sample(sample: int) -> int:
    v = sample >> 2  # 14-bit magnitude domain (arithmetic shift, like the reference)
    if v < 0:
        v, mask = -v, 0x7F
    else:
        mask = 0xFF
    v = min(v, 8159) + 33
    for seg, end in enumerate(_ULAW_SEG_END):
        if v <= end:
            return ((seg << 4) | ((v >> (seg + 1)) & 0x0F)) ^ mask
    return 0x7F ^ mask


def _alaw_decode_code(code: int) -> int:
    a = code ^ 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t = (t + 0x108) << (seg - 1)
    return t if a & 0x80 else -t


def _alaw_encode_sample(sample: int) -> int:
    v = sample >> 3  # 13-bit domain
    if v >= 0:
        mask = 0xD5
    else:
        mask = 0x55
        v = -v - 1
    for seg, end in enumerate(_ALAW_SEG_END):
        if v <= end:
            quant = (v >> 1) if seg < 2 else (v >> seg)
            return ((seg << 4) | (quant & 0x0F)) ^ mask
    return 0x7F ^ mask


def _planes(decoder: Callable[[int], int]) -> tuple[bytes, bytes]:
    values = [decoder(c) & 0xFFFF for c in range(256)]
    return bytes(v & 0xFF for v in values), bytes(v >> 8 for v in values)


_ULAW_VALUES: Final = tuple(_ulaw_decode_code(c) for c in range(256))
_ALAW_VALUES: Final = tuple(_alaw_decode_code(c) for c in range(256))
_ULAW_LO, _ULAW_HI = _planes(_ulaw_decode_code)
_ALAW_LO, _ALAW_HI = _planes(_alaw_decode_code)
#: Squared decoded value per µ-law code: frame energy straight from the codes.
#: (Lists, not tuples or bytes: ``list.__getitem__`` is the fastest ``map`` callable.)
_ULAW_SQUARES: Final = [v * v for v in _ULAW_VALUES]
#: The decoded µ-law values as float64, for ulaw_frame_energy's numpy path.
_ULAW_F8: Final = _np.array(_ULAW_VALUES, dtype="<f8") if _np is not None else None


@cache
def _encode_table(alaw: bool) -> list[int]:
    """65,536-entry table indexed by the unsigned view of a PCM16 sample."""
    fn = _alaw_encode_sample if alaw else _ulaw_encode_sample
    return [fn(u - 0x10000 if u & 0x8000 else u) for u in range(0x10000)]


@cache
def _np_decode_table(alaw: bool) -> Any:
    return _np.array(_ALAW_VALUES if alaw else _ULAW_VALUES, dtype="<i2")


@cache
def _np_encode_table(alaw: bool) -> Any:
    return _np.array(_encode_table(alaw), dtype=_np.uint8)


def _as_bytes(data: BytesLike) -> bytes:
    return data if isinstance(data, bytes) else bytes(data)


def _g711_decode(data: BytesLike, alaw: bool, use_numpy: bool | None) -> bytes:
    raw = _as_bytes(data)
    if _want_numpy(use_numpy, len(raw)):
        codes = _np.frombuffer(raw, dtype=_np.uint8)
        return bytes(_np_decode_table(alaw)[codes].tobytes())
    if alaw:
        return _planes_decode(raw, _ALAW_LO, _ALAW_HI)
    return _planes_decode(raw, _ULAW_LO, _ULAW_HI)


def _planes_decode(raw: bytes, lo: bytes, hi: bytes) -> bytes:
    """G.711 codes to LINEAR16 through the low and high byte planes of the decode table."""
    out = bytearray(2 * len(raw))
    out[0::2] = raw.translate(lo)
    out[1::2] = raw.translate(hi)
    return bytes(out)


def _ulaw_frame(data: BytesLike) -> bytes:
    raw = data if isinstance(data, bytes) else bytes(data)
    if len(raw) < _NUMPY_MIN_BYTES or _np is None:
        return _planes_decode(raw, _ULAW_LO, _ULAW_HI)
    return _g711_decode(raw, False, None)


def _alaw_frame(data: BytesLike) -> bytes:
    raw = data if isinstance(data, bytes) else bytes(data)
    if len(raw) < _NUMPY_MIN_BYTES or _np is None:
        return _planes_decode(raw, _ALAW_LO, _ALAW_HI)
    return _g711_decode(raw, True, None)


def _linear16_frame(data: BytesLike) -> bytes:
    raw = _as_bytes(data)
    return raw[: len(raw) & ~1]


def _pcm_samples(pcm: BytesLike) -> array[int]:
    """Signed samples of LINEAR16 little-endian bytes (trailing odd byte dropped)."""
    samples = array("h")
    samples.frombytes(memoryview(pcm)[: len(pcm) & ~1])
    if _BIG_ENDIAN:  # pragma: no cover - little-endian CI
        samples.byteswap()
    return samples


def _pcm_bytes(samples: array[int]) -> bytes:
    if _BIG_ENDIAN:  # pragma: no cover - little-endian CI
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _g711_encode(pcm: BytesLike, alaw: bool, use_numpy: bool | None) -> bytes:
    n = len(pcm) // 2
    if _want_numpy(use_numpy, 2 * n):
        idx = _np.frombuffer(pcm, dtype="<u2", count=n)
        return bytes(_np_encode_table(alaw)[idx].tobytes())
    unsigned = array("H")
    unsigned.frombytes(memoryview(pcm)[: 2 * n])
    if _BIG_ENDIAN:  # pragma: no cover - little-endian CI
        unsigned.byteswap()
    return bytes(map(_encode_table(alaw).__getitem__, unsigned))


def ulaw_to_pcm16(data: BytesLike, *, use_numpy: bool | None = None) -> bytes:
    """Decode G.711 µ-law bytes to LINEAR16 little-endian (two bytes per input byte)."""
    return _g711_decode(data, False, use_numpy)


def alaw_to_pcm16(data: BytesLike, *, use_numpy: bool | None = None) -> bytes:
    """Decode G.711 A-law bytes to LINEAR16 little-endian (two bytes per input byte)."""
    return _g711_decode(data, True, use_numpy)


def pcm16_to_ulaw(pcm: BytesLike, *, use_numpy: bool | None = None) -> bytes:
    """Encode LINEAR16 little-endian to G.711 µ-law (one byte per sample)."""
    return _g711_encode(pcm, False, use_numpy)


def pcm16_to_alaw(pcm: BytesLike, *, use_numpy: bool | None = None) -> bytes:
    """Encode LINEAR16 little-endian to G.711 A-law (one byte per sample)."""
    return _g711_encode(pcm, True, use_numpy)


def decode(
    data: BytesLike,
    encoding: AudioEncoding | int | str | None,
    *,
    use_numpy: bool | None = None,
) -> bytes:
    """Decode audio in ``encoding`` (``UNSPECIFIED`` means µ-law) to LINEAR16 little-endian."""
    enc = AudioEncoding.coerce(encoding)
    if enc is AudioEncoding.LINEAR16:
        return _linear16_frame(data)
    return _g711_decode(data, enc is AudioEncoding.ALAW, use_numpy)


def frame_decoder(encoding: AudioEncoding | int | str | None) -> Callable[[BytesLike], bytes]:
    """The decoder of ``encoding`` to LINEAR16, for a stream of frames in one encoding.

    ``frame_decoder(enc)(data)`` equals ``decode(data, enc)``; the encoding is resolved once
    (:meth:`AudioEncoding.coerce`, so an unknown one raises :class:`ValueError` here), which
    is what the media server pays per 20 ms caller frame.
    """
    enc = AudioEncoding.coerce(encoding)
    if enc is AudioEncoding.LINEAR16:
        return _linear16_frame
    return _alaw_frame if enc is AudioEncoding.ALAW else _ulaw_frame


def encode(
    pcm: BytesLike,
    encoding: AudioEncoding | int | str | None,
    *,
    use_numpy: bool | None = None,
) -> bytes:
    """Encode LINEAR16 little-endian to ``encoding`` (``UNSPECIFIED`` means µ-law)."""
    enc = AudioEncoding.coerce(encoding)
    if enc is AudioEncoding.LINEAR16:
        raw = _as_bytes(pcm)
        return raw[: len(raw) & ~1]
    return _g711_encode(pcm, enc is AudioEncoding.ALAW, use_numpy)


# --------------------------------------------------------------------------- levels


def ulaw_frame_energy(ulaw: BytesLike) -> int:
    """Sum of squared decoded samples of µ-law bytes, computed from the codes without decoding.

    With numpy (even for one 20 ms frame: the media server's µ-law path per frame) the
    decoded values are looked up as float64, exact for up to 2**22 samples.
    """
    raw = ulaw if type(ulaw) is bytes else bytes(ulaw)
    if _ULAW_F8 is not None and 32 <= len(raw) <= _EXACT_F8_SAMPLES:
        x = _ULAW_F8.take(_np.frombuffer(raw, _U1))
        return int(x.dot(x))
    return sum(map(_ULAW_SQUARES.__getitem__, raw))


def ulaw_energy_meter(samples: int) -> Callable[[BytesLike], int]:
    """:func:`ulaw_frame_energy` for a stream of ``samples``-byte frames (same results).

    Per 20 ms frame, numpy's own overhead is most of the cost, and most of it is turning the
    codes into an index array. So with numpy (on a little-endian machine) the meter keeps one
    index array whose memory is a ``bytearray``: each frame's codes are written into the low
    bytes of its slots (the other bytes stay zero), and the values are looked up into one
    output array, with no array made per frame. A frame equal to the one before (digital
    silence: the same code over and over) gets that frame's sum back without a look-up. Other
    sizes, and installs without numpy, take :func:`ulaw_frame_energy`.
    """
    if _ULAW_F8 is None or not 32 <= samples <= _EXACT_F8_SAMPLES or sys.byteorder != "little":
        return ulaw_frame_energy
    step = _np.dtype(_np.intp).itemsize
    slots = bytearray(samples * step)
    index = _np.frombuffer(slots, _np.intp)
    values = _np.empty(samples, _F8)
    take = _ULAW_F8.take
    last = b""
    last_energy = 0

    def energy(ulaw: BytesLike) -> int:
        nonlocal last, last_energy
        if ulaw == last:
            return last_energy
        if len(ulaw) != samples:
            return ulaw_frame_energy(ulaw)
        slots[::step] = ulaw
        take(index, None, values, "clip")
        # a copy of a buffer the caller may refill in place (bytes are kept as they are)
        last = ulaw if type(ulaw) is bytes else bytes(ulaw)
        last_energy = int(values.dot(values))
        return last_energy

    return energy


def pcm16_frame_energy(pcm: BytesLike, *, use_numpy: bool | None = None) -> int:
    """Sum of squared samples of LINEAR16 little-endian bytes.

    Automatic mode uses numpy even for single frames: it is ~4x faster here. Per 20 ms frame
    the call overhead is most of the cost, so the numpy calls take positional arguments.
    """
    n = len(pcm) // 2
    if _want_numpy(use_numpy, _NUMPY_MIN_BYTES if n >= 32 else 0):
        x = _np.frombuffer(pcm, _I2, n).astype(_F8 if n <= _EXACT_F8_SAMPLES else _I8)
        return int(x.dot(x))
    samples = _pcm_samples(pcm)
    return sum(map(mul, samples, samples))


def rms_dbfs(pcm: BytesLike) -> float:
    """RMS level of LINEAR16 audio in dB relative to full scale (``-inf`` for digital silence).

    A full-scale square wave is 0 dBFS, a full-scale sine about -3 dBFS.
    """
    n = len(pcm) // 2
    energy = pcm16_frame_energy(pcm) if n else 0
    if energy == 0:
        return -math.inf
    return 10.0 * math.log10(energy / n / (32768.0 * 32768.0))


def silence(
    duration_ms: float,
    encoding: AudioEncoding | int | str | None = AudioEncoding.MULAW,
    sample_rate: int = 8000,
) -> bytes:
    """Return ``duration_ms`` of silence in ``encoding`` at ``sample_rate``."""
    enc = AudioEncoding.coerce(encoding)
    n = round(sample_rate * duration_ms / 1000.0)
    if enc is AudioEncoding.LINEAR16:
        return bytes(2 * n)
    return bytes([ALAW_SILENCE if enc is AudioEncoding.ALAW else ULAW_SILENCE]) * n


def downmix_pcm16(pcm: BytesLike, channels: int, *, use_numpy: bool | None = None) -> bytes:
    """Average interleaved LINEAR16 channels into mono (floor of the mean).

    A trailing partial frame is dropped.
    """
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    if channels == 1:
        raw = _as_bytes(pcm)
        return raw[: len(raw) & ~1]
    frames = len(pcm) // (2 * channels)
    if _want_numpy(use_numpy, 2 * frames * channels):
        x = _np.frombuffer(pcm, dtype="<i2", count=frames * channels).astype(_np.int32)
        mixed = _np.floor_divide(x.reshape(frames, channels).sum(axis=1), channels)
        return bytes(mixed.astype("<i2").tobytes())
    samples = _pcm_samples(memoryview(pcm)[: 2 * frames * channels])
    totals = list(samples[0::channels])
    for c in range(1, channels):
        totals = list(map(int.__add__, totals, samples[c::channels]))
    return _pcm_bytes(array("h", [t // channels for t in totals]))


# --------------------------------------------------------------------------- resampling

_STOPBAND_DB: Final = 70.0
_CUTOFF: Final = 0.44  # x the lower rate
_TRANSITION: Final = 0.16  # x the lower rate


def _bessel_i0(x: float) -> float:
    total = term = 1.0
    k = 1
    half = x / 2.0
    while term > 1e-12 * total:
        term *= (half / k) ** 2
        total += term
        k += 1
    return total


@cache
def _polyphase(
    from_rate: int, to_rate: int
) -> tuple[int, int, int, int, tuple[tuple[float, ...], ...]]:
    """Design the filter: returns (L, M, K taps per phase, delay D, reversed phase taps)."""
    g = math.gcd(from_rate, to_rate)
    up, down = to_rate // g, from_rate // g
    fs_up = from_rate * up
    low = min(from_rate, to_rate)
    cutoff = _CUTOFF * low / fs_up  # cycles per up-rate sample
    dw = 2.0 * math.pi * _TRANSITION * low / fs_up
    need = math.ceil((_STOPBAND_DB - 7.95) / (2.285 * dw)) + 1
    taps = -(-need // up)  # per phase
    n = taps * up if (taps * up) % 2 else taps * up - 1
    beta = 0.1102 * (_STOPBAND_DB - 8.7)
    mid = (n - 1) / 2.0
    i0_beta = _bessel_i0(beta)
    proto = []
    for j in range(n):
        t = j - mid
        sinc = 2.0 * cutoff if t == 0 else math.sin(2.0 * math.pi * cutoff * t) / (math.pi * t)
        r = t / mid
        proto.append(sinc * _bessel_i0(beta * math.sqrt(max(0.0, 1.0 - r * r))) / i0_beta)
    scale = up / math.fsum(proto)
    proto = [c * scale for c in proto] + [0.0] * (taps * up - n)
    phases = tuple(
        tuple(reversed([proto[phase + k * up] for k in range(taps)])) for phase in range(up)
    )
    return up, down, taps, (n - 1) // 2, phases


def _check_rate(rate: int, what: str) -> None:
    if rate not in SUPPORTED_SAMPLE_RATES:
        supported = ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES)
        raise ValueError(f"{what} sample rate {rate} Hz is not supported (supported: {supported})")


class Resampler:
    """Streaming LINEAR16 resampler (polyphase windowed-sinc FIR, see the module docstring).

    Feed PCM in pieces of any size with :meth:`process` (bytes may split a sample) and call
    :meth:`flush` once at the end to get the filter's tail. Output ``n`` is aligned to input
    time ``n / to_rate`` (the filter delay is compensated), and the total output length is
    ``ceil(n_in * to_rate / from_rate)`` samples. Pure Python and numpy give the same samples
    to within one LSB.
    """

    def __init__(self, from_rate: int, to_rate: int, *, use_numpy: bool | None = None) -> None:
        _check_rate(from_rate, "source")
        _check_rate(to_rate, "target")
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._numpy = _np is not None if use_numpy is None else _want_numpy(use_numpy, 0)
        self._passthrough = from_rate == to_rate
        if self._passthrough:
            self._up = self._down = self._taps = self._delay = 1
            self._phases: tuple[tuple[float, ...], ...] = ()
        else:
            self._up, self._down, self._taps, self._delay, self._phases = _polyphase(
                from_rate, to_rate
            )
        self._np_phases: Any = _np.array(self._phases) if self._numpy and self._phases else None
        self._odd = b""
        self.reset()

    def reset(self) -> None:
        """Forget all buffered input and start a new stream."""
        self._odd = b""
        self._n_in = 0
        self._n_out = 0
        self._start = -(self._taps - 1)  # absolute index of self._buf[0]
        zeros = [0] * (self._taps - 1)
        self._buf: list[int] = zeros
        self._np_buf: Any = _np.zeros(self._taps - 1) if self._numpy else None

    def process(self, pcm: BytesLike) -> bytes:
        """Resample the next piece of LINEAR16 audio; returns what can be produced so far."""
        data = self._odd + _as_bytes(pcm)
        even = len(data) & ~1
        self._odd = data[even:]
        if self._passthrough:
            return data[:even]
        samples = _pcm_samples(data[:even])
        self._n_in += len(samples)
        if self._numpy:
            self._np_buf = _np.concatenate([self._np_buf, _np.asarray(samples, dtype=float)])
        else:
            self._buf.extend(samples)
        return self._produce(self._last_output(self._n_in))

    def flush(self) -> bytes:
        """Return the remaining output (the input is padded with silence) and reset."""
        if self._passthrough:
            self.reset()
            return b""
        total = -(-self._n_in * self._up // self._down)
        pad = self._taps + 1
        if self._numpy:
            self._np_buf = _np.concatenate([self._np_buf, _np.zeros(pad)])
        else:
            self._buf.extend([0] * pad)
        out = self._produce(total)
        self.reset()
        return out

    def _last_output(self, available: int) -> int:
        # Output n needs inputs up to (n*M + D) // L, which must be < available.
        return max(self._n_out, (available * self._up - self._delay - 1) // self._down + 1)

    def _produce(self, end: int) -> bytes:
        start = self._n_out
        if end <= start:
            return b""
        up, down, taps, delay = self._up, self._down, self._taps, self._delay
        if self._numpy:
            out = self._produce_numpy(start, end)
        else:
            buf, base, phases = self._buf, self._start, self._phases
            values = array("h")
            append = values.append
            for n in range(start, end):
                p = n * down + delay
                lo = p // up - taps + 1 - base
                v = round(sum(map(mul, phases[p % up], buf[lo : lo + taps])))
                append(32767 if v > 32767 else -32768 if v < -32768 else v)
            out = _pcm_bytes(values)
        self._n_out = end
        keep_from = (end * down + delay) // up - taps + 1  # first input the next output needs
        drop = max(0, keep_from - self._start)
        if drop:
            if self._numpy:
                self._np_buf = self._np_buf[drop:]
            else:
                del self._buf[:drop]
            self._start += drop
        return out

    def _produce_numpy(self, start: int, end: int) -> bytes:
        np = _np
        up, down, taps, delay = self._up, self._down, self._taps, self._delay
        windows = np.lib.stride_tricks.sliding_window_view(self._np_buf, taps)
        chunks = []
        for block in range(start, end, 4096):
            n = np.arange(block, min(end, block + 4096), dtype=np.int64)
            p = n * down + delay
            rows = windows[p // up - taps + 1 - self._start]
            y = np.einsum("ij,ij->i", rows, self._np_phases[p % up])
            chunks.append(np.clip(np.rint(y), -32768, 32767).astype("<i2"))
        return bytes(np.concatenate(chunks).tobytes())


def resample_pcm16(
    pcm: BytesLike, from_rate: int, to_rate: int, *, use_numpy: bool | None = None
) -> bytes:
    """Resample a whole LINEAR16 buffer from ``from_rate`` to ``to_rate`` (see :class:`Resampler`).

    Raises :class:`ValueError` for a rate outside :data:`SUPPORTED_SAMPLE_RATES`.
    """
    if from_rate == to_rate:
        _check_rate(from_rate, "source")
        raw = _as_bytes(pcm)
        return raw[: len(raw) & ~1]
    auto = use_numpy is None and (_np is None or len(pcm) < _NUMPY_MIN_BYTES)
    r = Resampler(from_rate, to_rate, use_numpy=False if auto else use_numpy)
    return r.process(pcm) + r.flush()


# --------------------------------------------------------------------------- WAV


class WavFormatError(ValueError):
    """A WAV file is malformed or in a format this module does not convert."""


_WAVE_FORMAT_PCM: Final = 0x0001
_WAVE_FORMAT_IEEE_FLOAT: Final = 0x0003
_WAVE_FORMAT_ALAW: Final = 0x0006
_WAVE_FORMAT_MULAW: Final = 0x0007
_WAVE_FORMAT_EXTENSIBLE: Final = 0xFFFE
_KSDATAFORMAT_TAIL: Final = bytes.fromhex("000000001000800000aa00389b71")
_FORMAT_NAMES: Final = {
    0x0001: "PCM",
    0x0002: "Microsoft ADPCM",
    0x0003: "IEEE float",
    0x0006: "A-law",
    0x0007: "µ-law",
    0x0011: "IMA ADPCM",
    0x0031: "GSM 6.10",
    0x0050: "MPEG",
    0x0055: "MPEG Layer 3",
    0x0092: "Dolby AC3",
    0x00FF: "AAC",
    0x1610: "HE-AAC",
    0x2000: "AC3",
    0xF1AC: "FLAC",
}
_TAG_ENCODING: Final = {
    _WAVE_FORMAT_PCM: AudioEncoding.LINEAR16,
    _WAVE_FORMAT_IEEE_FLOAT: AudioEncoding.LINEAR16,
    _WAVE_FORMAT_ALAW: AudioEncoding.ALAW,
    _WAVE_FORMAT_MULAW: AudioEncoding.MULAW,
}
_ENCODING_TAG: Final = {
    AudioEncoding.LINEAR16: _WAVE_FORMAT_PCM,
    AudioEncoding.ALAW: _WAVE_FORMAT_ALAW,
    AudioEncoding.MULAW: _WAVE_FORMAT_MULAW,
}
_MAX_CHANNELS: Final = 8
_STREAMING_SIZES: Final = (0xFFFFFFFF, 0x7FFFFFFF)  # "unknown length" written by streamers
#: What :func:`read_wav` accepts, for error messages.
WAV_FORMATS_ACCEPTED: Final = (
    "PCM (8-bit unsigned, 16/24/32-bit signed), IEEE float (32/64-bit), A-law, µ-law"
)


@dataclass(frozen=True, slots=True)
class WavAudio:
    """A parsed WAV file.

    ``payload`` is the sample data as stored (interleaved, a trailing partial frame dropped);
    ``pcm16`` is that data decoded to LINEAR16 little-endian at the original rate, still
    interleaved when ``channels > 1``. ``encoding`` is ``MULAW``/``ALAW`` for G.711 files and
    ``LINEAR16`` for every linear format (integer PCM of any width and IEEE float), whose
    stored layout ``sample_format`` names: ``pcm_u8``, ``pcm_s16``, ``pcm_s24``, ``pcm_s32``,
    ``float32``, ``float64``, ``alaw`` or ``mulaw``. ``bits_per_sample`` is the container
    size in bits.
    """

    pcm16: bytes
    sample_rate: int
    channels: int
    encoding: AudioEncoding
    bits_per_sample: int
    payload: bytes
    sample_format: str = "pcm_s16"

    @property
    def frames(self) -> int:
        """Number of sample frames (samples per channel)."""
        return len(self.pcm16) // (2 * self.channels)

    @property
    def duration(self) -> float:
        """Duration in seconds."""
        return self.frames / self.sample_rate

    def mono_pcm16(self) -> bytes:
        """LINEAR16 mono (channels averaged) at the original rate."""
        return downmix_pcm16(self.pcm16, self.channels)


def _format_name(tag: int) -> str:
    name = _FORMAT_NAMES.get(tag)
    return f"{tag} ({name})" if name else f"0x{tag:04X}"


_XOR_SIGN: Final = bytes(b ^ 0x80 for b in range(256))


def _int_to_pcm16(raw: bytes, width: int) -> bytes:
    """Little-endian integer samples of ``width`` bytes to LINEAR16 (their top 16 bits).

    ``width`` 1 is unsigned (WAV's 8-bit PCM), wider is signed. Pure byte slicing: the
    result is exact, no numpy needed.
    """
    if width == 2:
        return raw
    n = len(raw) // width
    out = bytearray(2 * n)
    if width == 1:
        out[1::2] = raw.translate(_XOR_SIGN)  # (u8 - 128) << 8: high byte = u8 ^ 0x80
    else:
        out[0::2] = raw[width - 2 :: width]
        out[1::2] = raw[width - 1 :: width]
    return bytes(out)


def float_to_pcm16(raw: BytesLike, width: int = 4, *, use_numpy: bool | None = None) -> bytes:
    """Little-endian IEEE float samples (``width`` 4 or 8 bytes) to LINEAR16.

    Samples are scaled by 32768 and rounded half to even, values beyond full scale are
    clipped, NaN becomes 0. numpy and pure Python give identical results.
    """
    if width not in (4, 8):
        raise ValueError(f"float samples are 4 or 8 bytes wide, got {width}")
    data = _as_bytes(raw)
    n = len(data) // width
    if _want_numpy(use_numpy, n * width):
        x = _np.frombuffer(data, dtype="<f4" if width == 4 else "<f8", count=n)
        x = _np.nan_to_num(x.astype(_np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
        y = _np.clip(_np.rint(_np.clip(x, -1.0, 1.0) * 32768.0), -32768, 32767)
        return bytes(y.astype("<i2").tobytes())
    values = array("f" if width == 4 else "d")
    values.frombytes(data[: n * width])
    if _BIG_ENDIAN:  # pragma: no cover - little-endian CI
        values.byteswap()
    out = array("h")
    append = out.append
    for v in values:
        if v != v:  # NaN
            append(0)
            continue
        s = round((1.0 if v > 1.0 else -1.0 if v < -1.0 else v) * 32768.0)
        append(32767 if s > 32767 else s)
    return _pcm_bytes(out)


def read_wav(data: BytesLike) -> WavAudio:
    """Parse a RIFF/WAVE file (see the module docstring for the formats accepted).

    Raises :class:`WavFormatError` (a :class:`ValueError`) naming the problem: not RIFF/WAVE,
    missing/short ``fmt`` chunk, unsupported format tag or sample size, unsupported rate or
    channel count, inconsistent block alignment, missing or truncated ``data`` chunk.
    """
    raw = _as_bytes(data)
    if len(raw) < 12:
        raise WavFormatError(f"too short to be a WAV file ({len(raw)} bytes)")
    riff, _, wave = struct.unpack_from("<4sI4s", raw, 0)
    if riff == b"RIFX":
        raise WavFormatError("big-endian RIFX WAV files are not supported")
    if riff == b"RF64":
        raise WavFormatError("RF64 (64-bit RIFF) WAV files are not supported")
    if riff != b"RIFF" or wave != b"WAVE":
        raise WavFormatError(f"not a RIFF/WAVE file (starts with {raw[:12]!r})")
    fmt: bytes | None = None
    payload: bytes | None = None
    pos = 12
    while pos + 8 <= len(raw):
        cid, size = struct.unpack_from("<4sI", raw, pos)
        body = pos + 8
        if cid == b"data":
            if size > len(raw) - body:
                if size not in _STREAMING_SIZES:
                    raise WavFormatError(
                        f"truncated data chunk (header says {size} bytes, "
                        f"{len(raw) - body} present)"
                    )
                size = len(raw) - body
            payload = raw[body : body + size]
            if fmt is not None:
                break
        elif cid == b"fmt ":
            if size > len(raw) - body:
                raise WavFormatError(
                    f"truncated fmt chunk (header says {size} bytes, {len(raw) - body} present)"
                )
            fmt = raw[body : body + size]
        pos = body + size + (size & 1)
    if fmt is None:
        raise WavFormatError("no fmt chunk")
    if payload is None:
        raise WavFormatError("no data chunk")
    return _parse_wav(fmt, payload)


def _sample_layout(tag: int, bits: int, valid_bits: int) -> tuple[int, str]:
    """``(container bytes, sample_format)`` of a format tag and sample size, or raise."""
    if tag == _WAVE_FORMAT_PCM:
        width = (bits + 7) // 8
        if not 1 <= width <= 4:
            raise WavFormatError(
                f"{bits}-bit PCM samples are not supported (8-bit unsigned and 16, 24 or "
                "32-bit signed are)"
            )
        if not 1 <= valid_bits <= 8 * width:
            raise WavFormatError(f"{valid_bits}-bit samples in {8 * width}-bit containers")
        return width, "pcm_u8" if width == 1 else f"pcm_s{8 * width}"
    if tag == _WAVE_FORMAT_IEEE_FLOAT:
        if bits not in (32, 64):
            raise WavFormatError(
                f"{bits}-bit IEEE float samples are not supported (32 and 64-bit are)"
            )
        if valid_bits != bits:
            raise WavFormatError(f"{valid_bits}-bit samples in {bits}-bit float containers")
        return bits // 8, f"float{bits}"
    what = "ALAW" if tag == _WAVE_FORMAT_ALAW else "MULAW"
    if bits != 8:
        raise WavFormatError(f"{bits}-bit samples ({what}); only 8-bit is supported")
    if valid_bits != 8:
        raise WavFormatError(f"{valid_bits}-bit samples in 8-bit containers")
    return 1, what.lower()


def _parse_wav(fmt: bytes, payload: bytes) -> WavAudio:
    if len(fmt) < 16:
        raise WavFormatError(f"fmt chunk too short ({len(fmt)} bytes, need at least 16)")
    tag, channels, rate, _byte_rate, block_align, bits = struct.unpack_from("<HHIIHH", fmt, 0)
    valid_bits = bits
    if tag == _WAVE_FORMAT_EXTENSIBLE:
        if len(fmt) < 40:
            raise WavFormatError(
                f"WAVE_FORMAT_EXTENSIBLE fmt chunk too short ({len(fmt)} bytes, need 40)"
            )
        valid_bits = struct.unpack_from("<H", fmt, 18)[0] or bits
        guid = fmt[24:40]
        if guid[2:] != _KSDATAFORMAT_TAIL:
            raise WavFormatError(f"unsupported WAVE_FORMAT_EXTENSIBLE sub-format {guid.hex()}")
        tag = struct.unpack_from("<H", guid, 0)[0]
        if tag == _WAVE_FORMAT_PCM and bits % 8:
            raise WavFormatError(f"WAVE_FORMAT_EXTENSIBLE container of {bits} bits")
    encoding = _TAG_ENCODING.get(tag)
    if encoding is None:
        raise WavFormatError(
            f"unsupported WAV format tag {_format_name(tag)}; supported: {WAV_FORMATS_ACCEPTED}"
        )
    width, sample_format = _sample_layout(tag, bits, valid_bits)
    if not 1 <= channels <= _MAX_CHANNELS:
        raise WavFormatError(f"{channels} channels (supported: 1 to {_MAX_CHANNELS})")
    if rate not in SUPPORTED_SAMPLE_RATES:
        supported = ", ".join(str(r) for r in SUPPORTED_SAMPLE_RATES)
        raise WavFormatError(f"sample rate {rate} Hz is not supported (supported: {supported})")
    frame_bytes = channels * width
    if block_align != frame_bytes:
        raise WavFormatError(
            f"block align {block_align} does not match {channels} channel(s) of {bits}-bit "
            f"samples ({frame_bytes})"
        )
    payload = payload[: len(payload) - len(payload) % frame_bytes]
    if tag == _WAVE_FORMAT_IEEE_FLOAT:
        pcm16 = float_to_pcm16(payload, width)
    elif tag == _WAVE_FORMAT_PCM:
        pcm16 = _int_to_pcm16(payload, width)
    else:
        pcm16 = decode(payload, encoding)
    return WavAudio(
        pcm16=pcm16,
        sample_rate=rate,
        channels=channels,
        encoding=encoding,
        bits_per_sample=bits,
        payload=payload,
        sample_format=sample_format,
    )


def make_wav(
    payload: BytesLike,
    *,
    encoding: AudioEncoding | int | str | None = AudioEncoding.MULAW,
    sample_rate: int = 8000,
    channels: int = 1,
) -> bytes:
    """Wrap raw audio in a canonical 44-byte-header WAV file.

    µ-law is format tag 7 and A-law tag 6 (8 bits), LINEAR16 tag 1 (16 bits). The default
    (8 kHz mono µ-law) is what Webex plays.
    """
    enc = AudioEncoding.coerce(encoding)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if channels < 1:
        raise ValueError(f"channels must be >= 1, got {channels}")
    body = _as_bytes(payload)
    block = channels * enc.sample_width
    body = body[: len(body) - len(body) % block]
    pad = b"\x00" if len(body) & 1 else b""
    header = struct.pack(
        "<4sI4s4sIHHIIHH4sI",
        b"RIFF",
        36 + len(body) + len(pad),
        b"WAVE",
        b"fmt ",
        16,
        _ENCODING_TAG[enc],
        channels,
        sample_rate,
        sample_rate * block,
        block,
        8 * enc.sample_width,
        b"data",
        len(body),
    )
    return header + body + pad


def to_webex_ulaw(
    data: BytesLike,
    *,
    encoding: AudioEncoding | int | str | None = AudioEncoding.LINEAR16,
    sample_rate: int = 8000,
    channels: int = 1,
    target_rate: int = 8000,
    use_numpy: bool | None = None,
) -> bytes:
    """Convert raw audio (any supported encoding, rate, channel count) to raw µ-law.

    Mono µ-law already at ``target_rate`` is returned unchanged (bit for bit).
    """
    enc = AudioEncoding.coerce(encoding)
    _check_rate(target_rate, "target")
    raw = _as_bytes(data)
    if enc is AudioEncoding.MULAW and channels == 1 and sample_rate == target_rate:
        return raw
    pcm = downmix_pcm16(decode(raw, enc, use_numpy=use_numpy), channels, use_numpy=use_numpy)
    if sample_rate != target_rate:
        pcm = resample_pcm16(pcm, sample_rate, target_rate, use_numpy=use_numpy)
    return pcm16_to_ulaw(pcm, use_numpy=use_numpy)


def wav_to_webex(data: BytesLike, *, target_rate: int = 8000) -> bytes:
    """Convert a WAV file (any format :func:`read_wav` accepts) to raw µ-law at ``target_rate``.

    Channels are averaged and the audio resampled; 8 kHz mono µ-law passes bit for bit. The
    result has no header (CHUNK-mode audio); wrap it with :func:`make_wav` for WAV mode.
    Raises :class:`WavFormatError` for a malformed or unsupported file.
    """
    wav = read_wav(data)
    g711 = wav.encoding is not AudioEncoding.LINEAR16
    return to_webex_ulaw(
        wav.payload if g711 else wav.pcm16,
        encoding=wav.encoding,
        sample_rate=wav.sample_rate,
        channels=wav.channels,
        target_rate=target_rate,
    )


# --------------------------------------------------------------------------- chunking / pacing


def chunk_duration(
    nbytes: int,
    encoding: AudioEncoding | int | str | None = AudioEncoding.MULAW,
    rate: int = 8000,
) -> float:
    """Seconds of audio in ``nbytes`` of ``encoding`` at ``rate`` (160 µ-law bytes = 0.02 s)."""
    if rate <= 0:
        raise ValueError(f"rate must be positive, got {rate}")
    return nbytes / (AudioEncoding.coerce(encoding).sample_width * rate)


def iter_chunks(
    ulaw: BytesLike,
    chunk_bytes: int,
    *,
    min_bytes: int = 100,
    max_bytes: int = 65536,
) -> Iterator[bytes]:
    """Cut raw µ-law into CHUNK-mode pieces of ``chunk_bytes`` (Webex: 100 B .. 64 KiB).

    A short last piece is merged into the previous one when the result stays within
    ``max_bytes`` (no audio is added); otherwise (or when the whole input is shorter than
    ``min_bytes``) it is padded with µ-law silence (0xFF) up to ``min_bytes``. Empty input
    yields nothing.
    """
    if not 0 < min_bytes <= chunk_bytes <= max_bytes:
        raise ValueError(
            f"chunk_bytes must be within [{min_bytes}, {max_bytes}], got {chunk_bytes}"
        )
    raw = _as_bytes(ulaw)
    total = len(raw)
    if total == 0:
        return
    cuts = list(range(0, total, chunk_bytes))
    tail = total - cuts[-1]
    if tail < min_bytes and len(cuts) > 1 and chunk_bytes + tail <= max_bytes:
        cuts.pop()
    for i, start in enumerate(cuts):
        end = cuts[i + 1] if i + 1 < len(cuts) else total
        piece = raw[start:end]
        if len(piece) < min_bytes:
            piece += bytes([ULAW_SILENCE]) * (min_bytes - len(piece))
        yield piece


def pace_delay(audio_sent_s: float, elapsed_s: float, *, lead_s: float = 0.2) -> float:
    """Seconds to wait before sending more audio to stay near real time.

    ``audio_sent_s`` is the duration already sent, ``elapsed_s`` the wall time since the first
    chunk; the sender may run ``lead_s`` ahead of real time. Returns 0 when it may send now.
    """
    return max(0.0, audio_sent_s - lead_s - elapsed_s)
