"""Store locks during slow refreshes and cancellation: a refresh that outlasts the lock TTL keeps
its lock (the flow drivers renew it), a lost lock cannot be renewed, and a task cancelled while
acquiring leaves no lock behind (SQLite and a real redis-server)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis_asyncio

from webex_byova._flow import Portal
from webex_byova.storage import KeyValueTokenStorage, LockLease, SQLiteTokenStorage
from webex_byova.storage.redis import RedisTokenStorage
from webex_byova.testing import WebexEmulator

from .conftest import AuthRig, StoreFactory

TOKEN_PATH = "/v1/access_token"
FIFTEEN_DAYS = 15 * 86400
LOCKING = ["sqlite", "redis", "encrypted-sqlite", "encrypted-redis"]
TTL = 0.3  # store lock TTL in the slow-refresh tests
SLOW = 0.9  # token endpoint latency: three TTLs


def _replica_stores(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> list[KeyValueTokenStorage]:
    """Two store objects over the same file / Redis prefix, as two replicas would hold."""
    if backend == "sqlite":
        return [SQLiteTokenStorage(tmp_path / "shared.db") for _ in range(2)]
    url = request.getfixturevalue("redis_url")
    return [RedisTokenStorage(url, prefix=f"renew:{tmp_path.name}:") for _ in range(2)]


# ----------------------------------------------------------------------------- slow refresh


@pytest.mark.parametrize("mode", ["async", "sync"])
@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_slow_integration_refresh_keeps_its_lock_past_the_ttl(
    backend: str,
    mode: str,
    emu: WebexEmulator,
    new_rig: Callable[..., AuthRig],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Two replicas refresh at once; the token endpoint answers after four lock TTLs. The
    holder renews its lock, so the other waits and then reads the refreshed token instead of
    refreshing again with the (rotated) refresh token."""
    stores = _replica_stores(backend, tmp_path, request)
    a, b = (new_rig(store, lock_ttl=TTL) for store in stores)
    try:
        await a.seed_integration()
        emu.clock.advance(FIFTEEN_DAYS)
        emu.clear_requests()
        emu.add_latency(TOKEN_PATH, SLOW)
        if mode == "async":
            tokens = await asyncio.gather(
                a.integration.aget_access_token(), b.integration.aget_access_token()
            )
        else:
            tokens = await asyncio.gather(
                asyncio.to_thread(a.integration.get_access_token),
                asyncio.to_thread(b.integration.get_access_token),
            )
        assert emu.count("POST", TOKEN_PATH) == 1
        assert tokens[0] == tokens[1]
        stored = await stores[1].get_integration_token()
        assert stored is not None
        assert stored.access_token == tokens[0]
    finally:
        for store in stores:
            await store.aclose()
            store.close()  # type: ignore[attr-defined]  # clients on the sync portal loop


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_slow_service_app_refresh_keeps_its_lock_past_the_ttl(
    backend: str,
    emu: WebexEmulator,
    new_rig: Callable[..., AuthRig],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    stores = _replica_stores(backend, tmp_path, request)
    a, b = (new_rig(store, lock_ttl=TTL) for store in stores)
    org = emu.org.org_id
    try:
        await a.seed_integration()
        emu.authorize_service_app(org)
        await a.service_app.afetch_org_token(org)
        emu.clock.advance(FIFTEEN_DAYS)
        emu.clear_requests()
        emu.add_latency(TOKEN_PATH, SLOW)
        tokens = await asyncio.gather(
            a.service_app.aget_org_token(org),
            asyncio.to_thread(b.service_app.get_org_token, org),
        )
        assert emu.count("POST", TOKEN_PATH) == 1
        assert tokens[0] == tokens[1]
    finally:
        for store in stores:
            await store.aclose()
            store.close()  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- leases


@pytest.mark.parametrize("store_factory", LOCKING, indirect=True)
async def test_lease_extends_only_while_owned(store_factory: StoreFactory) -> None:
    a, b = store_factory.new("lease"), store_factory.new("lease")
    stale = a.lock("k", ttl=0.05)  # type: ignore[attr-defined]
    lease = await stale.__aenter__()
    assert isinstance(lease, LockLease)
    assert lease.key == "k"
    assert lease.ttl == 0.05
    assert await lease.aextend()
    async with b.lock("k", ttl=30) as current:  # taken over once the stale one expired
        assert not await lease.aextend(), "renewed a lock another holder owns"
        assert await current.aextend(), "a failed renewal disturbed the current holder"
    await stale.__aexit__(None, None, None)  # a late release does not free someone else's


# ----------------------------------------------------------------------------- cancellation


async def test_sqlite_acquire_cancelled_mid_statement_leaves_no_lock(tmp_path: Path) -> None:
    """The cancelled task's ``BEGIN IMMEDIATE`` is already running on the store's worker
    (blocked by another connection's write); it then takes the lock, and the store must
    release it for the task that is gone."""
    path = tmp_path / "cancel.db"
    store = SQLiteTokenStorage(path)
    started = threading.Event()

    def _trace(conn: sqlite3.Connection) -> None:
        conn.set_trace_callback(lambda sql: started.set() if "IMMEDIATE" in sql else None)

    await store._run(_trace)  # creates the schema too
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")

        async def acquire() -> None:
            async with store.lock("integration", ttl=30):
                pytest.fail("took a lock that another connection's write blocked")

        task = asyncio.create_task(acquire())
        assert await asyncio.to_thread(started.wait, 10)
        task.cancel()
        blocker.execute("ROLLBACK")  # the statement now completes and takes the lock
        with pytest.raises(asyncio.CancelledError):
            await task
        await store._run(lambda conn: None)  # the worker has finished everything queued
        assert blocker.execute("SELECT count(*) FROM locks").fetchone()[0] == 0
        async with SQLiteTokenStorage(path).lock("integration", ttl=30):
            pass
    finally:
        blocker.close()
        await store.aclose()


class _ReplyGate:
    """A loopback TCP proxy to Redis that can hold back the server's replies."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.open = asyncio.Event()
        self.open.set()
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self.server.sockets[0].getsockname()[1])

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, gated: bool) -> None:
            try:
                while data := await src.read(65536):
                    if gated:
                        await self.open.wait()
                    dst.write(data)
                    await dst.drain()
            except ConnectionError:
                pass
            finally:
                dst.close()

        for task in (
            asyncio.create_task(pump(reader, up_writer, False)),
            asyncio.create_task(pump(up_reader, writer, True)),
        ):
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


async def test_redis_acquire_cancelled_after_set_leaves_no_lock(
    redis_url: str, tmp_path: Path
) -> None:
    """The cancelled task's ``SET NX`` reached Redis and took the lock, but its reply was still
    on the way: the store must release the lock for the task that is gone."""
    host_port = redis_url.removeprefix("redis://").split("/")[0]
    host, port = host_port.split(":")
    gate = _ReplyGate(host, int(port))
    proxy_port = await gate.start()
    prefix = f"cancel:{tmp_path.name}:"
    store = RedisTokenStorage(f"redis://127.0.0.1:{proxy_port}/0", prefix=prefix)
    direct: Any = redis_asyncio.Redis.from_url(redis_url)
    name = f"{prefix}lock:integration"
    try:
        await store.get_value("warm-up")  # the pool has a connection through the proxy
        gate.open.clear()

        async def acquire() -> None:
            async with store.lock("integration", ttl=30):
                pytest.fail("entered a lock whose reply never arrived")

        task = asyncio.create_task(acquire())
        for _ in range(500):  # wait until Redis has applied the SET
            if await direct.exists(name):
                break
            await asyncio.sleep(0.01)
        assert await direct.exists(name)
        task.cancel()
        gate.open.set()  # replies flow again (the release goes through the proxy too)
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not await direct.exists(name)
    finally:
        gate.open.set()
        await store.aclose()
        await direct.aclose()
        await gate.close()


async def test_manager_cancelled_while_waiting_for_the_store_lock_leaves_it_free(
    emu: WebexEmulator, new_rig: Callable[..., AuthRig], tmp_path: Path
) -> None:
    """A refresh task cancelled while another replica holds the store lock: once that replica
    releases, nothing is left held (process or store lock) and the next refresh goes through."""
    stores = [SQLiteTokenStorage(tmp_path / "shared.db") for _ in range(2)]
    a, b = (new_rig(store) for store in stores)
    try:
        await a.seed_integration()
        emu.clock.advance(FIFTEEN_DAYS)
        async with stores[0].lock("integration", ttl=30):
            task = asyncio.create_task(b.integration.aget_access_token())
            await asyncio.sleep(0.1)  # b is now polling for the held lock
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        emu.clear_requests()
        token = await asyncio.wait_for(b.integration.aget_access_token(), 10)
        assert emu.count("POST", TOKEN_PATH) == 1
        stored = await stores[0].get_integration_token()
        assert stored is not None
        assert stored.access_token == token
    finally:
        for store in stores:
            await store.aclose()


def test_portal_call_cancels_its_task_when_the_caller_stops_waiting() -> None:
    """A sync caller that gives up (timeout, Ctrl-C) must not leave the coroutine running on
    the portal loop, where it could still take a store lock nobody would release."""
    portal = Portal("test-portal")
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    try:
        with pytest.raises(TimeoutError):
            portal.call(forever, timeout=0.05)
        assert cancelled.wait(10)
    finally:
        portal.close()
