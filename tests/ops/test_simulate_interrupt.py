"""``byova simulate`` on Ctrl-C: hangs up its live calls and prints the partial summary."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

from webex_byova.media import BYOVAMediaServer, MediaServerConfig

from ..cli.conftest import BYOVA


async def test_ctrl_c_hangs_up_every_live_call_and_summarises() -> None:
    server = BYOVAMediaServer(MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False))
    ended: list[str] = []
    started = asyncio.Event()
    live = 0

    @server.on("session_start")
    def hello(event: Any) -> None:
        nonlocal live
        live += 1
        if live == 3:
            started.set()
        event.turn.say("hello")

    server.on("utterance")(lambda event: event.turn.say("go on"))
    server.on("session_end")(lambda event: ended.append(event.reason))
    await server.start()
    try:
        proc = await asyncio.create_subprocess_exec(
            str(BYOVA),
            *("simulate", "--target", server.address, "--calls", "20", "--rate", "10"),
            *("--turns", "50", "--json"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
        await asyncio.wait_for(started.wait(), 60)
        proc.send_signal(signal.SIGINT)
        out, _ = await asyncio.wait_for(proc.communicate(), 60)
        for _ in range(500):  # the server's side of the last hang-ups
            if not server.sessions:
                break
            await asyncio.sleep(0.01)
    finally:
        await server.stop()
    assert proc.returncode == 130
    data = json.loads(out)
    assert data["interrupted"] is True
    assert 3 <= data["calls"] < 20  # no call placed after Ctrl-C
    assert data["failed"] == 0
    assert data["outcomes"] == {"interrupted": data["calls"]}
    assert ended == ["caller_ended"] * data["calls"]  # every placed call hung up
