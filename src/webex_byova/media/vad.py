"""End-pointing: detect when the caller starts and stops speaking (sans-IO, deterministic).

A detector is fed caller audio in pieces of any size and returns events:

* :class:`SpeechStarted` once ``min_speech_ms`` of consecutive speech frames were seen
  (the server answers ``START_OF_INPUT``);
* :class:`SpeechEnded` after ``complete_timeout_ms`` of non-speech following speech
  (``reason="complete_timeout"``) or once the utterance lasted ``max_speech_ms``
  (``reason="max_speech"``) (the server answers ``END_OF_INPUT``).

Time is derived from the number of samples fed, never from a clock: the first ``feed`` after
construction or :meth:`~EnergyVAD.reset` fixes the origin (its ``now_ms``, default 0) and every
event time is that origin plus the audio duration up to the end of the deciding frame. The
same audio therefore always gives the same events.

Defaults: 20 ms frames, speech start after 80 ms (4 frames) of speech, end after 1000 ms of
silence (the gateway's and Cisco's value), 30 s maximum utterance.

:class:`EnergyVAD` (default, dependency-free) classifies frames by energy against an adaptive
noise floor with hysteresis (a higher margin to start than to continue), an absolute level
gate and a zero-crossing-rate gate for starts. µ-law can be fed directly
(:meth:`~EnergyVAD.feed_ulaw`): energy comes from a 256-entry table of squared code values and
the zero-crossing count from the code sign bits, without decoding. :class:`WebRtcVAD` uses
Google's WebRTC classifier (extra ``webrtcvad``) with the same state machine.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol, runtime_checkable

from webex_byova._optional import require
from webex_byova.media.audio import (
    AudioEncoding,
    BytesLike,
    alaw_to_pcm16,
    pcm16_frame_energy,
    pcm16_to_ulaw,
    ulaw_frame_energy,
    ulaw_to_pcm16,
)

__all__ = [
    "EndReason",
    "EnergyVAD",
    "SpeechDetector",
    "SpeechEnded",
    "SpeechStarted",
    "VADEvent",
    "WebRtcVAD",
    "feed_audio",
]

EndReason = Literal["complete_timeout", "max_speech"]

_FULL_SCALE_SQ: Final = 32768.0 * 32768.0
_FLOOR_DB: Final = -100.0
# Sign plane (1 = sample >= 0) of a µ-law code, from its decoded value (0x7F decodes to 0).
_ULAW_SIGN: Final = ulaw_to_pcm16(bytes(range(256)))[1::2].translate(
    bytes(0 if c & 0x80 else 1 for c in range(256))
)
# Sign plane of the high byte of a little-endian PCM16 sample.
_PCM_SIGN: Final = bytes(0 if c & 0x80 else 1 for c in range(256))


@dataclass(frozen=True, slots=True)
class SpeechStarted:
    """Speech started. ``at_ms``: when it was confirmed; ``onset_ms``: start of its first frame."""

    at_ms: float
    onset_ms: float


@dataclass(frozen=True, slots=True)
class SpeechEnded:
    """The utterance ended at ``at_ms`` for ``reason``.

    ``onset_ms`` is when the utterance started and ``last_voice_ms`` the end of its last
    speech frame.
    """

    at_ms: float
    reason: EndReason
    onset_ms: float
    last_voice_ms: float


VADEvent = SpeechStarted | SpeechEnded


@runtime_checkable
class SpeechDetector(Protocol):
    """What the media server needs from an end-pointer."""

    sample_rate: int
    complete_timeout_ms: float
    max_speech_ms: float

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress (started and not yet ended)."""
        ...

    def feed(self, pcm16: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Feed LINEAR16 little-endian audio at ``sample_rate``; return the events it caused."""
        ...

    def feed_ulaw(self, ulaw: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Feed G.711 µ-law audio at ``sample_rate``; return the events it caused."""
        ...

    def reset(self) -> None:
        """Forget all state (next feed starts a new timeline)."""
        ...


class _Endpointer(abc.ABC):
    """Frame buffering, timeline and the start/end state machine shared by the detectors."""

    def __init__(
        self,
        *,
        sample_rate: int,
        frame_ms: int,
        min_speech_ms: float,
        complete_timeout_ms: float,
        max_speech_ms: float,
    ) -> None:
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30, got {frame_ms}")
        if sample_rate <= 0 or (sample_rate * frame_ms) % 1000:
            raise ValueError(f"sample_rate {sample_rate} does not give whole {frame_ms} ms frames")
        if min_speech_ms < 0 or complete_timeout_ms <= 0 or max_speech_ms <= 0:
            raise ValueError("min_speech_ms must be >= 0, the timeouts > 0")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.min_speech_ms = float(min_speech_ms)
        #: Silence after speech that ends the utterance; may be changed between turns.
        self.complete_timeout_ms = float(complete_timeout_ms)
        #: Longest utterance; may be changed between turns.
        self.max_speech_ms = float(max_speech_ms)
        self._frame_samples = sample_rate * frame_ms // 1000
        self.reset()

    # -- public -----------------------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress (started and not yet ended)."""
        return self._speaking

    def reset(self) -> None:
        """Forget all state (next feed starts a new timeline)."""
        self._origin = 0.0
        self._timeline_started = False
        self._frames = 0
        self._pending = b""
        self._pending_ulaw = False
        self._speaking = False
        self._run = 0
        self._onset = 0.0
        self._last_voice = 0.0
        self._silence_ms = 0.0
        self._reset_classifier()

    def feed(self, pcm16: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Feed LINEAR16 little-endian audio at ``sample_rate``; return the events it caused."""
        data = bytes(pcm16)
        if self._pending_ulaw and self._pending:
            self._pending = ulaw_to_pcm16(self._pending)
        self._pending_ulaw = False
        return self._run_frames(data, 2 * self._frame_samples, now_ms, self._classify_pcm)

    def feed_ulaw(self, ulaw: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Feed G.711 µ-law audio at ``sample_rate``; return the events it caused."""
        data = bytes(ulaw)
        if not self._pending_ulaw and self._pending:
            self._pending = pcm16_to_ulaw(self._pending)
        self._pending_ulaw = True
        return self._run_frames(data, self._frame_samples, now_ms, self._classify_ulaw)

    @property
    def stream_ms(self) -> float:
        """Timeline position at the end of the last complete frame processed."""
        return self._origin + self._frames * self.frame_ms

    # -- internals ----------------------------------------------------------------------

    def _run_frames(
        self,
        data: bytes,
        size: int,
        now_ms: float | None,
        classify: Callable[[bytes, bool], bool],
    ) -> list[VADEvent]:
        if not self._timeline_started:
            self._timeline_started = True
            self._origin = float(now_ms) if now_ms is not None else 0.0
        if self._pending:
            data = self._pending + data
        events: list[VADEvent] = []
        end = len(data) - len(data) % size
        for pos in range(0, end, size):
            event = self._step(classify(data[pos : pos + size], self._speaking))
            if event is not None:
                events.append(event)
        self._pending = data[end:]
        return events

    def _step(self, speech: bool) -> VADEvent | None:
        self._frames += 1
        t = self._origin + self._frames * self.frame_ms
        frame_ms = self.frame_ms
        if not self._speaking:
            if not speech:
                self._run = 0
                return None
            self._run += 1
            if self._run * frame_ms < self.min_speech_ms:
                return None
            self._speaking = True
            self._onset = t - self._run * frame_ms
            self._last_voice = t
            self._silence_ms = 0.0
            self._run = 0
            return SpeechStarted(at_ms=t, onset_ms=self._onset)
        if speech:
            self._last_voice = t
            self._silence_ms = 0.0
        else:
            self._silence_ms += frame_ms
        reason: EndReason | None = None
        if self._silence_ms >= self.complete_timeout_ms:
            reason = "complete_timeout"
        elif t - self._onset >= self.max_speech_ms:
            reason = "max_speech"
        if reason is None:
            return None
        self._speaking = False
        self._silence_ms = 0.0
        return SpeechEnded(
            at_ms=t, reason=reason, onset_ms=self._onset, last_voice_ms=self._last_voice
        )

    def _reset_classifier(self) -> None:  # noqa: B027 - optional hook, no state by default
        """Reset the frame classifier's own state."""

    @abc.abstractmethod
    def _classify_pcm(self, frame: bytes, speaking: bool) -> bool:
        """Is this PCM16 frame speech?"""

    @abc.abstractmethod
    def _classify_ulaw(self, frame: bytes, speaking: bool) -> bool:
        """Is this µ-law frame speech?"""


class EnergyVAD(_Endpointer):
    """Dependency-free energy + zero-crossing end-pointer with an adaptive noise floor.

    The noise floor is the lowest frame level (dBFS) seen in the last ``noise_window_ms``
    (a sliding minimum, updated on every frame), so steady background noise or hum stops
    counting as speech within that window, while a talker's pauses between words keep it
    low. A frame is speech when its level is at least ``start_margin_db`` above the floor
    (``continue_margin_db`` once an utterance is in progress: hysteresis) and at least
    ``min_level_dbfs`` (``min_level_dbfs - continue_margin_db`` in speech); to start an
    utterance its zero-crossing rate must also be at most ``max_start_zcr`` crossings per
    sample (white noise is about 0.5, voiced speech well under 0.3).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        min_speech_ms: float = 80.0,
        complete_timeout_ms: float = 1000.0,
        max_speech_ms: float = 30000.0,
        start_margin_db: float = 12.0,
        continue_margin_db: float = 6.0,
        min_level_dbfs: float = -50.0,
        max_start_zcr: float = 0.35,
        noise_window_ms: float = 2000.0,
    ) -> None:
        if continue_margin_db > start_margin_db:
            raise ValueError("continue_margin_db must not exceed start_margin_db (hysteresis)")
        self.start_margin_db = start_margin_db
        self.continue_margin_db = continue_margin_db
        self.min_level_dbfs = min_level_dbfs
        self.max_start_zcr = max_start_zcr
        if noise_window_ms < frame_ms:
            raise ValueError("noise_window_ms must be at least one frame")
        self.noise_window_ms = noise_window_ms
        super().__init__(
            sample_rate=sample_rate,
            frame_ms=frame_ms,
            min_speech_ms=min_speech_ms,
            complete_timeout_ms=complete_timeout_ms,
            max_speech_ms=max_speech_ms,
        )

    @property
    def noise_floor_dbfs(self) -> float | None:
        """Current noise-floor estimate (``None`` before the first frame)."""
        return self._floor

    def _reset_classifier(self) -> None:
        self._floor: float | None = None
        # Sliding minimum: (frame number, level) pairs with increasing levels.
        self._window: deque[tuple[int, float]] = deque()
        self._window_frames = max(1, int(self.noise_window_ms // self.frame_ms))
        self._zcr_limit = int(self.max_start_zcr * (self._frame_samples - 1))
        self._scale = 1.0 / (self._frame_samples * _FULL_SCALE_SQ)

    def _classify_ulaw(self, frame: bytes, speaking: bool) -> bool:
        return self._decide(ulaw_frame_energy(frame), frame.translate(_ULAW_SIGN), speaking)

    def _classify_pcm(self, frame: bytes, speaking: bool) -> bool:
        return self._decide(pcm16_frame_energy(frame), frame[1::2].translate(_PCM_SIGN), speaking)

    def _decide(self, energy: int, signs: bytes, speaking: bool) -> bool:
        level = 10.0 * math.log10(energy * self._scale) if energy else _FLOOR_DB
        level = max(level, _FLOOR_DB)
        window = self._window
        while window and window[-1][1] >= level:
            window.pop()
        window.append((self._frames, level))
        if window[0][0] <= self._frames - self._window_frames:
            window.popleft()
        floor = self._floor = window[0][1]
        if speaking:
            return (
                level >= floor + self.continue_margin_db
                and level >= self.min_level_dbfs - self.continue_margin_db
            )
        if level < floor + self.start_margin_db or level < self.min_level_dbfs:
            return False
        # Zero crossings: the sign planes shifted by one sample, XOR, popcount.
        a = int.from_bytes(signs[:-1], "little")
        b = int.from_bytes(signs[1:], "little")
        return (a ^ b).bit_count() <= self._zcr_limit


class WebRtcVAD(_Endpointer):
    """End-pointer using the WebRTC VAD classifier (``pip install 'webex-byova-sdk[webrtcvad]'``).

    ``aggressiveness`` 0..3 (3 filters non-speech hardest). Sample rate must be 8, 16, 32 or
    48 kHz. Constructing it without the extra raises
    :class:`~webex_byova._optional.MissingExtraError`.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = 20,
        min_speech_ms: float = 80.0,
        complete_timeout_ms: float = 1000.0,
        max_speech_ms: float = 30000.0,
        aggressiveness: int = 2,
    ) -> None:
        module = require("webrtcvad", "webrtcvad")
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad supports 8, 16, 32 or 48 kHz, got {sample_rate} Hz")
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self._vad: Any = module.Vad(aggressiveness)
        self.aggressiveness = aggressiveness
        super().__init__(
            sample_rate=sample_rate,
            frame_ms=frame_ms,
            min_speech_ms=min_speech_ms,
            complete_timeout_ms=complete_timeout_ms,
            max_speech_ms=max_speech_ms,
        )

    def _classify_pcm(self, frame: bytes, speaking: bool) -> bool:
        return bool(self._vad.is_speech(frame, self.sample_rate))

    def _classify_ulaw(self, frame: bytes, speaking: bool) -> bool:
        return bool(self._vad.is_speech(ulaw_to_pcm16(frame), self.sample_rate))


def feed_audio(
    detector: SpeechDetector,
    data: BytesLike,
    encoding: AudioEncoding | int | str | None,
    now_ms: float | None = None,
) -> list[VADEvent]:
    """Feed audio in any Webex encoding (``UNSPECIFIED`` = µ-law) to ``detector``."""
    enc = AudioEncoding.coerce(encoding)
    if enc is AudioEncoding.MULAW:
        return detector.feed_ulaw(data, now_ms)
    if enc is AudioEncoding.ALAW:
        return detector.feed(alaw_to_pcm16(data), now_ms)
    return detector.feed(data, now_ms)
