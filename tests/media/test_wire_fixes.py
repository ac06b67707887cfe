"""gRPC wire choices: eager FINAL, RPC completion after it, boundary form, unpaced CHUNKs.

The clients here are raw ``grpc.aio`` stubs, so they can do what Cisco's Java sample client
does: send a request and wait for the reply before half-closing.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import grpc
from grpc import aio

from webex_byova.media._proto import byova_common_pb2 as common
from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media._proto import voicevirtualagent_pb2_grpc as vva_grpc
from webex_byova.media.assets import load
from webex_byova.media.config import MediaServerConfig
from webex_byova.media.server import BYOVAMediaServer

HELLO = load("speech_hello.wav")
SAFETY = 30  # client-side guard only; every RPC here ends by the server's own rules


def _start(cid: str) -> vva.VoiceVARequest:
    return vva.VoiceVARequest(
        conversation_id=cid,
        event_input=common.EventInput(
            event_type=common.EventInput.SESSION_START, name="call_start"
        ),
    )


def _dtmf(cid: str, *digits: int) -> vva.VoiceVARequest:
    return vva.VoiceVARequest(
        conversation_id=cid, dtmf_input=common.DTMFInputs(dtmf_events=list(digits))
    )


async def _reply_then_half_close(
    stub: vva_grpc.VoiceVirtualAgentStub, request: vva.VoiceVARequest
) -> tuple[list[vva.VoiceVAResponse], grpc.StatusCode]:
    """The Java client's pattern: write, wait for the first response, then half-close."""
    call = stub.ProcessCallerInput()
    await call.write(request)
    first = await asyncio.wait_for(call.read(), SAFETY)
    assert first is not aio.EOF, "the server completed without answering"
    responses = [first]
    await call.done_writing()
    while (more := await asyncio.wait_for(call.read(), SAFETY)) is not aio.EOF:
        responses.append(more)
    return responses, await call.code()


def _agent(server: BYOVAMediaServer) -> None:
    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("Welcome")

    @server.on("dtmf_input")
    async def keys(event: Any) -> None:
        await asyncio.sleep(0)
        if event.digits == "1":
            event.turn.say("You pressed one")
        # any other key: the handler answers nothing, the turn still gets its (empty) FINAL


async def test_reply_comes_before_the_half_close_for_session_start_and_dtmf(media_server):
    server = await media_server(half_close_timeout_s=60.0)  # only the half-close may end RPCs
    _agent(server)
    await server.start()
    async with aio.insecure_channel(server.address) as channel:
        stub = vva_grpc.VoiceVirtualAgentStub(channel)
        cid = str(uuid.uuid4())
        welcome, code = await _reply_then_half_close(stub, _start(cid))
        assert code == grpc.StatusCode.OK
        assert [(r.response_type, r.prompts[0].text) for r in welcome] == [(0, "Welcome")]
        assert welcome[0].HasField("input_handling_config")

        pressed, code = await _reply_then_half_close(stub, _dtmf(cid, 1))
        assert code == grpc.StatusCode.OK
        assert [r.prompts[0].text for r in pressed] == ["You pressed one"]
        unmapped, code = await _reply_then_half_close(stub, _dtmf(cid, 9))
        assert code == grpc.StatusCode.OK
        assert [(r.response_type, len(r.prompts)) for r in unmapped] == [(0, 0)]
        assert unmapped[0].input_mode == vva.INPUT_VOICE_DTMF  # the next-input settings

        # Cisco's Java client (b): DTMF on a brand-new conversation, no SESSION_START before
        fresh, code = await _reply_then_half_close(stub, _dtmf(str(uuid.uuid4()), 1))
        assert code == grpc.StatusCode.OK
        assert [r.prompts[0].text for r in fresh] == ["You pressed one"]


async def test_rpc_without_half_close_is_completed_after_the_bound(media_server):
    server = await media_server(half_close_timeout_s=0.2)
    _agent(server)
    ended: list[str] = []

    @server.on("turn_ended")
    def turn_ended(event: Any) -> None:
        ended.append(event.outcome)

    await server.start()
    async with aio.insecure_channel(server.address) as channel:
        stub = vva_grpc.VoiceVirtualAgentStub(channel)
        call = stub.ProcessCallerInput()
        await call.write(_start(str(uuid.uuid4())))
        responses = []
        while (item := await asyncio.wait_for(call.read(), SAFETY)) is not aio.EOF:
            responses.append(item)  # never half-closed: the server ends the RPC itself
        assert await call.code() == grpc.StatusCode.OK
        assert [r.prompts[0].text for r in responses] == ["Welcome"]
    assert ended == ["completed"]


async def test_speech_boundaries_default_to_the_gateways_event_only_finals(
    media_server, caller_factory
):
    server = await media_server()

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("Heard you")

    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    result = await caller.say(wav=HELLO)
    assert result.ok
    start, end, answer = (r.response for r in result.responses)
    assert [r.response_type for r in (start, end, answer)] == [0, 0, 0]  # all FINAL
    assert [(e.event_type, e.name) for e in start.output_events] == [
        (common.OutputEvent.START_OF_INPUT, "")
    ]
    assert start.HasField("input_handling_config")
    assert start.input_mode == 0  # unset, as the gateway sends it
    assert not start.prompts
    assert [(e.event_type, e.name) for e in end.output_events] == [
        (common.OutputEvent.END_OF_INPUT, "end_of_input")
    ]
    assert end.input_mode == vva.INPUT_VOICE_DTMF
    assert end.HasField("input_handling_config")
    assert [p.text for p in answer.prompts] == ["Heard you"]
    assert result.finals == [answer]  # the reply FINAL is still the only reply


async def test_chunk_boundary_form_stays_available(media_server, caller_factory):
    server = await media_server(boundary_response_type="CHUNK")

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("Heard you")

    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    result = await caller.say(wav=HELLO)
    assert result.ok
    assert [r.response_type for r in result.responses] == ["CHUNK", "CHUNK", "FINAL"]
    assert result.event_types == ["START_OF_INPUT", "END_OF_INPUT"]
    assert not result.responses[0].response.HasField("input_handling_config")


def test_wire_defaults_and_their_environment_switches() -> None:
    default = MediaServerConfig()
    assert default.boundary_response_type == "FINAL"
    assert default.realtime_pacing is False
    env = {
        "WEBEX_MEDIA_BOUNDARY_RESPONSE_TYPE": "CHUNK",
        "WEBEX_MEDIA_REALTIME_PACING": "true",
    }
    legacy = MediaServerConfig.from_env(env)
    assert legacy.boundary_response_type == "CHUNK"
    assert legacy.realtime_pacing is True


async def test_chunk_audio_is_not_paced_by_default(media_server, caller_factory):
    # A frozen clock: paced streaming could never get more than pacing_lead_ms ahead of it, so
    # the whole 3 s prompt arriving proves the default sends audio as soon as it exists.
    server = BYOVAMediaServer(
        MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False, audio_mode="chunk"),
        clock=lambda: 1000.0,
    )
    prompt = b"\x7f" * 24000  # 3 s of 8 kHz µ-law

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.play_audio(prompt)

    async with server:
        caller = caller_factory(server)
        result = await caller.start_session()
        assert result.ok
        assert result.audio == prompt
        assert len(result.finals) == 1
        assert result.audio[:4] != b"RIFF"  # raw µ-law, no header


async def test_a_request_after_the_final_on_the_same_rpc_is_dropped(media_server):
    server = await media_server(half_close_timeout_s=60.0)
    _agent(server)
    pressed: list[str] = []

    @server.on("dtmf_input")
    def record(event: Any) -> None:
        pressed.append(event.digits)

    await server.start()
    async with aio.insecure_channel(server.address) as channel:
        stub = vva_grpc.VoiceVirtualAgentStub(channel)
        cid = str(uuid.uuid4())
        call = stub.ProcessCallerInput()
        await call.write(_start(cid))
        welcome = await asyncio.wait_for(call.read(), SAFETY)
        assert welcome.prompts[0].text == "Welcome"
        await call.write(_dtmf(cid, 1))  # an RPC is one turn: nothing more is due on it
        await call.done_writing()
        assert await asyncio.wait_for(call.read(), SAFETY) is aio.EOF
        assert await call.code() == grpc.StatusCode.OK
        again, code = await _reply_then_half_close(stub, _dtmf(cid, 1))  # its own RPC: answered
        assert code == grpc.StatusCode.OK
        assert [r.prompts[0].text for r in again] == ["You pressed one"]
    assert pressed == ["1"]
