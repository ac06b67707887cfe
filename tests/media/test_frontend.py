"""The front-end interface of the call core (open_turn / TurnHandle / CallRejected).

The gRPC front end is one user of it (every gRPC test in this directory goes through it); these
tests drive the interface directly with transport-neutral requests, the way the WebSocket front
end does, and pin that no call-core module imports a wire format.
"""

from __future__ import annotations

import ast
import asyncio
from pathlib import Path
from typing import Any

import pytest

from webex_byova.media import audio
from webex_byova.media._frontend import CallRejected, TurnHandle
from webex_byova.media._messages import AgentResponse, AudioIn, CallerRequest, DtmfIn, EventIn
from webex_byova.media.assets import load
from webex_byova.media.server import BYOVAMediaServer

from .conftest import make_config

MEDIA = Path(__file__).resolve().parents[2] / "src" / "webex_byova" / "media"
CORE_MODULES = (
    "session.py",
    "_responses.py",
    "_model.py",
    "_messages.py",
    "_frontend.py",
    "events.py",
    "store.py",
    "config.py",
    "server.py",
)
WIRE_MODULES = ("grpc", "google", "websockets")


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            prefix = "." * node.level + (node.module or "")
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)
    return names


@pytest.mark.parametrize("module", CORE_MODULES)
def test_call_core_modules_import_no_wire_format(module: str) -> None:
    imported = _imports(MEDIA / module)
    wire = {
        name
        for name in imported
        if name.split(".")[0] in WIRE_MODULES or "_proto" in name or "_grpc_codec" in name
    }
    if module == "server.py":  # the composition root reaches gRPC only via its front end
        assert {n for n in imported if "_grpc" in n} <= {
            "._grpc_frontend",
            "._grpc_frontend.SERVICE_NAME",
            "._grpc_frontend.GrpcFrontEnd",
            "._grpc_codec",
            "._grpc_codec.virtual_agent_info",
        }
        wire -= {"._grpc_codec", "._grpc_codec.virtual_agent_info", "._proto",
                 "._proto.byova_common_pb2"}  # fmt: skip
    assert not wire, f"{module} imports wire-format modules: {sorted(wire)}"


def _req(cid: str, item: Any = None, **kwargs: Any) -> CallerRequest:
    return CallerRequest(conversation_id=cid, input=item, **kwargs)


START = EventIn(type="session_start", name="call_start")


def _server(**overrides: Any) -> BYOVAMediaServer:
    return BYOVAMediaServer(make_config(**overrides), agents=["agent-1=Agent"])


async def _drain(handle: TurnHandle) -> list[AgentResponse]:
    return [r async for r in handle.responses()]


def _events(responses: list[AgentResponse]) -> list[str]:
    return [e.type for r in responses for e in r.output_events]


async def test_websocket_turns_answer_without_half_close_and_hand_over_the_next_message():
    server = _server()
    seen: list[str] = []

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("Welcome")

    @server.on("start_of_dtmf")
    def keys_coming(event: Any) -> None:
        seen.append("start_of_dtmf")

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        seen.append(event.digits)
        event.turn.say(f"You pressed {event.digits}")

    start = await server.open_turn(_req("c1", START), transport="websocket")
    welcome_responses = await _drain(start)  # ends after the FINAL: no caller_done needed
    assert [r.response_type for r in welcome_responses] == ["final"]
    assert welcome_responses[0].prompts[0].text == "Welcome"
    assert welcome_responses[0].settings is not None  # next-input configuration
    assert start.closed
    assert start.turn.outcome == "completed"
    dtmf_start = _req("c1", EventIn(type="start_of_dtmf"))
    assert not start.feed(dtmf_start)  # the FINAL is out: the message opens the next turn

    marker = await server.open_turn(dtmf_start, transport="websocket")
    digits = _req("c1", DtmfIn(digits="42#"))
    assert not marker.feed(digits)  # START_OF_DTMF answers nothing: a one-message turn
    assert await _drain(marker) == []
    assert marker.turn.kind == "start_of_dtmf"

    entry = await server.open_turn(digits, transport="websocket")
    replies = await _drain(entry)
    assert [(r.response_type, r.prompts[0].text) for r in replies] == [("final", "You pressed 42#")]
    assert seen == ["start_of_dtmf", "42#"]
    assert [s.record.turns for s in server.sessions.values()] == [3]
    await server.stop(grace=0.1)


async def test_websocket_audio_turn_keeps_its_frames_until_the_reply_then_hands_over():
    server = _server(complete_timeout_ms=400)
    utterances: list[str] = []

    @server.on("utterance")
    async def reply(event: Any) -> None:
        utterances.append(event.reason)
        await asyncio.sleep(0)
        event.turn.say("Got it")

    start = await server.open_turn(_req("c2", START), transport="websocket")
    assert [r.response_type for r in await _drain(start)] == ["final"]  # empty reply

    ulaw = audio.wav_to_webex(load("speech_hello.wav"), target_rate=8000)
    speech = [ulaw[i : i + 160] for i in range(0, len(ulaw) - 159, 160)]
    frames = [AudioIn(audio=f, encoding="mulaw", sample_rate_hz=8000) for f in speech]
    frames += [AudioIn(audio=b"\xff" * 160) for _ in range(200)]  # µ-law silence
    turn = await server.open_turn(_req("c2", frames[0]), transport="websocket")
    pump = asyncio.get_running_loop().create_task(_drain(turn))
    handed_over: CallerRequest | None = None
    for frame in frames[1:]:
        request = _req("c2", frame)
        if not turn.feed(request):
            handed_over = request
            break
        await turn.drain()
        await asyncio.sleep(0)  # let the handler run as real time would
    responses = await pump
    assert _events(responses) == ["start_of_input", "end_of_input"]
    assert [r.response_type for r in responses] == ["chunk", "chunk", "final"]
    assert responses[-1].prompts[0].text == "Got it"
    assert utterances == ["silence"]
    assert handed_over is not None  # a frame after the FINAL was not swallowed
    nxt = await server.open_turn(handed_over, transport="websocket")
    assert nxt.turn.kind == "audio"
    nxt.caller_gone()
    assert nxt.closed
    assert nxt.turn.outcome == "cancelled"
    await server.stop(grace=0.1)


async def test_caller_gone_ends_a_running_response_stream_as_cancelled():
    server = _server()
    ended: list[str] = []
    release = asyncio.Event()

    @server.on("session_start")
    async def slow(event: Any) -> None:
        await release.wait()

    @server.on("turn_ended")
    def turn_ended(event: Any) -> None:
        ended.append(event.outcome)

    handle = await server.open_turn(_req("c3", START), transport="websocket")
    pump = asyncio.get_running_loop().create_task(_drain(handle))
    await asyncio.sleep(0)
    handle.caller_gone()
    assert await pump == []
    assert handle.turn.outcome == "cancelled"
    assert not handle.feed(_req("c3", DtmfIn(digits="1")))
    release.set()
    for _ in range(5):
        await asyncio.sleep(0)
    assert ended == ["cancelled"]
    await server.stop(grace=0.1)


async def test_open_turn_refusals_are_neutral_kinds():
    server = _server()
    cases = [
        (_req("", START), "invalid_argument"),
        (_req("c4", START, virtual_agent_id="nope"), "not_found"),
    ]
    for first, kind in cases:
        with pytest.raises(CallRejected) as caught:
            await server.open_turn(first, transport="grpc")
        assert caught.value.kind == kind
    org = _req("c5", START, customer_org_id="org-a")
    with pytest.raises(CallRejected) as caught:
        await server.open_turn(org, transport="websocket", verified_org="org-b")
    assert caught.value.kind == "permission_denied"
    ok = await server.open_turn(org, transport="websocket", verified_org="org-a")
    await _drain(ok)
    later = _req("c5", DtmfIn(digits="1"))  # no org in the request: the conversation's counts
    with pytest.raises(CallRejected) as caught:
        await server.open_turn(later, transport="websocket", verified_org="org-b")
    assert caught.value.kind == "permission_denied"
    assert len(CallRejected("internal", "x" * 1000).detail) <= 200
    await server.start()
    await server.stop(grace=0.1)
    with pytest.raises(CallRejected) as caught:
        await server.open_turn(_req("c6", START), transport="grpc")
    assert caught.value.kind == "unavailable"


async def test_offered_agents_mark_exactly_one_default():
    server = _server()
    server.add_agent("agent-2", "Second", is_default=True)
    agents = await server.offered_agents("org")
    assert [(a.virtual_agent_id, a.is_default) for a in agents] == [
        ("agent-1", False),
        ("agent-2", True),
    ]

    @server.agent_provider
    def broken(org: str) -> list[str]:
        raise RuntimeError("backend down")

    with pytest.raises(CallRejected) as caught:
        await server.offered_agents("org")
    assert caught.value.kind == "internal"


async def test_responses_iterate_once() -> None:
    server = _server()
    handle = await server.open_turn(_req("c7", START), transport="websocket")
    await _drain(handle)
    with pytest.raises(RuntimeError, match="only once"):
        await _drain(handle)


async def test_a_lost_websocket_ends_its_conversation_and_open_turns():
    server = _server()
    reasons: list[str] = []
    waiting: list[str] = []

    @server.on("session_start")
    async def ask(event: Any) -> None:
        try:
            await event.turn.collect_input()
        except Exception as exc:
            waiting.append(type(exc).__name__)

    @server.on("session_end")
    def ended(event: Any) -> None:
        reasons.append(event.reason)

    start = await server.open_turn(_req("c8", START), transport="websocket")
    assert [r.response_type for r in await _drain(start)] == ["final"]
    turn = await server.open_turn(_req("c8", AudioIn(audio=b"\xff" * 160)), transport="websocket")
    turn.caller_gone()  # the socket dropped before this turn's responses were pumped
    assert await _drain(turn) == []
    assert turn.turn.outcome == "cancelled"
    assert server.end_conversation("c8")
    assert not server.end_conversation("c8")
    assert not server.end_conversation("never-seen")
    for _ in range(5):
        await asyncio.sleep(0)
    assert reasons == ["connection_lost"]
    assert waiting == ["SessionEndedError"]
    assert "c8" not in server.sessions


async def test_a_blocked_audio_input_handler_holds_the_reader_at_the_queue_bound():
    """Backpressure: with ``audio_input`` handlers stuck, a reader stops taking frames once
    ``response_queue_size`` events wait (``backlogged``), and goes on when they run again."""
    from webex_byova.media._grpc_frontend import _read
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva

    server = _server(response_queue_size=4)
    release = asyncio.Event()
    handled: list[int] = []

    @server.on("audio_input")
    async def slow(event: Any) -> None:
        await release.wait()
        handled.append(len(event.audio))

    frame = AudioIn(audio=b"\xff" * 160, encoding="mulaw", sample_rate_hz=8000)
    handle = await server.open_turn(_req("bp", frame), transport="grpc")
    assert not handle.backlogged
    taken: list[int] = []
    wire = vva.VoiceVARequest(
        conversation_id="bp",
        audio_input=vva.VoiceInput(caller_audio=b"\xff" * 160, encoding=1, sample_rate_hertz=8000),
    ).SerializeToString()

    async def requests() -> Any:
        for i in range(20):
            taken.append(i)
            yield wire

    reader = asyncio.get_running_loop().create_task(_read(handle, requests()))
    for _ in range(50):
        await asyncio.sleep(0)
    assert not reader.done()
    assert handle.backlogged
    # The first frame came with open_turn; one event is with the (stuck) handler, four wait.
    assert len(taken) < 10
    stalled = len(taken)
    for _ in range(20):
        await asyncio.sleep(0)
    assert len(taken) == stalled  # held, not polling on
    release.set()
    assert await asyncio.wait_for(reader, 5) is None
    assert len(taken) == 20
    assert not handle.backlogged
    handle.caller_gone()
    await server.stop(grace=0.1)
    assert handled  # the handlers ran once released
