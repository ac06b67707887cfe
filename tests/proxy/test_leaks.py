"""Many proxied calls leave nothing behind: no links, sockets, tasks or backend connections."""

from __future__ import annotations

import asyncio
import os
import uuid

from webex_byova.media.proxy import ReconnectPolicy
from webex_byova.media.proxy._protocol import Prompt
from webex_byova.media.proxy.connector import WebSocketProxyConnector

from .conftest import BackendConn, instant

CALLS = 100


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


async def _settle(predicate, rounds: int = 500) -> bool:
    for _ in range(rounds):
        if predicate():
            return True
        await asyncio.sleep(0.01)
    return predicate()


async def welcome_bot(conn: BackendConn) -> None:
    await conn.recv()
    await conn.send(Prompt(text="Hi"))


async def test_hundred_calls_leave_no_links_sockets_or_tasks(backend, media_server, caller_factory):
    be = await backend(welcome_bot)
    server = media_server()
    connector = WebSocketProxyConnector(
        be.url, reconnect=ReconnectPolicy(max_attempts=2), sleep=instant
    )
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)  # one gRPC channel reused by every call
    # warm up once so lazily created machinery (channel, executor threads) is not counted
    caller.conversation_id = str(uuid.uuid4())
    assert (await caller.start_session()).texts == ["Hi"]
    await caller.end_session()
    assert await _settle(lambda: be.open_connections == 0)
    fds_before = _open_fds()
    tasks_before = len(asyncio.all_tasks())

    for batch in range(CALLS // 10):
        convs = []
        for _ in range(10):
            caller.conversation_id = str(uuid.uuid4())
            convs.append(caller.conversation_id)
            assert (await caller.start_session()).texts == ["Hi"]
            # hang up half of them with a SESSION_END, leave the rest open until the batch ends
            if len(convs) % 2:
                await caller.end_session()
        for cid in convs[1::2]:
            caller.conversation_id = cid
            await caller.end_session()
        assert len(be.conns) == 1 + (batch + 1) * 10

    assert await _settle(lambda: be.open_connections == 0)
    assert connector.open_connections == 0
    assert connector._links == {}
    assert await _settle(lambda: len(asyncio.all_tasks()) <= tasks_before)
    assert await _settle(lambda: _open_fds() <= fds_before)


async def test_hundred_calls_to_a_down_backend_leave_nothing(
    media_server, caller_factory, unused_port
):
    server = media_server()
    connector = WebSocketProxyConnector(
        f"ws://127.0.0.1:{unused_port}",
        reconnect=ReconnectPolicy(max_attempts=2, connect_timeout=2),
        sleep=instant,
    )
    server.use_proxy(connector)
    await server.start()
    caller = caller_factory(server)
    assert (await caller.start_session()).has_event("TRANSFER_TO_AGENT")
    fds_before = _open_fds()
    tasks_before = len(asyncio.all_tasks())
    for _ in range(CALLS):
        caller.conversation_id = str(uuid.uuid4())
        reply = await caller.start_session()
        assert reply.has_event("TRANSFER_TO_AGENT")  # the fallback answered
    assert connector._links == {}
    assert connector.open_connections == 0
    assert await _settle(lambda: len(asyncio.all_tasks()) <= tasks_before)
    assert await _settle(lambda: _open_fds() <= fds_before)
