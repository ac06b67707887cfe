"""The gRPC token interceptor fails closed, over real grpc.aio servers.

Two setups: the BYOVA media server (``ProcessCallerInput`` and ``ListVirtualAgents``) with a
verifier that breaks in ways other than a token-verification error, and a plain grpc.aio
server with one method of each cardinality behind :class:`TokenAuthInterceptor`, so every
shape of rejection is exercised. A refused call must end ``UNAUTHENTICATED`` (never ``OK``)
by the server's own doing, without the method's handler ever running.
"""

from __future__ import annotations

import asyncio
import base64
import contextvars
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import grpc
import httpx
import pytest
from grpc import aio

from webex_byova._http import HttpClient
from webex_byova._ids import to_hydra
from webex_byova.jws import CLAIM_ORG, JWSVerifier
from webex_byova.media._auth import (
    HEALTH_PREFIX,
    TokenAuthInterceptor,
    token_from_metadata,
    verified_claims,
    verified_org,
)
from webex_byova.media._metrics import MediaMetrics
from webex_byova.testing import WebexEmulator

URL = "https://byova.example.test/grpc"
#: A compact JWS without an issuer (refused as ``missing_claim:iss`` before any key or clock).
NO_ISSUER = ".".join(
    base64.urlsafe_b64encode(part).rstrip(b"=").decode()
    for part in (b'{"alg":"RS256","kid":"k"}', b"{}", b"sig")
)


@pytest.fixture(scope="module")
def gemu() -> Iterator[WebexEmulator]:
    with WebexEmulator() as emu:
        yield emu


def _broken_clock() -> float:
    raise RuntimeError("clock source failed")


class _BrokenTransport(httpx.AsyncBaseTransport):
    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        raise RuntimeError("transport bug")


# --------------------------------------------------------------------------- the media server


async def _server_with(media_server: Any, verifier: JWSVerifier, started: list[str]) -> Any:
    server = await media_server(verify_tokens=True, expected_url=URL, verifier=verifier)

    @server.on("session_start")
    def welcome(event: Any) -> None:
        started.append(event.session.conversation_id)
        event.turn.say("you are in")

    await server.start()
    return server


async def _assert_both_rpcs_refused(server: Any, caller_factory: Any, token: str) -> str:
    caller = caller_factory(server, token=token)
    result = await caller.start_session()
    assert result.code == grpc.StatusCode.UNAUTHENTICATED, (result.code, result.details)
    assert result.responses == []
    with pytest.raises(aio.AioRpcError) as info:
        await caller.list_agents()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert server.sessions == {}
    return result.details


async def test_verifier_raising_unexpectedly_is_unauthenticated(
    media_server, caller_factory, gemu
) -> None:
    """The interceptor's catch-all: a verifier bug must not let the call through."""
    started: list[str] = []
    verifier = JWSVerifier(gemu.config(), expected_url=URL, clock=_broken_clock)
    server = await _server_with(media_server, verifier, started)
    token = gemu.mint_data_source_token(url=URL)
    details = await _assert_both_rpcs_refused(server, caller_factory, token)
    assert details == "token verification failed"
    assert started == []


async def test_key_fetch_breaking_is_unauthenticated(media_server, caller_factory, gemu) -> None:
    started: list[str] = []
    http = HttpClient(gemu.config(), async_transport=_BrokenTransport())
    verifier = JWSVerifier(gemu.config(), expected_url=URL, http=http)
    try:
        server = await _server_with(media_server, verifier, started)
        token = gemu.mint_data_source_token(url=URL)
        details = await _assert_both_rpcs_refused(server, caller_factory, token)
        assert details == "token rejected: jwks_unavailable"
        assert started == []
    finally:
        await http.aclose()


async def test_unexpected_failure_is_logged_without_the_token(
    media_server, caller_factory, gemu, caplog
) -> None:
    verifier = JWSVerifier(gemu.config(), expected_url=URL, clock=_broken_clock)
    server = await _server_with(media_server, verifier, [])
    token = gemu.mint_data_source_token(url=URL)
    with caplog.at_level(logging.INFO, logger="webex_byova.media.auth"):
        await caller_factory(server, token=token, tracking_id="track-1").start_session()
    records = [r for r in caplog.records if r.name == "webex_byova.media.auth"]
    messages = [r.getMessage() for r in records]
    assert "token verification failed unexpectedly: RuntimeError" in messages
    assert (
        "/com.cisco.wcc.ccai.media.v1.VoiceVirtualAgent/ProcessCallerInput rejected: "
        "token verification failed" in messages
    )
    assert any(str(getattr(r, "trackingid", "")).startswith("track-1") for r in records)
    assert all(token not in m and token[-20:] not in m for m in messages)


async def test_raising_agent_provider_fails_list_agents(media_server, caller_factory) -> None:
    server = await media_server()

    @server.agent_provider
    def agents(org_id: str) -> list[Any]:
        raise RuntimeError("directory down")

    started: list[str] = []

    @server.on("session_start")
    def welcome(event: Any) -> None:
        started.append(event.session.conversation_id)

    await server.start()
    caller = caller_factory(server)
    with pytest.raises(aio.AioRpcError) as info:
        await caller.list_agents()
    assert info.value.code() == grpc.StatusCode.INTERNAL
    result = await caller.start_session()
    assert result.code == grpc.StatusCode.INTERNAL
    assert result.responses == []
    assert started == []


async def test_async_raising_agent_provider_fails_list_agents(media_server, caller_factory) -> None:
    server = await media_server()

    @server.agent_provider
    async def agents(org_id: str) -> list[Any]:
        await asyncio.sleep(0)
        raise LookupError(org_id)

    await server.start()
    with pytest.raises(aio.AioRpcError) as info:
        await caller_factory(server).list_agents()
    assert info.value.code() == grpc.StatusCode.INTERNAL


# --------------------------------------------------------------------------- every cardinality


def _same(data: bytes) -> bytes:
    return data


class _Decoded:
    """What the service's request decoder makes of the bytes (so a handler that received the
    raw bytes, or a reply sent without the service's encoder, fails)."""

    def __init__(self, data: bytes) -> None:
        self.data = data


def _strict(data: bytes) -> _Decoded:
    """The service's request decoder: refuses what it cannot parse."""
    if data.startswith(b"\xff"):
        raise ValueError("undecodable request")
    return _Decoded(data)


def _encode(reply: _Decoded) -> bytes:
    return reply.data


class _Service:
    """One method per cardinality, recording which ones ever ran, the org each saw through
    :func:`verified_org` and the peer of its context."""

    def __init__(self) -> None:
        self.ran: list[str] = []
        self.orgs: list[str | None] = []
        self.peers: list[str] = []

    def _record(self, method: str, context: Any) -> None:
        self.ran.append(method)
        self.orgs.append(verified_org())
        self.peers.append(context.peer())

    async def unary_unary(self, request: _Decoded, context: Any) -> _Decoded:
        self._record("UnaryUnary", context)
        return _Decoded(request.data)

    async def unary_stream(self, request: _Decoded, context: Any) -> AsyncIterator[_Decoded]:
        self._record("UnaryStream", context)
        yield _Decoded(request.data)

    async def stream_unary(self, requests: Any, context: Any) -> _Decoded:
        self._record("StreamUnary", context)
        return _Decoded(b"".join([r.data async for r in requests]))

    async def stream_stream(self, requests: Any, context: Any) -> AsyncIterator[_Decoded]:
        self._record("StreamStream", context)
        async for request in requests:
            yield _Decoded(request.data)

    async def health(self, request: _Decoded, context: Any) -> _Decoded:
        self._record("Health", context)
        return _Decoded(b"serving")

    def handlers(self) -> list[grpc.GenericRpcHandler]:
        kw: dict[str, Any] = {"request_deserializer": _strict, "response_serializer": _encode}
        methods = {
            "UnaryUnary": grpc.unary_unary_rpc_method_handler(self.unary_unary, **kw),
            "UnaryStream": grpc.unary_stream_rpc_method_handler(self.unary_stream, **kw),
            "StreamUnary": grpc.stream_unary_rpc_method_handler(self.stream_unary, **kw),
            "StreamStream": grpc.stream_stream_rpc_method_handler(self.stream_stream, **kw),
        }
        health = {"Check": grpc.unary_unary_rpc_method_handler(self.health, **kw)}
        return [
            grpc.method_handlers_generic_handler("test.Echo", methods),
            grpc.method_handlers_generic_handler(HEALTH_PREFIX.strip("/").rstrip("/"), health),
        ]


@pytest.fixture
async def echo(gemu: WebexEmulator) -> AsyncIterator[Callable[..., Any]]:
    """Factory: ``service, channel = await echo(exempt_health=..., clock=...)``."""
    made: list[tuple[aio.Server, aio.Channel, JWSVerifier]] = []

    async def factory(**verifier_kwargs: Any) -> tuple[_Service, aio.Channel]:
        interceptor_kwargs = {
            k: verifier_kwargs.pop(k) for k in ("exempt_health", "metrics") if k in verifier_kwargs
        }
        verifier = JWSVerifier(gemu.config(), expected_url=URL, **verifier_kwargs)
        service = _Service()
        interceptor = TokenAuthInterceptor(verifier, **interceptor_kwargs)
        server = aio.server(interceptors=[interceptor])
        server.add_generic_rpc_handlers(service.handlers())
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        channel = aio.insecure_channel(f"127.0.0.1:{port}")
        made.append((server, channel, verifier))
        return service, channel

    yield factory
    for server, channel, verifier in made:
        await channel.close()
        await server.stop(0.5)
        await verifier.aclose()


def _meta(token: str | None) -> list[tuple[str, str]]:
    return [] if token is None else [("authorization", f"Bearer {token}")]


async def _call(channel: aio.Channel, method: str, token: str | None) -> tuple[Any, str, list]:
    """Call ``method`` with two request messages where it streams; (code, details, replies)."""
    path = f"/test.Echo/{method}"
    metadata = _meta(token)
    replies: list[bytes] = []
    try:
        if method == "UnaryUnary":
            replies.append(
                await channel.unary_unary(path, _same, _same)(b"a", metadata=metadata, timeout=20)
            )
        elif method == "UnaryStream":
            call = channel.unary_stream(path, _same, _same)(b"a", metadata=metadata, timeout=20)
            replies.extend([r async for r in call])
        elif method == "StreamUnary":
            call = channel.stream_unary(path, _same, _same)(metadata=metadata, timeout=20)
            for piece in (b"a", b"b"):
                await call.write(piece)
            await call.done_writing()
            replies.append(await call)
        else:
            call = channel.stream_stream(path, _same, _same)(metadata=metadata, timeout=20)
            for piece in (b"a", b"b"):
                await call.write(piece)
            await call.done_writing()
            replies.extend([r async for r in call])
    except aio.AioRpcError as exc:
        return exc.code(), exc.details() or "", replies
    return grpc.StatusCode.OK, "", replies


METHODS = ["UnaryUnary", "UnaryStream", "StreamUnary", "StreamStream"]


@pytest.mark.parametrize("method", METHODS)
async def test_every_cardinality_passes_with_a_good_token(echo, gemu, method) -> None:
    service, channel = await echo()
    code, _, replies = await _call(channel, method, gemu.mint_data_source_token(url=URL))
    assert code == grpc.StatusCode.OK
    assert replies in ([b"a"], [b"ab"], [b"a", b"b"])
    assert service.ran == [method]
    assert service.orgs == [gemu.org.org_id]  # the token's org reaches the method's task
    assert service.peers[0].startswith("ipv4:127.0.0.1:")
    assert verified_claims.get() is None  # ... and only that task


def _org_seen(claims: Any) -> str | None:
    def read() -> str | None:
        verified_claims.set(claims)
        return verified_org()

    return contextvars.copy_context().run(read)


def test_verified_org_of_the_claims() -> None:
    assert verified_org() is None  # tokens not verified
    assert _org_seen(None) is None
    org = "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"
    assert _org_seen({CLAIM_ORG: org.upper()}) == org
    assert _org_seen({CLAIM_ORG: to_hydra("ORGANIZATION", org)}) == org
    for claims in ({}, {CLAIM_ORG: 5}, {CLAIM_ORG: None}, {CLAIM_ORG: "not an org"}):
        assert _org_seen(claims) == ""  # verified but no usable org: matches none


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", ["missing", "bad_url", "verifier_bug"])
async def test_every_cardinality_is_refused(echo, gemu, method, case) -> None:
    kwargs: dict[str, Any] = {"clock": _broken_clock} if case == "verifier_bug" else {}
    service, channel = await echo(**kwargs)
    token = {
        "missing": None,
        "bad_url": gemu.mint_data_source_token(url=URL + "/"),
        "verifier_bug": gemu.mint_data_source_token(url=URL),
    }[case]
    code, details, replies = await _call(channel, method, token)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert (
        details
        == {
            "missing": "missing token in authorization metadata",
            "bad_url": "token rejected: claim_mismatch:url",
            "verifier_bug": "token verification failed",
        }[case]
    )
    assert replies == []
    assert service.ran == []


@pytest.mark.parametrize("method", METHODS)
async def test_undecodable_request_without_token_is_unauthenticated(echo, method) -> None:
    """The rejection does not decode the request: junk from an unauthenticated caller gets
    UNAUTHENTICATED, not the decoder's error."""
    service, channel = await echo()
    path = f"/test.Echo/{method}"
    junk = b"\xff\xfe junk"
    if method == "UnaryUnary":
        call: Any = channel.unary_unary(path, _same, _same)(junk, timeout=20)
    elif method == "UnaryStream":
        call = channel.unary_stream(path, _same, _same)(junk, timeout=20)
    else:
        factory = channel.stream_unary if method == "StreamUnary" else channel.stream_stream
        call = factory(path, _same, _same)(timeout=20)
        await call.write(junk)
        await call.done_writing()
    assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
    assert service.ran == []


async def test_undecodable_list_agents_without_token_is_unauthenticated(media_server, gemu) -> None:
    verifier = JWSVerifier(gemu.config(), expected_url=URL)
    server = await _server_with(media_server, verifier, [])
    async with aio.insecure_channel(server.address) as channel:
        method = "/com.cisco.wcc.ccai.media.v1.VoiceVirtualAgent/ListVirtualAgents"
        call = channel.unary_unary(method, _same, _same)(b"\xff\xff\xff\xff", timeout=20)
        assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
    await verifier.aclose()


async def test_refused_stream_ends_by_the_server_while_the_client_keeps_it_open(echo) -> None:
    """A caller that never half-closes still gets its UNAUTHENTICATED (bounded drain)."""
    service, channel = await echo()
    call = channel.stream_stream("/test.Echo/StreamStream", _same, _same)(timeout=30)
    await call.write(b"a")
    assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
    assert service.ran == []


async def test_refused_unpaced_flood_still_reads_unauthenticated(echo) -> None:
    """Many requests in flight when the rejection is sent: the status must still be ours."""
    service, channel = await echo()
    for _ in range(5):
        call = channel.stream_stream("/test.Echo/StreamStream", _same, _same)(timeout=30)

        async def flood(call: Any = call) -> None:
            try:
                for _ in range(100):
                    await call.write(b"x" * 1000)
                await call.done_writing()
            except (aio.AioRpcError, asyncio.InvalidStateError):
                pass  # the server answered while we were still writing

        writer = asyncio.create_task(flood())
        assert await call.code() == grpc.StatusCode.UNAUTHENTICATED
        await writer
    assert service.ran == []


async def test_health_is_exempt_by_default_only(echo) -> None:
    service, channel = await echo()
    check = channel.unary_unary(f"{HEALTH_PREFIX}Check", _same, _same)
    assert await check(b"", timeout=20) == b"serving"
    strict, strict_channel = await echo(exempt_health=False)
    with pytest.raises(aio.AioRpcError) as info:
        await strict_channel.unary_unary(f"{HEALTH_PREFIX}Check", _same, _same)(b"", timeout=20)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert service.ran == ["Health"]
    assert strict.ran == []


async def test_unknown_method_without_token_is_unimplemented(echo) -> None:
    _, channel = await echo()
    with pytest.raises(aio.AioRpcError) as info:
        await channel.unary_unary("/test.Echo/Nope", _same, _same)(b"", timeout=20)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_token_from_metadata_reads_the_authorization_entry_only() -> None:
    assert token_from_metadata(None) is None
    assert token_from_metadata([("x-authorization", "t")]) is None
    assert token_from_metadata([("authorization", "   ")]) is None
    assert token_from_metadata([("Authorization", " Bearer t ")]) == "Bearer t"
    assert token_from_metadata([("authorization", b"t\xff")]) == "t\ufffd"
    assert token_from_metadata([("trackingid", "x"), ("authorization", "a")]) == "a"


async def test_refusals_are_counted_by_reason(echo, gemu) -> None:
    metrics = MediaMetrics()
    service, channel = await echo(metrics=metrics)
    assert (await _call(channel, "UnaryUnary", None))[0] == grpc.StatusCode.UNAUTHENTICATED
    wrong_url = gemu.mint_data_source_token(url=URL + "/")
    assert (await _call(channel, "UnaryUnary", wrong_url))[0] == grpc.StatusCode.UNAUTHENTICATED
    good = gemu.mint_data_source_token(url=URL)
    assert (await _call(channel, "UnaryUnary", good))[0] == grpc.StatusCode.OK

    def refusals(reason: str) -> float | None:
        return metrics.registry.get_sample_value(
            "webex_byova_auth_refusals_total", {"transport": "grpc", "reason": reason}
        )

    assert refusals("missing_token") == 1.0
    assert refusals("claim_mismatch") == 1.0
    assert refusals("other") is None
    assert service.ran == ["UnaryUnary"]


async def test_unknown_method_with_a_good_token_is_unimplemented_quietly(
    echo, gemu, caplog
) -> None:
    _, channel = await echo()
    token = gemu.mint_data_source_token(url=URL)
    nope = channel.unary_unary("/test.Echo/Nope", _same, _same)
    with (
        caplog.at_level(logging.INFO, logger="webex_byova.media.auth"),
        pytest.raises(aio.AioRpcError) as info,
    ):
        await nope(b"", metadata=_meta(token), timeout=20)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert [r.getMessage() for r in caplog.records if r.name == "webex_byova.media.auth"] == []


async def test_a_refusal_is_logged_with_bounded_caller_text(echo, gemu, caplog) -> None:
    metrics = MediaMetrics()
    _, channel = await echo(metrics=metrics, clock=_broken_clock)
    method = "/test.Echo/" + "N" * 300
    call = channel.unary_unary(method, _same, _same)
    tracking = "t" * 300
    with (
        caplog.at_level(logging.INFO, logger="webex_byova.media.auth"),
        pytest.raises(aio.AioRpcError),
    ):
        await call(b"", metadata=[("trackingid", tracking), *_meta(NO_ISSUER)], timeout=20)
    token = gemu.mint_data_source_token(url=URL)
    with caplog.at_level(logging.INFO, logger="webex_byova.media.auth"):
        code = (await _call(channel, "UnaryUnary", token))[0]
    assert code == grpc.StatusCode.UNAUTHENTICATED
    refused = [
        r
        for r in caplog.records
        if r.getMessage().endswith("rejected: token rejected: missing_claim:iss")
    ]
    assert len(refused) == 1
    record = refused[0]
    assert record.getMessage() == f"{method[:199]}… rejected: token rejected: missing_claim:iss"
    assert (record.event, record.reason, record.transport) == (
        "auth_refused",
        "missing_claim",
        "grpc",
    )
    assert record.trackingid == "t" * 199 + "…"
    failed = [r for r in caplog.records if r.getMessage().endswith("token verification failed")]
    assert [r.reason for r in failed] == ["verifier_error"]  # no colon: the whole reason
    assert (
        metrics.registry.get_sample_value(
            "webex_byova_auth_refusals_total", {"transport": "grpc", "reason": "verifier_error"}
        )
        == 1.0
    )
