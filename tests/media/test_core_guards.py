"""Exact outcomes of the call core's guards: what a turn does once it is closed, dropped,
completed or finished, the reply timeout's once-per-turn rule, who is playing for barge-in,
and the bounds of dropped-frame counts and utterance audio.

Written for the mutation run of the call core (``scripts/mutation.py media_core``), with the
helpers of test_core_mutation: turns driven in process through open_turn()/TurnHandle, an
injected clock and a scripted end-pointer. Where a stream must wait, real-time pacing runs on
the frozen injected clock (the second chunk waits for a slot that never comes by itself).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webex_byova.media._frontend import TurnHandle
from webex_byova.media._messages import (
    AgentResponse,
    AudioIn,
    DtmfIn,
    EventIn,
    OutputEventSpec,
    PromptSpec,
    TextSpec,
)
from webex_byova.media._model import ConversationRecord
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.media.session import log_context
from webex_byova.media.store import InMemoryConversationStore

from .conftest import make_config
from .test_core_mutation import (
    APOLOGY,
    DEFAULT,
    START,
    Clock,
    _all,
    _audio_turn,
    _ended,
    _final,
    _frames,
    _metrics,
    _pcm,
    _req,
    _server,
    _settle,
    _started,
    _ws,
)

pytestmark = pytest.mark.timeout(5)

HANGUP = EventIn(type="session_end")
CHUNK = b"\x01" * 640  # one 80 ms chunk at 8 kHz


def _chunk(data: bytes = CHUNK) -> AgentResponse:
    return AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=data),))


def _pump(handle: TurnHandle) -> asyncio.Task[list[AgentResponse]]:
    return asyncio.get_running_loop().create_task(_all(handle))


# ------------------------------------------------------------------ closed and dropped turns


async def test_a_lost_rpc_is_its_conversations_last_activity() -> None:
    """The conversation is not idle for the time its RPC was open: expiry counts from the loss
    (also before the front end's response loop has wound down)."""
    server, clock, _ = _server(idle_timeout_s=10.0)

    @server.on("dtmf_input")
    async def stuck(event: Any) -> None:
        await asyncio.Event().wait()

    assert await _ws(server, START) == [_final()]
    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    pump = _pump(handle)
    await _settle()
    clock.now += 60.0  # the RPC stayed open for a minute
    handle.caller_gone()
    assert await server.expire_idle() == 0  # the pump has not resumed yet
    assert await pump == []
    clock.now += 9.5
    assert await server.expire_idle() == 0
    clock.now += 0.5
    assert await server.expire_idle() == 1


async def test_a_cancelled_turn_stays_unfinished_when_its_handler_returns() -> None:
    server, _, _ = _server()
    gate = asyncio.Event()

    @server.on("dtmf_input")
    async def slow(event: Any) -> None:
        await gate.wait()

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    pump = _pump(handle)
    await _settle()
    handle.caller_gone()
    assert await pump == []
    gate.set()
    await _settle()
    turn = handle.turn
    assert (turn.closed, turn.finished, turn.outcome) == (True, False, "cancelled")


async def test_a_turn_completing_when_the_call_ends_elsewhere_keeps_its_outcome() -> None:
    """A gRPC turn half-closed after its FINAL is completing; a hang-up on another RPC of the
    call right then must not turn it into a dropped one."""
    server, _, _ = _server()
    greeting = await server.open_turn(_req(START), transport="grpc")
    greeting.caller_done()
    assert await _all(greeting) == [_final()]
    other = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = _pump(handle)
    await _settle()  # the FINAL is out; the turn waits for the half-close
    handle.caller_done()
    assert other.feed_input(HANGUP)  # the hang-up, before this turn's writer resumed
    assert await pump == [_final()]
    assert handle.turn.outcome == "completed"
    assert await _all(other) == [
        AgentResponse(output_events=(OutputEventSpec("session_end", "session_ended_by_client"),))
    ]


async def test_a_dropped_audio_turn_delivers_no_utterance() -> None:
    server, _, _ = _server({0: [_started(0)]})
    heard: list[Any] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append(event.turn.index)

    assert await _ws(server, START) == [_final()]
    speaking = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    pump = _pump(speaking)
    hangup = await server.open_turn(_req(HANGUP), transport="grpc")
    assert len(await _all(hangup)) == 1
    speaking.turn.end_input()  # too late: the call ended on the other RPC
    assert await pump == [
        AgentResponse(
            response_type="final",
            output_events=(OutputEventSpec("start_of_input"),),
            settings=DEFAULT,
            omit_input_mode=True,
        )
    ]
    await _settle()
    assert heard == []
    assert speaking.turn.outcome == "terminal"


async def test_frames_after_finish_deliver_no_utterance_while_the_final_waits() -> None:
    """finish() ends the caller's input: frames that still come while the FINAL waits behind
    queued audio are dropped, and the end-pointer's end of speech delivers nothing."""
    server, _, _ = _server({1: [_started(1)], 4: [_ended(100.0, 60.0)]}, audio_mode="chunk")
    gate = asyncio.Event()
    heard: list[Any] = []

    async def source() -> AsyncIterator[bytes]:
        await gate.wait()
        yield CHUNK

    @server.on("start_of_input")
    def answer_now(event: Any) -> None:
        event.turn.stream(source())
        event.turn.finish()

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append(event.pcm16)

    frames = _frames(6)
    handle = await server.open_turn(_req(frames[0]), transport="websocket")
    pump = _pump(handle)
    for frame in frames[1:]:
        assert handle.feed_input(frame)
        await _settle()
    gate.set()
    assert await pump == [
        AgentResponse(response_type="chunk", output_events=(OutputEventSpec("start_of_input"),)),
        _chunk(),
        _final(),
    ]
    assert heard == []
    await _settle()
    assert _metrics(server, "webex_byova_frames_dropped") == {
        "webex_byova_frames_dropped_total{reason=after_close,transport=websocket}": 4.0
    }


# ------------------------------------------------------------------------------ finish()


async def test_a_finish_given_up_by_its_awaiter_still_reports_the_final_sent() -> None:
    server, _, _ = _server()
    gave_up: list[bool] = []

    @server.on("dtmf_input")
    async def impatient(event: Any) -> None:
        try:
            await asyncio.wait_for(event.turn.finish(), 0)
        except TimeoutError:
            gave_up.append(True)

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = _pump(handle)
    await _settle()  # the FINAL is out; the turn waits for the half-close
    assert gave_up == [True]
    assert not handle.turn.closed
    assert await handle.turn.finish() is True
    handle.caller_done()
    assert await pump == [_final()]
    assert handle.turn.outcome == "completed"


# ------------------------------------------------------------------------ the reply timeout


async def test_the_reply_timeout_counts_from_the_turns_first_input_once() -> None:
    server, clock, _ = _server(handler_timeout_s=0.01)

    @server.on("dtmf_input")
    async def stuck(event: Any) -> None:
        await asyncio.Event().wait()

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    await _settle()
    clock.now += 0.006
    assert handle.feed_input(DtmfIn(digits="2"))  # more input on the same turn
    await _settle()
    clock.now += 0.004
    assert server.expire_overdue_turns() == 1  # 0.01 s after the first DTMF
    assert server.expire_overdue_turns() == 0  # answered once
    assert await _all(handle) == [_final(PromptSpec(text=APOLOGY))]


async def test_a_running_error_path_is_not_a_stuck_handler() -> None:
    """Past the reply deadline only the error path of a failed audio source holds the turn:
    it is bounded on its own and answers; the timeout does not cancel it."""
    server, clock, _ = _server(handler_timeout_s=2.0, audio_mode="chunk")
    entered = asyncio.Event()
    gate = asyncio.Event()
    errors: list[str] = []

    async def broken() -> AsyncIterator[bytes]:
        raise OSError("tts down")
        yield b""

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.stream(broken())

    @server.on("error")
    async def report(event: Any) -> None:
        errors.append(type(event.exception).__name__)
        entered.set()
        await gate.wait()

    handle = await server.open_turn(_req(START), transport="websocket")
    pump = _pump(handle)
    await entered.wait()
    clock.now += 2.0
    assert server.expire_overdue_turns() == 0
    gate.set()
    assert await pump == [_final(PromptSpec(text=APOLOGY))]
    assert errors == ["OSError"]


# ------------------------------------------------------------------------- streams and playing


async def test_closing_the_responses_mid_stream_resolves_the_prompt_as_not_played() -> None:
    server, _, _ = _server(audio_mode="chunk")
    played: list[bool] = []

    @server.on("session_start")
    async def speak(event: Any) -> None:
        played.append(await event.turn.play_audio(CHUNK * 2))

    handle = await server.open_turn(_req(START), transport="websocket")
    responses = handle.responses()
    assert await anext(responses) == _chunk()
    await responses.aclose()  # the front end stops writing
    await _settle()
    assert played == [False]
    assert handle.turn.outcome == "cancelled"


def _paced(**config: Any) -> tuple[BYOVAMediaServer, Clock, list[Any]]:
    """Pacing on the frozen clock: a stream's second chunk waits until something wakes it."""
    return _server(
        {1: [_started(1)]},
        audio_mode="chunk",
        realtime_pacing=True,
        pacing_lead_ms=0,
        **config,
    )


async def test_a_stream_cut_short_by_a_hangup_elsewhere_is_not_played() -> None:
    server, _, _ = _paced()
    played: list[bool] = []

    @server.on("dtmf_input")
    async def speak(event: Any) -> None:
        played.append(await event.turn.play_audio(CHUNK * 2, barge_in=False))

    assert await _ws(server, START) == [_final()]
    streaming = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = _pump(streaming)
    await _settle()  # the first chunk is out, the second waits
    hangup = await server.open_turn(_req(HANGUP), transport="grpc")
    assert len(await _all(hangup)) == 1
    assert await pump == [_chunk()]
    await _settle()
    assert played == [False]


async def test_speech_after_the_playing_rpc_was_lost_is_no_barge_in() -> None:
    server, _, _ = _paced()
    barged: list[Any] = []

    @server.on("dtmf_input")
    def speak(event: Any) -> None:
        event.turn.play_audio(CHUNK * 2, barge_in=True)

    @server.on("barge_in")
    def cut(event: Any) -> None:
        barged.append(event.interrupted.index)

    assert await _ws(server, START) == [_final()]
    streaming = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = _pump(streaming)
    await _settle()
    frames = _frames(2)
    listening = await server.open_turn(_req(frames[0]), transport="grpc")
    streaming.caller_gone()
    assert listening.feed_input(frames[1])  # speech starts before the lost RPC's writer ran
    assert await pump == [_chunk()]
    await _settle()
    assert barged == []
    listening.caller_gone()
    await _all(listening)


@pytest.mark.parametrize("source", ["speech", "dtmf"])
async def test_input_cuts_the_newest_barge_in_stream_after_an_older_one_ended(
    source: str,
) -> None:
    server, _, _ = _paced()
    played: dict[str, bool] = {}
    barged: list[Any] = []

    @server.on("dtmf_input")
    async def speak(event: Any) -> None:
        barge = event.digits == "2"
        played[event.digits] = await event.turn.play_audio(CHUNK * 2, barge_in=barge)

    @server.on("barge_in")
    def cut(event: Any) -> None:
        barged.append((event.source, event.interrupted.index, event.turn.index))

    assert await _ws(server, START) == [_final()]
    older = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    older_pump = _pump(older)
    await _settle()
    newer = await server.open_turn(_req(DtmfIn(digits="2")), transport="grpc")
    newer_pump = _pump(newer)
    await _settle()  # both sent their first chunk; the newer one is playing
    older.caller_gone()
    assert await older_pump == [_chunk()]
    if source == "speech":
        frames = _frames(2)
        listening = await server.open_turn(_req(frames[0]), transport="grpc")
        assert listening.feed_input(frames[1])
    else:
        listening = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="grpc")
    newer.caller_done()
    assert await newer_pump == [_chunk(), _final()]
    await _settle()
    assert barged == [(source, 3, 4)]
    assert played == {"1": False, "2": False}
    listening.caller_gone()
    await _all(listening)


async def test_a_wav_prompt_plays_for_its_audio_only_text_prompts_add_no_time() -> None:
    server, clock, _ = _server()
    barged: list[int] = []

    @server.on("session_start")
    def prompt(event: Any) -> None:
        event.turn.say("welcome")
        event.turn.play_audio(b"\x01" * 8000, barge_in=True)  # one second
        event.turn.say("and more")

    @server.on("barge_in")
    def cut(event: Any) -> None:
        barged.append(event.interrupted.index)

    assert len((await _ws(server, START))[0].prompts) == 3
    clock.now += 1.0  # the second of audio has played; the text prompts take no time
    marker = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="websocket")
    await _all(marker)
    await _settle()
    assert barged == []


# --------------------------------------------------------------------------- caller audio


async def test_bad_encodings_and_rates_are_each_counted() -> None:
    server, _, _ = _server()
    handle = await server.open_turn(
        _req(AudioIn(audio=b"\xff" * 160, encoding="opus")),  # type: ignore[arg-type]
        transport="grpc",
    )
    for item in [
        AudioIn(audio=b"\xff" * 160, sample_rate_hz=11025),
        AudioIn(audio=b"\xff" * 160, encoding="opus"),  # type: ignore[arg-type]
        AudioIn(audio=b"\xff" * 160, sample_rate_hz=44100),
    ]:
        assert handle.feed_input(item)
    assert handle.turn._dropped["bad"] == 4
    handle.caller_gone()
    await _all(handle)
    await _settle()
    assert _metrics(server, "webex_byova_frames_dropped") == {
        "webex_byova_frames_dropped_total{reason=bad_rate,transport=grpc}": 4.0
    }


async def test_utterance_audio_stops_at_the_first_frame_reaching_max_utterance_ms() -> None:
    # 1001 ms at 8 kHz is 16016 PCM bytes: 50 frames (16000) are below it, the 51st is kept
    server, _, _ = _server({0: [_started(0)], 70: [_ended(1420.0, 1400.0)]}, max_utterance_ms=1001)
    heard: list[bytes] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append(event.pcm16)

    frames = _frames(80)
    await _audio_turn(server, frames)
    assert heard == [_pcm(frames[:51])]


# ---------------------------------------------------------------------------------- records


async def test_a_stored_transcript_without_a_language_keeps_the_default() -> None:
    store = InMemoryConversationStore()
    await store.put(
        ConversationRecord(
            "c1",
            "agent-1",
            started=True,
            turns=1,
            transcript={"text": "earlier"},
            summary={"ssml": "<speak>s</speak>", "language_code": "de-DE"},
        )
    )
    server = BYOVAMediaServer(make_config(), agents=["agent-1"], store=store)

    @server.on("dtmf_input")
    def bye(event: Any) -> None:
        event.turn.end_session()

    assert await _ws(server, DtmfIn(digits="1")) == [
        AgentResponse(
            output_events=(OutputEventSpec("session_end", "session_ended"),),
            transcript=TextSpec(text="earlier"),
            summary=TextSpec(ssml="<speak>s</speak>", language_code="de-DE"),
        )
    ]


async def test_state_that_is_not_plain_data_is_reported_once_per_conversation(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = _server()

    @server.on("session_start")
    def keep(event: Any) -> None:
        event.session.state["items"] = []
        event.session.state["items"].append(object())  # mutated in place: not checked here

    with caplog.at_level(logging.ERROR, logger="webex_byova.media"):
        assert await _ws(server, START) == [_final()]
        assert await _ws(server, DtmfIn(digits="1")) == [_final()]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 1
    assert messages[0].startswith("[c1] session.state is not plain data, conversation not saved")


def test_log_context_bounds_both_ids_to_200_characters() -> None:
    assert log_context("c" * 201, "t" * 200) == {
        "conversation_id": "c" * 199 + "…",
        "trackingid": "t" * 200,
    }
    assert log_context("c" * 200, "") == {"conversation_id": "c" * 200, "trackingid": ""}


async def test_a_wait_started_as_another_ends_keeps_its_input() -> None:
    """A handler that starts waiting in collect_input() right after another one's wait was
    answered (before that one resumed) gets the next input; the first wait's clean-up must not
    drop it."""
    server, _, _ = _server()
    assert await _ws(server, START) == [_final()]
    session = server.sessions["c1"]
    first = asyncio.get_running_loop().create_task(session.collect_input(timeout=2))
    await _settle()
    listening = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    second = asyncio.get_running_loop().create_task(session.collect_input(timeout=2))
    assert listening.feed_input(DtmfIn(digits="1"))  # answers the first wait
    digits = await first
    assert (type(digits).__name__, digits.digits) == ("DtmfInput", "1")
    digits.turn.finish()
    listening.caller_done()
    assert await _all(listening) == [_final()]
    nxt = await server.open_turn(_req(DtmfIn(digits="2")), transport="websocket")
    got = await second
    assert (type(got).__name__, got.digits, got.turn is nxt.turn) == ("DtmfInput", "2", True)
    got.turn.finish()
    assert await _all(nxt) == [_final()]


async def test_an_utterance_without_a_declared_language_has_none() -> None:
    server, _, _ = _server({1: [_started(1)], 3: [_ended(80.0, 40.0)]})
    heard: list[tuple[str, int]] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append((event.language_code, event.sample_rate))

    handle, _, _ = await _audio_turn(server, _frames(5), "grpc")
    assert heard == [("", 8000)]
    assert handle.turn.outcome == "completed"


async def test_turn_state_flags_are_booleans_from_the_start() -> None:
    server, _, _ = _server()
    handle = await server.open_turn(_req(START), transport="grpc")
    turn = handle.turn
    assert (turn.closed, turn.finished, handle.closed) == (False, True, False)
    handle.caller_done()
    assert await _all(handle) == [_final()]
    assert (turn.closed, turn.finished, handle.closed) == (True, True, True)
    listening = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    assert (listening.turn.closed, listening.turn.finished) == (False, False)
    assert listening.turn.closed is False
    assert listening.turn.finished is False
    listening.caller_gone()
    await _all(listening)


async def _stuck_source(closed: list[str]) -> AsyncIterator[bytes]:
    """One chunk, then a source that never yields again (a TTS connection that hangs)."""
    try:
        yield CHUNK
        await asyncio.Event().wait()
        yield CHUNK
    finally:
        closed.append("closed")


def _stream_stuck_source_on_dtmf(server: Any) -> tuple[list[str], list[bool]]:
    """A DTMF handler streaming a source that gets stuck after its first piece; returns the
    source's closing (and any error event, which an abandoned source must not raise) and
    what ``stream()`` resolved to."""
    closed: list[str] = []
    played: list[bool] = []

    @server.on("dtmf_input")
    async def speak(event: Any) -> None:
        played.append(await event.turn.stream(_stuck_source(closed)))

    @server.on("error")
    def failed(event: Any) -> None:  # an abandoned source is no handler failure
        closed.append(type(event.exception).__name__)

    return closed, played


@pytest.mark.parametrize("mode", ["chunk", "wav"])
async def test_a_stream_stuck_in_its_source_ends_when_the_caller_goes(mode: str) -> None:
    server, _, _ = _server(audio_mode=mode, handler_timeout_s=60.0)
    closed, played = _stream_stuck_source_on_dtmf(server)
    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = _pump(handle)
    await _settle()  # the source is stuck after its first piece
    handle.caller_gone()
    assert await pump == ([_chunk()] if mode == "chunk" else [])
    await _settle()
    assert (played, closed, handle.turn.outcome) == ([False], ["closed"], "cancelled")


async def test_a_stream_stuck_in_its_source_ends_when_the_call_ends_elsewhere() -> None:
    server, _, _ = _server(audio_mode="chunk", handler_timeout_s=60.0)
    closed, played = _stream_stuck_source_on_dtmf(server)
    assert await _ws(server, START) == [_final()]
    streaming = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = _pump(streaming)
    await _settle()
    hangup = await server.open_turn(_req(HANGUP), transport="grpc")
    assert len(await _all(hangup)) == 1
    assert await pump == [_chunk()]
    await _settle()
    assert (played, closed, streaming.turn.outcome) == ([False], ["closed"], "terminal")


@pytest.mark.parametrize("how", ["caller_gone", "hangup_elsewhere"])
async def test_no_final_after_the_turn_ended_while_its_error_path_ran(how: str) -> None:
    """The FINAL waits for a failed source's error path; if the turn is over by then (caller
    gone, call ended on another RPC), nothing more is written."""
    server, _, _ = _server(audio_mode="chunk")
    entered = asyncio.Event()
    gate = asyncio.Event()

    async def broken() -> AsyncIterator[bytes]:
        raise OSError("tts down")
        yield b""

    @server.on("dtmf_input")
    def speak(event: Any) -> None:
        event.turn.stream(broken())
        event.turn.finish()

    @server.on("error")
    async def report(event: Any) -> None:
        entered.set()
        await gate.wait()

    assert await _ws(server, START) == [_final()]
    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    pump = _pump(handle)
    await entered.wait()  # the FINAL is next; it waits for the error path
    if how == "caller_gone":
        handle.caller_gone()
    else:
        hangup = await server.open_turn(_req(HANGUP), transport="grpc")
        assert len(await _all(hangup)) == 1
    gate.set()
    assert await pump == []
    assert handle.turn.outcome == ("cancelled" if how == "caller_gone" else "terminal")


async def test_the_caller_going_away_right_after_the_final_was_handed_out() -> None:
    """The front end got the FINAL, then lost the stream before asking for more: the turn
    ends cleanly (cancelled), its responses with nothing further."""
    server, _, _ = _server()
    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    responses = handle.responses()
    assert await anext(responses) == _final()
    handle.caller_gone()
    assert [r async for r in responses] == []
    assert (handle.turn.closed, handle.turn.outcome) == (True, "cancelled")
