"""Issue 12 (media items 1-12) and issue 15 item 8: every hostile input and handler fault gets a
bounded, typed answer over real gRPC. Each RPC ends by the server's own bounds (the callers'
``wait()`` has no deadline of its own)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import pytest
from grpc import aio

from webex_byova._ids import org_hydra_id
from webex_byova.jws import JWSVerifier
from webex_byova.media._auth import REFLECTION_PREFIXES
from webex_byova.media._bounds import MAX_CONVERSATION_ID, printable
from webex_byova.media._messages import TextSpec
from webex_byova.media._proto import byova_common_pb2 as common
from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media.assets import load
from webex_byova.media.server import SERVICE_NAME
from webex_byova.media.session import HandlerCancelledError, HandlerTimeoutError
from webex_byova.testing import WebexEmulator

YES = load("speech_yes.wav")
SORRY = "Sorry, something went wrong. Please try again."
METHOD = f"/{SERVICE_NAME}/ProcessCallerInput"
URL = "https://byova.example.test/grpc"


def _varint(n: int) -> bytes:
    out = b""
    while True:
        byte, n = n & 0x7F, n >> 7
        out += bytes([byte | (0x80 if n else 0)])
        if not n:
            return out


def _ld(tag: int, payload: bytes) -> bytes:
    return bytes([tag]) + _varint(len(payload)) + payload


def _deep_request(depth: int) -> bytes:
    """A SESSION_START whose parameters ``Struct`` nests ``depth`` levels, encoded by hand."""
    struct = b""
    for _ in range(depth):  # {"a": {"a": ...}}: Struct.fields entry -> Value.struct_value
        struct = _ld(0x0A, _ld(0x0A, b"a") + _ld(0x12, _ld(0x2A, struct)))
    event = b"\x08\x01" + _ld(0x1A, struct)  # EventInput.event_type, .parameters
    return vva.VoiceVARequest(conversation_id="deep").SerializeToString() + _ld(0x42, event)


UNDECODABLE = {
    "random bytes": b"\xff\xff\xff\xff\x07garbage",
    "bad utf-8": b"\x0a\x02\xff\xfe",
    "truncated": vva.VoiceVARequest(conversation_id="c" * 50).SerializeToString()[:20],
    "struct nested too deep": _deep_request(120),
}


class RawTurn:
    """A ProcessCallerInput RPC over raw bytes (what a hostile peer can put on the wire)."""

    def __init__(self, channel: aio.Channel) -> None:
        self.queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        call = channel.stream_stream(
            METHOD, request_serializer=None, response_deserializer=vva.VoiceVAResponse.FromString
        )
        self.call = call(self._requests())

    async def _requests(self) -> AsyncIterator[bytes]:
        while (item := await self.queue.get()) is not None:
            yield item

    async def result(self) -> tuple[list[vva.VoiceVAResponse], grpc.StatusCode, str]:
        responses = []
        try:
            async for response in self.call:
                responses.append(response)
        except aio.AioRpcError:
            pass  # the status is read below
        return responses, await self.call.code(), await self.call.details() or ""


def _welcome_server(server: Any, errors: list[BaseException] | None = None) -> None:
    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("hello")

    if errors is not None:
        server.on("error")(lambda event: errors.append(event.exception))


# ---------------------------------------------------------------------------- 1. undecodable


@pytest.mark.parametrize("case", sorted(UNDECODABLE))
async def test_undecodable_first_request_is_invalid_argument(media_server, case):
    server = await media_server()
    _welcome_server(server)
    await server.start()
    async with aio.insecure_channel(server.address) as channel:
        rpc = RawTurn(channel)
        await rpc.queue.put(UNDECODABLE[case])
        responses, code, details = await rpc.result()
        assert responses == []
        assert code == grpc.StatusCode.INVALID_ARGUMENT
        assert details == "request is not a valid VoiceVARequest"
        assert "Decode" not in details
        listing = channel.unary_unary(
            f"/{SERVICE_NAME}/ListVirtualAgents",
            request_serializer=None,
            response_deserializer=common.ListVAResponse.FromString,
        )
        with pytest.raises(aio.AioRpcError) as caught:
            await listing(UNDECODABLE[case] if case != "struct nested too deep" else b"\xff")
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert caught.value.details() == "request is not a valid ListVARequest"
    assert server.sessions == {}


# ---------------------------------------------------------------- 2. bad message mid-RPC


@pytest.mark.parametrize("case", ["random bytes", "bad utf-8"])
async def test_bad_message_after_a_valid_first_ends_the_rpc_with_the_reply_due(
    media_server, caller_factory, case
):
    server = await media_server()
    _welcome_server(server)
    await server.start()
    caller = caller_factory(server)
    async with aio.insecure_channel(server.address) as channel:
        rpc = RawTurn(channel)
        await rpc.queue.put(caller.event_request("SESSION_START").SerializeToString())
        await rpc.queue.put(UNDECODABLE[case])  # and never half-closes
        responses, code, details = await rpc.result()
    assert [p.text for r in responses for p in r.prompts] == ["hello"]
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "request is not a valid VoiceVARequest"
    session = server.sessions[caller.conversation_id]
    assert session.turns == []  # the slot is free again
    assert (await caller.say(wav=YES)).ok


@pytest.mark.parametrize("case", ["random bytes", "bad utf-8"])
async def test_after_the_final_frames_are_only_checked_and_a_bad_one_still_ends_the_rpc(
    media_server, caller_factory, case
):
    """After a turn's FINAL the reader no longer decodes the input of the frames Webex goes
    on sending (an RPC is one turn), but each is still parsed: garbage ends the RPC with
    INVALID_ARGUMENT, as before the FINAL."""
    server = await media_server()
    _welcome_server(server)
    await server.start()
    caller = caller_factory(server)
    async with aio.insecure_channel(server.address) as channel:
        rpc = RawTurn(channel)
        await rpc.queue.put(caller.event_request("SESSION_START").SerializeToString())
        final = await anext(aiter(rpc.call))  # the FINAL is out: the turn takes no more input
        assert [p.text for p in final.prompts] == ["hello"]
        for _ in range(3):  # valid frames after it are refused quietly
            await rpc.queue.put(caller.audio_request(b"\xff" * 160).SerializeToString())
        await rpc.queue.put(UNDECODABLE[case])  # and never half-closes
        responses, code, details = await rpc.result()
    assert responses == []
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details == "request is not a valid VoiceVARequest"
    assert (await caller.say(wav=YES)).ok


async def test_bad_message_mid_audio_turn_sends_the_empty_final(media_server, caller_factory):
    server = await media_server()
    _welcome_server(server)
    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    async with aio.insecure_channel(server.address) as channel:
        rpc = RawTurn(channel)
        await rpc.queue.put(caller.audio_request(b"\xff" * 160).SerializeToString())
        await rpc.queue.put(b"\xff\xff\xff")
        responses, code, _ = await rpc.result()
    assert [r.response_type for r in responses] == [vva.VoiceVAResponse.FINAL]
    assert code == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------------- 3. bounded text


async def test_caller_text_in_statuses_is_bounded(media_server, caller_factory):
    server = await media_server()
    _welcome_server(server)
    await server.start()
    cases = [
        ({"conversation_id": "c" * (MAX_CONVERSATION_ID + 1)}, "INVALID_ARGUMENT",
         "conversation_id longer than 1024 characters"),
        ({"virtual_agent_id": "a" * 1024 * 1024}, "INVALID_ARGUMENT",
         "virtual_agent_id longer than 256 characters"),
        ({"customer_org_id": "o" * 300}, "INVALID_ARGUMENT",
         "customer_org_id longer than 256 characters"),
        ({"vendor_specific_config": "v" * (65 * 1024)}, "INVALID_ARGUMENT",
         "vendor_specific_config larger than 65536 bytes"),
        ({"additional_info": {str(i): "x" * 100 for i in range(1000)}}, "INVALID_ARGUMENT",
         "additional_info larger than 256 entries or 65536 bytes"),
        ({"virtual_agent_id": "\n" + "b" * 250}, "NOT_FOUND",
         "Agent not found: " + printable("\n" + "b" * 250)),
    ]  # fmt: skip
    for fields, code, details in cases:
        caller = caller_factory(server, conversation_id=fields.pop("conversation_id", None))
        turn = caller.open()
        await turn.send(
            caller.event_request("SESSION_START").__class__(
                **{**_fields(caller.event_request("SESSION_START")), **fields}
            )
        )
        await turn.half_close()
        result = await turn.wait()
        assert result.code == getattr(grpc.StatusCode, code), fields.keys()
        assert result.details == details
        assert len(result.details) <= 200
    ok = caller_factory(server, conversation_id="c" * MAX_CONVERSATION_ID)
    assert (await ok.start_session()).texts == ["hello"]


def _fields(request: vva.VoiceVARequest) -> dict[str, Any]:
    return {
        "conversation_id": request.conversation_id,
        "customer_org_id": request.customer_org_id,
        "virtual_agent_id": request.virtual_agent_id,
        "event_input": request.event_input,
    }


# ------------------------------------------------------------------- 5. wrong handler types


def _bad_calls() -> dict[str, Any]:
    class Live:
        pass

    async def ints() -> AsyncIterator[Any]:
        yield 5

    return {
        "say(123)": lambda t: t.say(123),
        "say(['a'])": lambda t: t.say(["a"]),
        "say(ssml=1)": lambda t: t.say(ssml=1),
        "say(wav='x')": lambda t: t.say(wav="x"),
        "say(barge_in='no')": lambda t: t.say("x", barge_in="no"),
        "end_session(transcript=123)": lambda t: t.end_session("bye", transcript=123),
        "end_session(summary=['x'])": lambda t: t.end_session(summary=["x"]),
        "transfer_to_agent(transcript=b'x')": lambda t: t.transfer_to_agent(transcript=b"x"),
        "transfer_to_agent(metadata=Live)": lambda t: t.transfer_to_agent(metadata={"k": Live()}),
        "transfer_to_agent(metadata=list)": lambda t: t.transfer_to_agent(metadata=[1]),
        "custom_event(metadata=Live)": lambda t: t.custom_event("n", {"k": Live()}),
        "custom_event(name=5)": lambda t: t.custom_event(5),
        "set_transcript(5)": lambda t: t.set_transcript(5),
        "set_summary(TextSpec(language_code=5))": lambda t: t.set_summary(
            TextSpec(text="x", language_code=5)
        ),
        "set_input(dtmf_length='4')": lambda t: t.set_input(dtmf_length="4"),
        "set_input(terminator=3)": lambda t: t.set_input(terminator=3),
        "set_input(sensitive='yes')": lambda t: t.set_input(sensitive="yes"),
        "stream('text')": lambda t: t.stream("text"),
        "session.say(1)": lambda t: t.session.say(1),
        "session.end_session(transcript=1)": lambda t: t.session.end_session(transcript=1),
        "state[k] = live object": lambda t: t.session.state.__setitem__("k", Live()),
        "state.update(live object)": lambda t: t.session.state.update(k=asyncio.Lock()),
        "stream of ints": lambda t: t.stream(ints()),
    }


@pytest.mark.parametrize("audio_mode", ["wav", "chunk"])
@pytest.mark.parametrize("call", sorted(_bad_calls()))
async def test_wrong_types_from_handlers_take_the_error_path(
    media_server, caller_factory, call, audio_mode
):
    server = await media_server(audio_mode=audio_mode)
    errors: list[BaseException] = []
    server.on("error")(lambda event: errors.append(event.exception))

    @server.on("session_start")
    def welcome(event: Any) -> None:
        _bad_calls()[call](event.turn)

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.ok
    assert result.texts == [SORRY]
    assert not result.terminal
    assert len(errors) == 1
    assert isinstance(errors[0], TypeError), errors
    assert caller.conversation_id in server.sessions  # the call goes on


async def test_wrong_type_with_end_call_on_error_still_ends_the_call(media_server, caller_factory):
    server = await media_server(end_call_on_error=True)

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.end_session("Bye", transcript=123)

    await server.start()
    result = await caller_factory(server).start_session()
    assert result.ok
    assert result.texts == [SORRY]
    assert result.event_types == ["SESSION_END"]


# ----------------------------------------------------------------------- 6. CancelledError


@pytest.mark.parametrize("flavour", ["async", "sync", "awaited cancelled future"])
async def test_handler_raising_cancelled_error_is_a_handler_failure(
    media_server, caller_factory, flavour
):
    server = await media_server()
    errors: list[BaseException] = []
    server.on("error")(lambda event: errors.append(event.exception))

    if flavour == "sync":

        @server.on("session_start")
        def welcome(event: Any) -> None:
            raise asyncio.CancelledError

    else:

        @server.on("session_start")
        async def welcome(event: Any) -> None:
            if flavour == "async":
                raise asyncio.CancelledError
            future = asyncio.get_running_loop().create_future()
            future.cancel()
            await future

    await server.start()
    result = await caller_factory(server).start_session()
    assert result.ok
    assert result.texts == [SORRY]
    assert [type(e) for e in errors] == [HandlerCancelledError]
    assert isinstance(errors[0].__cause__, asyncio.CancelledError)


# --------------------------------------------------------- 7. timeout covers the error path


async def _forever() -> AsyncIterator[bytes]:
    await asyncio.Event().wait()
    yield b""  # pragma: no cover - never reached


@pytest.mark.parametrize("say_first", [True, False])
@pytest.mark.parametrize("audio_mode", ["wav", "chunk"])
async def test_stream_source_that_never_yields_gets_the_apology(
    media_server, caller_factory, audio_mode, say_first
):
    server = await media_server(audio_mode=audio_mode, handler_timeout_s=0.2)
    errors: list[BaseException] = []
    server.on("error")(lambda event: errors.append(event.exception))

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        if say_first:
            event.turn.say("one moment")
            event.turn.stream(_forever())
        else:  # the handler waits for the stream too: its timeout and the source's both fire
            await event.turn.stream(_forever())

    await server.start()
    caller = caller_factory(server)
    result = await caller.start_session()
    assert result.ok
    assert result.texts == (["one moment", SORRY] if say_first else [SORRY])  # one apology
    assert errors
    assert {type(e) for e in errors} == {HandlerTimeoutError}
    assert (await caller.say(wav=YES)).ok


@pytest.mark.parametrize("failure", ["raises", "hangs"])
@pytest.mark.parametrize("error_response", ["prompt", "custom_event"])
async def test_hanging_error_handler_cannot_hold_the_reply(
    media_server, caller_factory, failure, error_response
):
    server = await media_server(handler_timeout_s=0.2, error_response=error_response)
    seen: list[str] = []

    @server.on("session_start")
    async def welcome(event: Any) -> None:
        if failure == "raises":
            raise RuntimeError("boom")
        await asyncio.Event().wait()

    @server.on("error")
    async def stuck(event: Any) -> None:
        seen.append(type(event.exception).__name__)
        await asyncio.Event().wait()

    await server.start()
    result = await caller_factory(server).start_session()
    assert result.ok
    if error_response == "prompt":
        assert result.texts == [SORRY]
    else:
        assert result.events == [("CUSTOM_EVENT", "error_occurred")]
    assert seen[0] == ("RuntimeError" if failure == "raises" else "HandlerTimeoutError")


# ------------------------------------------------------------------------- 8. log injection


async def test_caller_values_are_escaped_in_logs(media_server, caller_factory, caplog):
    server = await media_server()

    @server.on("session_start")
    def welcome(event: Any) -> None:
        raise ValueError(f"bad {event.event_name}")

    await server.start()
    hostile = "c1\n2026-12-01 INFO webex_byova.media FAKE LINE"
    caplog.set_level(logging.DEBUG, logger="webex_byova")
    caller = caller_factory(server, conversation_id=hostile)
    result = await caller.start_session(name="evt\nFAKE")
    assert result.texts == [SORRY]
    unknown = caller_factory(server, conversation_id=hostile + "2", virtual_agent_id="a\nFAKE")
    assert (await unknown.start_session()).code == grpc.StatusCode.NOT_FOUND
    records = [r for r in caplog.records if r.name.startswith("webex_byova.media")]
    assert any("c1\\n2026" in r.getMessage() for r in records)
    assert any("a\\nFAKE" in r.getMessage() for r in records)
    assert any("evt\\nFAKE" in r.getMessage() for r in records)
    for record in records:
        assert "\n" not in record.getMessage()
        assert "\r" not in record.getMessage()
        for name in ("conversation_id", "trackingid"):
            assert "\n" not in str(getattr(record, name, "")), record.getMessage()


# ---------------------------------------------------------------------- 9. state plain data


async def test_state_mutated_into_a_live_object_is_reported_once_on_the_log(
    media_server, caller_factory, caplog
):
    server = await media_server()

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.session.state["items"] = []
        event.session.state["items"].append(asyncio.Lock())  # escapes the set-time check
        event.turn.say("hello")

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("heard")

    await server.start()
    caplog.set_level(logging.INFO, logger="webex_byova")
    caller = caller_factory(server)
    assert (await caller.start_session()).texts == ["hello"]
    assert (await caller.say(wav=YES)).texts == ["heard"]
    await asyncio.sleep(0.05)  # store writes (there must be none failing)
    problems = [r for r in caplog.records if "not plain data" in r.getMessage()]
    assert len(problems) == 1
    assert "state['items'][0] is a Lock" in problems[0].getMessage()
    assert not [r for r in caplog.records if "store write failed" in r.getMessage()]


# --------------------------------------------------------------- 10-12. tokens and tenants


@pytest.fixture(scope="module")
def emulator() -> Iterator[WebexEmulator]:
    with WebexEmulator() as emu:
        yield emu


async def _token_server(media_server: Any, emulator: WebexEmulator, **kwargs: Any) -> Any:
    verifier = JWSVerifier(emulator.config(), expected_url=kwargs.get("expected_url"))
    server = await media_server(verify_tokens=True, verifier=verifier, **kwargs)
    server._test_verifier = verifier
    return server


async def test_token_of_org_a_cannot_act_for_org_b(media_server, caller_factory, emulator):
    server = await _token_server(media_server, emulator, expected_url=URL)
    seen: list[tuple[str, str | None]] = []

    @server.agent_provider
    def agents(customer_org_id: str, *, verified_org: str | None) -> list[str]:
        seen.append((customer_org_id, verified_org))
        return ["bot"]

    _welcome_server(server)
    await server.start()
    org_a = emulator.org.org_id
    org_b = str(uuid.uuid4())
    token = emulator.mint_data_source_token(url=URL, org_id=org_a)
    try:
        for org in (org_b, org_hydra_id(org_b)):
            intruder = caller_factory(server, token=token, customer_org_id=org)
            with pytest.raises(aio.AioRpcError) as caught:
                await intruder.list_agents()
            assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
            assert caught.value.details() == "customer_org_id does not match the token"
            result = await intruder.start_session()
            assert result.code == grpc.StatusCode.PERMISSION_DENIED
            assert result.details == "customer_org_id does not match the token"
        assert seen == []  # the provider never saw org B
        for org in (org_a, org_hydra_id(org_a), org_a.upper()):
            own = caller_factory(server, token=token, customer_org_id=org)
            assert [a.virtual_agent_id for a in await own.list_agents()] == ["bot"]
            assert (await own.start_session()).texts == ["hello"]
        assert {verified for _, verified in seen} == {org_a.lower()}
        # A token of org B cannot join org A's conversation, even naming no org at all.
        token_b = emulator.mint_data_source_token(url=URL, org_id=org_b)
        joined = caller_factory(
            server, token=token_b, customer_org_id="", conversation_id=own.conversation_id
        )
        result = await joined.start_session()
        assert result.code == grpc.StatusCode.PERMISSION_DENIED
        assert result.details == "conversation belongs to another org"
    finally:
        await server._test_verifier.aclose()


async def test_one_argument_agent_provider_still_works(media_server, caller_factory, emulator):
    server = await _token_server(media_server, emulator, expected_url=URL)
    server.agent_provider(lambda customer_org_id: [f"bot-{customer_org_id[:4]}"])
    await server.start()
    token = emulator.mint_data_source_token(url=URL)
    caller = caller_factory(server, token=token, customer_org_id=emulator.org.org_id)
    try:
        assert [a.virtual_agent_id for a in await caller.list_agents()] == [
            f"bot-{emulator.org.org_id[:4]}"
        ]
    finally:
        await server._test_verifier.aclose()


async def test_reflection_lists_services_without_a_token(media_server, emulator):
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    server = await _token_server(media_server, emulator, expected_url=URL, reflection=True)
    await server.start()

    def list_services() -> list[str]:
        with grpc.insecure_channel(server.address) as channel:
            return list(ProtoReflectionDescriptorDatabase(channel).get_services())

    try:
        services = await asyncio.to_thread(list_services)
        assert SERVICE_NAME in services
        assert "grpc.health.v1.Health" in services
        assert REFLECTION_PREFIXES[0].strip("/").rsplit("/")[0] in services
        async with aio.insecure_channel(server.address) as channel:  # the VA itself: no
            listing = channel.unary_unary(
                f"/{SERVICE_NAME}/ListVirtualAgents",
                request_serializer=common.ListVARequest.SerializeToString,
                response_deserializer=common.ListVAResponse.FromString,
            )
            with pytest.raises(aio.AioRpcError) as caught:
                await listing(common.ListVARequest())
            assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await server._test_verifier.aclose()


@pytest.mark.parametrize("expected_url", [None, URL])
async def test_startup_warns_when_no_expected_url(media_server, emulator, caplog, expected_url):
    caplog.set_level(logging.WARNING, logger="webex_byova.media")
    server = await _token_server(media_server, emulator, expected_url=expected_url)
    await server.start()
    warnings = [r for r in caplog.records if "no expected_url" in r.getMessage()]
    assert len(warnings) == (1 if expected_url is None else 0)
    await server.stop(0.1)
    await server._test_verifier.aclose()


async def test_no_warning_without_token_checks(media_server, caplog):
    caplog.set_level(logging.WARNING, logger="webex_byova.media")
    server = await media_server()
    await server.start()
    assert not [r for r in caplog.records if "no expected_url" in r.getMessage()]


# ------------------------------------------------ issue 15 item 8: set_input and DTMF keys


async def test_input_settings_persist_until_changed_and_dtmf_without_terminator(
    media_server, caller_factory
):
    server = await media_server()
    keys: list[tuple[str, str]] = []

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.set_input("dtmf", dtmf_length=6, terminator="#", sensitive=True)
        event.turn.say("PIN?")

    @server.on("dtmf_input")
    def pin(event: Any) -> None:
        keys.append((event.digits, event.entered))
        if event.entered == "0":
            event.turn.set_input("voice_dtmf", sensitive=False)
        event.turn.say("ok")

    await server.start()
    caller = caller_factory(server)
    first = await caller.start_session()
    assert first.final.input_sensitive is True
    second = await caller.press("12345#")
    third = await caller.press("9")
    for result in (second, third):  # every setting stays in force, sensitive included
        assert result.final.input_sensitive is True
        assert result.final.input_handling_config.dtmf_config.dtmf_input_length == 6
    fourth = await caller.press("0")
    assert fourth.final.input_sensitive is False
    assert fourth.final.input_handling_config.dtmf_config.dtmf_input_length == 6
    assert keys == [("12345#", "12345"), ("9", "9"), ("0", "0")]


# ------------------------------------------------------------------------ pure pieces


def test_printable_escapes_and_bounds() -> None:
    assert printable("ok id") == "ok id"
    assert printable("a\nb\r\x1b[31m\u2028") == "a\\nb\\r\\x1b[31m\\u2028"
    assert printable(printable("a\nb")) == "a\\nb"  # escaping twice changes nothing
    cut = printable("x" * 10_000, 50)
    assert len(cut) == 50
    assert cut.endswith("…")
    assert printable("\ud800") == "\\ud800"  # a lone surrogate from a peer


def test_plain_state_refuses_live_objects_on_every_setter() -> None:
    from webex_byova.media._model import PlainState, plain_data_problem

    state = PlainState({"n": 1})
    state["ok"] = {"list": [1, 2.5, "x", None, True, ("t",)]}
    for setter in (
        lambda: state.__setitem__("bad", object()),
        lambda: state.update({"bad": {1: "int key"}}),
        lambda: state.update(bad=[asyncio.Lock()]),
        lambda: state.setdefault("bad", b"bytes"),
        lambda: state.__ior__({"bad": {"deep": object()}}),
        lambda: state.__setitem__(3, "non-str key"),
    ):
        with pytest.raises(TypeError, match="plain data|keys must be str"):
            setter()
    assert "bad" not in state
    deep: Any = "leaf"
    for _ in range(40):
        deep = [deep]
    assert "nested deeper than 32" in (plain_data_problem(deep) or "")


# ---------------------------------------------------------------------- 4. HTTP/2 keepalive


def _frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([kind, flags])
        + stream.to_bytes(4, "big")
        + (payload)
    )


def _literal(name: str, value: str) -> bytes:  # HPACK literal header field, no indexing
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


async def test_keepalive_drops_a_peer_that_vanishes_mid_rpc(media_server, caller_factory):
    """A peer that opens an RPC and then goes silent (never ACKs a PING, never half-closes)
    is disconnected by the server's keepalive: the RPC ends and its turn is freed."""
    server = await media_server(keepalive_time_s=0.2, keepalive_timeout_s=0.2)
    _welcome_server(server)
    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    host, port = server.address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + _frame(0x04, 0, 0, b""))
    frames = await reader.read(65536)  # the server's SETTINGS
    headers = b"".join(
        _literal(k, v)
        for k, v in (
            (":method", "POST"),
            (":scheme", "http"),
            (":path", METHOD),
            (":authority", server.address),
            ("content-type", "application/grpc"),
            ("te", "trailers"),
        )
    )
    message = caller.audio_request(b"\xff" * 160).SerializeToString()
    writer.write(
        _frame(0x04, 0x01, 0, b"")  # SETTINGS ACK
        + _frame(0x01, 0x04, 1, headers)  # HEADERS, END_HEADERS
        + _frame(0x00, 0, 1, b"\x00" + len(message).to_bytes(4, "big") + message)
    )
    await writer.drain()
    session = server.sessions[caller.conversation_id]
    try:  # from here on the peer is silent: it answers no PING
        while chunk := await asyncio.wait_for(reader.read(65536), 30):  # safety net only
            frames += chunk
    except ConnectionResetError:
        pass  # closed under us: also the server's doing
    writer.close()
    pings = [i for i in range(len(frames) - 9) if frames[i + 3] == 0x06 and frames[i + 4] == 0]
    assert pings  # the server pinged, then gave up on the peer
    while session.turns:  # the RPC's cancellation reaches the turn
        await asyncio.sleep(0.01)
    assert (await caller.say(wav=YES)).ok
