"""Graceful drain: SIGTERM to a real ``byova serve`` under live calls, and ``stop(drain=True)``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import grpc

from webex_byova.cli._workers import free_port
from webex_byova.media import BYOVAMediaServer, MediaServerConfig
from webex_byova.media.assets import load
from webex_byova.testing import WebexCaller

from ..cli.conftest import BYOVA
from .test_workers import Lines

APP = """
from webex_byova.media import BYOVAMediaServer, MediaServerConfig

server = BYOVAMediaServer(MediaServerConfig.from_env(verify_tokens=False))

@server.on("session_start")
def hello(event):
    event.turn.say("hello")

@server.on("utterance")
def heard(event):
    event.turn.say("heard you")
"""
SPEECH = load("speech_hello.wav")
CALLS = 20


async def _call(
    address: str, n: int, draining: asyncio.Event, live: asyncio.Queue[int]
) -> tuple[bool, str]:
    """One caller speaking turn after turn in real time. Even-numbered callers hang up
    right after their first turn once the drain began; odd ones keep talking until the
    server ends the call. Returns (every RPC OK, how the call ended)."""
    async with WebexCaller(address, tracking_id=f"DRAIN_{n}", rpc_timeout=60) as caller:
        start = await caller.start_session()
        live.put_nowait(n)
        if not start.ok:
            return False, f"start {start.code.name}"
        while True:
            result = await caller.say(wav=SPEECH, trailing_silence_ms=600)
            if not result.ok:
                return False, f"turn {result.code.name}: {result.details}"
            if result.has_event("TRANSFER_TO_AGENT"):
                return True, "transferred"
            if result.terminal:
                return True, "ended_by_server"
            if draining.is_set() and n % 2 == 0:
                end = await caller.end_session()
                return end.ok, "hung_up"


async def test_sigterm_with_20_live_calls_fails_none(tmp_path: Path) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    port = free_port("127.0.0.1")
    env = {
        **os.environ,
        # long enough for a caller mid-turn at SIGTERM to finish that turn and hang up on a
        # loaded machine; the odd callers talk on until this deadline and get transferred
        "WEBEX_MEDIA_DRAIN_TIMEOUT_S": "8",
        "WEBEX_MEDIA_COMPLETE_TIMEOUT_MS": "300",
    }
    argv = [str(BYOVA), "serve", str(app), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env
    )
    lines = Lines(proc.stderr)
    try:
        address = (await asyncio.to_thread(lines.wait_for, r"serving .* on (\S+) ")).group(1)
        draining = asyncio.Event()
        live: asyncio.Queue[int] = asyncio.Queue()
        calls = [asyncio.ensure_future(_call(address, n, draining, live)) for n in range(CALLS)]
        # every call is live (its greeting answered, speaking its first turn) before SIGTERM
        for _ in range(CALLS):
            await asyncio.wait_for(live.get(), 60)
        await asyncio.sleep(0.3)
        assert not any(c.done() for c in calls), [c.result() for c in calls if c.done()]
        proc.send_signal(signal.SIGTERM)
        await asyncio.to_thread(lines.wait_for, r"draining: 20 live conversations")
        draining.set()
        # a new conversation is refused while the live ones go on
        async with WebexCaller(address, realtime=False) as late:
            refused = await late.start_session()
        assert refused.code == grpc.StatusCode.UNAVAILABLE
        results = await asyncio.wait_for(asyncio.gather(*calls), 120)
        assert await asyncio.to_thread(proc.wait, 60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        lines.thread.join(timeout=20)
        assert proc.stderr is not None
        proc.stderr.close()
    failed = [r for r in results if not r[0]]
    assert failed == []
    outcomes = sorted(outcome for _, outcome in results)
    assert outcomes == ["hung_up"] * 10 + ["transferred"] * 10
    assert not any("dropped without a transfer" in line for line in lines.seen)


def _config(**overrides: Any) -> MediaServerConfig:
    return MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False, **overrides)


async def test_drain_ends_a_call_between_turns_on_its_next_turn() -> None:
    """gRPC: a conversation with no open RPC at the deadline gets drain_action on the next
    turn Webex opens for it (here SESSION_END, the other configurable action)."""
    server = BYOVAMediaServer(_config(drain_action="end_session"))
    server.on("session_start")(lambda event: event.turn.say("hi"))
    await server.start()
    try:
        # real-time audio, as Webex sends it: the RPC completes right after the SESSION_END
        async with WebexCaller(server.address) as caller:
            assert (await caller.start_session()).ok
            drain = asyncio.ensure_future(server.drain(0.05, grace=30))
            while not server._draining:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)  # past the drain deadline, no turn open
            assert not drain.done()  # waiting for the call's next turn
            turn = await caller.say(wav=SPEECH)
            assert turn.ok, (turn.code, turn.details)
            assert turn.has_event("SESSION_END")
            assert [e for e in turn.events if e[0] == "SESSION_END"][0][1] == "server_draining"
            assert await asyncio.wait_for(drain, 30) == 1
            assert server.sessions == {}
    finally:
        await server.stop()


async def test_a_call_that_ends_during_the_drain_needs_no_action() -> None:
    server = BYOVAMediaServer(_config(drain_timeout_s=30))
    server.on("session_start")(lambda event: event.turn.say("hi"))
    await server.start()
    try:
        async with WebexCaller(server.address, realtime=False) as caller:
            assert (await caller.start_session()).ok
            drain = asyncio.ensure_future(server.drain())
            while not server._draining:
                await asyncio.sleep(0.01)
            async with WebexCaller(server.address, realtime=False) as other:
                assert (await other.start_session()).code == grpc.StatusCode.UNAVAILABLE
            assert (await caller.say(wav=SPEECH)).ok  # a live call goes on
            assert (await caller.end_session()).ok
            assert await asyncio.wait_for(drain, 30) == 0
    finally:
        await server.stop()
