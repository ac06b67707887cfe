"""docs/deploy.md's reference layout on loopback: two ``byova serve --workers 2`` processes on
two ports sharing one redis-server, a caller alternating the turns of one call between them."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import pytest

from webex_byova.cli._workers import free_port
from webex_byova.media.assets import load
from webex_byova.testing import WebexCaller

from ..cli.conftest import BYOVA
from .test_workers import Lines, supervisor

APP = """
import os
from webex_byova.media import BYOVAMediaServer, MediaServerConfig

server = BYOVAMediaServer(MediaServerConfig.from_env())

@server.on("session_start")
def hello(event):
    event.session.state["pids"] = [os.getpid()]
    event.turn.set_input(dtmf_length=4)
    event.turn.say(f"hello from {os.getpid()}")

@server.on("utterance")
def heard(event):
    pids = event.session.state["pids"]
    pids.append(os.getpid())
    settings = event.session.settings
    event.turn.say(f"turn {len(pids)} pid {os.getpid()} dtmf {settings.dtmf_input_length}")

@server.on("session_end")
def ended(event):
    print(f"session_end {event.reason} after {len(event.session.state['pids'])} turns",
          flush=True)
"""
SPEECH = load("speech_hello.wav")


async def test_two_worker_groups_share_one_call_over_redis(
    tmp_path: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = tmp_path / "app.py"
    app.write_text(APP)
    monkeypatch.setenv("WEBEX_MEDIA_CONVERSATION_STORE", redis_url)
    ports = [free_port("127.0.0.1"), free_port("127.0.0.1")]
    argvs = [
        [str(BYOVA), "serve", str(app), "--workers", "2", "--host", "127.0.0.1", "--port", str(p)]
        for p in ports
    ]
    with (
        supervisor(argvs[0], tmp_path) as (one, lines_one),
        supervisor(argvs[1], tmp_path) as (two, lines_two),
    ):
        for lines in (lines_one, lines_two):
            for _ in "12":  # both workers of each group are serving
                await asyncio.to_thread(lines.wait_for, r"serving .* on 127\.0\.0\.1:\d+ ")
        addresses = [f"127.0.0.1:{p}" for p in ports]
        cid = f"layout-{uuid.uuid4()}"
        replies: list[str] = []
        for turn in range(6):  # a new connection per turn, alternating the two hosts
            async with WebexCaller(
                addresses[turn % 2], conversation_id=cid, realtime=False
            ) as caller:
                result = await (caller.start_session() if turn == 0 else caller.say(wav=SPEECH))
                assert result.ok, (result.code, result.details)
                replies.extend(result.texts)
        async with WebexCaller(addresses[0], conversation_id=cid, realtime=False) as caller:
            assert (await caller.end_session()).ok
        assert replies[0].startswith("hello from ")
        pids = {int(replies[0].rsplit(" ", 1)[1])}
        for n, text in enumerate(replies[1:], 2):
            words = text.split()
            assert words[:2] == ["turn", str(n)], replies  # state came along every move
            assert words[4:] == ["dtmf", "4"], replies  # and the input settings
            pids.add(int(words[3]))
        assert len(pids) >= 2  # served by processes of both groups
        found = await asyncio.to_thread(lines_one.wait_for, r"session_end \S+ after 6 turns")
        assert found.group(0) == "session_end caller_ended after 6 turns"
        for proc in (one, two):
            proc.send_signal(signal.SIGTERM)
        for proc in (one, two):
            assert await asyncio.to_thread(proc.wait, 60) == 0
        rest = [await asyncio.to_thread(remaining, lines) for lines in (lines_one, lines_two)]
    # the other group's copies of the call were stale: forgotten, never ended a second time
    assert not any("session_end" in line for line in rest[0] + rest[1])
    assert not any("dropped without a transfer" in line for line in rest[0] + rest[1])
    assert not any("conflict" in line for line in lines_one.seen + rest[0] + rest[1])


def remaining(lines: Lines) -> list[str]:
    """Every line up to EOF (the process has exited)."""
    out = []
    while (line := lines.queue.get(timeout=60)) is not None:
        out.append(line)
    lines.queue.put(None)
    return out
