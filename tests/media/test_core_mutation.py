"""Exact outcomes of the call core's turns, driven in-process through open_turn/TurnHandle.

Written for the mutation run of the call core (``scripts/mutation.py media_core``): no socket
and no real-time wait (an injected clock, pacing off, a scripted end-pointer), and every test
compares whole responses (``AgentResponse`` is a frozen dataclass), whole events, outcomes and
metric samples, so a mutant that changes what goes to Webex or what is recorded fails here in
about a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webex_byova.media import _frontend, audio
from webex_byova.media._frontend import TurnHandle
from webex_byova.media._messages import (
    AgentResponse,
    AudioIn,
    CallerRequest,
    DtmfIn,
    EventIn,
    OutputEventSpec,
    PromptSpec,
    TextSpec,
)
from webex_byova.media._model import ConversationRecord, InputSettings
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.media.session import (
    SessionEndedError,
    TurnFinishedError,
    input_kind,
    log_context,
    turn_kind,
)
from webex_byova.media.store import InMemoryConversationStore
from webex_byova.media.vad import SpeechEnded, SpeechStarted, VADEvent

from .conftest import make_config

#: A mutant that makes a turn hang fails in seconds instead of the run's 60 s per test
#: (each test takes milliseconds).
pytestmark = pytest.mark.timeout(5)


DEFAULT = InputSettings()
APOLOGY = "Sorry, something went wrong. Please try again."
START = EventIn(type="session_start", name="call_start", parameters={"a": 1})


class Clock:
    """The hub's injected monotonic clock: moves only when a test moves it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Script:
    """An end-pointer whose events are scripted per 0-based frame fed."""

    complete_timeout_ms = 800.0
    max_speech_ms = 30000.0

    def __init__(self, sample_rate: int, events: dict[int, list[VADEvent]]) -> None:
        self.sample_rate = sample_rate
        self.events = events
        self.fed = 0
        self.resets = 0

    @property
    def in_speech(self) -> bool:
        return False

    def feed(self, pcm16: Any, now_ms: float | None = None) -> list[VADEvent]:
        n = self.fed
        self.fed += 1
        return list(self.events.get(n, []))

    def feed_ulaw(self, ulaw: Any, now_ms: float | None = None) -> list[VADEvent]:
        return self.feed(ulaw)

    def reset(self) -> None:
        self.fed = 0

    def reset_turn(self) -> None:
        self.resets += 1
        self.fed = 0


def _started(frame: int) -> SpeechStarted:
    return SpeechStarted(at_ms=frame * 20.0, onset_ms=frame * 20.0 - 40)


def _ended(at: float, last: float, reason: str = "complete_timeout") -> SpeechEnded:
    return SpeechEnded(at_ms=at, reason=reason, onset_ms=0.0, last_voice_ms=last)  # type: ignore[arg-type]


def _server(
    events: dict[int, list[VADEvent]] | None = None, *, tracer_provider: Any = None, **config: Any
) -> tuple[BYOVAMediaServer, Clock, list[Script]]:
    clock = Clock()
    made: list[Script] = []

    def factory(rate: int, settings: InputSettings) -> Script:
        made.append(Script(rate, events or {}))
        return made[-1]

    server = BYOVAMediaServer(
        make_config(**config),
        agents=["agent-1"],
        clock=clock,
        detector_factory=factory,
        tracer_provider=tracer_provider,
    )
    return server, clock, made


def _req(item: Any = None, cid: str = "c1", **kwargs: Any) -> CallerRequest:
    return CallerRequest(conversation_id=cid, input=item, **kwargs)


async def _all(handle: TurnHandle) -> list[AgentResponse]:
    return [r async for r in handle.responses()]


async def _ws(server: BYOVAMediaServer, item: Any, cid: str = "c1") -> list[AgentResponse]:
    handle = await server.open_turn(_req(item, cid), transport="websocket")
    return await _all(handle)


async def _grpc(server: BYOVAMediaServer, item: Any, cid: str = "c1") -> TurnHandle:
    """A gRPC turn whose caller half-closes right after its only message."""
    handle = await server.open_turn(_req(item, cid), transport="grpc", tracking_id="trk")
    handle.caller_done()
    return handle


def _final(*prompts: PromptSpec, settings: InputSettings = DEFAULT, **kw: Any) -> AgentResponse:
    return AgentResponse(prompts=prompts, settings=settings, **kw)


def _metrics(server: BYOVAMediaServer, *names: str) -> dict[str, float]:
    """Non-zero samples of the named metric families, ``name{label=value,...}`` -> value."""
    found: dict[str, float] = {}
    for family in server.metrics.registry.collect():
        for sample in family.samples:
            if not sample.name.startswith(names) or sample.name.endswith("_created"):
                continue
            if sample.name.endswith("_bucket") or not sample.value:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}"] = sample.value
    return found


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


def _frames(count: int, first: int = 1, **kw: Any) -> list[AudioIn]:
    """``count`` distinct 20 ms µ-law frames (each one code repeated)."""
    return [AudioIn(audio=bytes([(first + i) % 256]) * 160, **kw) for i in range(count)]


def _pcm(frames: list[AudioIn]) -> bytes:
    decode = audio.frame_decoder(audio.AudioEncoding.MULAW)
    return b"".join(decode(f.audio) for f in frames)


# ----------------------------------------------------------------------- kinds and log context


def test_turn_kinds_of_every_input() -> None:
    cases = [
        (AudioIn(), "audio"),
        (DtmfIn(digits="1"), "dtmf"),
        (EventIn(type="session_start"), "session_start"),
        (EventIn(type="session_end"), "session_end"),
        (EventIn(type="no_input"), "no_input"),
        (EventIn(type="start_of_dtmf"), "start_of_dtmf"),
        (EventIn(type="custom_event"), "custom_event"),
        (EventIn(type="unspecified"), "other"),
        (None, "other"),
    ]
    for item, kind in cases:
        assert input_kind(item) == kind
        assert turn_kind(_req(item)) == kind


def test_log_context_escapes_and_bounds_ids() -> None:
    assert log_context("c\n1", "t" * 300) == {
        "conversation_id": "c\\n1",
        "trackingid": "t" * 199 + "…",
    }


# ------------------------------------------------------------------------- replies, one FINAL


async def test_websocket_session_start_reply_is_one_exact_final() -> None:
    server, _, _ = _server()
    seen: list[Any] = []

    @server.on("session_start")
    def welcome(event: Any) -> None:
        seen.append((event.event_name, event.parameters, event.turn.index, event.turn.kind))
        event.turn.say("Welcome")
        event.session.set_input("dtmf", dtmf_length=4, terminator="*", sensitive=True)

    handle = await server.open_turn(_req(START), transport="websocket", tracking_id="trk-1")
    assert repr(handle) == (
        "TurnHandle(Turn(conversation_id='c1', index=1, kind='session_start', "
        "finished=False), transport='websocket')"
    )
    assert handle.session is handle.turn.session
    assert handle.transport == "websocket"
    responses = await _all(handle)
    settings = InputSettings(mode="dtmf", dtmf_input_length=4, dtmf_terminator="*", sensitive=True)
    assert responses == [
        _final(PromptSpec(text="Welcome"), settings=settings, input_sensitive=True)
    ]
    assert seen == [("call_start", {"a": 1}, 1, "session_start")]
    turn = handle.turn
    assert (turn.closed, turn.finished, turn.outcome, handle.closed) == (
        True,
        True,
        "completed",
        True,
    )
    assert not handle.feed(_req(DtmfIn(digits="1")))
    session = turn.session
    assert (session.record.started, session.record.turns, session.tracking_id) == (
        True,
        1,
        "trk-1",
    )
    assert session.turns == []
    assert turn.state is session.state
    assert turn.settings == settings
    await _settle()
    assert _metrics(server, "webex_byova_turns") == {
        "webex_byova_turns_total{outcome=completed,transport=websocket}": 1.0
    }


async def test_grpc_turn_sends_its_final_then_waits_for_the_half_close() -> None:
    server, _, _ = _server()
    ended: list[str] = []

    @server.on("turn_ended")
    def done(event: Any) -> None:
        ended.append(event.outcome)

    handle = await server.open_turn(_req(START), transport="grpc")
    stream = handle.responses()
    assert await anext(stream) == _final()
    assert handle.turn.finished
    await _settle()
    assert not handle.closed  # the RPC waits for Webex's half-close
    handle.caller_done()
    handle.caller_done()  # idempotent
    assert [r async for r in stream] == []
    assert handle.turn.outcome == "completed"
    await _settle()
    assert ended == ["completed"]
    await handle.saved()


async def test_grpc_turn_completes_half_close_timeout_after_its_final() -> None:
    server, _, _ = _server(half_close_timeout_s=0.01)
    handle = await server.open_turn(_req(START), transport="grpc")
    assert await _all(handle) == [_final()]
    assert handle.turn.outcome == "completed"


async def test_finish_twice_and_finish_then_say_send_one_final() -> None:
    server, _, _ = _server()
    results: list[Any] = []

    @server.on("session_start")
    async def twice(event: Any) -> None:
        turn = event.turn
        turn.say("once")
        first = turn.finish()
        second = turn.finish()
        assert first is not second
        with pytest.raises(TurnFinishedError) as caught:
            turn.say("again")
        assert str(caught.value) == (
            "turn #1 of c1 already sent its FINAL; answer on the next turn (e.g. the event "
            "returned by collect_input())"
        )
        with pytest.raises(TurnFinishedError):
            turn.custom_event("late")
        results.append(await first)
        results.append(await second)
        results.append(await turn.finish())

    assert await _ws(server, START) == [_final(PromptSpec(text="once"))]
    await _settle()
    assert results == [True, True, True]


async def test_finish_after_the_turn_was_cancelled_is_false() -> None:
    server, _, _ = _server()
    gate = asyncio.Event()
    results: list[bool] = []

    @server.on("session_start")
    async def slow(event: Any) -> None:
        await gate.wait()
        results.append(await event.turn.finish())
        results.append(await event.turn.say("gone"))

    handle = await server.open_turn(_req(START), transport="websocket")
    handle.caller_gone()
    assert await _all(handle) == []
    gate.set()
    await _settle()
    assert results == [False, False]
    assert handle.turn.outcome == "cancelled"


async def test_a_pending_finish_resolves_false_when_the_caller_goes_away() -> None:
    server, _, _ = _server(audio_mode="chunk")
    results: list[bool] = []
    gate = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        await gate.wait()
        yield b"\x01" * 640

    @server.on("session_start")
    async def play(event: Any) -> None:
        stream = event.turn.stream(source())
        done = event.turn.finish()
        again = event.turn.finish()
        results.extend([await stream, await done, await again])

    handle = await server.open_turn(_req(START), transport="websocket")
    pump = asyncio.get_running_loop().create_task(_all(handle))
    await _settle()
    handle.caller_gone()
    gate.set()  # the writer waits in the source; it sees the turn closed once it yields
    assert await pump == []
    await _settle()
    assert results == [False, False, False]


# ---------------------------------------------------------------------------------- prompts


async def test_say_forms_in_wav_mode() -> None:
    server, _, _ = _server(barge_in=True)
    ulaw = b"\x01" * 400
    wav16 = audio.make_wav(
        b"\x00\x00" * 800, sample_rate=16000, encoding=audio.AudioEncoding.LINEAR16
    )

    @server.on("session_start")
    def prompts(event: Any) -> None:
        turn = event.turn
        results = [
            turn.say("text"),
            turn.play_ssml("<speak>s</speak>"),
            turn.say(audio_uri="https://x/y.wav"),
            turn.play_audio(ulaw, barge_in=False),
            turn.say("label", audio=bytearray(ulaw), audio_uri="u"),
            turn.play_wav(wav16),
        ]
        assert all(r.result() is True for r in results)

    responses = await _ws(server, START)
    wav = audio.make_wav(ulaw, sample_rate=8000)
    converted = audio.make_wav(audio.wav_to_webex(wav16, target_rate=8000), sample_rate=8000)
    assert responses == [
        _final(
            PromptSpec(text="text", barge_in=True),
            PromptSpec(text="<speak>s</speak>", barge_in=True),
            PromptSpec(audio_uri="https://x/y.wav", barge_in=True),
            PromptSpec(audio=wav, barge_in=False),
            PromptSpec(text="label", audio=wav, audio_uri="u", barge_in=True),
            PromptSpec(audio=converted, barge_in=True),
        )
    ]


async def test_say_argument_errors_are_exact() -> None:
    server, _, _ = _server()
    handle = await server.open_turn(_req(AudioIn(audio=b"\xff" * 160)), transport="grpc")
    turn = handle.turn
    type_cases = [
        ({"text": 1}, "say(text=) must be a str, got int"),
        ({"ssml": b"x"}, "say(ssml=) must be a str, got bytes"),
        ({"audio": "x"}, "say(audio=) must be bytes, got str"),
        ({"wav": 1}, "say(wav=) must be bytes, got int"),
        ({"audio_uri": 2}, "say(audio_uri=) must be a str, got int"),
        ({"text": "t", "barge_in": 1}, "say(barge_in=) must be a bool, got int"),
    ]
    for kwargs, message in type_cases:
        with pytest.raises(TypeError) as caught:
            turn.say(**kwargs)
        assert str(caught.value) == message
    value_cases = [
        ({"text": "a", "ssml": "b"}, "pass text= or ssml=, not both"),
        ({"audio": b"a", "wav": b"b"}, "pass audio= (raw µ-law) or wav=, not both"),
        ({}, "a prompt needs text, ssml, audio, wav or audio_uri"),
        ({"text": "", "audio": b""}, "a prompt needs text, ssml, audio, wav or audio_uri"),
    ]
    for kwargs, message in value_cases:
        with pytest.raises(ValueError) as caught:
            turn.say(**kwargs)
        assert str(caught.value) == message
    with pytest.raises(audio.WavFormatError):
        turn.play_wav(b"not a wav")
    with pytest.raises(TypeError) as caught:
        turn.stream("text")  # type: ignore[arg-type]
    assert str(caught.value) == "stream() needs bytes or an (async) iterable of bytes, got str"
    with pytest.raises(TypeError) as caught:
        turn.stream(5)  # type: ignore[arg-type]
    assert str(caught.value) == "stream() needs bytes or an (async) iterable of bytes, got int"
    with pytest.raises(TypeError) as caught:
        turn.stream(b"", barge_in="yes")  # type: ignore[arg-type]
    assert str(caught.value) == "stream(barge_in=) must be a bool, got str"
    assert turn._prompts == []
    assert turn._ops == type(turn._ops)()
    handle.caller_gone()
    assert turn.say("late").result() is False
    assert turn.stream(b"\x01" * 200).result() is False
    assert await _all(handle) == []


async def test_chunk_mode_streams_paced_chunks_then_an_empty_final() -> None:
    server, _, _ = _server(audio_mode="chunk")
    played: list[Any] = []

    async def tts() -> AsyncIterator[bytes]:
        yield b"\x02" * 300
        yield bytearray(b"\x03" * 400)
        yield memoryview(b"\x04" * 10)

    @server.on("session_start")
    async def speak(event: Any) -> None:
        turn = event.turn
        played.append(turn.say("spoken text is dropped", audio=b"\x01" * 1500))
        played.append(turn.stream(tts()))
        played.append(turn.stream([b"\x05" * 50]))
        played.append(turn.stream(b"\x06" * 100, barge_in=True))
        played.append(turn.say("text only"))

    responses = await _ws(server, START)
    one = b"\x01" * 1500
    two = b"\x02" * 300 + b"\x03" * 400 + b"\x04" * 10
    assert responses == [
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=one[:640]),)),
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=one[640:1280]),)),
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=one[1280:]),)),
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=two[:640]),)),
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=two[640:] + b"\xff" * 30),)),
        AgentResponse(
            response_type="chunk", prompts=(PromptSpec(audio=b"\x05" * 50 + b"\xff" * 50),)
        ),
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x06" * 100),)),
        _final(PromptSpec(text="text only")),
    ]
    assert [f.result() for f in played] == [True, True, True, True, True]
    await _settle()
    assert _metrics(server, "webex_byova_frames_sent") == {
        "webex_byova_frames_sent_total{transport=websocket}": 7.0
    }


async def test_wav_mode_stream_collects_into_its_prompt_slot() -> None:
    server, _, _ = _server()
    played: list[Any] = []

    async def tts() -> AsyncIterator[bytes]:
        yield b"\x02" * 300
        yield b"\x03" * 10

    async def silent() -> AsyncIterator[bytes]:
        for _ in ():
            yield b""

    @server.on("session_start")
    async def speak(event: Any) -> None:
        turn = event.turn
        turn.say("before")
        played.append(turn.stream(tts(), barge_in=True))
        played.append(turn.stream(silent()))
        played.append(turn.stream(bytearray(b"\x04" * 20)))
        turn.say("after")

    responses = await _ws(server, START)
    assert responses == [
        _final(
            PromptSpec(text="before"),
            PromptSpec(audio=audio.make_wav(b"\x02" * 300 + b"\x03" * 10), barge_in=True),
            PromptSpec(audio=audio.make_wav(b"\x04" * 20)),
            PromptSpec(text="after"),
        )
    ]
    assert [f.result() for f in played] == [True, True, True]
    await _settle()
    assert _metrics(server, "webex_byova_frames_sent") == {
        "webex_byova_frames_sent_total{transport=websocket}": 2.0
    }


@pytest.mark.parametrize("mode", ["wav", "chunk"])
async def test_an_audio_source_that_fails_gets_the_apology(mode: str) -> None:
    server, _, _ = _server(audio_mode=mode)
    played: list[Any] = []
    errors: list[Any] = []

    async def broken() -> AsyncIterator[bytes]:
        yield b"\x01" * 200
        raise OSError("tts down")

    @server.on("session_start")
    def speak(event: Any) -> None:
        played.append(event.turn.stream(broken()))
        played.append(event.turn.stream([1]))  # not bytes

    @server.on("error")
    def failed(event: Any) -> None:
        errors.append((type(event.exception).__name__, str(event.exception), event.source))

    responses = await _ws(server, START)
    assert responses[-1] == _final(PromptSpec(text=APOLOGY))
    assert len(responses) == 1  # the failing source's 200 bytes were not a whole chunk yet
    assert [f.result() for f in played] == [False, False]
    assert errors == [
        ("OSError", "tts down", None),
        ("TypeError", "an audio source must yield bytes, got int", None),
    ]
    await _settle()
    assert _metrics(server, "webex_byova_turns", "webex_byova_handler") == {
        "webex_byova_turns_total{outcome=error,transport=websocket}": 1.0,
        "webex_byova_handler_errors_total{transport=websocket}": 2.0,
    }


async def test_an_async_source_that_stalls_is_a_handler_timeout() -> None:
    server, _, _ = _server(handler_timeout_s=0.02)
    errors: list[str] = []

    async def stalled() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.stream(stalled())

    @server.on("error")
    def failed(event: Any) -> None:
        errors.append(str(event.exception))

    assert await _ws(server, START) == [_final(PromptSpec(text=APOLOGY))]
    assert errors == ["the stream() audio source yielded nothing within handler_timeout_s=0.02"]


# ------------------------------------------------------------------------------- events


async def test_send_event_forms_and_errors() -> None:
    server, _, _ = _server()

    @server.on("session_start")
    def events(event: Any) -> None:
        turn = event.turn
        turn.custom_event("menu", {"level": 1})
        turn.no_match()
        turn.send_event("no_input", "quiet")
        turn.send_event("custom_event")
        with pytest.raises(ValueError) as caught:
            turn.send_event("session_end")  # type: ignore[arg-type]
        assert str(caught.value) == "use transfer_to_agent()/end_session() for terminal events"
        with pytest.raises(TypeError) as caught:
            turn.send_event("custom_event", 1)  # type: ignore[arg-type]
        assert str(caught.value) == "event name must be a str, got int"
        with pytest.raises(TypeError) as caught:
            turn.custom_event("x", [1])  # type: ignore[arg-type]
        assert str(caught.value) == "event metadata must be a mapping, got list"
        with pytest.raises(TypeError) as caught:
            turn.custom_event("x", {"k": object()})
        assert str(caught.value) == (
            "event metadata must be plain data (str keys; str, number, bool, None, lists, "
            "dicts): event metadata['k'] is a object, not plain data"
        )

    assert await _ws(server, START) == [
        _final(
            output_events=(
                OutputEventSpec("custom_event", "menu", {"level": 1}),
                OutputEventSpec("no_match", "no_match"),
                OutputEventSpec("no_input", "quiet"),
                OutputEventSpec("custom_event", ""),
            )
        )
    ]


async def test_transcript_and_summary_go_only_with_the_terminal_response() -> None:
    server, _, _ = _server()

    @server.on("session_start")
    def note(event: Any) -> None:
        event.turn.set_transcript("so far")
        event.turn.set_summary(TextSpec(ssml="<s/>", language_code="en"))
        event.turn.say("hi")
        with pytest.raises(TypeError) as caught:
            event.turn.set_summary(3)
        assert str(caught.value) == "summary must be a str or TextSpec, got int"

    @server.on("dtmf_input")
    def bye(event: Any) -> None:
        event.turn.end_session()

    assert await _ws(server, START) == [_final(PromptSpec(text="hi"))]
    assert await _ws(server, DtmfIn(digits="9")) == [
        AgentResponse(
            output_events=(OutputEventSpec("session_end", "session_ended"),),
            transcript=TextSpec(text="so far"),
            summary=TextSpec(ssml="<s/>", language_code="en"),
        )
    ]


async def test_transfer_to_agent_is_terminal_and_ends_the_conversation() -> None:
    server, _, _ = _server()
    ended: list[Any] = []
    results: list[Any] = []

    @server.on("session_start")
    def transfer(event: Any) -> None:
        with pytest.raises(TypeError) as caught:
            event.turn.transfer_to_agent(name=1)
        assert str(caught.value) == "transfer_to_agent(name=) must be a str, got int"
        with pytest.raises(TypeError) as caught:
            event.turn.transfer_to_agent(audio="x")
        assert str(caught.value) == "transfer_to_agent(audio=) must be bytes, got str"
        with pytest.raises(TypeError) as caught:
            event.turn.end_session(text=b"x")
        assert str(caught.value) == "session_end(text=) must be a str, got bytes"
        with pytest.raises(TypeError) as caught:
            event.turn.end_session(metadata=[])
        assert str(caught.value) == "session_end(metadata=) must be a mapping, got list"
        with pytest.raises(TypeError) as caught:
            event.turn.end_session(transcript=1)
        assert str(caught.value) == "transcript must be a str or TextSpec, got int"
        event.turn.say("first")
        results.append(
            event.turn.transfer_to_agent(
                "one moment",
                name="to_sales",
                metadata={"queue": "sales"},
                transcript="t",
                summary="s",
            )
        )

    @server.on("session_end")
    def gone(event: Any) -> None:
        ended.append((event.reason, event.turn is not None))

    handle = await server.open_turn(_req(START), transport="grpc")
    responses = await _all(handle)  # terminal: completes without waiting for a half-close
    assert responses == [
        AgentResponse(
            prompts=(PromptSpec(text="first"), PromptSpec(text="one moment")),
            output_events=(OutputEventSpec("transfer_to_agent", "to_sales", {"queue": "sales"}),),
            transcript=TextSpec(text="t"),
            summary=TextSpec(text="s"),
        )
    ]
    assert handle.turn.outcome == "terminal"
    session = handle.session
    assert (session.ended, session.end_reason) == (True, "transfer_to_agent")
    assert "c1" not in server.sessions
    await _settle()
    assert results[0].result() is True
    assert ended == [("transfer_to_agent", False)]
    assert _metrics(server, "webex_byova_turns", "webex_byova_conversations_ended") == {
        "webex_byova_turns_total{outcome=transfer,transport=grpc}": 1.0,
        "webex_byova_conversations_ended_total{outcome=transfer,transport=grpc}": 1.0,
    }


async def test_end_session_with_audio_is_terminal() -> None:
    server, _, _ = _server()

    @server.on("session_start")
    def bye(event: Any) -> None:
        event.session.end_session(audio=b"\x01" * 200, metadata={"why": "done"})

    responses = await _ws(server, START)
    assert responses == [
        AgentResponse(
            prompts=(PromptSpec(audio=audio.make_wav(b"\x01" * 200)),),
            output_events=(OutputEventSpec("session_end", "session_ended", {"why": "done"}),),
        )
    ]
    await _settle()
    assert _metrics(server, "webex_byova_turns") == {
        "webex_byova_turns_total{outcome=ended,transport=websocket}": 1.0
    }


async def test_caller_hangup_is_acknowledged_with_one_terminal_final() -> None:
    server, _, _ = _server()
    ended: list[Any] = []

    @server.on("session_start")
    def note(event: Any) -> None:
        event.turn.set_transcript("t")

    @server.on("session_end")
    def gone(event: Any) -> None:
        ended.append((event.reason, event.event_name, event.parameters, event.turn.index))

    assert await _ws(server, START) == [_final()]
    hangup = EventIn(type="session_end", name="hangup", parameters={"by": "caller"})
    handle = await server.open_turn(_req(hangup), transport="grpc")
    responses = await _all(handle)
    assert responses == [
        AgentResponse(
            output_events=(OutputEventSpec("session_end", "session_ended_by_client"),),
            transcript=TextSpec(text="t"),
        )
    ]
    assert handle.turn.outcome == "terminal"
    await _settle()
    assert ended == [("caller_ended", "hangup", {"by": "caller"}, 2)]
    assert _metrics(server, "webex_byova_turns") == {
        "webex_byova_turns_total{outcome=completed,transport=websocket}": 1.0,
        "webex_byova_turns_total{outcome=caller_hangup,transport=grpc}": 1.0,
    }


# ------------------------------------------------------------------------ dtmf and events in


async def test_dtmf_no_input_and_custom_event_are_delivered_exactly() -> None:
    server, clock, _ = _server()
    seen: list[Any] = []

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        seen.append(("dtmf", event.digits, event.terminator, event.turn.kind))
        clock.now += 0.25
        event.turn.say(event.digits)

    @server.on("no_input")
    def quiet(event: Any) -> None:
        seen.append(("no_input", event.event_name, event.parameters))

    @server.on("custom_event")
    def custom(event: Any) -> None:
        seen.append(("custom", event.event_name, event.parameters))
        event.turn.say("ok")

    assert await _ws(server, START) == [_final()]
    assert await _ws(server, DtmfIn(digits="12#")) == [_final(PromptSpec(text="12#"))]
    assert await _ws(server, EventIn(type="no_input", name="ni", parameters={"n": 1})) == [_final()]
    assert await _ws(server, EventIn(type="custom_event", name="ce", parameters={"k": "v"})) == [
        _final(PromptSpec(text="ok"))
    ]
    assert seen == [
        ("dtmf", "12#", "#", "dtmf"),
        ("no_input", "ni", {"n": 1}),
        ("custom", "ce", {"k": "v"}),
    ]
    await _settle()
    metrics = _metrics(server, "webex_byova_turn_latency")
    assert metrics["webex_byova_turn_latency_seconds_count{transport=websocket}"] == 3.0
    assert metrics["webex_byova_turn_latency_seconds_sum{transport=websocket}"] == 0.25


async def test_duplicate_session_start_answers_nothing() -> None:
    server, _, _ = _server()
    starts: list[int] = []

    @server.on("session_start")
    def welcome(event: Any) -> None:
        starts.append(event.turn.index)
        event.turn.say("hi")

    assert await _ws(server, START) == [_final(PromptSpec(text="hi"))]
    again = await server.open_turn(_req(START), transport="websocket")
    assert not again.feed_input(DtmfIn(digits="1"))  # a one-message turn on WebSocket
    assert await _all(again) == []
    grpc = await _grpc(server, START)
    assert await _all(grpc) == []
    assert starts == [1]


async def test_start_of_dtmf_and_empty_messages_answer_nothing() -> None:
    server, _, _ = _server()
    marks: list[int] = []

    @server.on("start_of_dtmf")
    def mark(event: Any) -> None:
        marks.append(event.turn.index)

    ws = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="websocket")
    assert not ws.feed(_req(DtmfIn(digits="1")))
    assert await _all(ws) == []
    assert ws.turn.outcome == "completed"
    grpc = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="grpc")
    assert grpc.feed_input(None)  # still its RPC's input until the half-close
    assert grpc.feed_input(EventIn(type="unspecified"))
    grpc.caller_done()
    assert await _all(grpc) == []
    empty = await server.open_turn(_req(None), transport="websocket")
    assert empty.turn.kind == "other"
    assert not empty.feed_input(None)
    assert await _all(empty) == []
    await _settle()
    assert marks == [1, 2]
    assert _metrics(server, "webex_byova_turns") == {
        "webex_byova_turns_total{outcome=completed,transport=websocket}": 2.0,
        "webex_byova_turns_total{outcome=completed,transport=grpc}": 1.0,
    }


async def test_an_empty_first_message_takes_the_kind_of_the_next_input() -> None:
    server, _, _ = _server()

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        event.turn.say(event.digits)

    handle = await server.open_turn(_req(None), transport="grpc")
    assert handle.turn.kind == "other"
    assert handle.feed_input(DtmfIn(digits="7"))
    assert handle.turn.kind == "dtmf"
    handle.caller_done()
    assert await _all(handle) == [_final(PromptSpec(text="7"))]


# ------------------------------------------------------------------------------ handler errors


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({}, _final(PromptSpec(text=APOLOGY))),
        (
            {"error_response": "custom_event"},
            _final(
                output_events=(
                    OutputEventSpec("custom_event", "error_occurred", {"error": "RuntimeError"}),
                )
            ),
        ),
        (
            {"end_call_on_error": True},
            AgentResponse(
                prompts=(PromptSpec(text=APOLOGY),),
                output_events=(OutputEventSpec("session_end", "error_occurred"),),
            ),
        ),
        (
            {"end_call_on_error": True, "error_response": "custom_event"},
            AgentResponse(output_events=(OutputEventSpec("session_end", "error_occurred"),)),
        ),
    ],
)
async def test_a_failing_handler_gets_one_error_answer(
    config: dict[str, Any], expected: AgentResponse
) -> None:
    server, _, _ = _server(**config)

    @server.on("session_start")
    def first(event: Any) -> None:
        event.turn.say("lost")  # a failing handler's prompts still go out before the apology
        raise RuntimeError("boom")

    @server.on("session_start")
    def second(event: Any) -> None:  # pragma: no cover - the chain stops at the failure
        raise AssertionError("not reached")

    handle = await server.open_turn(_req(START), transport="websocket")
    responses = await _all(handle)
    lost = PromptSpec(text="lost")
    assert responses == [
        AgentResponse(
            response_type=expected.response_type,
            prompts=(lost, *expected.prompts),
            output_events=expected.output_events,
            settings=expected.settings,
        )
    ]
    ended = bool(config.get("end_call_on_error"))
    assert handle.session.ended is ended
    await _settle()
    outcome = "error"
    assert _metrics(server, "webex_byova_turns", "webex_byova_handler") == {
        f"webex_byova_turns_total{{outcome={outcome},transport=websocket}}": 1.0,
        "webex_byova_handler_errors_total{transport=websocket}": 1.0,
    }


async def test_a_stuck_handler_is_cancelled_and_answered_as_a_timeout() -> None:
    server, clock, _ = _server(handler_timeout_s=0.02)
    cancelled: list[bool] = []
    errors: list[str] = []

    @server.on("dtmf_input")
    async def stuck(event: Any) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    @server.on("error")
    def failed(event: Any) -> None:
        errors.append(str(event.exception))

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    clock.now += 0.02  # the hub's clock decides whether the reply is overdue
    assert await _all(handle) == [_final(PromptSpec(text=APOLOGY))]
    await _settle()
    assert cancelled == [True]
    assert errors == ["no reply to dtmf_input within handler_timeout_s=0.02; handler cancelled"]
    assert _metrics(server, "webex_byova_turns", "webex_byova_handler") == {
        "webex_byova_turns_total{outcome=timeout,transport=websocket}": 1.0,
        "webex_byova_handler_timeouts_total{transport=websocket}": 1.0,
    }


# ------------------------------------------------------------------------------ collect_input


async def test_collect_input_sends_the_final_and_takes_the_next_input() -> None:
    server, _, _ = _server()
    got: list[Any] = []
    dispatched: list[str] = []

    @server.on("session_start")
    async def ask(event: Any) -> None:
        event.turn.say("Your PIN?")
        answer = await event.turn.collect_input()
        got.append((type(answer).__name__, answer.digits, answer.turn.index))
        answer.turn.say(f"PIN {answer.digits}")

    @server.on("dtmf_input")
    def not_here(event: Any) -> None:
        dispatched.append(event.digits)

    assert await _ws(server, START) == [_final(PromptSpec(text="Your PIN?"))]
    assert await _ws(server, DtmfIn(digits="1234")) == [_final(PromptSpec(text="PIN 1234"))]
    assert got == [("DtmfInput", "1234", 2)]
    assert dispatched == []
    assert await _ws(server, DtmfIn(digits="5")) == [_final()]
    assert dispatched == ["5"]


async def test_collect_input_refuses_a_second_waiter_and_times_out() -> None:
    server, _, _ = _server()
    outcomes: list[str] = []

    @server.on("session_start")
    async def ask(event: Any) -> None:
        session = event.session
        waiter = asyncio.get_running_loop().create_task(session.collect_input())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError) as caught:
            await session.collect_input()
        assert str(caught.value) == "another handler is already waiting in collect_input()"
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        with pytest.raises(TimeoutError):
            await session.collect_input(timeout=0.001)
        outcomes.append("timed out")

    assert await _ws(server, START) == [_final()]  # the waiting handler let the FINAL go
    for _ in range(1000):
        if outcomes:
            break
        await asyncio.sleep(0.001)
    assert outcomes == ["timed out"]


async def test_collect_input_fails_when_the_conversation_ends() -> None:
    server, _, _ = _server()
    errors: list[str] = []

    @server.on("session_start")
    async def ask(event: Any) -> None:
        try:
            await event.turn.collect_input()
        except SessionEndedError as exc:
            errors.append(str(exc))
        with pytest.raises(SessionEndedError) as caught:
            await event.session.collect_input()
        errors.append(str(caught.value))

    assert await _ws(server, START) == [_final()]
    assert server.end_conversation("c1", reason="gone")
    await _settle()
    assert errors == ["conversation ended: gone", "conversation c1 has ended"]


# ------------------------------------------------------------------------ session-level calls


async def test_session_calls_answer_on_the_current_turn_or_refuse() -> None:
    server, _, _ = _server()

    @server.on("session_start")
    def via_session(event: Any) -> None:
        session = event.session
        assert session.current_turn is event.turn
        session.say("from session")
        assert session.set_input() == DEFAULT  # no change
        settings = session.set_input(
            "voice",
            dtmf_length=2,
            inter_digit_timeout_ms=1,
            terminator="d",
            complete_timeout_ms=2,
            incomplete_timeout_ms=3,
            max_speech_timeout_ms=4,
            no_input_timeout_ms=5,
            sensitive=False,
        )
        assert settings == InputSettings(
            mode="voice",
            dtmf_input_length=2,
            dtmf_inter_digit_timeout_ms=1,
            dtmf_terminator="D",
            complete_timeout_ms=2,
            incomplete_timeout_ms=3,
            max_speech_timeout_ms=4,
            no_input_timeout_ms=5,
        )
        assert event.turn.set_input(no_input_timeout_ms=6).no_input_timeout_ms == 6
        for kwargs, message in [
            ({"mode": 1}, "set_input(mode=) must be a str, got int"),
            ({"terminator": 1}, "set_input(terminator=) must be a str, got int"),
            ({"sensitive": 1}, "set_input(sensitive=) must be a bool, got int"),
            ({"dtmf_length": True}, "set_input(dtmf_length=) must be an int, got bool"),
            (
                {"no_input_timeout_ms": 1.5},
                "set_input(no_input_timeout_ms=) must be an int, got float",
            ),
        ]:
            with pytest.raises(TypeError) as caught:
                session.set_input(**kwargs)
            assert str(caught.value) == message
        with pytest.raises(ValueError, match="unknown input mode"):
            session.set_input("both")

    responses = await _ws(server, START)
    assert responses == [
        _final(
            PromptSpec(text="from session"),
            settings=InputSettings(
                mode="voice",
                dtmf_input_length=2,
                dtmf_inter_digit_timeout_ms=1,
                dtmf_terminator="D",
                complete_timeout_ms=2,
                incomplete_timeout_ms=3,
                max_speech_timeout_ms=4,
                no_input_timeout_ms=6,
            ),
        )
    ]
    session = server.sessions["c1"]
    assert session.current_turn is None
    for call in (session.say, session.transfer_to_agent, session.end_session):
        with pytest.raises(TurnFinishedError) as caught:
            call("x")
        assert str(caught.value) == "conversation c1 has no open turn to answer on"
    assert repr(session) == (
        "Session(conversation_id='c1', virtual_agent_id='agent-1', turns=1, ended=False)"
    )
    assert session.settings is session.record.settings
    assert session.state is session.record.user_state
    with pytest.raises(TypeError, match="plain data only"):
        session.state["x"] = object()


async def test_session_transfer_uses_the_newest_open_turn() -> None:
    server, _, _ = _server()

    @server.on("session_start")
    def transfer(event: Any) -> None:
        event.session.transfer_to_agent()

    assert await _ws(server, START) == [
        AgentResponse(output_events=(OutputEventSpec("transfer_to_agent", "transfer_requested"),))
    ]


# ---------------------------------------------------------------------------------- audio turns


async def _audio_turn(
    server: BYOVAMediaServer,
    frames: list[AudioIn],
    transport: str = "websocket",
    *,
    half_close: bool = False,
) -> tuple[TurnHandle, list[AgentResponse], list[AudioIn]]:
    """Feed ``frames`` until the turn refuses one; the handle, responses, refused frames."""
    handle = await server.open_turn(_req(frames[0]), transport=transport)  # type: ignore[arg-type]
    pump = asyncio.get_running_loop().create_task(_all(handle))
    refused: list[AudioIn] = []
    for i, frame in enumerate(frames[1:], 1):
        if not handle.feed_input(frame):
            refused = frames[i:]
            break
        await handle.drain()
        await _settle()  # let handlers run as real time would between frames
    if half_close:
        handle.caller_done()
    elif transport == "grpc":
        await _settle()
        handle.caller_done()
    return handle, await pump, refused


async def test_websocket_audio_turn_boundaries_utterance_and_final_exactly() -> None:
    events = {20: [_started(20)], 30: [_ended(620.0, 600.0 - 120)]}
    server, clock, made = _server(events)
    heard: list[Any] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append((event.pcm16, event.sample_rate, event.reason, event.language_code))
        clock.now += 0.5
        event.turn.say("heard")

    frames = _frames(40, language_code="en-US", encoding="mulaw", sample_rate_hz=8000)
    handle, responses, refused = await _audio_turn(server, frames)
    assert responses == [
        AgentResponse(response_type="chunk", output_events=(OutputEventSpec("start_of_input"),)),
        AgentResponse(
            response_type="chunk",
            output_events=(OutputEventSpec("end_of_input", "end_of_input"),),
        ),
        _final(PromptSpec(text="heard")),
    ]
    assert refused == frames[31:]  # the frame after END_OF_INPUT opens the next turn
    # 300 ms of preroll (15 frames) before the start, then every frame up to the end
    assert heard == [(_pcm(frames[6:31]), 8000, "silence", "en-US")]
    assert made[0].sample_rate == 8000
    assert made[0].fed == 31
    await _settle()
    assert _metrics(server, "webex_byova_end_of_input", "webex_byova_frames_received") == {
        "webex_byova_end_of_input_delay_seconds_count{transport=websocket}": 1.0,
        "webex_byova_end_of_input_delay_seconds_sum{transport=websocket}": 0.14,
        "webex_byova_frames_received_total{transport=websocket}": 31.0,
    }
    latency = _metrics(server, "webex_byova_turn_latency")
    assert latency["webex_byova_turn_latency_seconds_sum{transport=websocket}"] == 0.5
    assert handle.turn.outcome == "completed"


@pytest.mark.parametrize(
    ("boundary", "response_type"), [("FINAL", "final"), ("CHUNK", "chunk"), ("PARTIAL", "partial")]
)
async def test_grpc_boundaries_follow_boundary_response_type(
    boundary: str, response_type: str
) -> None:
    events = {2: [_started(2)], 4: [_ended(100.0, 60.0, "max_speech")]}
    server, _, _ = _server(events, boundary_response_type=boundary)
    reasons: list[str] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        reasons.append(event.reason)

    frames = _frames(8)
    handle, responses, refused = await _audio_turn(server, frames, "grpc")
    standalone = response_type == "final"
    settings = DEFAULT if standalone else None
    assert responses == [
        AgentResponse(
            response_type=response_type,  # type: ignore[arg-type]
            output_events=(OutputEventSpec("start_of_input"),),
            settings=settings,
            omit_input_mode=standalone,
        ),
        AgentResponse(
            response_type=response_type,  # type: ignore[arg-type]
            output_events=(OutputEventSpec("end_of_input", "end_of_input"),),
            settings=settings,
        ),
        _final(),
    ]
    assert refused == frames[5:]  # gRPC too takes no frame after the FINAL
    assert reasons == ["max_speech"]


async def test_frames_after_the_end_of_input_are_dropped_and_counted() -> None:
    events = {1: [_started(1)], 2: [_ended(60.0, 40.0)]}
    server, _, _ = _server(events)
    gate = asyncio.Event()

    @server.on("utterance")
    async def slow(event: Any) -> None:
        await gate.wait()

    handle = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    pump = asyncio.get_running_loop().create_task(_all(handle))
    for frame in _frames(5):
        assert handle.feed_input(frame)  # the reply is not out: still this RPC's
    gate.set()
    await _settle()
    handle.caller_done()
    await pump
    await _settle()
    assert _metrics(server, "webex_byova_frames_dropped", "webex_byova_frames_received") == {
        "webex_byova_frames_dropped_total{reason=after_close,transport=grpc}": 3.0,
        "webex_byova_frames_received_total{transport=grpc}": 6.0,
    }


async def test_bad_frames_are_dropped_by_reason() -> None:
    server, _, made = _server(min_frame_bytes=15)
    handle = await server.open_turn(_req(AudioIn(audio=b"\xff" * 14)), transport="grpc")
    turn = handle.turn
    for item in [
        AudioIn(audio=b"\xff" * 15),  # the first one kept: rate fixed at 8000
        AudioIn(audio=b"\xff" * 65537),
        AudioIn(audio=b"\xff" * 65536),
        AudioIn(audio=b"\xff" * 160, sample_rate_hz=11025),
        AudioIn(audio=b"\xff" * 160, sample_rate_hz=16000),  # another rate mid-turn
        AudioIn(audio=b"\xff" * 160, encoding="opus"),  # type: ignore[arg-type]
        AudioIn(audio=b"", sample_rate_hz=8000),
        AudioIn(audio=b"\xff" * 65537),
    ]:
        assert handle.feed_input(item)
    assert turn._dropped == {"small": 2, "large": 2, "empty": 0, "bad": 3, "after_close": 0}
    assert made[0].fed == 2
    turn.end_input()  # the handler ends the input: END_OF_INPUT although nobody spoke
    handle.caller_done()
    responses = await _all(handle)
    assert responses == [
        AgentResponse(
            response_type="final",
            output_events=(OutputEventSpec("end_of_input", "end_of_input"),),
            settings=DEFAULT,
        ),
        _final(),
    ]
    await _settle()
    assert _metrics(server, "webex_byova_frames_dropped", "webex_byova_frames_received") == {
        "webex_byova_frames_dropped_total{reason=small,transport=grpc}": 2.0,
        "webex_byova_frames_dropped_total{reason=large,transport=grpc}": 2.0,
        "webex_byova_frames_dropped_total{reason=bad_rate,transport=grpc}": 3.0,
        "webex_byova_frames_received_total{transport=grpc}": 9.0,
    }


async def test_declared_encoding_and_rate_carry_over_and_audio_input_events() -> None:
    server, _, made = _server(input_sample_rate=8000)
    seen: list[Any] = []

    @server.on("audio_input")
    def each(event: Any) -> None:
        seen.append(
            (event.audio, event.pcm16, event.encoding, event.sample_rate, event.offset_ms,
             event.language_code)
        )  # fmt: skip

    alaw = audio.frame_decoder(audio.AudioEncoding.ALAW)
    first = AudioIn(audio=b"", encoding="alaw", sample_rate_hz=16000, language_code="de-DE")
    handle = await server.open_turn(_req(first), transport="grpc")
    frames = [AudioIn(audio=b"\x10" * 320), AudioIn(audio=b"\x11" * 160)]
    for frame in frames:
        assert handle.feed_input(frame)
        await handle.drain()
    handle.caller_done()
    assert await _all(handle) == [_final()]  # nobody spoke: the half-close gets the reply
    assert made[0].sample_rate == 16000
    assert seen == [
        (b"\x10" * 320, alaw(b"\x10" * 320), "ALAW", 16000, 0.0, "de-DE"),
        (b"\x11" * 160, alaw(b"\x11" * 160), "ALAW", 16000, 20.0, "de-DE"),
    ]


async def test_half_close_mid_speech_ends_the_utterance() -> None:
    server, _, _ = _server({0: [_started(0)]})
    heard: list[Any] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append((event.reason, event.pcm16))
        event.turn.say("cut")

    frames = _frames(3)
    handle, responses, _ = await _audio_turn(server, frames, "grpc", half_close=True)
    assert responses == [
        AgentResponse(
            output_events=(OutputEventSpec("start_of_input"),),
            settings=DEFAULT,
            omit_input_mode=True,
        ),
        AgentResponse(
            output_events=(OutputEventSpec("end_of_input", "end_of_input"),), settings=DEFAULT
        ),
        _final(PromptSpec(text="cut")),
    ]
    assert heard == [("half_close", _pcm(frames))]


async def test_utterance_audio_is_bounded_by_max_utterance_ms() -> None:
    server, _, _ = _server({0: [_started(0)], 70: [_ended(1420.0, 1400.0)]}, max_utterance_ms=1000)
    heard: list[bytes] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append(event.pcm16)

    frames = _frames(80)
    await _audio_turn(server, frames)
    assert heard == [_pcm(frames[:50])]  # 1000 ms at 8 kHz: 50 frames of 20 ms


async def test_one_detector_per_conversation_reset_between_audio_turns() -> None:
    server, _, made = _server({1: [_started(1)], 2: [_ended(60.0, 40.0)]})

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("ok")

    for _ in range(2):
        _, responses, _ = await _audio_turn(server, _frames(3))
        assert responses[-1] == _final(PromptSpec(text="ok"))
    assert (len(made), made[0].resets) == (1, 1)
    server.sessions["c1"].set_input(complete_timeout_ms=500)
    await _audio_turn(server, _frames(3))
    assert (len(made), made[1].resets) == (2, 0)
    await _audio_turn(server, _frames(3, sample_rate_hz=16000))
    assert (len(made), made[2].sample_rate) == (3, 16000)


async def test_wav_prompt_with_barge_in_is_interrupted_by_speech_in_time() -> None:
    server, clock, _ = _server({0: [_started(0)]})
    barged: list[Any] = []

    @server.on("session_start")
    def prompt(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 8000, barge_in=True)  # one second at 8 kHz

    @server.on("barge_in")
    def cut(event: Any) -> None:
        barged.append((event.source, event.interrupted.index, event.turn.index))

    assert await _ws(server, START) == [
        _final(PromptSpec(audio=audio.make_wav(b"\x01" * 8000), barge_in=True))
    ]
    clock.now += 0.9
    handle = await server.open_turn(_req(_frames(1)[0]), transport="websocket")
    await _settle()
    assert barged == [("speech", 1, 2)]
    handle.caller_gone()
    await _all(handle)
    dtmf = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="websocket")
    await _all(dtmf)
    await _settle()
    assert barged == [("speech", 1, 2)]  # reported once


async def test_wav_prompt_is_not_interrupted_after_it_played() -> None:
    server, clock, _ = _server()
    barged: list[Any] = []

    @server.on("session_start")
    def prompt(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 8000, barge_in=True)

    @server.on("barge_in")
    def cut(event: Any) -> None:
        barged.append(event.source)

    await _ws(server, START)
    clock.now += 1.0  # exactly when the one-second prompt has played
    dtmf = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="websocket")
    await _all(dtmf)
    await _settle()
    assert barged == []


async def test_caller_gone_mid_audio_turn_is_cancelled_and_counted() -> None:
    server, _, _ = _server()
    handle = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    assert handle.feed_input(_frames(1)[0])
    handle.caller_gone()
    handle.caller_gone()
    assert handle.closed
    assert not handle.feed_input(_frames(1)[0])
    assert await _all(handle) == []
    assert handle.turn.outcome == "cancelled"
    await _settle()
    assert _metrics(server, "webex_byova_turns", "webex_byova_frames_received") == {
        "webex_byova_turns_total{outcome=cancelled,transport=grpc}": 1.0,
        "webex_byova_frames_received_total{transport=grpc}": 2.0,
    }


@pytest.mark.parametrize("transport", ["websocket", "grpc"])
async def test_a_reply_of_several_unawaited_streams_still_gets_its_final(transport: str) -> None:
    """A handler that queues two CHUNK prompts and returns without awaiting them: the FINAL
    follows the last chunk without a half-close (Cisco's client half-closes only after it)."""
    server, _, _ = _server(audio_mode="chunk")

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 640)
        event.turn.play_audio(b"\x02" * 640)

    handle = await server.open_turn(_req(START), transport=transport)  # type: ignore[arg-type]
    stream = handle.responses()
    firsts = [await asyncio.wait_for(anext(stream), 5) for _ in range(3)]
    assert firsts == [
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x01" * 640),)),
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x02" * 640),)),
        _final(),
    ]
    handle.caller_done()
    assert [r async for r in stream] == []
    assert handle.turn.outcome == "completed"


async def test_a_wav_reply_of_several_unawaited_streams_still_gets_its_final() -> None:
    server, _, _ = _server()

    async def pieces(code: int) -> AsyncIterator[bytes]:
        await asyncio.sleep(0)
        yield bytes([code]) * 100

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.stream(pieces(1))
        event.turn.stream(pieces(2))

    handle = await server.open_turn(_req(START), transport="websocket")
    responses = await asyncio.wait_for(_all(handle), 5)
    assert responses == [
        _final(
            PromptSpec(audio=audio.make_wav(b"\x01" * 100)),
            PromptSpec(audio=audio.make_wav(b"\x02" * 100)),
        )
    ]


# ------------------------------------------------------------------------- TurnHandle details


class _SlowStore(InMemoryConversationStore):
    """A store whose writes wait for ``gate`` (a shared store writes in a task)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.puts = 0

    async def put(self, record: ConversationRecord) -> None:
        await self.gate.wait()
        self.puts += 1
        await super().put(record)


async def test_saved_waits_for_the_record_write_but_only_so_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    store = _SlowStore()
    server = BYOVAMediaServer(make_config(), agents=["agent-1"], store=store)
    handle = await server.open_turn(_req(START), transport="websocket")
    await handle.saved()  # nothing written for this turn yet: returns at once
    assert await _all(handle) == [_final()]
    with pytest.raises(RuntimeError) as caught:
        await _all(handle)
    assert str(caught.value) == "responses() of a turn may be iterated only once"
    waiting = asyncio.get_running_loop().create_task(handle.saved())
    await _settle()
    assert not waiting.done()  # the write of this turn's record is still running
    store.gate.set()
    await asyncio.wait_for(waiting, 5)
    assert store.puts == 2  # the new conversation, then the turn's end
    await handle.saved()  # done already: returns at once
    store.gate.clear()
    monkeypatch.setattr(_frontend, "SAVE_WAIT_S", 0.01)
    stuck = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    await _all(stuck)
    await asyncio.wait_for(stuck.saved(), 5)  # bounded although the write never finishes
    store.gate.set()


async def test_caller_gone_before_the_responses_reports_the_turn_at_once() -> None:
    server, _, _ = _server()
    ended: list[str] = []

    @server.on("turn_ended")
    def done(event: Any) -> None:
        ended.append(event.outcome)

    handle = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    handle.caller_gone()
    await _settle()
    assert ended == ["cancelled"]  # without anyone iterating responses()
    assert server._open_rpcs == 0
    assert await _all(handle) == []
    await _settle()
    assert ended == ["cancelled"]


async def test_a_half_close_after_the_caller_went_away_changes_nothing() -> None:
    server, _, _ = _server({0: [_started(0)]})
    heard: list[str] = []

    @server.on("utterance")
    def reply(event: Any) -> None:  # pragma: no cover - must not run
        heard.append(event.reason)

    handle = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    pump = asyncio.get_running_loop().create_task(_all(handle))
    await _settle()
    handle.caller_gone()
    handle.caller_done()  # mid-speech, but the turn is over: no utterance
    assert await pump == [
        AgentResponse(
            output_events=(OutputEventSpec("start_of_input"),),
            settings=DEFAULT,
            omit_input_mode=True,
        )
    ]
    await _settle()
    assert heard == []
    assert not handle.turn._half_closed


# ----------------------------------------------------------------- drain, barge-in, backlog


@pytest.mark.parametrize(
    ("action", "event"),
    [("end_session", "session_end"), ("transfer_to_agent", "transfer_to_agent")],
)
async def test_drain_ends_live_conversations_on_the_open_turn_or_the_next(
    action: str, event: str
) -> None:
    server, _, _ = _server(drain_action=action)
    await server.start()
    ending = AgentResponse(output_events=(OutputEventSpec(event, "server_draining"),))  # type: ignore[arg-type]
    try:
        open_turn = await server.open_turn(_req(_frames(1)[0], "a"), transport="websocket")
        assert await _ws(server, START, "b") == [_final()]
        assert await server.drain(drain_timeout_s=0) == 1
        assert await _all(open_turn) == [ending]
        hangup = await server.open_turn(
            _req(EventIn(type="session_end"), "b"), transport="websocket"
        )  # a hang-up is not turned into the drain's answer
        assert await _all(hangup) == [
            AgentResponse(
                output_events=(OutputEventSpec("session_end", "session_ended_by_client"),)
            )
        ]
        with pytest.raises(_frontend.CallRejected) as caught:
            await server.open_turn(_req(START, "c"), transport="websocket")
        assert caught.value.kind == "unavailable"
    finally:
        await server.stop(grace=0.1)


async def test_drain_counts_each_conversation_it_ended_once() -> None:
    """One conversation ended on its open turn, one on the turn it opened within ``grace``:
    two. (The one ended on its open turn was counted again once its FINAL had ended it.)"""
    server, _, _ = _server(drain_action="end_session")
    await server.start()
    ending = AgentResponse(output_events=(OutputEventSpec("session_end", "server_draining"),))
    try:
        open_turn = await server.open_turn(_req(_frames(1)[0], "a"), transport="websocket")
        pump = asyncio.get_running_loop().create_task(_all(open_turn))
        assert await _ws(server, START, "b") == [_final()]
        drain = asyncio.get_running_loop().create_task(server.drain(0.01, grace=2.0))
        assert await pump == [ending]  # ended on its open turn at the drain deadline
        late = await server.open_turn(_req(DtmfIn(digits="1"), "b"), transport="websocket")
        assert await _all(late) == [ending]
        assert await drain == 2
    finally:
        await server.stop(grace=0.1)


async def test_drain_answers_the_next_turn_of_a_conversation_without_an_open_one() -> None:
    server, _, _ = _server(drain_action="end_session")
    await server.start()
    try:
        assert await _ws(server, START, "b") == [_final()]
        assert await server.drain(drain_timeout_s=0) == 0
        marker = _req(EventIn(type="start_of_dtmf"), "b")
        late = await server.open_turn(marker, transport="websocket")
        assert not late.feed(_req(DtmfIn(digits="1"), "b"))  # its first message was handled
        assert await _all(late) == [
            AgentResponse(output_events=(OutputEventSpec("session_end", "server_draining"),))
        ]
    finally:
        await server.stop(grace=0.1)


async def test_speech_on_another_turn_cuts_a_barge_in_chunk_stream() -> None:
    server, _, _ = _server({0: [_started(0)]}, audio_mode="chunk")
    gate = asyncio.Event()
    played: list[bool] = []
    barged: list[Any] = []

    async def source(code: int) -> AsyncIterator[bytes]:
        yield bytes([code]) * 640
        await gate.wait()
        yield bytes([code]) * 50  # a short tail: cut as well

    @server.on("dtmf_input")
    async def play(event: Any) -> None:
        played.append(await event.turn.stream(source(int(event.digits)), barge_in=True))

    @server.on("barge_in")
    def cut(event: Any) -> None:
        barged.append((event.source, event.interrupted.index, event.turn.index))

    assert await _ws(server, START) == [_final()]
    prompt = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    prompt.caller_done()
    pump = asyncio.get_running_loop().create_task(_all(prompt))
    await _settle()
    speech = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    await _settle()
    gate.set()
    assert await pump == [
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x01" * 640),)),
        _final(),
    ]
    assert played == [False]
    assert barged == [("speech", 2, 3)]
    speech.caller_gone()
    await _all(speech)


async def test_speech_does_not_cut_a_stream_without_barge_in() -> None:
    server, _, _ = _server({0: [_started(0)]}, audio_mode="chunk")
    gate = asyncio.Event()
    played: list[bool] = []
    barged: list[Any] = []

    async def source() -> AsyncIterator[bytes]:
        yield b"\x01" * 640
        await gate.wait()
        yield b"\x02" * 640

    @server.on("dtmf_input")
    async def play(event: Any) -> None:
        played.append(await event.turn.stream(source()))

    @server.on("barge_in")
    def cut(event: Any) -> None:  # pragma: no cover - must not run
        barged.append(event)

    prompt = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    prompt.caller_done()
    pump = asyncio.get_running_loop().create_task(_all(prompt))
    await _settle()
    speech = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    await _settle()
    gate.set()
    assert [r.prompts[0].audio[:1] for r in (await pump)[:2]] == [b"\x01", b"\x02"]
    assert played == [True]
    assert barged == []
    speech.caller_gone()
    await _all(speech)


async def test_audio_input_backlog_holds_the_reader_until_handlers_catch_up() -> None:
    server, _, _ = _server(response_queue_size=4)
    gate = asyncio.Event()
    seen: list[float] = []

    @server.on("audio_input")
    async def slow(event: Any) -> None:
        await gate.wait()
        seen.append(event.offset_ms)

    handle = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    for frame in _frames(4):
        assert handle.feed_input(frame)
    waiting = asyncio.get_running_loop().create_task(handle.drain())
    await _settle()
    assert not waiting.done()  # five events queued, one taken by the blocked handler
    gate.set()
    await asyncio.wait_for(waiting, 5)
    handle.caller_done()
    assert await _all(handle) == [_final()]
    assert seen == [0.0, 20.0, 40.0, 60.0, 80.0]


async def test_overlapping_audio_turns_get_a_private_detector() -> None:
    server, _, made = _server()
    first = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    second = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    assert len(made) == 2
    for handle in (first, second):
        handle.caller_gone()
        await _all(handle)
    third = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    assert (len(made), made[0].resets, made[1].resets) == (2, 1, 0)
    third.caller_gone()
    await _all(third)


async def test_a_conversation_ending_on_one_turn_drops_its_other_open_turns() -> None:
    server, _, _ = _server(audio_mode="chunk")
    played: list[bool] = []

    @server.on("dtmf_input")
    def transfer(event: Any) -> None:
        event.turn.transfer_to_agent()

    listening = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    played_future = listening.turn.say(audio=b"\x01" * 640)
    finished = listening.turn.finish()
    idle = await server.open_turn(_req(_frames(1)[0]), transport="grpc")  # no finish()
    ending = await server.open_turn(_req(DtmfIn(digits="0")), transport="grpc")
    assert await _all(ending) == [
        AgentResponse(output_events=(OutputEventSpec("transfer_to_agent", "transfer_requested"),))
    ]
    assert listening.turn.finish().result() is False  # dropped, not yet closed
    assert not listening.feed_input(_frames(1)[0])  # a dropped turn takes no more input
    assert await _all(listening) == []  # completed without a FINAL
    assert await _all(idle) == []
    await _settle()
    assert _metrics(server, "webex_byova_turns") == {
        "webex_byova_turns_total{outcome=transfer,transport=grpc}": 1.0,
        "webex_byova_turns_total{outcome=cancelled,transport=grpc}": 2.0,
    }
    assert listening.turn.outcome == "terminal"
    played.extend([played_future.result(), finished.result()])
    assert played == [False, False]
    assert not listening.feed_input(_frames(1)[0])


async def test_the_reply_timer_rearms_until_the_hub_clock_says_overdue() -> None:
    server, clock, _ = _server(handler_timeout_s=0.01)

    @server.on("dtmf_input")
    async def stuck(event: Any) -> None:
        await asyncio.Event().wait()

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    await asyncio.sleep(0.05)  # the timer fired on the loop's clock; the hub's did not move
    assert not handle.turn.finished
    clock.now += 0.01
    assert await _all(handle) == [_final(PromptSpec(text=APOLOGY))]


async def test_realtime_pacing_counts_each_chunk_sent_after_its_slot_once() -> None:
    """With ``pacing_lead_ms=0`` a late chunk used to wait a float residue and count again."""
    clock = StepClock(0.2)
    server = BYOVAMediaServer(
        make_config(audio_mode="chunk", realtime_pacing=True, pacing_lead_ms=0),
        agents=["agent-1"],
        clock=clock,
    )

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 1920)

    responses = await _ws(server, START)
    assert [len(r.prompts[0].audio) for r in responses[:-1]] == [640, 640, 640]
    await _settle()
    assert _metrics(server, "webex_byova_frames_late", "webex_byova_frames_sent") == {
        "webex_byova_frames_late_total{transport=websocket}": 2.0,
        "webex_byova_frames_sent_total{transport=websocket}": 3.0,
    }


class StepClock(Clock):
    """A clock that moves ``step`` seconds every time it is read."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


# ------------------------------------------------------------------------------- edge paths


async def test_finish_again_after_the_final_went_out_on_an_open_grpc_turn() -> None:
    server, _, _ = _server()
    results: list[bool] = []
    sent = asyncio.Event()

    @server.on("session_start")
    async def twice(event: Any) -> None:
        results.append(await event.turn.finish())
        sent.set()
        results.append(await event.turn.finish())  # FINAL out, RPC still open: True at once
        assert not event.turn.closed

    handle = await server.open_turn(_req(START), transport="grpc")
    pump = asyncio.get_running_loop().create_task(_all(handle))
    await asyncio.wait_for(sent.wait(), 5)
    await _settle()
    assert results == [True, True]
    assert not pump.done()  # waiting for the half-close
    handle.caller_done()
    assert await pump == [_final()]


async def test_terminal_calls_and_end_input_on_a_closed_or_other_turn_do_nothing() -> None:
    server, _, _ = _server()
    gate = asyncio.Event()
    results: list[Any] = []

    @server.on("dtmf_input")
    async def late(event: Any) -> None:
        event.turn.end_input()  # not an audio turn: no END_OF_INPUT
        await gate.wait()
        results.append(await event.turn.end_session("bye"))
        results.append(await event.turn.transfer_to_agent())
        event.turn.end_input()
        event.turn.custom_event("ignored")
        event.turn.set_input("dtmf")
        results.append(event.session.settings.mode)

    handle = await server.open_turn(_req(DtmfIn(digits="1")), transport="websocket")
    await _settle()
    handle.caller_gone()
    gate.set()
    await _settle()
    assert await _all(handle) == []
    assert results == [False, False, "dtmf"]
    assert not handle.session.ended


async def test_end_input_twice_sends_one_end_of_input() -> None:
    server, _, _ = _server()
    reasons: list[str] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        reasons.append(event.reason)
        event.turn.say("ok")

    handle = await server.open_turn(_req(_frames(1)[0]), transport="websocket")
    handle.turn.end_input()
    handle.turn.end_input()
    assert await _all(handle) == [
        AgentResponse(
            response_type="chunk",
            output_events=(OutputEventSpec("end_of_input", "end_of_input"),),
        ),
        _final(PromptSpec(text="ok")),
    ]
    assert reasons == ["handler"]


async def test_a_cut_turn_skips_its_later_barge_in_streams_but_plays_the_others() -> None:
    """A prompt without barge-in played whole after a cut resolves True (it said False)."""
    server, _, _ = _server({0: [_started(0)]}, audio_mode="chunk")
    gate = asyncio.Event()
    played: list[Any] = []

    async def source() -> AsyncIterator[bytes]:
        yield b"\x01" * 640
        await gate.wait()
        yield b"\x01" * 640

    @server.on("dtmf_input")
    async def play(event: Any) -> None:
        first = event.turn.stream(source(), barge_in=True)
        second = event.turn.play_audio(b"\x02" * 640, barge_in=True)
        third = event.turn.play_audio(b"\x03" * 640)  # no barge-in: still played
        played.extend([await first, await second, await third])

    prompt = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    prompt.caller_done()
    pump = asyncio.get_running_loop().create_task(_all(prompt))
    await _settle()
    speech = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    await _settle()
    gate.set()
    assert [r.prompts[0].audio[:1] if r.prompts else b"" for r in await pump] == [
        b"\x01",
        b"\x03",
        b"",
    ]
    assert played == [False, False, True]
    speech.caller_gone()
    await _all(speech)


async def test_a_source_raising_its_own_timeout_is_a_plain_source_error() -> None:
    server, _, _ = _server(audio_mode="chunk", handler_timeout_s=5.0)
    errors: list[str] = []

    async def broken() -> AsyncIterator[bytes]:
        raise TimeoutError("tts read timed out")
        yield b""  # pragma: no cover

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.stream(broken())

    @server.on("error")
    def failed(event: Any) -> None:
        errors.append(f"{type(event.exception).__name__}: {event.exception}")

    assert await _ws(server, START) == [_final(PromptSpec(text=APOLOGY))]
    assert errors == ["TimeoutError: tts read timed out"]


async def test_turn_log_lines_carry_the_conversation_and_turn(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = _server()
    assert await _ws(server, START, "c\n9") == [_final()]
    with caplog.at_level(logging.INFO, logger="webex_byova.media"):
        again = await server.open_turn(_req(START, "c\n9"), transport="websocket", tracking_id="t1")
        assert await _all(again) == []
    (record,) = [r for r in caplog.records if "duplicate" in r.getMessage()]
    assert record.getMessage() == "[c\\n9 #2] duplicate SESSION_START ignored"
    assert (record.conversation_id, record.trackingid, record.turn) == ("c\\n9", "t1", 2)  # type: ignore[attr-defined]


async def test_session_and_turn_shortcuts_pass_every_argument_on() -> None:
    server, _, _ = _server()

    @server.on("session_start")
    def via_session(event: Any) -> None:
        event.session.say(audio_uri="https://x/a.wav", barge_in=True)
        assert event.turn.set_input("dtmf", sensitive=True, dtmf_length=3) == InputSettings(
            mode="dtmf", dtmf_input_length=3, sensitive=True
        )
        for name in (
            "inter_digit_timeout_ms",
            "complete_timeout_ms",
            "incomplete_timeout_ms",
            "max_speech_timeout_ms",
        ):
            with pytest.raises(TypeError) as caught:
                event.session.set_input(**{name: "1"})
            assert str(caught.value) == f"set_input({name}=) must be an int, got str"

    @server.on("dtmf_input")
    def bye(event: Any) -> None:
        if event.digits == "1":
            event.session.end_session("bye", name="done")
        else:
            event.session.transfer_to_agent("hold on", name="agent")

    assert await _ws(server, START) == [
        _final(
            PromptSpec(audio_uri="https://x/a.wav", barge_in=True),
            settings=InputSettings(mode="dtmf", dtmf_input_length=3, sensitive=True),
            input_sensitive=True,
        )
    ]
    assert await _ws(server, DtmfIn(digits="1")) == [
        AgentResponse(
            prompts=(PromptSpec(text="bye"),),
            output_events=(OutputEventSpec("session_end", "done"),),
        )
    ]
    assert len(await _ws(server, START, "c2")) == 1
    assert await _ws(server, DtmfIn(digits="2"), "c2") == [
        AgentResponse(
            prompts=(PromptSpec(text="hold on"),),
            output_events=(OutputEventSpec("transfer_to_agent", "agent"),),
        )
    ]


async def test_half_close_timeout_is_logged_and_terminal_wav_prompts_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = _server(half_close_timeout_s=0.04)
    wav = audio.make_wav(b"\x01" * 200)

    @server.on("session_start")
    def note(event: Any) -> None:
        with pytest.raises(TypeError) as caught:
            event.turn.set_transcript(3)
        assert str(caught.value) == "transcript must be a str or TextSpec, got int"

    @server.on("dtmf_input")
    def transfer(event: Any) -> None:
        event.turn.transfer_to_agent(wav=wav)

    with caplog.at_level(logging.INFO, logger="webex_byova.media"):
        handle = await server.open_turn(_req(START), transport="grpc")
        assert await _all(handle) == [_final()]
    messages = [r.getMessage() for r in caplog.records if "half-close" in r.getMessage()]
    assert messages == ["[c1 #1] no half-close 0.0s after FINAL; completing"]
    assert await _ws(server, DtmfIn(digits="1")) == [
        AgentResponse(
            prompts=(PromptSpec(audio=wav),),
            output_events=(OutputEventSpec("transfer_to_agent", "transfer_requested"),),
        )
    ]


async def test_realtime_pacing_waits_while_ahead_of_playback() -> None:
    clock = StepClock(0.025)  # never exactly on a slot: 0.025 s steps, 80 ms chunks
    server = BYOVAMediaServer(
        make_config(audio_mode="chunk", realtime_pacing=True, pacing_lead_ms=10),
        agents=["agent-1"],
        clock=clock,
    )
    played: list[Any] = []

    @server.on("session_start")
    def speak(event: Any) -> None:
        played.append(event.turn.play_audio(b"\x01" * 1280))

    responses = await _ws(server, START)
    assert responses == [
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x01" * 640),)),
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x01" * 640),)),
        _final(),
    ]
    assert played[0].result() is True
    await _settle()
    assert _metrics(server, "webex_byova_frames_late", "webex_byova_frames_sent") == {
        "webex_byova_frames_sent_total{transport=websocket}": 2.0
    }


async def test_a_paced_barge_in_stream_waiting_for_its_slot_is_cut_at_once() -> None:
    server, _, _ = _server(
        {0: [_started(0)]}, audio_mode="chunk", realtime_pacing=True, pacing_lead_ms=0
    )
    played: list[bool] = []

    @server.on("dtmf_input")
    async def play(event: Any) -> None:
        played.append(await event.turn.play_audio(b"\x01" * 1280, barge_in=True))

    prompt = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    prompt.caller_done()
    pump = asyncio.get_running_loop().create_task(_all(prompt))
    await _settle()  # the first chunk is out; the second waits (the hub's clock is frozen)
    speech = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    assert await asyncio.wait_for(pump, 5) == [
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x01" * 640),)),
        _final(),
    ]
    assert played == [False]
    speech.caller_gone()
    await _all(speech)


async def test_prompt_shortcuts_and_wav_streams_keep_barge_in_and_the_rate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, _, _ = _server(barge_in=True, sample_rate=16000)
    wav = audio.make_wav(
        b"\x00\x00" * 160, sample_rate=16000, encoding=audio.AudioEncoding.LINEAR16
    )

    async def tts() -> AsyncIterator[bytes]:
        yield b"\x02" * 300

    async def broken() -> AsyncIterator[bytes]:
        raise OSError("tts down")
        yield b""  # pragma: no cover

    @server.on("session_start")
    def prompts(event: Any) -> None:
        turn = event.turn
        turn.play_ssml("<s/>", barge_in=False)
        turn.play_wav(wav, barge_in=False)
        turn.stream(b"\x01" * 200, barge_in=False)
        turn.stream(tts())  # the server's barge_in default
        turn.stream(broken(), barge_in=False)

    with caplog.at_level(logging.ERROR, logger="webex_byova.media"):
        responses = await _ws(server, START)
    converted = audio.wav_to_webex(wav, target_rate=16000)
    assert responses == [
        _final(
            PromptSpec(text="<s/>"),
            PromptSpec(audio=audio.make_wav(converted, sample_rate=16000)),
            PromptSpec(audio=audio.make_wav(b"\x01" * 200, sample_rate=16000)),
            PromptSpec(audio=audio.make_wav(b"\x02" * 300, sample_rate=16000), barge_in=True),
            PromptSpec(text=APOLOGY),
        )
    ]
    messages = [r.getMessage() for r in caplog.records if "raised" in r.getMessage()]
    assert messages == ["[c1] prompt audio source raised OSError: tts down"]


async def test_a_handler_waiting_in_session_collect_input_lets_its_turn_answer() -> None:
    server, _, _ = _server()
    got: list[str] = []

    @server.on("session_start")
    async def ask(event: Any) -> None:
        answer = await event.session.collect_input()  # no finish(): the wait alone frees it
        got.append(answer.digits)
        answer.turn.say("got it")

    assert await asyncio.wait_for(_ws(server, START), 5) == [_final()]
    assert await _ws(server, DtmfIn(digits="4")) == [_final(PromptSpec(text="got it"))]
    assert got == ["4"]


async def test_turn_collect_input_passes_its_timeout() -> None:
    server, _, _ = _server()
    outcomes: list[str] = []

    @server.on("session_start")
    async def ask(event: Any) -> None:
        try:
            await event.turn.collect_input(timeout=0.001)
        except TimeoutError:
            outcomes.append("timeout")

    assert await _ws(server, START) == [_final()]
    for _ in range(1000):
        if outcomes:
            break
        await asyncio.sleep(0.001)
    assert outcomes == ["timeout"]


async def test_a_hangup_on_a_turn_with_events_puts_session_end_first() -> None:
    server, _, _ = _server()
    handle = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    handle.turn.custom_event("noted", {"n": 1})
    assert handle.feed(_req(EventIn(type="session_end", name="bye")))
    handle.caller_done()
    assert await _all(handle) == [
        AgentResponse(
            output_events=(
                OutputEventSpec("session_end", "session_ended_by_client"),
                OutputEventSpec("custom_event", "noted", {"n": 1}),
            )
        )
    ]


async def test_speech_after_a_chunk_reply_still_starts_input() -> None:
    server, _, _ = _server({0: [_started(0)]}, audio_mode="chunk")

    @server.on("session_start")
    def speak(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 640, barge_in=True)

    handle = await server.open_turn(_req(START), transport="grpc")
    stream = handle.responses()
    assert [await anext(stream), await anext(stream)] == [
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x01" * 640),)),
        _final(),
    ]
    speech = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    pump = asyncio.get_running_loop().create_task(_all(speech))
    await _settle()
    speech.caller_gone()
    assert await pump == [
        AgentResponse(
            output_events=(OutputEventSpec("start_of_input"),),
            settings=DEFAULT,
            omit_input_mode=True,
        )
    ]
    handle.caller_done()
    assert [r async for r in stream] == []


async def test_a_websocket_hangup_during_an_audio_turn_is_acknowledged() -> None:
    """SESSION_END arriving on an open audio turn (the caller hung up mid-utterance) is that
    turn's input: its terminal FINAL goes out at once (WebSocket has no half-close to wait
    for; the turn used to hang with the conversation already ended)."""
    server, _, _ = _server({0: [_started(0)]})
    ended: list[str] = []

    @server.on("session_end")
    def gone(event: Any) -> None:
        ended.append(event.reason)

    handle = await server.open_turn(_req(_frames(1)[0]), transport="websocket")
    assert handle.feed(_req(EventIn(type="session_end", name="hangup")))
    assert await asyncio.wait_for(_all(handle), 5) == [
        AgentResponse(response_type="chunk", output_events=(OutputEventSpec("start_of_input"),)),
        AgentResponse(output_events=(OutputEventSpec("session_end", "session_ended_by_client"),)),
    ]
    assert handle.turn.outcome == "terminal"
    assert ended == ["caller_ended"]
    assert "c1" not in server.sessions
    assert handle.session.end_reason == "caller_ended"
    assert _metrics(server, "webex_byova_conversations_ended") == {
        "webex_byova_conversations_ended_total{outcome=caller_hangup,transport=websocket}": 1.0
    }


async def test_terminal_responses_check_every_argument_and_go_first() -> None:
    server, _, _ = _server(barge_in=True)
    wav = audio.make_wav(b"\x01" * 200)

    @server.on("session_start")
    def bye(event: Any) -> None:
        turn = event.turn
        with pytest.raises(TypeError) as caught:
            turn.end_session(summary=3)
        assert str(caught.value) == "summary must be a str or TextSpec, got int"
        with pytest.raises(TypeError) as caught:
            turn.end_session(wav="x")
        assert str(caught.value) == "session_end(wav=) must be bytes, got str"
        turn.custom_event("before")
        turn.end_session(wav=wav, summary="s")

    assert await _ws(server, START) == [
        AgentResponse(
            prompts=(PromptSpec(audio=wav),),  # a last prompt never takes barge-in
            output_events=(
                OutputEventSpec("session_end", "session_ended"),
                OutputEventSpec("custom_event", "before"),
            ),
            summary=TextSpec(text="s"),
        )
    ]


async def test_a_cut_stream_closes_its_source() -> None:
    server, _, _ = _server({0: [_started(0)]}, audio_mode="chunk")
    closed: list[bool] = []
    gate = asyncio.Event()

    async def endless() -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"\x01" * 640
                await gate.wait()
        finally:
            closed.append(True)

    @server.on("dtmf_input")
    async def play(event: Any) -> None:
        await event.turn.stream(endless(), barge_in=True)

    prompt = await server.open_turn(_req(DtmfIn(digits="1")), transport="grpc")
    prompt.caller_done()
    pump = asyncio.get_running_loop().create_task(_all(prompt))
    await _settle()
    speech = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    await _settle()
    gate.set()
    assert len(await asyncio.wait_for(pump, 5)) == 2  # one chunk, then the FINAL
    assert closed == [True]
    speech.caller_gone()
    await _all(speech)


async def test_speech_events_carry_their_turn_offset_and_source(
    caplog: pytest.LogCaptureFixture,
) -> None:
    events = {1: [_started(1)], 2: [_started(2)], 3: [_ended(80.0, 60.0)]}
    server, _, _ = _server(events)
    seen: list[Any] = []

    @server.on("session_start")
    def prompt(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 8000, barge_in=True)

    @server.on("start_of_input")
    def started(event: Any) -> None:
        seen.append(("start_of_input", event.turn.index, event.offset_ms))

    @server.on("audio_input")
    def each(event: Any) -> None:
        seen.append(("audio_input", event.turn.index))

    @server.on("barge_in")
    def cut(event: Any) -> None:
        seen.append(("barge_in", event.source, event.interrupted.index, event.turn.index))

    await _ws(server, START)
    dtmf = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="websocket")
    await _all(dtmf)
    await _settle()
    assert seen == [("barge_in", "dtmf", 1, 2)]
    seen.clear()
    with caplog.at_level(logging.WARNING, logger="webex_byova.media"):
        _, responses, _ = await _audio_turn(
            server, [*_frames(2), AudioIn(audio=b"\xff" * 65537), *_frames(2)]
        )
    await _settle()
    assert [e.type for r in responses for e in r.output_events] == [
        "start_of_input",  # once: the second SpeechStarted changes nothing
        "end_of_input",
    ]
    assert [e for e in seen if e[0] == "start_of_input"] == [("start_of_input", 3, -20.0)]
    assert [e for e in seen if e[0] == "audio_input"] == [("audio_input", 3)] * 4
    dropped = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert dropped == ["[c1 #3] caller audio frame of 65537 bytes dropped (max 64 KiB)"]


async def test_a_speech_end_without_a_start_sends_no_boundary() -> None:
    server, _, _ = _server({2: [_ended(60.0, 40.0)]})
    heard: list[str] = []

    @server.on("utterance")
    def reply(event: Any) -> None:  # pragma: no cover - must not run
        heard.append(event.reason)

    handle, responses, _ = await _audio_turn(server, _frames(4), "grpc")
    assert responses == [_final()]
    assert heard == []


async def test_preroll_is_the_shortest_run_of_frames_covering_300_ms() -> None:
    # 109-byte frames (218 bytes of PCM): 23 cover 4800 bytes (300 ms at 8 kHz), 22 do not
    server, _, _ = _server({30: [_started(30)], 31: [_ended(640.0, 600.0)]}, min_frame_bytes=0)
    heard: list[bytes] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        heard.append(event.pcm16)

    frames = [AudioIn(audio=bytes([i + 1]) * 109) for i in range(40)]
    await _audio_turn(server, frames)
    assert heard == [_pcm(frames[8:32])]


async def test_a_16_khz_utterance_and_a_detector_without_reset_turn() -> None:
    made: list[Any] = []

    class NoReset:
        complete_timeout_ms = 800.0
        max_speech_ms = 30000.0
        in_speech = False

        def __init__(self, rate: int) -> None:
            self.sample_rate = rate
            self.fed = 0

        def feed(self, pcm16: Any, now_ms: float | None = None) -> list[VADEvent]:
            self.fed += 1
            return {1: [_started(1)], 2: [_ended(60.0, 40.0)]}.get(self.fed - 1, [])

        def feed_ulaw(self, ulaw: Any, now_ms: float | None = None) -> list[VADEvent]:
            return self.feed(ulaw)

        def reset(self) -> None:
            self.fed = 0

    def factory(rate: int, settings: InputSettings) -> NoReset:
        made.append(NoReset(rate))
        return made[-1]

    server = BYOVAMediaServer(make_config(), agents=["agent-1"], detector_factory=factory)
    rates: list[int] = []

    @server.on("utterance")
    def reply(event: Any) -> None:
        rates.append(event.sample_rate)

    for _ in range(2):
        await _audio_turn(server, _frames(4, sample_rate_hz=16000))
    assert rates == [16000, 16000]
    assert len(made) == 2  # no reset_turn(): a fresh detector per turn


async def test_ending_the_call_on_an_error_puts_session_end_before_earlier_events() -> None:
    server, _, _ = _server(end_call_on_error=True, error_response="custom_event")

    @server.on("session_start")
    def fails(event: Any) -> None:
        event.turn.custom_event("menu")
        raise RuntimeError("boom")

    assert await _ws(server, START) == [
        AgentResponse(
            output_events=(
                OutputEventSpec("session_end", "error_occurred"),
                OutputEventSpec("custom_event", "menu"),
            )
        )
    ]


class _Pieces:
    """An async iterator that is not a generator: ``aclose`` only if asked, maybe failing."""

    def __init__(self, pieces: list[bytes], *, closing: str = "") -> None:
        self.pieces = list(pieces)
        self.closing = closing
        if closing:
            self.aclose = self._aclose

    def __aiter__(self) -> _Pieces:
        return self

    async def __anext__(self) -> bytes:
        if not self.pieces:
            raise StopAsyncIteration
        return self.pieces.pop(0)

    async def _aclose(self) -> None:
        if self.closing == "fails":
            raise OSError("close failed")


async def test_async_sources_without_or_with_a_failing_aclose() -> None:
    server, _, _ = _server(audio_mode="chunk")
    played: list[Any] = []

    @server.on("session_start")
    def speak(event: Any) -> None:
        played.append(event.turn.stream(_Pieces([b"\x01" * 640])))
        played.append(event.turn.stream(_Pieces([b"\x02" * 640], closing="fails")))

    responses = await _ws(server, START)
    assert [r.prompts[0].audio[:1] for r in responses[:-1]] == [b"\x01", b"\x02"]
    assert responses[-1] == _final()
    assert [f.result() for f in played] == [True, True]


async def test_a_turn_keeps_the_kind_of_its_first_input_and_an_empty_one_still_answers() -> None:
    server, _, _ = _server()
    handle = await server.open_turn(_req(None), transport="grpc")
    assert handle.feed_input(DtmfIn(digits="7"))  # no handler: the DTMF still needs a reply
    assert handle.turn.kind == "dtmf"
    audio_turn = await server.open_turn(_req(_frames(1)[0]), transport="grpc")
    assert audio_turn.feed_input(DtmfIn(digits="1"))
    assert audio_turn.turn.kind == "audio"  # a later message does not change it
    handle.caller_done()
    assert await _all(handle) == [_final()]
    audio_turn.caller_gone()
    await _all(audio_turn)


async def test_terminal_ends_report_their_reason() -> None:
    server, _, _ = _server()
    reasons: list[str] = []

    @server.on("session_start")
    def bye(event: Any) -> None:
        event.turn.end_session()

    @server.on("session_end")
    def gone(event: Any) -> None:
        reasons.append(event.reason)

    await _ws(server, START)
    await _settle()
    assert reasons == ["session_end"]
    assert _metrics(server, "webex_byova_conversations_ended") == {
        "webex_byova_conversations_ended_total{outcome=ended,transport=websocket}": 1.0
    }


async def test_only_barge_in_wav_prompts_can_be_interrupted_until_their_last_sample() -> None:
    server, clock, _ = _server()
    barged: list[int] = []

    @server.on("session_start")
    def prompt(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 8000, barge_in=False)

    @server.on("dtmf_input")
    def again(event: Any) -> None:
        event.turn.play_audio(b"\x01" * 8000, barge_in=True)

    @server.on("barge_in")
    def cut(event: Any) -> None:
        barged.append(event.interrupted.index)

    await _ws(server, START)
    marker = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="websocket")
    await _all(marker)
    await _ws(server, DtmfIn(digits="1"))
    clock.now += 0.99995  # the one-second prompt's last sample is still playing
    marker = await server.open_turn(_req(EventIn(type="start_of_dtmf")), transport="websocket")
    await _all(marker)
    await _settle()
    assert barged == [3]
