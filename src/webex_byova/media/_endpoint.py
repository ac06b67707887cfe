"""The start/end rules of end-pointing, for any frame classifier (sans-IO, deterministic).

:class:`EndPointer` cuts caller audio into frames, asks a :class:`FrameClassifier` whether
each frame is speech and turns the answers into events: :class:`SpeechStarted` after
``min_speech_ms`` of speech (short gaps allowed), :class:`SpeechEnded` after
``complete_timeout_ms`` of non-speech (or at ``max_speech_ms``), and, with a
``resume_grace_ms`` window, :class:`SpeechResumed` when the caller goes on talking shortly
after an end. Time comes from
the number of samples fed, never from a clock. The defaults below are the one set shared by
the detector classes and the media server's configuration.
"""

from __future__ import annotations

import math
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal, Protocol, runtime_checkable

from webex_byova.media.audio import (
    BytesLike,
    pcm16_frame_energy,
    pcm16_to_ulaw,
    ulaw_energy_meter,
    ulaw_to_pcm16,
)

__all__ = [
    "DEFAULT_COMPLETE_TIMEOUT_MS",
    "DEFAULT_ENERGY_HANGOVER_MS",
    "DEFAULT_FRAME_MS",
    "DEFAULT_MAX_SPEECH_MS",
    "DEFAULT_MIN_SPEECH_MS",
    "DEFAULT_RESUME_GRACE_MS",
    "DEFAULT_START_GAP_MS",
    "DEFAULT_TALKER_MARGIN_DB",
    "LINE_DELAY_MS",
    "LINE_MARGIN_DB",
    "LINE_QUANTILE",
    "TALKER_HOLD_MS",
    "EndPointer",
    "EndReason",
    "FrameClassifier",
    "FrameTrace",
    "SpeechEnded",
    "SpeechResumed",
    "SpeechStarted",
    "VADEvent",
]

#: Frame length every detector classifies (ms).
DEFAULT_FRAME_MS: Final = 20
#: Consecutive speech needed before ``SpeechStarted`` (START_OF_INPUT).
DEFAULT_MIN_SPEECH_MS: Final = 80.0
#: Silence after speech that ends the utterance (END_OF_INPUT); the server's default too.
DEFAULT_COMPLETE_TIMEOUT_MS: Final = 800.0
#: Longest utterance before it is cut (``reason="max_speech"``).
DEFAULT_MAX_SPEECH_MS: Final = 30000.0
#: Gaps this short between speech frames do not break the run that starts an utterance
#: (the stop consonants between short syllables: "tech-ni-cal").
DEFAULT_START_GAP_MS: Final = 40.0
#: Grace window after an end in which resumed speech continues the turn (0 = off).
DEFAULT_RESUME_GRACE_MS: Final = 0.0
#: Speech frames this far below the caller's own level do not keep a turn open (None = off).
DEFAULT_TALKER_MARGIN_DB: Final = 12.0
#: EnergyClassifier (``vad.py``): speech still counts this long after a frame clearly above the
#: noise (the quiet end of a phrase the noise hides; see its ``hangover_ms``).
DEFAULT_ENERGY_HANGOVER_MS: Final = 160.0

EndReason = Literal["complete_timeout", "max_speech"]

_FULL_SCALE_SQ: Final = 32768.0 * 32768.0
#: Level reported for a digitally silent frame (dBFS).
SILENT_DBFS: Final = -100.0
# The caller's level reference falls this much per speech frame (1 dB per 400 ms of speech).
_VOICE_DECAY_DB: Final = 0.05
#: Talker guard: speech below the caller's level still counts this long after the caller's
#: last frame at its own level (the soft tail of a phrase), never longer.
TALKER_HOLD_MS: Final = 500.0
#: Talker guard, the line's own background: speech frames no louder than this above the
#: line's loud noise (``LINE_QUANTILE`` of the frames between utterances) count only within
#: ``TALKER_HOLD_MS`` of the caller's last louder frame, so music or hum that a classifier takes
#: for speech cannot hold a turn open, while soft speech on a quiet line still counts.
LINE_MARGIN_DB: Final = 1.5
#: The line's loud noise: the level this share of the frames between utterances stays below.
LINE_QUANTILE: Final = 0.95
#: The end-pointer takes the line's loud noise over 2 s of audio between utterances, ending
#: this long before a start (the soft beginning of the speech is not the line's noise).
LINE_DELAY_MS: Final = 200.0
_LINE_WINDOW_MS: Final = 2000.0


class LevelWindow:
    """The frame levels of a sliding window, for a quantile (pure Python).

    A level enters the window ``delay`` frames after :meth:`add`; :meth:`drop_pending` forgets
    the ones still waiting (the soft beginning of speech that has just been confirmed).

    The levels are kept sorted only while the quantile is read often (Silero reads the line's
    every frame): after ``_SORTED_IDLE_ADDS`` adds without a read the sorted copy is dropped and
    the next read sorts the window once. Between utterances both windows of the energy
    detector take a level every 20 ms frame and are read only when a frame clears the start
    bar, so most frames pay a deque append instead of a sorted insert and delete.
    """

    __slots__ = ("_idle", "_order", "_pending", "_sorted", "delay", "size")

    def __init__(self, size: int, delay: int = 0) -> None:
        if size < 1 or delay < 0:
            raise ValueError("a level window holds at least one frame, after a delay >= 0")
        self.size = size
        self.delay = delay
        self._pending: deque[float] = deque()
        self._order: deque[float] = deque(maxlen=size)  # the oldest leaves a full window
        self._sorted: list[float] | None = None
        self._idle = 0

    def clear(self) -> None:
        self._pending.clear()
        self._order.clear()
        self._sorted = None

    def drop_pending(self) -> None:
        """Forget the levels that have not entered the window yet."""
        self._pending.clear()

    def add(self, level: float) -> None:
        """Take one frame's level (the oldest leaves a full window)."""
        pending = self._pending
        pending.append(level)
        if len(pending) > self.delay:
            level = pending.popleft()
            ordered = self._sorted
            if ordered is not None:
                self._idle = idle = self._idle + 1
                if idle > _SORTED_IDLE_ADDS:
                    self._sorted = ordered = None
            if ordered is None:  # between reads: the deque alone (per 20 ms frame)
                self._order.append(level)
                return
            order = self._order
            if len(order) == self.size:
                del ordered[bisect_left(ordered, order[0])]
            order.append(level)
            insort(ordered, level)

    def __len__(self) -> int:
        """How many levels are in the window (not counting those still waiting)."""
        return len(self._order)

    def quantile(self, q: float) -> float | None:
        """The level a share ``1 - q`` of the window's frames reach (``None`` when empty)."""
        levels = self._sorted
        if levels is None:
            levels = self._sorted = sorted(self._order)
        self._idle = 0
        return levels[int(q * (len(levels) - 1))] if levels else None


#: See :class:`LevelWindow`: a sorted copy is kept while reads come at least this often.
_SORTED_IDLE_ADDS: Final = 8


def line_window(noise_window_ms: float, frame_ms: int, delay_ms: float) -> LevelWindow:
    """The window of a line's noise levels: ``noise_window_ms`` of frames, entering
    ``delay_ms`` late."""
    return LevelWindow(max(1, int(noise_window_ms // frame_ms)), int(delay_ms // frame_ms))


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


@dataclass(frozen=True, slots=True)
class SpeechResumed:
    """Speech came back within the grace window after ``ended_at_ms``: the same turn goes on.

    No new START_OF_INPUT belongs to it. ``at_ms``: when it was confirmed; ``onset_ms``: start
    of the resumed speech; ``turn_onset_ms``: onset of the turn it continues.
    """

    at_ms: float
    onset_ms: float
    turn_onset_ms: float
    ended_at_ms: float


VADEvent = SpeechStarted | SpeechEnded | SpeechResumed


@dataclass(frozen=True, slots=True)
class FrameTrace:
    """One classified frame, for debugging (see ``EndPointer(on_frame=...)``).

    ``at_ms``: end of the frame on the timeline; ``level_dbfs``: its RMS level; ``speech``:
    the classifier's verdict; ``counted``: whether it counted as the caller's speech after the
    talker guard; ``in_speech``: the end-pointer's state after the frame; ``score``: the
    classifier's own score if it has one (a probability for the neural detector).
    """

    at_ms: float
    level_dbfs: float
    speech: bool
    counted: bool
    in_speech: bool
    score: float | None


@runtime_checkable
class FrameClassifier(Protocol):
    """Says whether one frame of caller audio is speech; :class:`EndPointer` does the rest.

    ``classify`` gets one frame of exactly ``sample_rate * frame_ms / 1000`` LINEAR16
    little-endian samples, the frame's RMS level in dBFS (computed once by the end-pointer)
    and whether an utterance is in progress (a classifier may use a lower bar to continue
    than to start). It is called for every frame in order, so a classifier may keep state.
    ``reset()`` forgets everything; ``reset_turn()`` is called when a new turn of the same
    conversation begins and should keep what was learned about the line (its noise).

    Optional extras an :class:`EndPointer` uses when present: ``classify_ulaw(frame,
    level_dbfs, in_speech)`` for G.711 µ-law frames (one byte per sample) without decoding,
    a ``score`` attribute (``float | None``) reported in :class:`FrameTrace`, and
    ``delay_ms`` (``float``): how late the classifier may call a sound speech (the talker
    guard then also weighs the sound of that long before a speech frame), and a ``line``
    attribute, which the end-pointer sets to its window of the line's levels between
    utterances (``line.quantile(LINE_QUANTILE)``: the line's loud noise, ``line_noise_dbfs``).
    """

    sample_rate: int
    frame_ms: int

    def classify(self, frame: bytes, level_dbfs: float, in_speech: bool) -> bool:
        """Is this LINEAR16 frame speech?"""
        ...

    def reset(self) -> None:
        """Forget all state."""
        ...

    def reset_turn(self) -> None:
        """A new turn begins on the same line: keep the learned noise, drop the rest."""
        ...


def level_dbfs(energy: int, samples: int) -> float:
    """RMS level in dBFS of a frame with this sum of squared samples (>= ``SILENT_DBFS``)."""
    if energy <= 0:
        return SILENT_DBFS
    level = 10.0 * math.log10(energy / (samples * _FULL_SCALE_SQ))
    return level if level > SILENT_DBFS else SILENT_DBFS


class EndPointer:
    """The start/end rules over any :class:`FrameClassifier` (a :class:`SpeechDetector`).

    Feed caller audio in pieces of any size with :meth:`feed` (LINEAR16) or
    :meth:`feed_ulaw`; each returns the events the complete frames caused. The first feed
    after construction, :meth:`reset` or :meth:`reset_turn` fixes the timeline origin (its
    ``now_ms``, default 0); event times are that origin plus the audio fed.

    * start: ``min_speech_ms`` of speech frames, with gaps of at most ``start_gap_ms`` between
      them -> :class:`SpeechStarted` (``onset_ms``: the first of them);
    * end: ``complete_timeout_ms`` without counted speech -> :class:`SpeechEnded`
      (``"complete_timeout"``), or the utterance reached ``max_speech_ms`` (``"max_speech"``);
    * grace: with ``resume_grace_ms`` > 0, speech confirmed within that long after a
      ``complete_timeout`` end gives :class:`SpeechResumed` instead of a new start, and the
      utterance (and its ``max_speech_ms`` budget) goes on from its first onset;
    * talker guard: with ``talker_margin_db`` set, the caller's own level is learned during the
      utterance (a slowly falling peak of its speech frames); speech frames more than that
      margin below it count only within ``TALKER_HOLD_MS`` of the caller's last frame, so
      quieter background talkers cannot hold the turn open. The peaks of finished utterances
      form the conversation's caller level (kept by :meth:`reset_turn`): a later start whose
      loudest frame is more than the margin below it is not a start. For a classifier that
      hears late (its ``delay_ms``), a frame's level for the guard is the loudest of it and
      the frames of ``delay_ms`` before it that it did not count as speech (for a start: of
      the run and ``delay_ms`` before it): in noise a neural model's speech frames can come
      after the loud part of a short word ("yes").

    ``on_frame`` (settable attribute) receives a :class:`FrameTrace` for every frame.
    """

    def __init__(
        self,
        classifier: FrameClassifier,
        *,
        min_speech_ms: float = DEFAULT_MIN_SPEECH_MS,
        complete_timeout_ms: float = DEFAULT_COMPLETE_TIMEOUT_MS,
        max_speech_ms: float = DEFAULT_MAX_SPEECH_MS,
        start_gap_ms: float = DEFAULT_START_GAP_MS,
        resume_grace_ms: float = DEFAULT_RESUME_GRACE_MS,
        talker_margin_db: float | None = DEFAULT_TALKER_MARGIN_DB,
        on_frame: Callable[[FrameTrace], None] | None = None,
    ) -> None:
        frame_ms, sample_rate = classifier.frame_ms, classifier.sample_rate
        if frame_ms not in (10, 20, 30):
            raise ValueError(f"frame_ms must be 10, 20 or 30, got {frame_ms}")
        if sample_rate <= 0 or (sample_rate * frame_ms) % 1000:
            raise ValueError(f"sample_rate {sample_rate} does not give whole {frame_ms} ms frames")
        if min_speech_ms < 0 or complete_timeout_ms <= 0 or max_speech_ms <= 0:
            raise ValueError("min_speech_ms must be >= 0, the timeouts > 0")
        if resume_grace_ms < 0 or start_gap_ms < 0:
            raise ValueError("resume_grace_ms and start_gap_ms must be >= 0")
        if talker_margin_db is not None and talker_margin_db <= 0:
            raise ValueError("talker_margin_db must be > 0 (or None to disable the guard)")
        self.sample_rate = sample_rate
        self.frame_ms = frame_ms
        self.min_speech_ms = float(min_speech_ms)
        #: Silence after speech that ends the utterance; may be changed between turns.
        self.complete_timeout_ms = float(complete_timeout_ms)
        #: Longest utterance; may be changed between turns.
        self.max_speech_ms = float(max_speech_ms)
        #: Non-speech allowed inside the ``min_speech_ms`` that starts an utterance.
        self.start_gap_ms = float(start_gap_ms)
        #: Grace window after an end (0 = off); may be changed between turns.
        self.resume_grace_ms = float(resume_grace_ms)
        #: Talker-guard margin below the caller's own level (None = off).
        self.talker_margin_db = talker_margin_db
        self.on_frame = on_frame
        self._caller_level: float | None = None
        self._frame_samples = sample_rate * frame_ms // 1000
        self._ulaw_energy = ulaw_energy_meter(self._frame_samples)
        self._classify_ulaw: Callable[[bytes, float, bool], bool] | None = None
        self._pending = b""
        self._pending_ulaw = False
        self._known_levels: deque[float] = deque()
        self._recent: deque[float] = deque()
        self._line = line_window(_LINE_WINDOW_MS, frame_ms, LINE_DELAY_MS)
        self.use_classifier(classifier)
        self._line_loud: float | None = None
        self._start_turn()

    def use_classifier(self, classifier: FrameClassifier) -> None:
        """Go on with ``classifier`` (same timeline, utterance state and line levels).

        The media server's Silero batch falls back to the energy classifier this way when the
        model fails mid-call.
        """
        self.classifier = classifier
        ulaw = getattr(classifier, "classify_ulaw", None)
        self._classify_ulaw = ulaw if callable(ulaw) else None
        self._known_levels.clear()
        # the levels of the frames before this one the talker guard looks back on (delay_ms)
        delay = float(getattr(classifier, "delay_ms", 0.0) or 0.0)
        self._recent = deque(self._recent, maxlen=max(1, int(delay // self.frame_ms)))
        self._look_back = delay >= self.frame_ms
        if hasattr(classifier, "line"):
            classifier.line = self._line

    # -- public -----------------------------------------------------------------------

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress (started and not yet ended)."""
        return self._speaking

    @property
    def stream_ms(self) -> float:
        """Timeline position at the end of the last complete frame processed."""
        return self._origin + self._frames * self.frame_ms

    @property
    def line_noise_dbfs(self) -> float | None:
        """The line's loud noise: the level 5% of the frames between utterances exceed
        (over the last 2 s of them; kept by :meth:`reset_turn`, ``None`` before any)."""
        return self._line.quantile(LINE_QUANTILE)

    @property
    def caller_level_dbfs(self) -> float | None:
        """The caller's peak speech level learned over this conversation's turns (or ``None``).

        Kept by :meth:`reset_turn`; a later start needs speech within ``talker_margin_db`` of it.
        """
        return self._caller_level

    def reset(self) -> None:
        """Forget all state, the classifier's noise and the caller's level included."""
        self._start_turn()
        self._caller_level = None
        self._line.clear()
        self._line_loud = None
        self.classifier.reset()

    def reset_turn(self) -> None:
        """Start a new turn of the same conversation, keeping what was learned about the line.

        Drops any utterance in progress (without an event), the partial frame and the grace
        window, and restarts the timeline (the next feed fixes its origin, as after
        construction); the classifier keeps its noise estimate (``classifier.reset_turn()``)
        and the talker guard the caller's level learned in earlier turns.
        """
        self._start_turn()
        self.classifier.reset_turn()

    def feed(self, pcm16: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Feed LINEAR16 little-endian audio at ``sample_rate``; return the events it caused."""
        data = pcm16 if type(pcm16) is bytes else bytes(pcm16)
        if len(data) == 2 * self._frame_samples and not self._pending and self._timeline_started:
            # One whole frame and nothing pending: the media server's 20 ms case, without the
            # general loop's set-up (4.6k of ~42k instructions per frame).
            self._pending_ulaw = False
            event = self._pcm_frame(data)
            return [] if event is None else [event]
        if self._pending_ulaw and self._pending:
            self._pending = ulaw_to_pcm16(self._pending)
        self._pending_ulaw = False
        return self._run_frames(data, 2 * self._frame_samples, now_ms, ulaw=False)

    def feed_ulaw(self, ulaw: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Feed G.711 µ-law audio at ``sample_rate``; return the events it caused."""
        data = ulaw if type(ulaw) is bytes else bytes(ulaw)
        if len(data) == self._frame_samples and not self._pending and self._timeline_started:
            # One whole frame, nothing pending: the media server's 20 ms µ-law case.
            self._pending_ulaw = True
            if self._known_levels:
                self._known_levels.clear()
            event = self._ulaw_frame(data)
            return [] if event is None else [event]
        if not self._pending_ulaw and self._pending:
            self._pending = pcm16_to_ulaw(self._pending)
        self._pending_ulaw = True
        return self._run_frames(data, self._frame_samples, now_ms, ulaw=True)

    # -- internals ----------------------------------------------------------------------

    def _frames_of(self, pcm16: bytes) -> list[bytes]:
        """The complete LINEAR16 frames the next ``feed(pcm16)`` will classify (a batch engine
        scores them first and may hand their levels over in ``_known_levels``)."""
        pending = self._pending
        if self._pending_ulaw and pending:
            pending = ulaw_to_pcm16(pending)
        data = pending + pcm16
        size = 2 * self._frame_samples
        return [data[pos : pos + size] for pos in range(0, len(data) - len(data) % size, size)]

    def _start_turn(self) -> None:
        self._origin = 0.0
        self._timeline_started = False
        self._frames = 0
        self._pending = b""
        self._pending_ulaw = False
        self._known_levels.clear()
        self._line.drop_pending()
        self._recent.clear()
        self._speaking = False
        self._run = 0
        self._run_start = 0.0
        self._gap_ms = 0.0
        self._run_peak = SILENT_DBFS
        self._onset = 0.0
        self._last_voice = 0.0
        self._silence_ms = 0.0
        self._voice_ref: float | None = None
        self._grace_until = -math.inf
        self._ended_at = 0.0
        self._counted = False
        self._last_strong = -math.inf
        self._turn_peak = SILENT_DBFS

    def _learn_caller_level(self) -> None:
        """After an utterance: fold its peak level into the conversation's caller level."""
        if self._voice_ref is not None and self._turn_peak > SILENT_DBFS:
            peak = self._turn_peak
            caller = self._caller_level
            self._caller_level = peak if caller is None else (caller + peak) / 2
        self._voice_ref = None
        self._turn_peak = SILENT_DBFS

    def _run_frames(
        self, data: bytes, size: int, now_ms: float | None, *, ulaw: bool
    ) -> list[VADEvent]:
        if not self._timeline_started:
            self._timeline_started = True
            self._origin = float(now_ms) if now_ms is not None else 0.0
        if self._pending:
            data = self._pending + data
        events: list[VADEvent] = []
        end = len(data) - len(data) % size
        if ulaw:
            self._known_levels.clear()
        frame_of = self._ulaw_frame if ulaw else self._pcm_frame
        for pos in range(0, end, size):
            event = frame_of(data[pos : pos + size])
            if event is not None:
                events.append(event)
        self._pending = data[end:]
        return events

    def _pcm_frame(self, frame: bytes) -> VADEvent | None:
        """Classify one whole LINEAR16 frame (its level handed over by a batch engine, if any)
        and apply the rules."""
        known = self._known_levels
        level = (
            known.popleft() if known else level_dbfs(pcm16_frame_energy(frame), self._frame_samples)
        )
        speech = self.classifier.classify(frame, level, self._speaking)
        # per 20 ms frame: straight to the rules unless a trace is wanted
        if self.on_frame is None:
            return self._transition(speech, level)
        return self._step(speech, level)

    def _ulaw_frame(self, frame: bytes) -> VADEvent | None:
        """Classify one whole µ-law frame (the classifier reads the codes if it can) and apply
        the rules."""
        level = level_dbfs(self._ulaw_energy(frame), self._frame_samples)
        fast = self._classify_ulaw
        if fast is not None:
            speech = fast(frame, level, self._speaking)
        else:
            speech = self.classifier.classify(ulaw_to_pcm16(frame), level, self._speaking)
        if self.on_frame is None:
            return self._transition(speech, level)
        return self._step(speech, level)

    @property
    def reads_ulaw(self) -> bool:
        """Whether the classifier reads µ-law codes itself (``classify_ulaw``): µ-law audio
        is then classified without being decoded first."""
        return self._classify_ulaw is not None

    def _counts(self, speech: bool, level: float, t: float) -> bool:
        """The talker guard: is this speech frame the caller's own (not a quieter talker)?

        Frames within the margin of the caller's level count; quieter ones count only within
        ``TALKER_HOLD_MS`` of the caller's last such frame (the soft tail of a word).
        """
        margin = self.talker_margin_db
        if not speech or margin is None:
            return speech
        if self._look_back and self._recent:  # sound the classifier may be hearing late
            level = max(level, max(self._recent))
        ref = self._voice_ref
        line = self._line_loud
        if ref is None or level >= ref:
            self._voice_ref = level
        elif level < ref - margin or (line is not None and level < line + LINE_MARGIN_DB):
            return t - self._last_strong <= TALKER_HOLD_MS
        else:
            self._voice_ref = ref - _VOICE_DECAY_DB
        self._last_strong = t
        if level > self._turn_peak:  # (per 20 ms frame: cheaper than max())
            self._turn_peak = level
        return True

    def _step(self, speech: bool, level: float) -> VADEvent | None:
        """Apply the rules to one classified frame, and trace it for ``on_frame``."""
        event = self._transition(speech, level)
        if self.on_frame is not None:
            self.on_frame(
                FrameTrace(
                    at_ms=self._origin + self._frames * self.frame_ms,
                    level_dbfs=level,
                    speech=speech,
                    counted=self._counted,
                    in_speech=self._speaking,
                    score=getattr(self.classifier, "score", None),
                )
            )
        return event

    def _transition(self, speech: bool, level: float) -> VADEvent | None:
        """The start/end rules for the next frame (``_step`` without the trace)."""
        frame_ms = self.frame_ms
        self._frames = frames = self._frames + 1
        t = self._origin + frames * frame_ms
        self._counted = speech
        recent = self._recent
        if not self._speaking:
            self._line.add(level)
            if not speech:
                recent.append(level)
                if self._run:
                    self._gap_ms += frame_ms
                    if self._gap_ms > self.start_gap_ms:
                        self._run = 0
                return None
            if not self._run:
                self._run_start = t - frame_ms
                # the loud part a late classifier heard before its run (``delay_ms``)
                self._run_peak = max(level, max(recent)) if self._look_back and recent else level
            recent.append(level)
            self._run += 1
            self._gap_ms = 0.0
            if level > self._run_peak:
                self._run_peak = level
            if self._run * frame_ms < self.min_speech_ms:
                return None
            caller = self._caller_level
            margin = self.talker_margin_db
            if caller is not None and margin is not None and self._run_peak < caller - margin:
                return None  # quieter than this caller ever is: a background talker
            onset = self._run_start
            self._speaking = True
            self._line_loud = self._line.quantile(LINE_QUANTILE)
            self._line.drop_pending()  # the beginning of this speech, not the line's noise
            self._last_voice = t
            self._silence_ms = 0.0
            self._run = 0
            if self.talker_margin_db is not None:
                self._voice_ref = self._run_peak
                self._last_strong = t
                self._turn_peak = self._run_peak
            if onset <= self._grace_until:
                self._grace_until = -math.inf
                return SpeechResumed(
                    at_ms=t, onset_ms=onset, turn_onset_ms=self._onset, ended_at_ms=self._ended_at
                )
            self._onset = onset
            return SpeechStarted(at_ms=t, onset_ms=onset)
        self._counted = counted = self._counts(speech, level, t)
        recent.append(SILENT_DBFS if counted else level)
        if counted:
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
        self._learn_caller_level()
        if reason == "complete_timeout" and self.resume_grace_ms > 0:
            self._grace_until = t + self.resume_grace_ms
            self._ended_at = t
        return SpeechEnded(
            at_ms=t, reason=reason, onset_ms=self._onset, last_voice_ms=self._last_voice
        )
