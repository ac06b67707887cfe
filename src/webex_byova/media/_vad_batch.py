"""The server's Silero batch: every live conversation's windows scored in one ONNX run per tick.

One ONNX run for one 32 ms window costs about as much as a run for dozens of them, so the
media server does not score a conversation's audio as it arrives. A :class:`BatchedDetector`
(one per conversation, around a :class:`~webex_byova.media.vad.SileroVAD` made with the
server's :class:`~webex_byova.media.vad.SileroBatch`) queues its audio in the server's
:class:`VadBatcher`; at most ``tick_ms`` after the first queued piece the batcher feeds all
queued conversations through :meth:`SileroBatch.feed <webex_byova.media.vad.SileroBatch.feed>`
(the sans-IO part: the same start/end rules, the same events as scoring one conversation at a
time when each brings one frame per tick) and hands each conversation its events through
``on_events``. The batcher is the thin I/O shell: a loop timer, and what happens on failure.

* latency: events come at most one tick (default 20 ms) after their audio;
* a conversation whose turn ends while its audio waits is dropped from the batch
  (:meth:`BatchedDetector.release`); a turn's half-close scores its own audio at once
  (:meth:`BatchedDetector.flush`);
* a model failure never stalls a call: the conversations of the failed run go on with the
  energy classifier behind the same end-pointer (its state kept), with one log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from .._logging import get_logger
from .audio import BytesLike, ulaw_to_pcm16

if TYPE_CHECKING:
    from ._endpoint import FrameClassifier, VADEvent
    from .vad import SileroBatch, SileroVAD

__all__ = ["BatchedDetector", "VadBatcher"]

_log = get_logger("webex_byova.media.vad")

EventSink = Callable[[list["VADEvent"]], None]


class BatchedDetector:
    """A conversation's Silero end-pointer whose model runs in the server's batch.

    A :class:`~webex_byova.media.vad.SpeechDetector` whose :meth:`feed` queues the audio and
    returns no events: they go to ``on_events`` when the batch has run. ``fallback`` makes the
    classifier used from a model failure on (the server's energy classifier).
    """

    def __init__(
        self,
        inner: SileroVAD,
        batcher: VadBatcher,
        fallback: Callable[[], FrameClassifier],
    ) -> None:
        if inner.classifier.batch is not batcher.engine:
            raise ValueError("the detector was not made with this batcher's SileroBatch")
        self.inner = inner
        self.sample_rate = inner.sample_rate
        #: Receives each batch's events for this conversation (``None``: released).
        self.on_events: EventSink | None = None
        #: Whether a model failure moved this conversation to the fallback classifier.
        self.failed = False
        self._batcher = batcher
        self._fallback = fallback
        self._chunks: list[bytes] = []
        self._queued_bytes = 0

    # -- SpeechDetector --------------------------------------------------------------

    @property
    def complete_timeout_ms(self) -> float:
        """Silence after speech that ends the utterance."""
        return self.inner.complete_timeout_ms

    @complete_timeout_ms.setter
    def complete_timeout_ms(self, value: float) -> None:
        self.inner.complete_timeout_ms = value

    @property
    def max_speech_ms(self) -> float:
        """Longest utterance."""
        return self.inner.max_speech_ms

    @max_speech_ms.setter
    def max_speech_ms(self, value: float) -> None:
        self.inner.max_speech_ms = value

    @property
    def in_speech(self) -> bool:
        """Whether an utterance is in progress, as of the last batch."""
        return self.inner.in_speech

    def feed(self, pcm16: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Queue LINEAR16 audio for the next batch (events go to ``on_events``).

        ``now_ms`` is not supported (the timeline starts at 0, as the server uses it). Without
        ``on_events`` (released) the audio is dropped. After a model failure the audio is
        classified at once and the events are returned.
        """
        if self.failed:
            return self.inner.feed(pcm16)
        if self.on_events is None:  # released: no turn listens (the next one resets it)
            return []
        data = bytes(pcm16)
        self._chunks.append(data)
        self._queued_bytes += len(data)
        self._batcher.submit(self, self._queued_bytes)
        return []

    def feed_ulaw(self, ulaw: BytesLike, now_ms: float | None = None) -> list[VADEvent]:
        """Queue G.711 µ-law audio for the next batch."""
        return self.feed(ulaw_to_pcm16(bytes(ulaw)), now_ms)

    def reset(self) -> None:
        """Drop the queued audio and forget all state."""
        self._drop()
        self.inner.reset()

    def reset_turn(self) -> None:
        """Drop the queued audio; a new turn, keeping what was learned about the line."""
        self._drop()
        self.inner.reset_turn()

    # -- batching ----------------------------------------------------------------------

    def release(self) -> None:
        """The turn ended: drop its queued audio and stop delivering events."""
        self.on_events = None
        self._drop()

    def flush(self) -> None:
        """Score this conversation's queued audio now (the turn is about to decide)."""
        self._batcher.flush_one(self)

    def _drop(self) -> None:
        self._chunks.clear()
        self._queued_bytes = 0
        self._batcher.discard(self)

    def _take(self) -> bytes:
        pcm = b"".join(self._chunks)
        self._chunks.clear()
        self._queued_bytes = 0
        return pcm

    def _fail_over(self, pcm: bytes) -> list[VADEvent]:
        """Go on with the fallback classifier behind the same end-pointer (state kept)."""
        self.failed = True
        self.inner.use_classifier(self._fallback())
        return self.inner.feed(pcm)


class VadBatcher:
    """Runs the queued conversations of one event loop through ``engine`` once per tick.

    Not thread-safe: use it from its event loop only (the media server owns one per sample
    rate).
    """

    def __init__(self, engine: SileroBatch, *, tick_ms: float = 20.0) -> None:
        if tick_ms <= 0:
            raise ValueError("tick_ms must be > 0")
        self.engine = engine
        self.tick_ms = tick_ms
        #: Batches run (ticks with queued audio, and single flushes).
        self.batches = 0
        self._queued: dict[BatchedDetector, None] = {}  # an ordered set
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def submit(self, detector: BatchedDetector, queued_bytes: int) -> None:
        """``detector`` has ``queued_bytes`` of audio waiting: score it in the next batch.

        The batch runs one tick after its first audio, or at once when a conversation holds
        more than a tick of audio (a caller sending faster than real time does not wait).
        """
        self._queued[detector] = None
        if queued_bytes > self.tick_ms * detector.sample_rate * 2 / 1000:
            self.flush()
        else:
            loop = asyncio.get_running_loop()
            if self._timer is None or self._loop is not loop:  # (a timer of a closed loop)
                self._loop = loop
                self._timer = loop.call_later(self.tick_ms / 1000, self.flush)

    def discard(self, detector: BatchedDetector) -> None:
        """Leave ``detector`` out of the next batch."""
        self._queued.pop(detector, None)

    def flush(self) -> None:
        """Run every queued conversation now (the tick)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        detectors = list(self._queued)
        self._queued.clear()
        self._run(detectors)

    def flush_one(self, detector: BatchedDetector) -> None:
        """Run ``detector`` alone now, if it has queued audio."""
        if detector in self._queued:
            del self._queued[detector]
            self._run([detector])

    def close(self) -> None:
        """Stop the timer and drop all queued audio (the server stops)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for detector in list(self._queued):
            detector._take()
        self._queued.clear()

    def _run(self, detectors: list[BatchedDetector]) -> None:
        items = [(d, d._take()) for d in detectors]
        if not items:
            return
        self.batches += 1
        events = [self._score(round_) for round_ in _rounds(items)]
        for i, (detector, _) in enumerate(items):
            sink = detector.on_events
            found = [e for round_ in events for e in round_.get(i, ())]
            if found and sink is not None:
                try:
                    sink(found)
                except Exception:  # one conversation's failure must not stop the others
                    _log.exception("end-pointing events could not be applied")

    def _score(self, round_: list[tuple[int, BatchedDetector, bytes]]) -> dict[int, list[VADEvent]]:
        """One model run for one frame of each conversation (or the fallback for all)."""
        live = [(i, d, pcm) for i, d, pcm in round_ if not d.failed]
        try:
            results = self.engine.feed([(d.inner, pcm) for _, d, pcm in live])
        except Exception as exc:  # the model failed: these conversations go on without it
            _log.warning(
                "Silero batch failed (%s); %d conversation(s) go on with the energy classifier",
                type(exc).__name__,
                len(live),
            )
            results = [d._fail_over(pcm) for _, d, pcm in live]
        out = {i: r for (i, _, _), r in zip(live, results, strict=True)}
        for i, d, pcm in round_:
            if i not in out:  # failed over in an earlier round of this batch
                out[i] = d.inner.feed(pcm)
        return out


def _rounds(
    items: list[tuple[BatchedDetector, bytes]],
) -> list[list[tuple[int, BatchedDetector, bytes]]]:
    """Split each conversation's queued audio into frames: round ``r`` holds frame ``r`` of
    every conversation that has one, so each model run sees one frame per conversation and the
    decisions equal scoring each conversation on its own (a caller that sent more than a tick
    takes several rounds)."""
    rounds: list[list[tuple[int, BatchedDetector, bytes]]] = []
    for i, (detector, pcm) in enumerate(items):
        size = 2 * detector.inner.sample_rate * detector.inner.frame_ms // 1000
        for r, pos in enumerate(range(0, len(pcm), size)):
            if len(rounds) <= r:
                rounds.append([])
            rounds[r].append((i, detector, pcm[pos : pos + size]))
    return rounds
