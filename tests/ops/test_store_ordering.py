"""A gRPC turn's RPC completes only once its conversation record is stored.

Webex opens the next turn right after the previous RPC completed, and behind a load balancer
that turn may reach another process. A shared store that writes with some latency (a Redis
round trip, here an application's store that takes 300 ms) must still hand the next process
this turn's state: before, the record was written in the background after the RPC had
completed, so a turn sent at once to the other process read the previous record.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from webex_byova.media import BYOVAMediaServer, MediaServerConfig
from webex_byova.media._model import ConversationRecord
from webex_byova.media.assets import load
from webex_byova.testing import WebexCaller

SPEECH = load("speech_hello.wav")


class SlowSharedStore:
    """One store shared by two servers, each write landing 300 ms after it was made."""

    def __init__(self) -> None:
        self.data: dict[str, dict[str, Any]] = {}

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        data = self.data.get(conversation_id)
        return ConversationRecord.from_dict(data) if data is not None else None

    async def put(self, record: ConversationRecord) -> None:
        data = record.to_dict()
        await asyncio.sleep(0.3)
        self.data[record.conversation_id] = data

    async def delete(self, conversation_id: str) -> None:
        self.data.pop(conversation_id, None)


def build(store: SlowSharedStore) -> BYOVAMediaServer:
    config = MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False)
    server = BYOVAMediaServer(config, store=store)

    @server.on("session_start")
    def start(event: Any) -> None:
        event.session.state["heard"] = 0
        event.turn.say("hello")

    @server.on("utterance")
    def heard(event: Any) -> None:
        event.session.state["heard"] = event.session.state.get("heard", -100) + 1
        event.turn.say(f"turns heard: {event.session.state['heard']}")

    return server


async def test_the_next_turn_on_another_process_sees_this_turns_state() -> None:
    store = SlowSharedStore()
    a, b = build(store), build(store)
    await a.start()
    await b.start()
    try:
        cid = f"ordering-{uuid.uuid4()}"
        to_a = WebexCaller(a.address, conversation_id=cid, realtime=False)
        to_b = WebexCaller(b.address, conversation_id=cid, realtime=False)
        async with to_a, to_b:
            assert (await to_a.start_session()).texts == ["hello"]
            assert cid in store.data  # stored before the RPC completed
            assert (await to_b.say(wav=SPEECH)).texts == ["turns heard: 1"]
            assert (await to_a.say(wav=SPEECH)).texts == ["turns heard: 2"]
            assert (await to_b.say(wav=SPEECH)).texts == ["turns heard: 3"]
            assert store.data[cid]["user_state"] == {"heard": 3}
    finally:
        await a.stop()
        await b.stop()
