"""Fifty calls through the pipecat transport leave no task, socket or routing entry behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from webex_byova.integrations.pipecat import _transport
from webex_byova.media.assets import load

HELLO = load("speech_hello.wav")


def _sockets() -> int:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.exists():  # pragma: no cover - not Linux
        return 0
    count = 0
    for fd in os.listdir(fd_dir):
        with contextlib.suppress(OSError):
            count += os.readlink(fd_dir / fd).startswith("socket:")
    return count


async def _settled(count: Callable[[], int], baseline: int) -> int:
    """``count()`` once calls are over: waits (up to 4 s) for stragglers to close on their own
    (a closed channel's socket goes away a moment later); a leak stays above the baseline."""
    for _ in range(200):
        alive = count()
        if alive <= baseline:
            return alive
        await asyncio.sleep(0.02)
    return count()


def _tasks() -> int:
    return len(asyncio.all_tasks())


async def test_fifty_calls_leave_nothing_behind(serve, place_call) -> None:
    bot = serve()
    async with bot.server:
        # One warm-up call, so lazily created server state is part of the baseline.
        warm = place_call(bot.server)
        await warm.start_session()
        await warm.end_session()
        await asyncio.wait_for(bot.records[0].finished.wait(), 5)
        await warm.aclose()
        tasks = await _settled(_tasks, _tasks())
        sockets = _sockets()
        for i in range(50):
            caller = place_call(bot.server)
            await caller.start_session()
            if i % 2:
                await caller.say(wav=HELLO)
                await caller.end_session()  # hang-up
            else:
                await caller.press("5")
                await caller.press("0")  # transfer
            await caller.aclose()
        await asyncio.wait_for(asyncio.gather(*(r.finished.wait() for r in bot.records)), 30)
        assert len(bot.records) == 51
        assert await _settled(_tasks, tasks) <= tasks
        assert not bot.server.sessions
        router = _transport._ROUTERS[bot.server]
        assert not router._transports
        assert await _settled(_sockets, sockets) <= sockets
