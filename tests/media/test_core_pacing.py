"""Exact send times of the call core's real-time pacing of outbound CHUNK audio.

Written for the mutation run of the call core (``scripts/mutation.py media_core``). The hub's
clock is a :class:`StepClock` of 1/16 s steps and chunks last 1/8 s (``chunk_ms=125``), so all
the pacing arithmetic is exact in binary floating point and every send time, late count and
latency below is an exact value, derived in each test from the rule the pacing follows: a chunk
may leave once the audio sent so far, minus ``pacing_lead_ms``, is not ahead of the time since
playback began; when playback ran dry (the time since it began passed the audio sent), the
origin moves so the chunk is on time from there, and a chunk leaving that way after earlier
ones counts as late.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from webex_byova.media._frontend import TurnHandle
from webex_byova.media._messages import AgentResponse, DtmfIn, PromptSpec
from webex_byova.media.server import BYOVAMediaServer

from .conftest import make_config
from .test_core_mutation import Clock, StepClock, _final, _metrics, _req, _settle

pytestmark = pytest.mark.timeout(5)

STEP = 1 / 16
CHUNK = b"\x01" * 1000  # 125 ms at 8 kHz


def _paced_server(lead_ms: int) -> tuple[BYOVAMediaServer, StepClock]:
    clock = StepClock(STEP)
    server = BYOVAMediaServer(
        make_config(audio_mode="chunk", realtime_pacing=True, chunk_ms=125, pacing_lead_ms=lead_ms),
        agents=["agent-1"],
        clock=clock,
    )
    return server, clock


async def _timed(handle: TurnHandle, clock: Clock) -> list[tuple[float, AgentResponse]]:
    """Each response with the hub clock's value when it left (its last reading)."""
    return [(clock.now, r) async for r in handle.responses()]


def _chunks(responses: list[tuple[float, AgentResponse]], start: float) -> list[float]:
    """The send times of the CHUNKs, relative to ``start``; asserts a lone empty FINAL last."""
    assert responses[-1][1] == _final()
    for _, response in responses[:-1]:
        assert response == AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=CHUNK),))
    return [at - start for at, _ in responses[:-1]]


async def test_chunks_leave_on_their_slot_and_none_counts_as_late() -> None:
    # The first chunk opens playback (origin read, then a dry check one step later that moves
    # the origin to it); then chunk n may leave once (n-1)/8 s passed since the origin: the
    # second is exactly on its slot (not late), the third and fourth each wait one step.
    server, clock = _paced_server(0)

    @server.on("dtmf_input")
    def speak(event: Any) -> None:
        event.turn.play_audio(CHUNK * 4)

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    start = clock.now  # the DTMF's arrival was the last reading
    assert _chunks(await _timed(handle, clock), start) == [0.1875, 0.25, 0.375, 0.5]
    await asyncio.sleep(0)
    assert _metrics(server, "webex_byova_frames", "webex_byova_turn_latency") == {
        "webex_byova_frames_sent_total{transport=websocket}": 4.0,
        # first reply byte: the reading right after the first chunk's decision
        "webex_byova_turn_latency_seconds_count{transport=websocket}": 1.0,
        "webex_byova_turn_latency_seconds_sum{transport=websocket}": 0.25,
    }


async def test_the_pacing_lead_lets_chunks_run_ahead_by_exactly_that_much() -> None:
    # lead 1/8 s: chunk n may leave once (n-1)/8 - 1/8 s passed since the origin; the fourth
    # is exactly on that bound (no wait), the fifth waits one step.
    server, clock = _paced_server(125)

    @server.on("dtmf_input")
    def speak(event: Any) -> None:
        event.turn.play_audio(CHUNK * 5)

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    start = clock.now
    assert _chunks(await _timed(handle, clock), start) == [0.1875, 0.25, 0.3125, 0.375, 0.5]
    await asyncio.sleep(0)
    assert _metrics(server, "webex_byova_frames_late", "webex_byova_frames_sent") == {
        "webex_byova_frames_sent_total{transport=websocket}": 5.0,
    }


async def test_a_pause_between_prompts_restarts_pacing_from_the_late_chunk() -> None:
    # After a 1 s pause the playback ran dry: the next chunk leaves at once and counts as
    # late, and the one after it is paced from there (one chunk later, i.e. two steps).
    server, clock = _paced_server(0)
    times: list[float] = []

    @server.on("dtmf_input")
    async def speak(event: Any) -> None:
        assert await event.turn.play_audio(CHUNK * 2) is True
        clock.now += 1.0
        times.append(clock.now)
        assert await event.turn.play_audio(CHUNK * 2) is True

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    start = clock.now
    sent = _chunks(await _timed(handle, clock), start)
    resumed = times[0] - start
    assert sent[:2] == [0.1875, 0.25]
    assert [at - resumed for at in sent[2:]] == [0.0625, 0.1875]
    await asyncio.sleep(0)
    assert _metrics(server, "webex_byova_frames_late", "webex_byova_frames_sent") == {
        "webex_byova_frames_late_total{transport=websocket}": 1.0,
        "webex_byova_frames_sent_total{transport=websocket}": 4.0,
    }


async def test_a_paced_stream_waiting_for_its_slot_ends_at_once_when_the_caller_goes() -> None:
    # A frozen hub clock: the second chunk would wait forever; the caller going away (not a
    # barge-in: the stream has none) must end the wait and the responses at once.
    clock = Clock()
    server = BYOVAMediaServer(
        make_config(audio_mode="chunk", realtime_pacing=True, chunk_ms=125, pacing_lead_ms=0),
        agents=["agent-1"],
        clock=clock,
    )
    played: list[bool] = []

    @server.on("dtmf_input")
    async def speak(event: Any) -> None:
        played.append(await event.turn.play_audio(CHUNK * 2, barge_in=False))

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = asyncio.get_running_loop().create_task(_timed(handle, clock))
    await _settle()  # the first chunk is out, the second waits for its slot
    handle.caller_gone()
    responses = await pump
    assert [r for _, r in responses] == [
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=CHUNK),))
    ]
    await _settle()
    assert played == [False]
    assert handle.turn.outcome == "cancelled"
