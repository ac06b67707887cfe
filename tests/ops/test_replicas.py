"""Replicas: one conversation whose turns alternate between two servers sharing one Redis."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from webex_byova.media import BYOVAMediaServer, MediaServerConfig
from webex_byova.media._redis_store import RedisConversationStore
from webex_byova.media.assets import load
from webex_byova.testing import WebexCaller

SPEECH = load("speech_hello.wav")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def build(redis_url: str, seen: list[tuple[str, Any]], clock: FakeClock) -> BYOVAMediaServer:
    """A server (its store from WEBEX_MEDIA_CONVERSATION_STORE-style config) whose handlers
    log what they see into ``seen`` (shared by both servers: one view of the call)."""
    config = MediaServerConfig(
        host="127.0.0.1",
        port=0,
        verify_tokens=False,
        conversation_store=redis_url,
        idle_timeout_s=60,
    )
    server = BYOVAMediaServer(config, clock=clock)

    @server.on("session_start")
    def start(event: Any) -> None:
        seen.append(("session_start", event.turn.index))
        event.session.state["heard"] = []
        event.turn.set_input(dtmf_length=3)
        event.turn.set_transcript("caller greeted")
        event.turn.say("hello")

    @server.on("utterance")
    def heard(event: Any) -> None:
        heard = event.session.state["heard"]
        heard.append(event.turn.index)
        seen.append(("utterance", event.turn.index, list(heard)))
        event.turn.say(f"turns heard: {len(heard)}")

    @server.on("dtmf_input")
    def keys(event: Any) -> None:
        seen.append(("dtmf", event.turn.index, list(event.session.state["heard"])))
        event.turn.transfer_to_agent("transferring")

    @server.on("session_end")
    def ended(event: Any) -> None:
        seen.append(("session_end", event.reason))

    return server


@pytest.fixture
async def pair(
    redis_url: str,
) -> AsyncIterator[tuple[BYOVAMediaServer, BYOVAMediaServer, list[Any], FakeClock]]:
    seen: list[Any] = []
    clock = FakeClock()
    a, b = build(redis_url, seen, clock), build(redis_url, seen, clock)
    await a.start()
    await b.start()
    try:
        yield a, b, seen, clock
    finally:
        await a.stop()
        await b.stop()


async def test_turns_alternating_between_two_servers_see_one_call(
    pair: tuple[BYOVAMediaServer, BYOVAMediaServer, list[Any], FakeClock],
    caplog: pytest.LogCaptureFixture,
) -> None:
    a, b, seen, clock = pair
    assert isinstance(a._store, RedisConversationStore)
    cid = f"replica-{uuid.uuid4()}"
    caplog.set_level(logging.WARNING, logger="webex_byova.media")
    to_a = WebexCaller(a.address, conversation_id=cid, realtime=False)
    to_b = WebexCaller(b.address, conversation_id=cid, realtime=False)
    async with to_a, to_b:
        assert (await to_a.start_session()).texts == ["hello"]
        # turn 2 on B: state, settings and transcript came through Redis
        second = await to_b.say(wav=SPEECH)
        assert second.texts == ["turns heard: 1"]
        final = second.final
        assert final is not None
        assert final.input_handling_config.dtmf_config.dtmf_input_length == 3
        # turn 3 back on A, which still holds its (now stale) copy from turn 1
        third = await to_a.say(wav=SPEECH)
        assert third.texts == ["turns heard: 2"]
        # turn 4 on B ends the call; the transcript set on A's first turn is on it
        start = await to_b.start_dtmf()
        assert start.ok
        last = await to_b.send_dtmf("1")
        assert last.has_event("TRANSFER_TO_AGENT")
        terminal = last.final
        assert terminal is not None
        assert terminal.session_transcript.text == "caller greeted"
    assert seen == [
        ("session_start", 1),
        ("utterance", 2, [2]),
        ("utterance", 3, [2, 3]),
        ("dtmf", 5, [2, 3]),
        ("session_end", "transfer_to_agent"),
    ]
    assert cid not in b.sessions
    # A's copy is stale: its idle sweep forgets it quietly (one session_end per call)
    assert cid in a.sessions
    clock.now += 61
    assert await a.expire_idle() == 1
    assert cid not in a.sessions
    assert [s for s in seen if s[0] == "session_end"] == [("session_end", "transfer_to_agent")]
    assert not [r for r in caplog.records if "conflict" in r.getMessage()]
    # the metrics of each process: A started the call, B resumed and ended it
    assert _sample(a, "webex_byova_conversations_started_total") == 1
    assert _sample(b, "webex_byova_conversations_started_total") == 0
    assert _sample(b, "webex_byova_conversations_ended_total", outcome="transfer") == 1
    assert _sample(a, "webex_byova_conversations_active") == 0
    assert _sample(b, "webex_byova_conversations_active") == 0


async def test_the_holder_ends_an_idle_call_once(
    pair: tuple[BYOVAMediaServer, BYOVAMediaServer, list[Any], FakeClock],
) -> None:
    a, b, seen, clock = pair
    cid = f"replica-{uuid.uuid4()}"
    async with (
        WebexCaller(a.address, conversation_id=cid, realtime=False) as to_a,
        WebexCaller(b.address, conversation_id=cid, realtime=False) as to_b,
    ):
        assert (await to_a.start_session()).ok
        assert (await to_b.say(wav=SPEECH)).texts == ["turns heard: 1"]
    clock.now += 61
    # A's copy is older than the record B wrote: forgotten, no session_end
    assert await a.expire_idle() == 1
    assert not [s for s in seen if s[0] == "session_end"]
    # B holds the newest record: its sweep ends the call
    assert await b.expire_idle() == 1
    for _ in range(500):  # session_end handlers run in a task of their own
        if any(s[0] == "session_end" for s in seen):
            break
        await asyncio.sleep(0.01)
    assert [s for s in seen if s[0] == "session_end"] == [("session_end", "idle_timeout")]


def _sample(server: BYOVAMediaServer, name: str, **labels: str) -> float:
    total = 0.0
    for family in server.metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


async def test_a_store_that_is_down_refuses_the_turn_as_unavailable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import grpc

    from webex_byova.cli._workers import free_port

    dead = f"redis://127.0.0.1:{free_port('127.0.0.1')}/0"  # nothing listens there
    config = MediaServerConfig(
        host="127.0.0.1", port=0, verify_tokens=False, conversation_store=dead
    )
    server = BYOVAMediaServer(config)
    await server.start()
    try:
        async with WebexCaller(server.address, realtime=False) as caller:
            result = await caller.start_session()
    finally:
        await server.stop()
    assert result.code == grpc.StatusCode.UNAVAILABLE
    assert result.details == "conversation store unavailable"
    assert any("conversation store failed" in r.getMessage() for r in caplog.records)


async def test_a_call_that_moved_on_does_not_hold_up_a_drain(
    pair: tuple[BYOVAMediaServer, BYOVAMediaServer, list[Any], FakeClock],
) -> None:
    a, b, seen, _ = pair
    cid = f"replica-{uuid.uuid4()}"
    async with (
        WebexCaller(a.address, conversation_id=cid, realtime=False) as to_a,
        WebexCaller(b.address, conversation_id=cid, realtime=False) as to_b,
    ):
        assert (await to_a.start_session()).ok
        drain = asyncio.ensure_future(a.drain(600))  # A drains; the balancer sends B the rest
        assert (await to_b.say(wav=SPEECH)).texts == ["turns heard: 1"]
        assert await asyncio.wait_for(drain, 60) == 0  # A's copy forgotten, nothing transferred
        assert a.sessions == {}
        assert cid in b.sessions
        assert not [s for s in seen if s[0] == "session_end"]
