"""Conversation store cost per turn: in-memory vs RedisConversationStore (prints figures).

Run: ``.venv/bin/python bench/bench_store.py``. Starts its own redis-server (the Debian
binary) on a free loopback port. A "turn" is what a shared store costs the server per RPC:
one ``get`` (the process may not hold the conversation) and one versioned ``put``. The record
carries a realistic ``session.state`` (a short transcript and a few slots).

Figures: serial latency per turn (p50/p99, one caller) and throughput with 50 concurrent
conversations on one event loop; the CPU seconds this process spends per turn (the Redis
server's own CPU is not counted).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import statistics
import subprocess
import time
import uuid

from webex_byova.media import (
    ConversationRecord,
    ConversationStore,
    InMemoryConversationStore,
    RedisConversationStore,
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.025)
    return proc, f"redis://127.0.0.1:{port}/0"


def record(cid: str) -> ConversationRecord:
    transcript = [
        {"role": "caller" if i % 2 else "agent", "text": f"utterance number {i} " * 4}
        for i in range(12)
    ]
    return ConversationRecord(
        conversation_id=cid,
        virtual_agent_id="agent-1",
        customer_org_id="org-1",
        started=True,
        user_state={"transcript": transcript, "slots": {"account": "12345", "intent": "billing"}},
    )


async def turn(store: ConversationStore, cid: str) -> None:
    rec = await store.get(cid)
    assert rec is not None
    rec.turns += 1
    await store.put(rec)


async def serial(store: ConversationStore, turns: int) -> list[float]:
    cid = uuid.uuid4().hex
    await store.put(record(cid))
    samples = []
    for _ in range(turns):
        start = time.perf_counter()
        await turn(store, cid)
        samples.append(time.perf_counter() - start)
    return samples


async def concurrent(store: ConversationStore, calls: int, turns: int) -> tuple[float, float]:
    ids = [uuid.uuid4().hex for _ in range(calls)]
    for cid in ids:
        await store.put(record(cid))

    async def call(cid: str) -> None:
        for _ in range(turns):
            await turn(store, cid)

    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(call(cid) for cid in ids))
    total = calls * turns
    return total / (time.perf_counter() - wall), (time.process_time() - cpu) / total


def pct(samples: list[float], q: float) -> float:
    return statistics.quantiles(samples, n=100)[int(q) - 1]


async def bench(name: str, store: ConversationStore) -> None:
    await serial(store, 200)  # warm up
    samples = await serial(store, 3000)
    rate, cpu = await concurrent(store, 50, 60)
    print(
        f"{name:>7}: per turn (get+put) p50 {pct(samples, 50) * 1e6:7.1f} µs  "
        f"p99 {pct(samples, 99) * 1e6:7.1f} µs | 50 concurrent calls: {rate:8.0f} turns/s, "
        f"client CPU {cpu * 1e6:6.1f} µs/turn"
    )


async def main() -> None:
    proc, url = start_redis()
    try:
        print("conversation store cost per turn (one get + one versioned put)")
        await bench("memory", InMemoryConversationStore())
        store = RedisConversationStore(url, prefix=f"bench:{uuid.uuid4().hex}:")
        try:
            await bench("redis", store)
        finally:
            await store.aclose()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    asyncio.run(main())
