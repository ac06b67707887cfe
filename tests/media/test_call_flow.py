"""Full calls over real gRPC on loopback: the per-turn call model, handlers and actions."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest

from webex_byova.media import audio
from webex_byova.media.assets import load
from webex_byova.media.events import SessionEnd, Utterance
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.media.session import TurnFinishedError

HELLO = load("speech_hello.wav")
YES = load("speech_yes.wav")
WELCOME = audio.make_wav(b"\x7f" * 4000)  # 0.5 s of µ-law


def _agent_server(server: BYOVAMediaServer, log: list[Any]) -> None:
    @server.on("session_start")
    async def welcome(event: Any) -> None:
        log.append(("session_start", event.turn.index))
        event.session.state["turns"] = 0
        event.turn.say("Welcome to the test agent", wav=WELCOME)

    @server.on("start_of_input")
    def started(event: Any) -> None:
        log.append(("start_of_input", event.turn.index))

    @server.on("utterance")
    async def reply(event: Utterance) -> None:
        event.session.state["turns"] += 1
        log.append(("utterance", event.reason, round(event.duration_ms)))
        await asyncio.sleep(0.01)  # real async work before answering
        event.turn.say(f"You spoke {event.session.state['turns']} times")

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        log.append(("dtmf", event.digits))
        if event.digits == "5":
            event.turn.transfer_to_agent("Transferring you now", summary="caller pressed 5")
        else:
            event.turn.say(f"You pressed {event.digits}")

    @server.on("session_end")
    def ended(event: SessionEnd) -> None:
        log.append(("session_end", event.reason))


async def test_full_call_welcome_speech_second_turn_dtmf_transfer(media_server, caller_factory):
    server = await media_server()
    log: list[Any] = []
    _agent_server(server, log)
    await server.start()
    caller = caller_factory(server)

    welcome = await caller.start_session()
    assert welcome.ok
    assert len(welcome.finals) == 1
    assert welcome.texts == ["Welcome to the test agent"]
    prompt = welcome.final.prompts[0]
    assert prompt.audio_content[:4] == b"RIFF"
    assert audio.read_wav(prompt.audio_content).encoding == audio.AudioEncoding.MULAW
    assert welcome.final.input_mode == 3  # INPUT_VOICE_DTMF
    assert welcome.final.input_handling_config.speech_timers.complete_timeout_msec == 800
    assert caller.conversation_id in server.sessions

    # paced (5x real time) so the server's END_OF_INPUT can stop the stream mid-way, as on Webex;
    # 30 s of trailing silence (6 s at 5x) so a loaded machine cannot make it end first
    caller.realtime, caller.speed = True, 5.0
    first = await caller.say(wav=HELLO, trailing_silence_ms=30000)
    caller.realtime = False
    assert first.ok, first.details
    assert first.event_types == ["START_OF_INPUT", "END_OF_INPUT"]
    # speech boundaries as standalone event-only FINALs (the gateway's form), then the reply
    assert [r.response_type for r in first.responses] == ["FINAL", "FINAL", "FINAL"]
    assert len(first.finals) == 1
    assert first.texts == ["You spoke 1 times"]
    # the caller stopped streaming once END_OF_INPUT arrived (long before the silence ran out)
    total_frames = len(caller.frames(wav=HELLO, leading_silence_ms=200, trailing_silence_ms=30000))
    assert first.frames_sent < total_frames // 2

    second = await caller.say(wav=YES)
    assert second.ok
    assert second.texts == ["You spoke 2 times"]  # same conversation state on a new RPC

    start_dtmf = await caller.start_dtmf()
    assert start_dtmf.ok
    assert start_dtmf.responses == []
    transfer = await caller.send_dtmf("5")
    assert transfer.ok
    assert transfer.event_types == ["TRANSFER_TO_AGENT"]
    assert transfer.events[0][1] == "transfer_requested"
    assert transfer.texts == ["Transferring you now"]
    assert not transfer.final.HasField("input_handling_config")  # terminal shape
    assert transfer.final.session_summary.text == "caller pressed 5"
    assert caller.conversation_id not in server.sessions

    utterances = [e for e in log if e[0] == "utterance"]
    assert [u[1] for u in utterances] == ["silence", "silence"]
    assert utterances[0][2] > 3000  # the whole spoken phrase is in the utterance
    assert ("dtmf", "5") in log
    assert ("session_end", "transfer_to_agent") in log


async def test_session_end_from_caller_cleans_up(media_server, caller_factory):
    server = await media_server()
    log: list[Any] = []
    _agent_server(server, log)
    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    assert caller.conversation_id in server.sessions
    end = await caller.end_session()
    assert end.ok
    # one terminal FINAL acknowledging the hang-up: no prompt, no next-input settings
    assert len(end.responses) == 1
    assert len(end.finals) == 1
    assert end.events == [("SESSION_END", "session_ended_by_client")]
    assert end.final.prompts == []
    assert not end.final.HasField("input_handling_config")
    assert caller.conversation_id not in server.sessions
    await asyncio.sleep(0.05)
    assert ("session_end", "caller_ended") in log


async def test_caller_hang_up_carries_the_pending_transcript_and_summary(
    media_server, caller_factory
):
    server = await media_server()

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.set_transcript("bot: hello")
        event.turn.set_summary("caller hung up after the welcome")
        event.turn.say("Hello")

    await server.start()
    caller = caller_factory(server)
    welcome_turn = await caller.start_session()
    assert not welcome_turn.final.HasField("session_transcript")  # only in the last response
    end = await caller.end_session()
    assert end.events == [("SESSION_END", "session_ended_by_client")]
    assert end.final.session_transcript.text == "bot: hello"
    assert end.final.session_summary.text == "caller hung up after the welcome"


async def test_all_sixteen_dtmf_keys_and_empty_entry(media_server, caller_factory):
    server = await media_server()
    seen: list[str] = []

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        seen.append(event.digits)
        event.turn.say(f"got {event.digits or 'nothing'}")

    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    result = await caller.press("0123456789*#ABCD")
    assert result.texts == ["got 0123456789*#ABCD"]
    empty = await caller.send_dtmf("")
    assert empty.texts == ["got nothing"]
    assert seen == ["0123456789*#ABCD", ""]


async def test_chunk_mode_streams_paced_pieces_then_one_empty_final(media_server, caller_factory):
    server = await media_server(audio_mode="chunk", chunk_ms=80)
    tone = b"\x10\x90" * 4000  # 1 s of µ-law

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        played = await event.turn.say("ignored label", audio=tone)
        event.session.state["played"] = played

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.ok
    kinds = [r.response_type for r in result.responses]
    assert kinds[-1] == "FINAL"
    assert set(kinds[:-1]) == {"CHUNK"}
    chunk_sizes = [len(c.prompts[0].audio_content) for c in result.chunks]
    assert sum(chunk_sizes) == len(tone)
    assert all(size == 640 for size in chunk_sizes[:-1])
    assert all(100 <= size <= 65536 for size in chunk_sizes)
    assert all(
        c.prompts[0].text == "" and c.prompts[0].audio_content[:4] != b"RIFF" for c in result.chunks
    )
    assert not any(p.audio_content for p in result.final.prompts)
    assert result.audio == tone
    assert server.sessions[caller.conversation_id].state["played"] is True


async def test_wav_mode_answers_in_one_final_with_a_complete_wav(media_server, caller_factory):
    server = await media_server(audio_mode="wav")

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("one", wav=HELLO)  # 8 kHz µ-law WAV
        pcm16_16k = audio.resample_pcm16(audio.ulaw_to_pcm16(b"\x20" * 800), 8000, 16000)
        event.turn.play_wav(audio.make_wav(pcm16_16k, encoding="LINEAR16", sample_rate=16000))
        event.turn.play_ssml("<speak>three</speak>")

    await server.start()
    result = await caller_factory(server).start_session()
    assert [r.response_type for r in result.responses] == ["FINAL"]
    prompts = result.final.prompts
    assert [p.text for p in prompts] == ["one", "", "<speak>three</speak>"]
    for prompt in prompts[:2]:
        wav = audio.read_wav(prompt.audio_content)
        assert (wav.encoding, wav.sample_rate, wav.channels) == (audio.AudioEncoding.MULAW, 8000, 1)
    assert audio.read_wav(prompts[1].audio_content).duration == pytest.approx(0.1, abs=0.01)


async def test_handler_exception_call_survives_error_handler_runs_once(
    media_server, caller_factory
):
    server = await media_server()
    errors: list[Any] = []

    @server.on("utterance")
    async def broken(event: Any) -> None:
        event.turn.say("partial answer")
        raise RuntimeError("boom")

    @server.on("error")
    def on_error(event: Any) -> None:
        errors.append((type(event.exception).__name__, event.source.name))

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        event.turn.say("still alive")

    await server.start()
    caller = caller_factory(server)
    result = await caller.say(wav=YES)
    assert result.ok
    assert len(result.finals) == 1
    assert result.texts == ["partial answer", server.config.error_prompt_text]
    assert errors == [("RuntimeError", "utterance")]
    after = await caller.send_dtmf("1")
    assert after.texts == ["still alive"]
    assert caller.conversation_id in server.sessions


async def test_handler_exception_custom_event_and_failing_error_handler(
    media_server, caller_factory
):
    server = await media_server(error_response="custom_event")
    calls: list[str] = []

    @server.on("session_start")
    def broken(event: Any) -> None:
        raise ValueError("bad")

    @server.on("error")
    def on_error(event: Any) -> None:
        calls.append("error")
        raise RuntimeError("error handler also fails")  # must not recurse

    @server.on("session_end")
    def bad_end(event: Any) -> None:
        calls.append("end")
        raise RuntimeError("session_end fails too")

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.ok
    assert result.events == [("CUSTOM_EVENT", "error_occurred")]
    end = await caller.end_session()
    assert end.ok
    await asyncio.sleep(0.05)
    assert calls == ["error", "end", "error"]


async def test_end_call_on_error(media_server, caller_factory):
    server = await media_server(end_call_on_error=True)

    @server.on("session_start")
    def broken(event: Any) -> None:
        raise ValueError("bad")

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.event_types == ["SESSION_END"]
    assert caller.conversation_id not in server.sessions


async def test_collect_input_across_rpcs_never_deadlocks(media_server, caller_factory):
    server = await media_server()
    transcript: list[str] = []

    @server.on("session_start")
    async def dialog(event: Any) -> None:
        turn = event.turn
        turn.say("Enter your PIN")
        turn.set_input("dtmf", dtmf_length=4, terminator="#", sensitive=True)
        pin = await turn.collect_input(timeout=10)
        transcript.append(pin.digits)
        pin.turn.set_input("voice_dtmf", sensitive=False)  # settings persist until changed
        pin.turn.say("Thanks. Say something.")
        speech = await pin.turn.collect_input(timeout=10)
        transcript.append(f"utterance:{speech.reason}")
        speech.turn.end_session("Goodbye", transcript="\n".join(transcript))

    @server.on("dtmf_input")
    def never(event: Any) -> None:  # input goes to the waiting handler instead
        transcript.append("handler should not run")

    await server.start()
    caller = caller_factory(server)
    first = await caller.start_session()
    assert first.texts == ["Enter your PIN"]
    assert first.final.input_mode == 2  # INPUT_EVENT_DTMF
    assert first.final.input_sensitive is True
    assert first.final.input_handling_config.dtmf_config.dtmf_input_length == 4
    assert first.final.input_handling_config.dtmf_config.termchar == 16
    second = await caller.press("1234")
    assert second.texts == ["Thanks. Say something."]
    assert second.final.input_sensitive is False
    third = await caller.say(wav=YES)
    assert third.event_types == ["START_OF_INPUT", "END_OF_INPUT", "SESSION_END"]
    assert third.final.session_transcript.text == "1234\nutterance:silence"
    assert transcript == ["1234", "utterance:silence"]


async def test_two_concurrent_rpcs_barge_in_cuts_paced_chunk_prompt(media_server, caller_factory):
    # The server clock stands still: pacing lets exactly the 200 ms lead (+ one chunk) out, then
    # the prompt waits for playback until the caller's speech cuts it: no wall-clock race.
    server = await media_server(
        audio_mode="chunk", chunk_ms=100, realtime_pacing=True, clock=lambda: 1000.0
    )
    long_prompt = b"\x15\x95" * 40000  # 10 s: never finishes unless cut
    barge: list[Any] = []

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        event.session.state["played"] = await event.turn.say(audio=long_prompt, barge_in=True)

    @server.on("barge_in")
    def on_barge(event: Any) -> None:
        barge.append((event.source, event.interrupted.kind, event.turn.kind))

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("heard you")

    await server.start()
    caller = caller_factory(server)
    prompt_rpc = caller.open("session_start")
    await prompt_rpc.send(caller.event_request("SESSION_START", "call_start"))
    await prompt_rpc.half_close()
    await asyncio.wait_for(prompt_rpc.first_response.wait(), 5)
    # Webex opens the next audio RPC while the prompt still plays
    speech = await caller.say(wav=YES, leading_silence_ms=0)
    prompt = await prompt_rpc.wait(10)
    assert prompt.ok
    assert speech.ok
    assert speech.texts == ["heard you"]
    assert len(prompt.finals) == 1
    assert [len(c.prompts[0].audio_content) for c in prompt.chunks] == [800] * 3
    assert barge == [("speech", "session_start", "audio")]
    assert server.sessions[caller.conversation_id].state["played"] is False


async def test_list_virtual_agents_and_agent_binding(media_server, caller_factory):
    server = await media_server(agents=("sales=Sales bot", "support"))
    server.add_agent("vip", "VIP line", attributes={"tier": "gold"})
    await server.start()
    caller = caller_factory(server)
    agents = await caller.list_agents()
    assert [(a.virtual_agent_id, a.virtual_agent_name, a.is_default) for a in agents] == [
        ("sales", "Sales bot", True),
        ("support", "support", False),
        ("vip", "VIP line", False),
    ]
    assert dict(agents[2].attributes) == {"tier": "gold"}

    unknown = caller_factory(server, virtual_agent_id="nope")
    result = await unknown.start_session()
    assert result.code == grpc.StatusCode.NOT_FOUND
    assert "nope" in result.details

    bound = caller_factory(server, virtual_agent_id="support")
    assert (await bound.start_session()).ok
    assert server.sessions[bound.conversation_id].virtual_agent_id == "support"
    bound.virtual_agent_id = "sales"
    changed = await bound.send_dtmf("1")
    assert changed.code == grpc.StatusCode.INVALID_ARGUMENT

    default = caller_factory(server)  # empty agent id -> the default agent
    assert (await default.start_session()).ok
    assert server.sessions[default.conversation_id].virtual_agent_id == "sales"


async def test_agent_provider_and_per_agent_handlers(media_server, caller_factory):
    server = await media_server()

    @server.agent_provider
    async def provide(org_id: str) -> list[str]:
        return [f"{org_id}-a=A", f"{org_id}-b=B"]

    @server.on("session_start")
    def generic(event: Any) -> None:
        event.turn.say("generic")

    @server.on("session_start", virtual_agent_id="org-test-b")
    def special(event: Any) -> None:
        event.turn.say("special")

    await server.start()
    a = caller_factory(server, virtual_agent_id="org-test-a")
    b = caller_factory(server, virtual_agent_id="org-test-b")
    assert [x.virtual_agent_id for x in await a.list_agents()] == ["org-test-a", "org-test-b"]
    assert (await a.start_session()).texts == ["generic"]
    assert (await b.start_session()).texts == ["special"]


async def test_registration_errors_and_turn_finished(media_server, caller_factory):
    server = await media_server()
    with pytest.raises(ValueError, match="unknown event 'utterence'"):
        server.on("utterence")
    problems: list[str] = []

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        await event.turn.finish()
        try:
            event.turn.say("too late")
        except TurnFinishedError as exc:
            problems.append(str(exc))

    await server.start()
    result = await caller_factory(server).start_session()
    assert len(result.finals) == 1
    assert problems
    assert "already sent its FINAL" in problems[0]


async def test_max_conversations_resource_exhausted(media_server, caller_factory):
    server = await media_server(max_conversations=2)
    ended: list[tuple[str, str]] = []
    server.on("session_end")(
        lambda event: ended.append((event.session.conversation_id, event.reason))
    )
    await server.start()
    callers = [caller_factory(server) for _ in range(2)]
    for caller in callers:
        assert (await caller.start_session()).ok
    # At capacity the least recently active conversation without an open turn makes room.
    third = caller_factory(server)
    assert (await third.start_session()).ok
    assert server.conversations_evicted == 1
    assert set(server.sessions) == {callers[1].conversation_id, third.conversation_id}
    # When every live conversation has an open turn, nothing can be evicted: refused.
    held = [c.open("audio") for c in (callers[1], third)]
    for turn, caller in zip(held, (callers[1], third), strict=True):
        await turn.send(caller.audio_request(b"\xff" * 160))
    while any(not server.sessions[c.conversation_id].turns for c in (callers[1], third)):
        await asyncio.sleep(0.01)
    fourth = await caller_factory(server).start_session()
    assert fourth.code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert fourth.details == "too many conversations (max 2)"
    assert server.conversations_evicted == 1
    for turn in held:
        await turn.half_close()
        assert (await turn.wait()).ok
    assert (callers[0].conversation_id, "evicted") in ended


async def test_idle_conversations_expire(media_server, caller_factory):
    now = [1000.0]
    server = await media_server(idle_timeout_s=60, clock=lambda: now[0])
    ended: list[str] = []
    server.on("session_end")(lambda event: ended.append(event.reason))
    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    assert await server.expire_idle() == 0
    now[0] += 61
    assert await server.expire_idle() == 1
    assert server.sessions == {}
    await asyncio.sleep(0.05)
    assert ended == ["idle_timeout"]


async def test_graceful_stop_lets_live_turn_finish(media_server, caller_factory):
    server = await media_server()
    release = asyncio.Event()

    @server.on("session_start")
    async def slow(event: Any) -> None:
        await release.wait()
        event.turn.say("finished")

    await server.start()
    caller = caller_factory(server)
    pending = asyncio.ensure_future(caller.start_session())
    while not server.sessions:
        await asyncio.sleep(0.01)
    stopping = asyncio.ensure_future(server.stop(grace=5.0))
    await asyncio.sleep(0.05)
    late = await caller_factory(server).start_session()
    assert late.code == grpc.StatusCode.UNAVAILABLE
    release.set()
    result = await pending
    await stopping
    assert result.ok
    assert result.texts == ["finished"]


async def test_health_serving_without_token_when_auth_on(media_server):
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    server = await media_server(verify_tokens=True, expected_url="https://example.test/byova")
    await server.start()
    async with grpc.aio.insecure_channel(server.address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        for name in ("", "com.cisco.wcc.ccai.media.v1.VoiceVirtualAgent"):
            reply = await stub.Check(health_pb2.HealthCheckRequest(service=name))
            assert reply.status == health_pb2.HealthCheckResponse.SERVING
