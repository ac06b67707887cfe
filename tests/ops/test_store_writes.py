"""Conversation-store writes: the in-memory store is written inline (no task per write), any
other store in a task; both keep the records, their order and the error handling."""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
from typing import Any

import pytest

from webex_byova.media import BYOVAMediaServer, MediaServerConfig
from webex_byova.media._model import ConversationRecord
from webex_byova.media.assets import load
from webex_byova.media.store import InMemoryConversationStore
from webex_byova.testing import WebexCaller

SPEECH = load("speech_hello.wav")


class RecordingStore:
    """A store of the application's own (not the in-memory one): writes go through tasks.
    ``fail_puts`` makes that many puts raise, as a store whose backend is down would."""

    def __init__(self, fail_puts: int = 0) -> None:
        self.data: dict[str, dict[str, Any]] = {}
        self.ops: list[tuple[str, str, int]] = []
        self.fail_puts = fail_puts

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        data = self.data.get(conversation_id)
        return ConversationRecord.from_dict(data) if data is not None else None

    async def put(self, record: ConversationRecord) -> None:
        self.ops.append(("put", record.conversation_id, record.turns))
        if self.fail_puts:
            self.fail_puts -= 1
            raise ConnectionError("store backend down")
        self.data[record.conversation_id] = record.to_dict()

    async def delete(self, conversation_id: str) -> None:
        self.ops.append(("delete", conversation_id, 0))
        self.data.pop(conversation_id, None)


class UncopyableText(str):
    """Plain data to the state check (a ``str``), but copying it for the store fails."""

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        raise RuntimeError("cannot copy this value")


def build(store: Any) -> BYOVAMediaServer:
    config = MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False)
    server = BYOVAMediaServer(config, store=store)

    @server.on("session_start")
    def start(event: Any) -> None:
        event.session.state["heard"] = 0
        event.turn.say("hello")

    @server.on("utterance")
    def heard(event: Any) -> None:
        event.session.state["heard"] += 1
        if event.session.state["heard"] == 1 and event.session.state.get("poison"):
            event.session.state["bad"] = UncopyableText("x")
        event.turn.say(f"heard {event.session.state['heard']}")

    return server


async def stored(store: Any, cid: str, turns: int) -> ConversationRecord:
    """The stored record once it holds ``turns`` turns (the write follows the turn's end,
    which the caller may see first); bounded by 500 polls."""
    for _ in range(500):
        record = await store.get(cid)
        if record is not None and record.turns >= turns:
            return record
        await asyncio.sleep(0.01)
    raise AssertionError(f"no record with {turns} turns: {await store.get(cid)}")


@pytest.mark.parametrize("store_kind", ["memory", "own"])
async def test_each_turn_is_stored_and_the_end_forgets_the_call(store_kind: str) -> None:
    store: Any = InMemoryConversationStore() if store_kind == "memory" else RecordingStore()
    server = build(store)
    await server.start()
    cid = f"store-{uuid.uuid4()}"
    try:
        async with WebexCaller(server.address, conversation_id=cid, realtime=False) as caller:
            assert (await caller.start_session()).texts == ["hello"]
            first = await stored(store, cid, 1)
            assert first.user_state == {"heard": 0}
            assert (await caller.say(wav=SPEECH)).texts == ["heard 1"]
            second = await stored(store, cid, 2)
            assert second.user_state == {"heard": 1}
            assert second.started
            # the stored copy is a snapshot: later changes of the live state do not leak in
            server.sessions[cid].state["heard"] = 99
            assert (await store.get(cid)).user_state == {"heard": 1}
            server.sessions[cid].state["heard"] = 1
            assert (await caller.end_session()).ok
        for _ in range(500):
            if await store.get(cid) is None:
                break
            await asyncio.sleep(0.01)
        assert await store.get(cid) is None
        if isinstance(store, RecordingStore):
            assert store.ops[-1] == ("delete", cid, 0)
    finally:
        await server.stop()


@pytest.mark.parametrize("store_kind", ["memory", "own"])
async def test_a_call_ended_and_begun_again_keeps_the_new_record(store_kind: str) -> None:
    """The end's delete and the new call's first write stay in that order."""
    store: Any = InMemoryConversationStore() if store_kind == "memory" else RecordingStore()
    server = build(store)
    await server.start()
    cid = f"store-{uuid.uuid4()}"
    try:
        async with WebexCaller(server.address, conversation_id=cid, realtime=False) as caller:
            assert (await caller.start_session()).ok
            assert (await caller.say(wav=SPEECH)).texts == ["heard 1"]
            await stored(store, cid, 2)
            assert server.end_conversation(cid, "bench")
            assert (await caller.start_session()).texts == ["hello"]
        record = await stored(store, cid, 1)
        await asyncio.sleep(0.05)  # any write still queued would land now
        record = await store.get(cid)
        assert record is not None
        assert record.turns == 1
        assert record.user_state == {"heard": 0}
    finally:
        await server.stop()


async def test_a_failing_write_of_an_own_store_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = RecordingStore(fail_puts=2)  # the first call's start and its first turn
    server = build(store)
    await server.start()
    cid = f"store-{uuid.uuid4()}"
    caplog.set_level(logging.ERROR, logger="webex_byova.media")
    try:
        async with WebexCaller(server.address, conversation_id=cid, realtime=False) as caller:
            assert (await caller.start_session()).texts == ["hello"]
            assert (await caller.say(wav=SPEECH)).texts == ["heard 1"]
            assert (await caller.say(wav=SPEECH)).texts == ["heard 2"]
            record = await stored(store, cid, 3)
            assert record.user_state == {"heard": 2}
    finally:
        await server.stop()
    failures = [r for r in caplog.records if "conversation store write failed" in r.getMessage()]
    assert len(failures) == 2
    assert all(r.exc_info and r.exc_info[0] is ConnectionError for r in failures)


async def test_a_failing_write_of_the_memory_store_is_logged_and_the_call_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryConversationStore()
    server = build(store)
    await server.start()
    cid = f"store-{uuid.uuid4()}"
    caplog.set_level(logging.ERROR, logger="webex_byova.media")
    try:
        async with WebexCaller(server.address, conversation_id=cid, realtime=False) as caller:
            assert (await caller.start_session()).ok
            server.sessions[cid].state["poison"] = True
            with pytest.raises(RuntimeError):
                copy.deepcopy(UncopyableText("x"))  # what the store's snapshot will meet
            assert (await caller.say(wav=SPEECH)).texts == ["heard 1"]
            for _ in range(500):
                if any("store write failed" in r.getMessage() for r in caplog.records):
                    break
                await asyncio.sleep(0.01)
            # the record of the start is still there; the failed write did not replace it
            record = await store.get(cid)
            assert record is not None
            assert record.turns == 1
            del server.sessions[cid].state["bad"]
            assert (await caller.say(wav=SPEECH)).texts == ["heard 2"]
            assert (await stored(store, cid, 3)).user_state == {"heard": 2, "poison": True}
    finally:
        await server.stop()
    failures = [r for r in caplog.records if "conversation store write failed" in r.getMessage()]
    assert len(failures) == 1
    assert failures[0].exc_info
    assert failures[0].exc_info[0] is RuntimeError
