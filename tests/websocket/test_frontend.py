"""The WebSocket front end over real sockets on loopback, driven by the real Webex-side caller."""

from __future__ import annotations

import asyncio
import json
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from webex_byova.jws import BYOVA_SCHEMA_ID, JWSVerifier
from webex_byova.media import audio
from webex_byova.media._ws_codec import WS_SCHEMA_ID
from webex_byova.media.assets import load
from webex_byova.media.config import MediaServerConfig
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.testing import WebexCaller, WebexEmulator, WebexWsCaller, WsUpgradeRefused

from ..media.test_server_features import pki  # noqa: F401  (fixture)

HELLO = load("speech_hello.wav")
WELCOME = audio.make_wav(b"\x7f" * 4000)  # 0.5 s of µ-law
ORIGIN = "wss://byova.example.com"

FAST: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "ws_host": "127.0.0.1",
    "ws_port": 0,
    "transport": "websocket",
    "verify_tokens": False,
    "realtime_pacing": False,
    "half_close_timeout_s": 5.0,
    "ws_close_grace_s": 2.0,
}


def app(server: BYOVAMediaServer, log: list[Any]) -> None:
    """One app, unchanged whichever transport carries it."""

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.session.state["turns"] = 0
        event.turn.say("Welcome to the test agent", wav=WELCOME)

    @server.on("utterance")
    async def reply(event: Any) -> None:
        event.session.state["turns"] += 1
        await asyncio.sleep(0.01)
        event.turn.say(f"You spoke {event.session.state['turns']} times")

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        log.append(("dtmf", event.digits))
        if event.digits == "5":
            event.turn.transfer_to_agent("Transferring you now", summary="caller pressed 5")
        else:
            event.turn.say(f"You pressed {event.digits}")

    @server.on("custom_event")
    def custom(event: Any) -> None:
        event.turn.custom_event(event.event_name, metadata={"echo": True})

    @server.on("session_end")
    def ended(event: Any) -> None:
        log.append(("session_end", event.reason))


@pytest.fixture
async def servers() -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``server = await servers(log, **config)``, running :func:`app` (started);
    ``with_app=False`` returns it unstarted and bare. Stopped after the test."""
    made: list[BYOVAMediaServer] = []

    async def factory(
        log: list[Any] | None = None, *, with_app: bool = True, **overrides: Any
    ) -> BYOVAMediaServer:
        server_kwargs = {k: overrides.pop(k) for k in ("agents", "verifier") if k in overrides}
        server = BYOVAMediaServer(MediaServerConfig(**{**FAST, **overrides}), **server_kwargs)
        made.append(server)
        if with_app:
            app(server, log if log is not None else [])
            await server.start()
        return server

    yield factory
    for server in made:
        await server.stop(grace=0.5)


def ws_caller(server: BYOVAMediaServer, **kwargs: Any) -> WebexWsCaller:
    kwargs.setdefault("realtime", False)
    kwargs.setdefault("turn_timeout", 20.0)
    return WebexWsCaller(server.ws_url, **kwargs)


def caller_for(transport: str, server: BYOVAMediaServer, **kwargs: Any) -> Any:
    if transport == "websocket":
        return ws_caller(server, **kwargs)
    kwargs.setdefault("realtime", False)
    kwargs.setdefault("rpc_timeout", 20.0)
    return WebexCaller(server.address, **kwargs)


# --------------------------------------------------------------------------- same app, both


@pytest.mark.parametrize("transport", ["grpc", "websocket"])
async def test_the_same_app_passes_the_same_call_over_both_transports(
    servers: Callable[..., Any], transport: str
) -> None:
    log: list[Any] = []
    server = await servers(log, transport=transport)
    caller = caller_for(transport, server)
    try:
        welcome = await caller.start_session()
        assert welcome.ok, welcome.details
        assert welcome.texts == ["Welcome to the test agent"]
        assert welcome.audio == b"\x7f" * 4000  # raw µ-law on WebSocket, a WAV on gRPC
        assert welcome.final.input_mode == 3
        assert welcome.final.input_handling_config.speech_timers.complete_timeout_msec == 800

        caller.realtime, caller.speed = True, 5.0  # paced so END_OF_INPUT can stop the stream
        first = await caller.say(wav=HELLO, trailing_silence_ms=30000)
        caller.realtime = False
        assert first.ok, first.details
        assert first.event_types == ["START_OF_INPUT", "END_OF_INPUT"]
        assert first.texts == ["You spoke 1 times"]
        total = len(caller.frames(wav=HELLO, leading_silence_ms=200, trailing_silence_ms=30000))
        assert first.frames_sent < total // 2

        pressed = await caller.press("7")
        assert pressed.ok
        assert pressed.texts == ["You pressed 7"]
        custom = await caller.custom_event("lookup", {"account": "42"})
        assert custom.ok
        assert custom.events == [("CUSTOM_EVENT", "lookup")]

        transfer = await caller.press("5")
        assert transfer.ok
        assert transfer.event_types == ["TRANSFER_TO_AGENT"]
        assert transfer.texts == ["Transferring you now"]
        assert not transfer.final.HasField("input_handling_config")
        assert transfer.final.session_summary.text == "caller pressed 5"
    finally:
        await caller.aclose()
    assert ("dtmf", "7") in log
    assert ("session_end", "transfer_to_agent") in log
    if transport == "websocket":
        assert caller.violations == []
        assert caller.close_code == 1000


async def test_both_transports_at_once_share_one_server(servers: Callable[..., Any]) -> None:
    server = await servers(transport="both")
    grpc_caller = caller_for("grpc", server)
    async with ws_caller(server) as ws:
        results = await asyncio.gather(grpc_caller.start_session(), ws.start_session())
        assert [r.texts for r in results] == [["Welcome to the test agent"]] * 2
        assert {grpc_caller.conversation_id, ws.conversation_id} <= set(server.sessions)
        assert (await ws.press("1")).texts == ["You pressed 1"]
        assert (await grpc_caller.press("2")).texts == ["You pressed 2"]
    await grpc_caller.aclose()


async def test_terminal_response_closes_the_socket_cleanly(servers: Callable[..., Any]) -> None:
    server = await servers(ws_close_grace_s=0.2)
    async with ws_caller(server) as caller:
        await caller.start_session()
        transfer = await caller.press("5")
        assert transfer.terminal
        # Webex would close; this caller does not, so the server closes after its grace
        assert await caller.wait_closed(10.0) == 1000
    assert caller.violations == []


async def test_caller_hang_up(servers: Callable[..., Any]) -> None:
    log: list[Any] = []
    server = await servers(log)
    caller = ws_caller(server)
    await caller.start_session()
    end = await caller.end_session()
    assert end.ok
    assert end.close_code == 1000
    for _ in range(200):
        if ("session_end", "caller_ended") in log:
            break
        await asyncio.sleep(0.01)
    assert ("session_end", "caller_ended") in log
    assert caller.conversation_id not in server.sessions


# --------------------------------------------------------------------------- envelope rules


async def test_ping_is_answered_in_the_middle_of_a_reply(servers: Callable[..., Any]) -> None:
    server = await servers(with_app=False, audio_mode="chunk")
    release = asyncio.Event()

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("Hello")

    @server.on("dtmf_input")
    async def slow(event: Any) -> None:
        await event.turn.stream(_slow_audio(release))

    await server.start()

    def audio_chunks(caller: WebexWsCaller) -> int:
        return sum(
            1
            for e in caller.received
            if e.get("payload", {}).get("response_type") == "CHUNK" and e["payload"]["prompts"]
        )

    async with ws_caller(server) as caller:
        await caller.start_session()
        step = asyncio.ensure_future(caller.send_dtmf("9"))
        while not audio_chunks(caller):  # the reply has started streaming
            await asyncio.sleep(0.01)
        pong = await caller.ping()
        release.set()
        result = await step
    assert pong["type"] == "PONG"
    ping = next(e for e in caller.sent if e["type"] == "PING")
    assert pong["seq"] == ping["seq"]
    kinds = [(e["type"], e.get("payload", {}).get("response_type")) for e in caller.received]
    final = len(kinds) - 1 - kinds[::-1].index(("VOICE_VA_RESPONSE", "FINAL"))
    assert kinds.index(("PONG", None)) < final
    assert result.ok
    assert result.audio == b"\x7f" * 1600
    assert caller.violations == []


async def _slow_audio(release: asyncio.Event) -> AsyncIterator[bytes]:
    yield b"\x7f" * 800
    await release.wait()
    yield b"\x7f" * 800


async def test_every_message_we_send_has_a_strictly_increasing_seq(
    servers: Callable[..., Any],
) -> None:
    server = await servers()
    async with ws_caller(server) as caller:
        await caller.start_session()
        await caller.ping()
        await caller.say(wav=HELLO, trailing_silence_ms=2000)
        await caller.press("1")
        await caller.ping()
        await caller.press("5")
    ours = [e for e in caller.received if e["type"] != "PONG"]
    assert len(ours) > 5
    seqs = [e["seq"] for e in ours]
    assert seqs == sorted(set(seqs))
    assert seqs[0] == 1
    pongs = [e["seq"] for e in caller.received if e["type"] == "PONG"]
    pings = [e["seq"] for e in caller.sent if e["type"] == "PING"]
    assert pongs == pings
    for env in caller.received:
        assert env["conversation_id"] == caller.conversation_id
    assert caller.violations == []


def _env(caller: WebexWsCaller, **over: Any) -> str:
    env = caller.envelope(payload=caller.event_payload("NO_INPUT"))
    env.update(over)
    return json.dumps(env)


@pytest.mark.parametrize(
    ("case", "code", "status", "close"),
    [
        ("binary", "unsupported_media", 415, 1003),
        ("malformed", "bad_request", 400, 1002),
        ("duplicate_seq", "bad_request", 400, 1002),
        ("conversation_mismatch", "bad_request", 400, 1002),
        ("payload_mismatch", "bad_request", 400, 1002),
        ("second_session_start", "bad_request", 400, 1002),
        ("too_big", "bad_request", 413, 1009),
        ("unsupported_encoding", "unsupported_media", 415, 1003),
    ],
)
async def test_protocol_errors_get_an_error_and_a_close(
    servers: Callable[..., Any], case: str, code: str, status: int, close: int
) -> None:
    log: list[Any] = []
    server = await servers(log)
    async with ws_caller(server) as caller:
        assert (await caller.start_session()).ok
        if case == "binary":
            frame: str | bytes = b"\x00\x01binary"
        elif case == "malformed":
            frame = '{"type": "VOICE_VA_REQUEST", "seq": '
        elif case == "duplicate_seq":
            frame = _env(caller, seq=caller.sent[-1]["seq"])
        elif case == "conversation_mismatch":
            frame = _env(caller, conversation_id="someone-else")
        elif case == "payload_mismatch":
            other = dict(caller.event_payload("NO_INPUT"), conversation_id="someone-else")
            frame = _env(caller, payload=other)
        elif case == "second_session_start":
            frame = _env(caller, payload=caller.event_payload("SESSION_START"))
        elif case == "too_big":
            frame = _env(caller, metadata={"junk": "x" * (200 * 1024)})
        else:
            frame = _env(caller, payload=caller.audio_payload(b"\x00" * 160, encoding="LINEAR16"))
            frame = frame.replace('"LINEAR16_FORMAT"', '"OPUS_FORMAT"')
        assert await caller.send_raw(frame)
        assert await caller.wait_closed(10.0) == close
    error = caller.unsolicited[-1]
    assert error["type"] == "ERROR"
    assert (error["code"], error["status"]) == (code, status)
    assert error["seq"] > caller.received[-2]["seq"]
    assert set(error) == {"type", "seq", "ts", "conversation_id", "code", "status", "detail"}
    assert caller.violations == []
    for _ in range(200):  # the conversation is over for the handlers too
        if caller.conversation_id not in server.sessions:
            break
        await asyncio.sleep(0.01)
    assert caller.conversation_id not in server.sessions
    assert ("session_end", "connection_lost") in log


async def test_a_dropped_socket_ends_the_conversation(servers: Callable[..., Any]) -> None:
    log: list[Any] = []
    server = await servers(log)
    caller = ws_caller(server)
    await caller.start_session()
    assert caller.conversation_id in server.sessions
    await caller.aclose(1001)  # no SESSION_END: Webex never reconnects a socket
    for _ in range(200):
        if ("session_end", "connection_lost") in log:
            break
        await asyncio.sleep(0.01)
    assert ("session_end", "connection_lost") in log
    assert caller.conversation_id not in server.sessions


async def test_session_start_deadline(servers: Callable[..., Any]) -> None:
    server = await servers(ws_session_start_timeout_s=0.3)
    async with ws_caller(server) as caller:
        await caller.connect()
        await caller.ping()  # a PING is answered but is not a SESSION_START
        assert await caller.wait_closed(10.0) == 1008
    error = caller.unsolicited[-1]
    assert (error["type"], error["code"], error["status"]) == ("ERROR", "timeout", 408)


async def test_first_request_must_be_session_start(servers: Callable[..., Any]) -> None:
    server = await servers()
    async with ws_caller(server) as caller:
        result = await caller.press("1")
        assert result.error is not None
        assert result.error["code"] == "bad_request"
        assert await caller.wait_closed(10.0) == 1002


async def test_a_second_socket_for_a_live_conversation_is_refused(
    servers: Callable[..., Any],
) -> None:
    server = await servers()
    async with (
        ws_caller(server) as first,
        ws_caller(server, conversation_id=first.conversation_id) as second,
    ):
        assert (await first.start_session()).ok
        refused = await second.start_session()
        assert refused.error is not None
        assert (refused.error["code"], refused.error["status"]) == ("bad_request", 409)
        assert await second.wait_closed(10.0) == 1008
        assert (await first.press("1")).texts == ["You pressed 1"]  # the owner is unaffected


async def test_unknown_agent_is_refused(servers: Callable[..., Any]) -> None:
    server = await servers(agents=["known=Known"])
    async with ws_caller(server, virtual_agent_id="unknown") as caller:
        result = await caller.start_session()
        assert result.error is not None
        assert (result.error["code"], result.error["status"]) == ("bad_request", 404)
        assert await caller.wait_closed(10.0) == 1008


async def test_fifty_simultaneous_conversations(servers: Callable[..., Any]) -> None:
    server = await servers()
    callers = [ws_caller(server) for _ in range(50)]

    async def call(caller: WebexWsCaller, i: int) -> list[str]:
        async with caller:
            welcome = await caller.start_session()
            pressed = await caller.press(str(i % 5 if i % 5 != 0 else 1))
            ended = await caller.end_session()
            assert welcome.ok
            assert pressed.ok
            assert ended.ok
            return pressed.texts

    texts = await asyncio.gather(*(call(c, i) for i, c in enumerate(callers)))
    assert all(t and t[0].startswith("You pressed") for t in texts)
    assert all(c.violations == [] for c in callers)
    assert len({c.conversation_id for c in callers}) == 50


async def test_server_stop_closes_open_sockets(servers: Callable[..., Any]) -> None:
    server = await servers()
    caller = ws_caller(server)
    await caller.start_session()
    await server.stop(grace=0.2)
    assert await caller.wait_closed(10.0) == 1001
    await caller.aclose()


# --------------------------------------------------------------------------- discovery


async def test_list_virtual_agents(servers: Callable[..., Any]) -> None:
    server = await servers(agents=["a=Agent A", "b=Agent B"])
    caller = ws_caller(server)
    answer = await caller.list_agents("org-1")
    assert answer == {
        "virtual_agents": [{"id": "a", "name": "Agent A"}, {"id": "b", "name": "Agent B"}]
    }


async def test_unknown_paths_are_404(servers: Callable[..., Any]) -> None:
    server = await servers()
    with pytest.raises(WsUpgradeRefused) as info:
        await WebexWsCaller(server.ws_url + "/v2/other").connect()
    assert info.value.status == 404


# --------------------------------------------------------------------------- auth


@pytest.fixture
async def auth_server(
    servers: Callable[..., Any], webex_emulator: WebexEmulator
) -> AsyncIterator[BYOVAMediaServer]:
    async with JWSVerifier(webex_emulator.config()) as verifier:
        yield await servers(
            verify_tokens=True,
            ws_expected_url=ORIGIN,
            expected_org_id=webex_emulator.org.org_id,
            verifier=verifier,
        )


@pytest.mark.parametrize(
    "case", ["missing", "garbage", "bare", "wrong_schema", "wrong_org", "wrong_url", "expired"]
)
@pytest.mark.parametrize("path", ["/v1/va", "/v1/listVirtualAgents"])
async def test_bad_tokens_are_refused_with_401_before_the_socket_opens(
    auth_server: BYOVAMediaServer, webex_emulator: WebexEmulator, case: str, path: str
) -> None:
    emu = webex_emulator
    mint = emu.mint_data_source_token
    tokens: dict[str, Callable[[], str | None]] = {
        "missing": lambda: None,
        "garbage": lambda: "not-a-jwt",
        "bare": lambda: mint(url=ORIGIN, schema_id=WS_SCHEMA_ID),
        "wrong_schema": lambda: mint(url=ORIGIN, schema_id=BYOVA_SCHEMA_ID),
        "wrong_org": lambda: mint(
            url=ORIGIN, schema_id=WS_SCHEMA_ID, org_id=emu.create_org().org_id
        ),
        "wrong_url": lambda: mint(url=ORIGIN + ":443", schema_id=WS_SCHEMA_ID),
        "expired": lambda: mint(url=ORIGIN, schema_id=WS_SCHEMA_ID, lifetime_minutes=-10),
    }
    token = tokens[case]()
    caller = WebexWsCaller(auth_server.ws_url + path, token=token)
    if case == "bare":
        caller._headers = lambda: {"Authorization": str(token)}  # type: ignore[method-assign]
    with pytest.raises(WsUpgradeRefused) as info:
        await caller.connect()
    assert info.value.status == 401
    assert b"eyJ" not in info.value.body
    assert auth_server.sessions == {}


async def test_a_good_token_binds_its_org(
    auth_server: BYOVAMediaServer, webex_emulator: WebexEmulator
) -> None:
    org = webex_emulator.org.org_id
    token = webex_emulator.mint_data_source_token(url=ORIGIN, schema_id=WS_SCHEMA_ID)
    async with ws_caller(auth_server, token=token, customer_org_id=org) as caller:
        assert (await caller.start_session()).ok
        assert (await caller.press("1")).ok
    async with ws_caller(auth_server, token=token, customer_org_id="another-org") as caller:
        refused = await caller.start_session()
        assert refused.error is not None
        assert (refused.error["code"], refused.error["status"]) == ("unauthorized", 403)
        assert await caller.wait_closed(10.0) == 1008
    listing = await ws_caller(auth_server, token=token).list_agents(org)
    assert listing["virtual_agents"][0]["id"] == "default"
    wrong = await ws_caller(auth_server, token=token).list_agents("another-org")
    assert (wrong["code"], wrong["status"]) == ("unauthorized", 403)


# --------------------------------------------------------------------------- TLS


async def test_wss_with_tls(servers: Callable[..., Any], pki: dict[str, Any]) -> None:  # noqa: F811
    root = pki["dir"]
    server = await servers(
        ws_tls_cert_file=root / "server.pem", ws_tls_key_file=root / "server.key"
    )
    assert server.ws_url.startswith("wss://")
    context = ssl.create_default_context(cadata=pki["ca"].decode())
    url = server.ws_url.replace("127.0.0.1", "localhost")
    async with WebexWsCaller(url, ssl=context, realtime=False) as caller:
        welcome = await caller.start_session()
        assert welcome.ok
        assert welcome.texts == ["Welcome to the test agent"]
    untrusted = WebexWsCaller(url, realtime=False)
    with pytest.raises(ssl.SSLError):
        await untrusted.connect()


# --------------------------------------------------------------------------- discovery errors


async def _list_exchange(server: BYOVAMediaServer, frame: str | bytes | None) -> tuple[Any, int]:
    from websockets.asyncio.client import connect

    async with connect(server.ws_url + "/v1/listVirtualAgents", proxy=None) as ws:
        if frame is not None:
            await ws.send(frame)
        answer = await ws.recv()
        await ws.wait_closed()
        assert ws.close_code is not None
        return json.loads(answer), ws.close_code


@pytest.mark.parametrize(
    ("frame", "code", "status", "close"),
    [
        (b"\x00", "unsupported_media", 415, 1003),
        ("{", "bad_request", 400, 1002),
        ('{"customer_org_id": 5}', "bad_request", 400, 1002),
        (None, "timeout", 408, 1008),
    ],
)
async def test_list_virtual_agents_errors(
    servers: Callable[..., Any], frame: str | bytes | None, code: str, status: int, close: int
) -> None:
    server = await servers(ws_session_start_timeout_s=0.3)
    answer, close_code = await _list_exchange(server, frame)
    assert answer == {"code": code, "status": status, "detail": answer["detail"]}
    assert close_code == close


async def test_list_virtual_agents_provider_failure(servers: Callable[..., Any]) -> None:
    server = await servers(with_app=False)

    @server.agent_provider
    def broken(org_id: str) -> list[str]:
        raise RuntimeError("database down")

    await server.start()
    answer, close_code = await _list_exchange(server, '{"customer_org_id": "acme"}')
    assert (answer["code"], answer["status"], close_code) == ("upstream_error", 500, 1011)


# --------------------------------------------------------------------------- drain, metrics


async def test_drain_refuses_new_sockets_with_503_and_transfers_the_live_call(
    servers: Callable[..., Any],
) -> None:
    server = await servers(drain_timeout_s=0.2)
    live = ws_caller(server)
    assert (await live.start_session()).texts == ["Welcome to the test agent"]
    drained = asyncio.ensure_future(server.drain())
    await asyncio.sleep(0.05)
    late = ws_caller(server)
    with pytest.raises(WsUpgradeRefused) as info:
        await late.connect()
    assert info.value.status == 503
    (session,) = server.sessions.values()
    for _ in range(500):  # past drain_timeout_s the live call is marked to end on its next turn
        if session._drain_action is not None:
            break
        await asyncio.sleep(0.01)
    answer = await live.press("1")
    assert answer.has_event("TRANSFER_TO_AGENT")
    assert await live.wait_closed(10.0) == 1000
    await drained
    await live.aclose()
    await late.aclose()


def _total(server: BYOVAMediaServer, name: str, **labels: str) -> float:
    """Sum of a counter's samples whose labels include ``labels``."""
    return sum(
        sample.value
        for family in server.metrics.registry.collect()
        for sample in family.samples
        if sample.name == name and labels.items() <= sample.labels.items()
    )


async def test_sockets_and_refused_upgrades_are_counted(
    auth_server: BYOVAMediaServer, webex_emulator: WebexEmulator
) -> None:
    refused = WebexWsCaller(auth_server.ws_url, token="not-a-jwt")
    with pytest.raises(WsUpgradeRefused):
        await refused.connect()
    await refused.aclose()
    assert _total(auth_server, "webex_byova_auth_refusals_total", transport="websocket") == 1
    token = webex_emulator.mint_data_source_token(url=ORIGIN, schema_id=WS_SCHEMA_ID)
    good = ws_caller(auth_server, token=token, customer_org_id=webex_emulator.org.org_id)
    assert (await good.start_session()).texts == ["Welcome to the test agent"]
    assert _total(auth_server, "webex_byova_streams_opened_total", transport="websocket") == 1
    assert _total(auth_server, "webex_byova_streams_opened_total", transport="grpc") == 0
    await good.end_session()
    await good.aclose()


# --------------------------------------------------------------------------- near misses


async def test_near_miss_tokens_and_verifier_bugs_never_open_a_socket(
    servers: Callable[..., Any], webex_emulator: WebexEmulator
) -> None:
    """The upgrade fails closed: a signature one character off (or cut, or extended), and a
    verifier that fails with an unexpected exception, each get 401 and no conversation."""
    from ..security.conftest import B64URL, near_misses

    async with JWSVerifier(webex_emulator.config()) as verifier:
        server = await servers(
            verify_tokens=True,
            ws_expected_url=ORIGIN,
            expected_org_id=webex_emulator.org.org_id,
            verifier=verifier,
        )
        token = webex_emulator.mint_data_source_token(url=ORIGIN, schema_id=WS_SCHEMA_ID)
        head, body, signature = token.split(".")
        for name, bad in near_misses(signature, B64URL, last_step=32).items():
            caller = WebexWsCaller(server.ws_url, token=f"{head}.{body}.{bad}")
            with pytest.raises(WsUpgradeRefused) as info:
                await caller.connect()
            assert info.value.status == 401, name
            await caller.aclose()

        async def broken(*_args: Any, **_kwargs: Any) -> dict[str, Any]:
            raise RuntimeError("key cache corrupted")

        verifier.averify = broken  # type: ignore[method-assign]
        caller = WebexWsCaller(server.ws_url, token=token)
        with pytest.raises(WsUpgradeRefused) as info:
            await caller.connect()
        assert info.value.status == 401
        await caller.aclose()
        assert server.sessions == {}
