"""The server's Silero batch: every live conversation scored in one model run per tick, with the
same decisions as scoring each conversation on its own, no stall when a turn ends or the model
fails."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import numpy as np
import pytest

from webex_byova.media import BYOVAMediaServer, audio, vad
from webex_byova.media._vad_batch import BatchedDetector, VadBatcher
from webex_byova.media.assets import load

from .conftest import make_config

HELLO = load("speech_hello.wav")
RATE = 8000
FRAME = 320  # bytes of one 20 ms LINEAR16 frame


def _hello_pcm() -> bytes:
    return audio.ulaw_to_pcm16(audio.read_wav(HELLO).payload)


def _signals() -> list[bytes]:
    """Speech in silence, speech in white noise, a late talker, noise alone (no turn)."""
    rng = np.random.default_rng(16)
    hello = _hello_pcm()

    def noisy(pcm: bytes, dbfs: float) -> bytes:
        x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
        x += rng.standard_normal(len(x)) * 32768 * 10 ** (dbfs / 20)
        return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()

    quiet = bytes(8000) + hello + bytes(24000)
    return [
        quiet,
        noisy(quiet, -45),
        bytes(16000) + hello + bytes(24000),
        noisy(bytes(40000), -40),
    ]


def _fallback() -> vad.FrameClassifier:
    return vad.EnergyClassifier()


def _batched(batcher: VadBatcher) -> tuple[BatchedDetector, list[vad.VADEvent]]:
    events: list[vad.VADEvent] = []
    det = BatchedDetector(vad.SileroVAD(batch=batcher.engine), batcher, _fallback)
    det.on_events = events.extend
    return det, events


def _alone(pcm: bytes) -> list[vad.VADEvent]:
    det = vad.SileroVAD()  # scored on its own, frame by frame
    events: list[vad.VADEvent] = []
    for pos in range(0, len(pcm), FRAME):
        events += det.feed(pcm[pos : pos + FRAME])
    return events


async def test_batched_decisions_equal_scoring_each_conversation_alone() -> None:
    signals = _signals()
    reference = [_alone(s) for s in signals]
    assert [len(r) for r in reference] == [2, 2, 2, 0]  # start + end for each speech signal
    engine = vad.SileroBatch()
    batcher = VadBatcher(engine, tick_ms=20)
    pairs = [_batched(batcher) for _ in signals]
    for pos in range(0, max(map(len, signals)), FRAME):  # one frame each per tick
        for (det, _), pcm in zip(pairs, signals, strict=True):
            if pos < len(pcm):
                assert det.feed(pcm[pos : pos + FRAME]) == []  # the events come with the batch
        batcher.flush()
    assert [events for _, events in pairs] == reference
    assert engine.runs <= 2 * batcher.batches  # one run per tick (two as the gate opens)
    assert engine.runs < sum(d.inner.classifier.inferences for d, _ in pairs)  # shared runs


async def test_the_tick_runs_the_batch_and_a_fast_caller_does_not_wait() -> None:
    hello = bytes(8000) + _hello_pcm() + bytes(24000)
    batcher = VadBatcher(vad.SileroBatch(), tick_ms=20)
    det, events = _batched(batcher)
    det.feed(hello[:FRAME])  # one frame: waits for the tick
    assert batcher.batches == 0
    while batcher.batches == 0:
        await asyncio.sleep(0.005)
    det.feed(hello[FRAME:])  # far more than a tick of audio at once: scored now
    assert batcher.batches == 2
    assert [type(e).__name__ for e in events] == ["SpeechStarted", "SpeechEnded"]
    assert events == _alone(hello)
    batcher.close()


def test_a_batcher_outlives_its_event_loop() -> None:
    hello = bytes(8000) + _hello_pcm() + bytes(24000)
    batcher = VadBatcher(vad.SileroBatch(), tick_ms=20)
    stranded, _ = _batched(batcher)
    det, events = _batched(batcher)

    async def one_frame() -> None:
        stranded.feed(hello[:FRAME])

    asyncio.run(one_frame())  # the loop closes with its tick still pending

    async def frame_by_frame() -> None:
        for pos in range(0, 3 * FRAME, FRAME):
            det.feed(hello[pos : pos + FRAME])  # each frame waits for this loop's tick
            for _ in range(400):  # (bounded: a tick that never comes fails the test)
                if not det._chunks:
                    break
                await asyncio.sleep(0.005)
            assert not det._chunks
        det.feed(hello[3 * FRAME :])  # the rest at once: scored without waiting

    asyncio.run(frame_by_frame())
    assert events == _alone(hello)
    assert not stranded._chunks  # scored with the next tick


async def test_a_conversation_ending_mid_batch_is_dropped_from_it() -> None:
    hello = bytes(8000) + _hello_pcm() + bytes(24000)
    batcher = VadBatcher(vad.SileroBatch(), tick_ms=20)
    staying, stay_events = _batched(batcher)
    leaving, leave_events = _batched(batcher)
    half = len(hello) // 2 // FRAME * FRAME
    for pos in range(0, half, FRAME):
        staying.feed(hello[pos : pos + FRAME])
        leaving.feed(hello[pos : pos + FRAME])
        if pos == 6400:
            leaving.release()  # its turn ended with audio waiting in the batch
        batcher.flush()
    assert leave_events == []
    assert leaving.inner.stream_ms <= 6400 / 2 / RATE * 1000  # nothing after the release
    assert leaving.on_events is None
    leaving.feed(hello[:FRAME])  # audio after the release goes nowhere
    batcher.flush()
    assert leave_events == []
    for pos in range(half, len(hello), FRAME):
        staying.feed(hello[pos : pos + FRAME])
        batcher.flush()
    assert stay_events == _alone(hello)


class _BrokenSession:
    """An onnxruntime session whose every run fails (a model that cannot run)."""

    def run(self, *args: Any) -> Any:
        raise RuntimeError("model failed")


async def test_a_model_failure_falls_back_to_energy_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hello = bytes(8000) + _hello_pcm() + bytes(24000)
    engine = vad.SileroBatch()
    batcher = VadBatcher(engine, tick_ms=20)
    det, events = _batched(batcher)
    other, other_events = _batched(batcher)
    half = 11200  # the speech has started: the end-pointer's state must survive the failure
    for pos in range(0, half, FRAME):
        det.feed(hello[pos : pos + FRAME])
        batcher.flush()
    assert [type(e).__name__ for e in events] == ["SpeechStarted"]
    engine._session = _BrokenSession()
    with caplog.at_level(logging.WARNING, logger="webex_byova.media.vad"):
        det.feed(hello[half : half + FRAME])
        other.feed(hello[:FRAME])
        batcher.flush()
    assert det.failed
    assert other.failed
    assert isinstance(det.inner.classifier, vad.EnergyClassifier)
    failures = [r for r in caplog.records if "Silero batch failed" in r.getMessage()]
    assert len(failures) == 1
    assert "RuntimeError" in failures[0].getMessage()
    assert "2 conversation(s)" in failures[0].getMessage()
    tail: list[vad.VADEvent] = []
    for pos in range(half + FRAME, len(hello), FRAME):
        tail += det.feed(hello[pos : pos + FRAME])  # classified at once now, no batch
    ended = [e for e in events + tail if isinstance(e, vad.SpeechEnded)]
    assert len(ended) == 1  # the turn still ends, on the energy classifier
    assert ended[0].onset_ms == events[0].onset_ms
    assert other_events == []


async def test_a_batched_detector_needs_its_batchers_engine() -> None:
    batcher = VadBatcher(vad.SileroBatch(), tick_ms=20)
    with pytest.raises(ValueError, match="this batcher's SileroBatch"):
        BatchedDetector(vad.SileroVAD(batch=vad.SileroBatch()), batcher, _fallback)
    with pytest.raises(ValueError, match="tick_ms"):
        VadBatcher(batcher.engine, tick_ms=0)
    det, _ = _batched(batcher)
    det.complete_timeout_ms = 600
    det.max_speech_ms = 5000
    assert (det.inner.complete_timeout_ms, det.inner.max_speech_ms) == (600, 5000)
    assert (det.sample_rate, det.in_speech) == (8000, False)
    det.feed_ulaw(audio.silence(20))
    det.reset()
    batcher.flush()
    assert batcher.batches == 0  # the reset dropped the queued audio
    det.feed(bytes(FRAME))
    det.flush()
    assert batcher.batches == 1


async def test_many_conversations_over_grpc_end_their_turns_with_batched_silero(
    caller_factory,
) -> None:
    server = BYOVAMediaServer(make_config(vad="silero", complete_timeout_ms=500))
    utterances: list[str] = []

    @server.on("utterance")
    def answer(event: Any) -> None:
        utterances.append(event.reason)
        event.turn.say("got it")

    async with server:
        callers = [caller_factory(server, realtime=True) for _ in range(6)]

        async def call(caller: Any) -> list[str]:
            await caller.start_session()
            return list((await caller.say(wav=HELLO)).event_types[:2])

        results = await asyncio.gather(*(call(c) for c in callers))
        batcher = server._vad_batchers[8000]
        assert batcher is not None
        assert batcher.batches > 0
    assert results == [["START_OF_INPUT", "END_OF_INPUT"]] * 6
    assert utterances == ["silence"] * 6


async def test_without_batching_the_server_scores_each_conversation_at_once(
    caller_factory,
) -> None:
    server = BYOVAMediaServer(make_config(vad="silero", vad_batch_ms=0))
    made: list[vad.SpeechDetector] = []

    @server.on("utterance")
    def answer(event: Any) -> None:
        event.turn.say("got it")

    async with server:
        made.append(server.make_detector(8000, server._default_settings))
        caller = caller_factory(server)
        await caller.start_session()
        assert (await caller.say(wav=HELLO)).event_types[:2] == ["START_OF_INPUT", "END_OF_INPUT"]
        assert server._vad_batchers[8000] is None
    assert isinstance(made[0], vad.SileroVAD)
