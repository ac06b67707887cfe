"""Bounded send queue and reconnect schedule (sans-IO)."""

from __future__ import annotations

import pytest

from webex_byova.media.proxy._flow import ReconnectPolicy, SendQueue


def test_fifo_and_stats():
    q = SendQueue(max_items=10, max_bytes=100)
    assert q.push("a" * 10, audio=True) == "queued"
    assert q.push("b" * 5, audio=False) == "queued"
    assert (len(q), q.nbytes) == (2, 15)
    assert q.peek() == "a" * 10
    assert q.pop() == "a" * 10
    assert q.pop() == "b" * 5
    assert q.pop() is None
    assert q.stats.sent == 2
    assert q.stats.bytes == 0
    assert q.stats.high_water_bytes == 15


def test_drop_oldest_audio_keeps_memory_bounded_and_control_messages():
    q = SendQueue(max_items=1000, max_bytes=1000, policy="drop_oldest_audio")
    q.push("CTRL-start", audio=False)
    for i in range(10_000):  # 10 000 frames of 100 bytes into a 1000-byte queue
        frame = f"{i:06d}".ljust(100, "x")
        assert q.push(frame, audio=True) in ("queued", "dropped")
        assert q.nbytes <= 1000
    assert q.stats.high_water_bytes <= 1000
    frames = []
    while (f := q.pop()) is not None:
        frames.append(f)
    assert frames[0] == "CTRL-start"  # control survived
    kept = [int(f[:6]) for f in frames[1:]]
    assert kept == list(range(10_000 - len(kept), 10_000))  # newest audio, in order
    assert q.stats.dropped_frames == 10_000 - len(kept)


def test_item_bound_also_applies():
    q = SendQueue(max_items=3, max_bytes=10**6)
    for i in range(5):
        q.push(str(i), audio=True)
    assert [q.pop() for _ in range(3)] == ["2", "3", "4"]


def test_control_message_that_cannot_fit_overflows():
    q = SendQueue(max_items=2, max_bytes=10**6)
    assert q.push("c1", audio=False) == "queued"
    assert q.push("c2", audio=False) == "queued"
    assert q.push("c3", audio=False) == "overflow"
    assert q.push("a", audio=True) == "dropped"  # audio that cannot fit is itself dropped
    assert len(q) == 2
    assert q.stats.overflows == 1


def test_end_call_policy_reports_overflow_without_growing():
    q = SendQueue(max_items=100, max_bytes=250, policy="end_call")
    results = [q.push("x" * 100, audio=True) for _ in range(5)]
    assert results == ["queued", "queued", "overflow", "overflow", "overflow"]
    assert q.nbytes == 200
    assert q.stats.dropped_frames == 0


def test_bad_configuration():
    with pytest.raises(ValueError):
        SendQueue(policy="grow")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SendQueue(max_bytes=0)
    with pytest.raises(ValueError):
        ReconnectPolicy(multiplier=0.5)


def test_backoff_schedule():
    policy = ReconnectPolicy(max_attempts=4, initial_delay=0.5, max_delay=2.0, jitter=0.2)
    assert [policy.delay(n) for n in range(1, 5)] == [0.5, 1.0, 2.0, 2.0]
    assert policy.delay(5) is None
    assert policy.delay(0) is None
    assert policy.delay(1, rand=0.0) == pytest.approx(0.4)
    assert policy.delay(1, rand=0.999) == pytest.approx(0.5998)
    assert ReconnectPolicy(max_attempts=0).delay(1) is None
