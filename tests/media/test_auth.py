"""Token verification on every RPC with tokens minted by the Webex emulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import pytest

from webex_byova.jws import JWSVerifier
from webex_byova.media._auth import token_from_metadata
from webex_byova.testing import WebexEmulator

URL = "https://byova.example.test/grpc"


@pytest.fixture(scope="module")
def emulator() -> Iterator[WebexEmulator]:
    with WebexEmulator() as emu:
        yield emu


@pytest.fixture
async def auth_server(media_server: Any, emulator: WebexEmulator) -> Any:
    verifier = JWSVerifier(emulator.config(), expected_url=URL)
    server = await media_server(verify_tokens=True, expected_url=URL, verifier=verifier)

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("authorised")

    await server.start()
    yield server
    await verifier.aclose()


async def test_valid_token_passes_raw_and_bearer(auth_server, caller_factory, emulator):
    token = emulator.mint_data_source_token(url=URL)
    for bearer in (False, True):
        caller = caller_factory(auth_server, token=token, bearer=bearer)
        result = await caller.start_session()
        assert result.ok, result.details
        assert result.texts == ["authorised"]
        assert [a.virtual_agent_id for a in await caller.list_agents()] == ["default"]


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("missing", "missing token"),
        ("expired", "expired"),
        ("forged", "token rejected"),
        ("wrong_url", "url"),
        ("garbage", "malformed"),
    ],
)
async def test_bad_tokens_are_unauthenticated(auth_server, caller_factory, emulator, case, reason):
    tokens = {
        "missing": None,
        "expired": lambda: emulator.mint_data_source_token(url=URL, lifetime_minutes=-10),
        "forged": lambda: emulator.mint_data_source_token(url=URL, alg="HS256"),
        "wrong_url": lambda: emulator.mint_data_source_token(url=URL + ":443"),
        "garbage": lambda: "not-a-jwt",
    }
    maker = tokens[case]
    caller = caller_factory(auth_server, token=maker() if maker else None)
    result = await caller.start_session()
    assert result.code == grpc.StatusCode.UNAUTHENTICATED
    assert reason in result.details.lower()
    assert result.responses == []
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await caller.list_agents()
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert auth_server.sessions == {}


async def test_audio_rpc_with_bad_token_never_streams(auth_server, caller_factory, emulator):
    token = emulator.mint_data_source_token(url="https://x")
    caller = caller_factory(auth_server, token=token)
    # One frame, then nothing until the server has answered: the server alone ends the RPC.
    # (Writing more after its status races grpc's client core, which may then report its own
    # INTERNAL "Internal error from Core" instead of the server's status.)
    turn = caller.open("audio")
    assert await turn.send(caller.audio_request(b"\xff" * 160))
    result = await turn.wait(10)
    assert result.code == grpc.StatusCode.UNAUTHENTICATED
    assert result.responses == []


def test_token_from_metadata() -> None:
    assert token_from_metadata([("Authorization", "Bearer abc")]) == "Bearer abc"
    assert token_from_metadata([("trackingid", "x"), ("authorization", b"tok")]) == "tok"
    assert token_from_metadata([("authorization", "  ")]) is None
    assert token_from_metadata(None) is None


async def test_logs_never_carry_the_token_and_are_keyed_by_call(
    media_server, caller_factory, emulator, caplog
):
    import logging

    verifier = JWSVerifier(emulator.config(), expected_url=URL)
    server = await media_server(
        verify_tokens=True, expected_url=URL, verifier=verifier, log_level="DEBUG"
    )

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("authorised")

    @server.on("dtmf_input")
    def broken(event: Any) -> None:
        raise RuntimeError("handler bug")

    caplog.set_level(logging.DEBUG, logger="webex_byova")
    await server.start()
    good = emulator.mint_data_source_token(url=URL)
    bad = emulator.mint_data_source_token(url=URL + "/other")
    caller = caller_factory(server, token=good, tracking_id="TRK")
    assert (await caller.start_session()).ok
    assert (await caller.send_dtmf("1")).ok
    assert (await caller.end_session()).ok
    lost = caller_factory(server, token=good, virtual_agent_id="nope", tracking_id="LOST")
    assert (await lost.start_session()).code == grpc.StatusCode.NOT_FOUND
    intruder = caller_factory(server, token=bad, bearer=True, tracking_id="BAD")
    assert (await intruder.start_session()).code == grpc.StatusCode.UNAUTHENTICATED
    await server.stop(0.5)
    await verifier.aclose()

    records = [r for r in caplog.records if r.name.startswith("webex_byova")]
    assert records
    for token in (good, bad):
        for part in [token, *token.split(".")[1:]]:  # whole token, payload, signature
            for record in records:
                dump = " ".join(
                    [record.getMessage(), record.exc_text or "", *map(str, vars(record).values())]
                )
                assert part not in dump, record.getMessage()
    for cid, prefix in ((caller.conversation_id, "TRK_"), (lost.conversation_id, "LOST_")):
        about = [r for r in records if cid in r.getMessage()]
        assert about, cid
        for record in about:
            assert getattr(record, "conversation_id", None) == cid, record.getMessage()
            assert str(getattr(record, "trackingid", "")).startswith(prefix), record.getMessage()
    rejected = [r for r in records if "rejected" in r.getMessage() and "url" in r.getMessage()]
    assert rejected
    assert all(str(getattr(r, "trackingid", "")).startswith("BAD_") for r in rejected)
