"""Sans-IO flow control of the proxy: the bounded send queue and the reconnect schedule.

The queue holds encoded frames waiting to go to the backend. Its memory is bounded by
``max_bytes`` and ``max_items`` whatever the backend does; when it is full the configured
:data:`BackpressurePolicy` decides: ``drop_oldest_audio`` discards the oldest caller audio
(control messages such as DTMF or end-of-input are never dropped), ``end_call`` reports an
overflow so the connector ends the call through its fallback.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BackpressurePolicy",
    "PushResult",
    "QueueStats",
    "ReconnectPolicy",
    "SendQueue",
]

BackpressurePolicy = Literal["drop_oldest_audio", "end_call"]
#: ``queued``; ``dropped`` (room was made by dropping older audio, or the new audio frame itself
#: was dropped); ``overflow`` (nothing could be dropped, or the policy is ``end_call``).
PushResult = Literal["queued", "dropped", "overflow"]


@dataclass(slots=True)
class QueueStats:
    """Counters of a :class:`SendQueue` (high-water marks show the memory actually used)."""

    depth: int = 0
    bytes: int = 0
    high_water_depth: int = 0
    high_water_bytes: int = 0
    queued: int = 0
    sent: int = 0
    dropped_frames: int = 0
    dropped_bytes: int = 0
    overflows: int = 0


@dataclass(slots=True)
class _Item:
    frame: str | bytes
    size: int
    audio: bool
    tag: int


def _size(frame: str | bytes) -> int:
    return len(frame)


@dataclass(slots=True)
class SendQueue:
    """FIFO of frames for the backend, bounded in items and bytes (see the module docstring)."""

    max_items: int = 500
    max_bytes: int = 1_000_000
    policy: BackpressurePolicy = "drop_oldest_audio"
    stats: QueueStats = field(default_factory=QueueStats)
    _items: deque[_Item] = field(default_factory=deque)
    _audio_count: int = 0
    #: ``tag`` of the last audio frame handed out by :meth:`pop` (-1: none yet).
    last_audio_tag: int = -1

    def __post_init__(self) -> None:
        if self.max_items < 1 or self.max_bytes < 1:
            raise ValueError("max_items and max_bytes must be positive")
        if self.policy not in ("drop_oldest_audio", "end_call"):
            raise ValueError(f"unknown backpressure policy {self.policy!r}")

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        """Bytes currently queued."""
        return self.stats.bytes

    def _fits(self, size: int) -> bool:
        return len(self._items) < self.max_items and self.stats.bytes + size <= self.max_bytes

    def _drop_oldest_audio(self) -> bool:
        for i, item in enumerate(self._items):
            if item.audio:
                del self._items[i]
                self._audio_count -= 1
                self.stats.bytes -= item.size
                self.stats.dropped_frames += 1
                self.stats.dropped_bytes += item.size
                return True
        return False

    def push(self, frame: str | bytes, *, audio: bool, tag: int = -1) -> PushResult:
        """Queue ``frame`` (``audio``: droppable caller audio) applying the policy when full.

        ``tag`` (e.g. the audio sequence number) is remembered in :attr:`last_audio_tag` when
        the frame is popped.
        """
        size = _size(frame)
        result: PushResult = "queued"
        if not self._fits(size):
            if self.policy == "end_call":
                self.stats.overflows += 1
                return "overflow"
            while not self._fits(size) and self._drop_oldest_audio():
                result = "dropped"
            if not self._fits(size):
                if audio:
                    self.stats.dropped_frames += 1
                    self.stats.dropped_bytes += size
                    return "dropped"
                self.stats.overflows += 1
                return "overflow"
        self._items.append(_Item(frame, size, audio, tag))
        self._audio_count += audio
        stats = self.stats
        stats.queued += 1
        stats.bytes += size
        stats.depth = len(self._items)
        stats.high_water_depth = max(stats.high_water_depth, stats.depth)
        stats.high_water_bytes = max(stats.high_water_bytes, stats.bytes)
        return result

    def peek(self) -> str | bytes | None:
        """The next frame to send, left in the queue until :meth:`pop` (None when empty)."""
        return self._items[0].frame if self._items else None

    def pop(self) -> str | bytes | None:
        """Remove and return the next frame (None when empty)."""
        if not self._items:
            return None
        item = self._items.popleft()
        self._audio_count -= item.audio
        if item.audio:
            self.last_audio_tag = item.tag
        self.stats.bytes -= item.size
        self.stats.depth = len(self._items)
        self.stats.sent += 1
        return item.frame

    def clear(self) -> None:
        """Forget every queued frame."""
        self._items.clear()
        self._audio_count = 0
        self.stats.bytes = 0
        self.stats.depth = 0


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """When to retry a dropped or refused backend connection.

    Attempt ``n`` (1-based) waits ``min(max_delay, initial_delay * multiplier**(n-1))``, spread
    by ``±jitter`` (a fraction). ``max_attempts=0`` disables reconnecting.
    """

    max_attempts: int = 5
    initial_delay: float = 0.1
    max_delay: float = 5.0
    multiplier: float = 2.0
    jitter: float = 0.2
    connect_timeout: float = 5.0

    def __post_init__(self) -> None:
        if self.max_attempts < 0 or self.initial_delay < 0 or self.max_delay < 0:
            raise ValueError("reconnect delays and attempts must not be negative")
        if self.multiplier < 1 or not 0 <= self.jitter < 1 or self.connect_timeout <= 0:
            raise ValueError("multiplier must be >= 1, jitter in [0, 1), connect_timeout > 0")

    def delay(self, attempt: int, rand: float = 0.5) -> float | None:
        """Seconds to wait before attempt ``attempt`` (None: give up).

        ``rand`` in [0, 1) picks the jitter (0.5 = none), injected so tests are deterministic.
        """
        if attempt < 1 or attempt > self.max_attempts:
            return None
        base = min(self.max_delay, self.initial_delay * self.multiplier ** (attempt - 1))
        return max(0.0, base * (1 + self.jitter * (2 * rand - 1)))
