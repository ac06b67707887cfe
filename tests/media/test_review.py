"""Regression tests from the adversarial review of the media server (one per defect)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media.assets import load

YES = load("speech_yes.wav")


async def test_metadata_only_first_frame_sets_encoding_and_rate(media_server, caller_factory):
    """Cisco's Java client sends one frame with only encoding+rate, then bare audio frames."""
    server = await media_server()
    heard: list[tuple[str, int]] = []
    utterances: list[tuple[int, float]] = []

    @server.on("audio_input")
    def frame(event: Any) -> None:
        heard.append((event.encoding, event.sample_rate))

    @server.on("utterance")
    def reply(event: Any) -> None:
        utterances.append((event.sample_rate, event.duration_ms))
        event.turn.say("heard")

    await server.start()
    caller = caller_factory(server)
    frames = caller.frames(
        wav=YES, sample_rate=16000, encoding="LINEAR16", trailing_silence_ms=1500
    )
    header = caller.request(
        audio_input=vva.VoiceInput(encoding=vva.VoiceInput.LINEAR16_FORMAT, sample_rate_hertz=16000)
    )
    turn = caller.open("audio")
    await turn.send(header)
    for data in frames:
        await turn.send(caller.request(audio_input=vva.VoiceInput(caller_audio=data)))
    await turn.half_close()
    result = await turn.wait(10)
    assert result.ok, result.details
    assert result.event_types == ["START_OF_INPUT", "END_OF_INPUT"]
    assert result.texts == ["heard"]
    assert set(heard) == {("LINEAR16", 16000)}
    assert [rate for rate, _ in utterances] == [16000]

    # a frame without any metadata is 8 kHz µ-law (on a new RPC: nothing inherited)
    heard.clear()
    bare = caller.open("audio")
    for data in caller.frames(wav=YES, trailing_silence_ms=1500):
        await bare.send(caller.request(audio_input=vva.VoiceInput(caller_audio=data)))
    await bare.half_close()
    result = await bare.wait(10)
    assert result.texts == ["heard"]
    assert set(heard) == {("MULAW", 8000)}
    assert [rate for rate, _ in utterances] == [16000, 8000]


@pytest.mark.parametrize(("mode", "streamed"), [("chunk", 640), ("wav", 0)])
async def test_failing_stream_source_is_a_handler_error_not_a_broken_rpc(
    media_server, caller_factory, mode, streamed
):
    server = await media_server(audio_mode=mode)
    errors: list[str] = []
    played: list[bool] = []

    async def tts() -> Any:
        yield b"\x10" * 1000
        raise ConnectionError("TTS backend went away")

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        played.append(await event.turn.stream(tts()))

    @server.on("error")
    def on_error(event: Any) -> None:
        errors.append(type(event.exception).__name__)

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.ok, result.details
    assert len(result.finals) == 1
    assert result.responses[-1].response_type == "FINAL"
    assert result.final.prompts[0].text == server.config.error_prompt_text
    assert len(result.audio) == streamed  # CHUNK: whole chunks produced before the failure
    assert played == [False]
    assert errors == ["ConnectionError"]
    assert caller.conversation_id in server.sessions


async def test_nothing_follows_the_final_of_an_audio_turn(media_server, caller_factory):
    """A handler may answer an audio turn before the caller spoke; FINAL stays the last."""
    server = await media_server()
    errors: list[Any] = []

    @server.on("audio_input")
    def answer_at_once(event: Any) -> None:
        if not event.turn.finished:
            event.turn.say("answered early")
            event.turn.finish()

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("too late")

    server.on("error")(errors.append)
    await server.start()
    caller = caller_factory(server)
    result = await caller.say(wav=YES)
    assert result.ok, result.details
    assert [r.response_type for r in result.responses] == ["FINAL"]
    assert result.texts == ["answered early"]
    assert errors == []


async def test_terminal_response_completes_the_other_open_rpcs_of_the_call(
    media_server, caller_factory
):
    """After TRANSFER_TO_AGENT the conversation is gone: a still-open audio RPC of it completes
    at once, without a FINAL (no reply, no next-input settings for a dropped call)."""
    server = await media_server()
    audio_outcome: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        event.turn.transfer_to_agent("Transferring")

    @server.on("turn_ended")
    def ended(event: Any) -> None:
        if event.kind == "audio":
            audio_outcome.set_result(event.outcome)

    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    listening = caller.open("audio")
    for _ in range(5):
        await listening.send(caller.audio_request(b"\xff" * 160))  # silence, no half-close
    while not any(t.kind == "audio" for t in server.sessions[caller.conversation_id].turns):
        await asyncio.sleep(0.01)
    transfer = await caller.send_dtmf("5")
    assert transfer.event_types == ["TRANSFER_TO_AGENT"]
    dropped = await listening.wait(10)
    assert dropped.ok, dropped.details
    assert dropped.responses == []
    assert caller.conversation_id not in server.sessions
    assert await asyncio.wait_for(audio_outcome, 5) == "terminal"


async def test_transcript_and_summary_go_only_in_the_last_response(media_server, caller_factory):
    """Webex honours session_transcript/summary only in the call's last response, so a value
    set on an earlier turn is kept for the terminal response, not sent (and lost) early."""
    server = await media_server()

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("welcome")
        event.turn.set_transcript("agent: welcome")
        event.turn.set_summary("caller greeted")

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        if event.digits == "1":
            event.turn.set_transcript("agent: welcome\ncaller: 1")
            event.turn.say("one")
        else:
            event.turn.end_session("bye")

    await server.start()
    caller = caller_factory(server)
    first = await caller.start_session()
    assert first.texts == ["welcome"]
    assert not first.final.HasField("session_transcript")
    assert not first.final.HasField("session_summary")
    one = await caller.send_dtmf("1")
    assert one.texts == ["one"]
    assert not one.final.HasField("session_transcript")
    bye = await caller.send_dtmf("2")
    assert bye.event_types == ["SESSION_END"]
    assert bye.final.session_transcript.text == "agent: welcome\ncaller: 1"
    assert bye.final.session_summary.text == "caller greeted"


async def _received_chunks(rpc: Any, count: int) -> None:
    while len(rpc.result.chunks) < count and not rpc._finished.is_set():
        await asyncio.sleep(0.01)


async def test_pacing_restarts_after_a_gap_so_a_late_prompt_is_not_sent_in_a_burst(
    media_server, caller_factory
):
    """Paced CHUNK playback cannot be ahead of what was sent: after a pause (e.g. waiting for an
    LLM) a new prompt is paced again, so barge-in can still cut it. The server clock is frozen
    except for the jump, so exactly the pacing lead (200 ms + one chunk) goes out before the
    stream waits for playback."""
    now = [1000.0]
    server = await media_server(
        audio_mode="chunk", chunk_ms=100, realtime_pacing=True, clock=lambda: now[0]
    )

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        assert await event.turn.stream(b"\x15" * 800, barge_in=True)  # one chunk
        now[0] += 10.0  # a long pause before the next prompt
        long_prompt = b"\x15\x95" * 40000  # 10 s
        event.session.state["played"] = await event.turn.say(audio=long_prompt, barge_in=True)

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("heard you")

    await server.start()
    caller = caller_factory(server)
    prompt_rpc = caller.open("session_start")
    await prompt_rpc.send(caller.event_request("SESSION_START"))
    await prompt_rpc.half_close()
    await _received_chunks(prompt_rpc, 4)
    speech = await caller.say(wav=YES, leading_silence_ms=0)
    prompt = await prompt_rpc.wait(10)
    assert speech.texts == ["heard you"]
    assert prompt.ok
    assert [len(c.prompts[0].audio_content) for c in prompt.chunks] == [800] * 4
    assert server.sessions[caller.conversation_id].state["played"] is False


async def _settled(server: Any) -> None:
    """Wait (bounded) until background work of finished calls is done."""
    for _ in range(500):
        if not server._tasks and not server._open_rpcs:
            return
        await asyncio.sleep(0.01)


async def test_no_growth_after_many_short_calls(media_server, caller_factory):
    now = [1000.0]
    server = await media_server(idle_timeout_s=60, clock=lambda: now[0], max_conversations=50)
    ended: list[str] = []

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("hi")

    @server.on("dtmf_input")
    async def keys(event: Any) -> None:
        if event.digits == "5":
            event.turn.transfer_to_agent("bye")
        else:
            event.turn.say("ok")

    @server.on("session_end")
    def on_end(event: Any) -> None:
        ended.append(event.reason)

    await server.start()
    channel_owner = caller_factory(server)

    async def one_call(i: int) -> None:
        from webex_byova.testing import WebexCaller

        caller = WebexCaller(channel=channel_owner.channel, realtime=False, rpc_timeout=20)
        assert (await caller.start_session()).texts == ["hi"]
        assert (await caller.press("1")).texts == ["ok"]
        if i % 4 == 0:
            assert (await caller.send_dtmf("5")).event_types == ["TRANSFER_TO_AGENT"]
        elif i % 4 == 1:
            turn = caller.open("audio")  # hangs up mid-turn
            await turn.send(caller.audio_request(b"\xff" * 160))
            turn.cancel()
            await turn.wait(5)
            await caller.end_session()
        elif i % 4 == 2:
            await caller.end_session()
        # i % 4 == 3: the call just goes away; the conversation expires when idle

    baseline = len(asyncio.all_tasks())
    for batch in range(20):
        await asyncio.gather(*(one_call(batch * 10 + i) for i in range(10)))
        now[0] += 61
        await server.expire_idle()
    await _settled(server)
    assert server._live == {}
    assert server._open_rpcs == 0
    assert not server._tasks
    assert len(server._store) == 0
    assert len(ended) == 200
    assert len(asyncio.all_tasks()) <= baseline


async def test_wav_mode_stream_from_a_generator_is_one_wav_prompt_in_the_final(
    media_server, caller_factory
):
    """WAV mode never sends CHUNKs: a streamed source is collected into one WAV prompt, in the
    order the handler queued its prompts."""
    server = await media_server(audio_mode="wav")
    played: list[bool] = []

    async def tts() -> Any:
        for value in (0x10, 0x20, 0x30):
            yield bytes([value]) * 400

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        event.turn.say("first")
        done = event.turn.stream(tts())
        event.turn.say("last")
        played.append(await done)

    await server.start()
    result = await caller_factory(server).start_session()
    assert result.ok, result.details
    assert [r.response_type for r in result.responses] == ["FINAL"]
    prompts = result.final.prompts
    assert [p.text for p in prompts] == ["first", "", "last"]
    assert prompts[1].audio_content[:4] == b"RIFF"
    assert result.audio == b"\x10" * 400 + b"\x20" * 400 + b"\x30" * 400
    assert played == [True]


async def test_failure_after_the_final_does_not_answer_another_rpc(media_server, caller_factory):
    """A handler that fails after its turn's FINAL must not push the apology into an unrelated
    open RPC of the call (here: the caller's next audio turn, which then could not answer)."""
    server = await media_server()
    gate = asyncio.Event()
    failed = asyncio.Event()

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        event.turn.say("hi")
        await event.turn.finish()
        await gate.wait()
        raise RuntimeError("late failure in background work")

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("heard")

    server.on("error")(lambda event: failed.set())
    await server.start()
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["hi"]
    listening = caller.open("audio")
    await listening.send(caller.audio_request(b"\xff" * 160))
    while not server.sessions[caller.conversation_id].turns:
        await asyncio.sleep(0.01)
    gate.set()
    await asyncio.wait_for(failed.wait(), 5)
    result = await caller.say(wav=YES, turn=listening)
    assert result.ok
    assert result.texts == ["heard"]


async def test_failure_after_collect_input_answers_on_the_collected_turn(
    media_server, caller_factory
):
    server = await media_server()

    @server.on("session_start")
    async def dialog(event: Any) -> None:
        event.turn.say("PIN?")
        pin = await event.turn.collect_input(timeout=10)
        raise ValueError(f"cannot check {pin.digits}")

    await server.start()
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["PIN?"]
    pin = await caller.send_dtmf("1")
    assert pin.texts == [server.config.error_prompt_text]
    assert len(pin.finals) == 1


async def test_failing_agent_provider_gives_internal_on_calls_too(media_server, caller_factory):
    import grpc

    server = await media_server()

    @server.agent_provider
    def provide(org_id: str) -> list[str]:
        raise ConnectionError("agent directory down")

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.code == grpc.StatusCode.INTERNAL
    assert "agent provider failed" in result.details
    assert server.sessions == {}
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await caller.list_agents()
    assert info.value.code() == grpc.StatusCode.INTERNAL


async def test_no_input_and_custom_event_rpcs(media_server, caller_factory):
    server = await media_server()
    seen: list[tuple[str, str, dict[str, Any]]] = []
    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    # without handlers: a "silence" FINAL that only carries the next-input settings
    quiet = await caller.no_input()
    assert quiet.ok
    assert [r.response_type for r in quiet.responses] == ["FINAL"]
    assert (quiet.final.prompts, quiet.final.output_events) == ([], [])
    assert quiet.final.input_mode == 3
    assert quiet.final.HasField("input_handling_config")

    @server.on("no_input")
    def reprompt(event: Any) -> None:
        seen.append(("no_input", event.event_name, event.parameters))
        event.turn.say("Are you still there?")

    @server.on("custom_event")
    def custom(event: Any) -> None:
        seen.append(("custom", event.event_name, event.parameters))
        event.turn.custom_event("crm_lookup", {"account": event.parameters["account"]})

    again = await caller.no_input("timeout")
    assert again.texts == ["Are you still there?"]
    assert again.final.HasField("input_handling_config")
    event = await caller.custom_event("lookup", {"account": "A-1"})
    assert event.events == [("CUSTOM_EVENT", "crm_lookup")]
    assert dict(event.final.output_events[0].metadata) == {"account": "A-1"}
    assert len(event.finals) == 1
    assert seen == [("no_input", "timeout", {}), ("custom", "lookup", {"account": "A-1"})]
