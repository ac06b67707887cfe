"""RedisConversationStore against a real redis-server: versions, conflicts, TTL."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from webex_byova.media import (
    ConversationConflictError,
    ConversationRecord,
    ConversationStore,
    InMemoryConversationStore,
    InputSettings,
    MediaServerConfig,
    RedisConversationStore,
)
from webex_byova.media._redis_store import conversation_store_for
from webex_byova.media.config import ConversationStoreSpec, parse_conversation_store


def record(cid: str, turns: int = 0, **state: object) -> ConversationRecord:
    return ConversationRecord(
        conversation_id=cid,
        virtual_agent_id="agent-1",
        customer_org_id="org-1",
        created_at=1.5,
        last_active=2.5,
        started=True,
        turns=turns,
        language_code="en-US",
        settings=InputSettings(),
        user_state=dict(state),
    )


def store(url: str, **kwargs: object) -> RedisConversationStore:
    return RedisConversationStore(url, prefix=f"test:{uuid.uuid4().hex}:", **kwargs)  # type: ignore[arg-type]


async def test_round_trip_keeps_every_field(redis_url: str) -> None:
    s = store(redis_url)
    try:
        assert isinstance(s, ConversationStore)
        assert await s.get("c1") is None
        original = record("c1", 3, cart=["a", "b"], nested={"n": 1, "ok": True})
        await s.put(original)
        assert s.version("c1") == 1
        loaded = await s.get("c1")
        assert loaded is not None
        assert loaded.to_dict() == original.to_dict()
        loaded.user_state["cart"].append("c")
        await s.put(loaded)
        assert s.version("c1") == 2
        again = await s.get("c1")
        assert again is not None
        assert again.user_state["cart"] == ["a", "b", "c"]
        await s.delete("c1")
        assert await s.get("c1") is None
        assert s.version("c1") is None
        await s.delete("c1")  # absent: no error
    finally:
        await s.aclose()


async def test_a_stale_write_from_another_process_is_refused_and_logged(
    redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    a = RedisConversationStore(redis_url, prefix=prefix)
    b = RedisConversationStore(redis_url, prefix=prefix)
    try:
        await a.put(record("c", 1, step="greeted"))  # process A starts the call
        moved = await b.get("c")  # the next turn lands on process B
        assert moved is not None
        moved.turns, moved.user_state["step"] = 2, "asked"
        await b.put(moved)
        # A still holds version 1 and writes its view: detected, B's write survives
        with (
            caplog.at_level(logging.WARNING, "webex_byova.media.store"),
            pytest.raises(ConversationConflictError) as info,
        ):
            await a.put(record("c", 2, step="stale"))
        assert (info.value.expected, info.value.found) == (1, 2)
        assert info.value.conversation_id == "c"
        logged = [r for r in caplog.records if getattr(r, "event", "") == "store_conflict"]
        assert len(logged) == 1
        assert logged[0].conversation_id == "c"  # type: ignore[attr-defined]
        current = await a.get("c")
        assert current is not None
        assert current.user_state == {"step": "asked"}
        # after reloading, A may write again
        current.turns = 3
        await a.put(current)
        assert a.version("c") == 3
    finally:
        await a.aclose()
        await b.aclose()


async def test_two_processes_creating_one_conversation_conflict(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    a = RedisConversationStore(redis_url, prefix=prefix)
    b = RedisConversationStore(redis_url, prefix=prefix)
    try:
        await a.put(record("c"))
        with pytest.raises(ConversationConflictError) as info:
            await b.put(record("c"))
        assert (info.value.expected, info.value.found) == (None, 1)
    finally:
        await a.aclose()
        await b.aclose()


async def test_concurrent_writers_exactly_one_wins_per_version(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    stores = [RedisConversationStore(redis_url, prefix=prefix) for _ in range(8)]
    try:
        await stores[0].put(record("c"))
        for s in stores:
            assert await s.get("c") is not None

        async def write(i: int) -> bool:
            try:
                await stores[i].put(record("c", turns=i))
                return True
            except ConversationConflictError:
                return False

        results = await asyncio.gather(*(write(i) for i in range(8)))
        assert results.count(True) == 1
        winner = results.index(True)
        final = await stores[0].get("c")
        assert final is not None
        assert final.turns == winner
        assert stores[0].version("c") == 2
    finally:
        for s in stores:
            await s.aclose()


async def test_a_write_after_the_call_ended_elsewhere_conflicts(redis_url: str) -> None:
    prefix = f"test:{uuid.uuid4().hex}:"
    a = RedisConversationStore(redis_url, prefix=prefix)
    b = RedisConversationStore(redis_url, prefix=prefix)
    try:
        await a.put(record("c"))
        assert await b.get("c") is not None
        await b.delete("c")
        with pytest.raises(ConversationConflictError) as info:
            await a.put(record("c", 1))
        assert (info.value.expected, info.value.found) == (1, None)
    finally:
        await a.aclose()
        await b.aclose()


async def test_records_expire_with_the_idle_timeout(redis_url: str) -> None:
    s = store(redis_url, ttl_s=900)
    short = store(redis_url, ttl_s=0.05)
    try:
        await s.put(record("c"))
        ttl = await s.ttl_s("c")
        assert ttl is not None
        assert 890 < ttl <= 900
        assert await s.ttl_s("absent") is None

        await short.put(record("gone"))
        for _ in range(400):  # redis expires the key by itself; wait for that, bounded
            if await short.get("gone") is None:
                break
            await asyncio.sleep(0.025)
        assert await short.get("gone") is None
        assert short.version("gone") is None
    finally:
        await s.aclose()
        await short.aclose()


async def test_state_that_is_not_json_is_refused(redis_url: str) -> None:
    s = store(redis_url)
    try:
        with pytest.raises(TypeError, match="JSON-serialisable"):
            await s.put(record("c", blob=object()))
        assert await s.get("c") is None
    finally:
        await s.aclose()


async def test_a_given_client_stays_open(redis_url: str) -> None:
    import redis.asyncio as redis_asyncio

    client = redis_asyncio.from_url(redis_url)
    s = RedisConversationStore(redis_url, prefix=f"test:{uuid.uuid4().hex}:", client=client)
    try:
        await s.put(record("c"))
        await s.aclose()
        assert await client.ping()
    finally:
        await client.aclose()


def test_constructor_checks() -> None:
    with pytest.raises(ValueError, match="ttl_s"):
        RedisConversationStore(ttl_s=0)
    with pytest.raises(ValueError, match="prefix"):
        RedisConversationStore(prefix="")
    text = repr(RedisConversationStore("redis://user:hunter2secret@host:6380/1"))
    assert "hunter2secret" not in text
    assert "host:6380/1" in text


def test_parse_conversation_store() -> None:
    assert parse_conversation_store("memory") == ConversationStoreSpec("memory")
    assert parse_conversation_store("") == ConversationStoreSpec("memory")
    spec = parse_conversation_store("redis://h:6379/2?prefix=app:conv:&socket_timeout=5")
    assert spec == ConversationStoreSpec("redis", "redis://h:6379/2?socket_timeout=5", "app:conv:")
    assert parse_conversation_store("rediss://u:p@h").kind == "redis"
    assert parse_conversation_store("unix:///run/redis.sock").kind == "redis"
    for bad in ("postgres://h", "redis://", "redis://h?prefix="):
        with pytest.raises(ValueError, match="conversation store"):
            parse_conversation_store(bad)
    assert "p@ss" not in repr(parse_conversation_store("redis://u:p@ss@h"))


def test_config_field_and_factory() -> None:
    config = MediaServerConfig.from_env(
        {
            "WEBEX_MEDIA_CONVERSATION_STORE": "redis://127.0.0.1:1/0",
            "WEBEX_MEDIA_IDLE_TIMEOUT_S": "60",
        }
    )
    built = conversation_store_for(config)
    assert isinstance(built, RedisConversationStore)
    assert built.ttl_ms == 120_000  # twice the idle timeout (see conversation_store_for)
    assert "redis://127.0.0.1:1/0" not in repr(config)  # may hold a password: not in repr
    assert isinstance(conversation_store_for(MediaServerConfig()), InMemoryConversationStore)
    with pytest.raises(ValueError, match="WEBEX_MEDIA_CONVERSATION_STORE"):
        MediaServerConfig.from_env({"WEBEX_MEDIA_CONVERSATION_STORE": "mysql://x"})


async def test_writes_of_one_process_build_on_each_other(redis_url: str) -> None:
    """The server spawns a put per RPC as a task: overlapping puts of one store never
    conflict with each other, the last state wins, and a delete waits for them."""
    s = store(redis_url)
    try:
        rec = record("c")
        await s.put(rec)

        async def bump() -> None:
            rec.turns += 1
            await s.put(rec)

        await asyncio.gather(*(bump() for _ in range(10)))
        assert s.version("c") == 11
        loaded = await s.get("c")
        assert loaded is not None
        assert loaded.turns == 10
        await asyncio.gather(s.put(rec), s.delete("c"))
        assert await s.get("c") is None
        assert s._locks == {}
    finally:
        await s.aclose()
