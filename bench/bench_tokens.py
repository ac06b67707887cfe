"""Token benchmarks: refresh storm against the emulator, and token store throughput.

Run: ``.venv/bin/python bench/bench_tokens.py [--callers 1000] [--ops 2000]``

* Refresh storm: N concurrent ``aget_access_token`` / ``aget_org_token`` callers on an
  expired token; reports refresh requests seen by the emulator and the callers' wait
  (p50/p99/max). Also N sync callers on threads.
* Storage: sequential ``set_org_token`` and ``get_org_token`` per second for each backend
  (memory, SQLite FULL/NORMAL, Redis if ``redis-server`` is on PATH, and encrypted variants).
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from webex_byova._http import HttpClient
from webex_byova._oauth import parse_token_response
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.integration import IntegrationTokenManager
from webex_byova.service_app import ServiceAppTokenManager
from webex_byova.storage import (
    EncryptedTokenStorage,
    InMemoryTokenStorage,
    KeyValueTokenStorage,
    SQLiteTokenStorage,
    generate_key,
)
from webex_byova.testing import WebexEmulator
from webex_byova.tokens import OAuthToken

FIFTEEN_DAYS = 15 * 86400


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _report(name: str, waits: list[float], refreshes: int) -> None:
    ms = [w * 1000 for w in waits]
    print(
        f"  {name:<34} callers={len(ms):>5}  refresh requests={refreshes}  "
        f"wait p50={statistics.median(ms):7.2f} ms  p99={_pct(ms, 0.99):7.2f} ms  "
        f"max={max(ms):7.2f} ms"
    )


async def _timed(fn: Callable[[], Awaitable[str]], waits: list[float]) -> str:
    t0 = time.perf_counter()
    value = await fn()
    waits.append(time.perf_counter() - t0)
    return value


async def refresh_storm(callers: int, store: KeyValueTokenStorage, label: str) -> None:
    with WebexEmulator(rotate_refresh_tokens=True) as emu:
        http = HttpClient(emu.config())
        creds = IntegrationCredentials(emu.integration.client_id, emu.integration.client_secret)
        integ = IntegrationTokenManager(creds, http, store, clock=emu.clock.now)
        sa = ServiceAppTokenManager(
            ServiceAppCredentials(
                emu.service_app.client_id,
                emu.service_app.client_secret,
                emu.service_app.application_id,
            ),
            integ,
            http,
        )
        await store.set_integration_token(
            parse_token_response(emu.issue_integration_token(), now=emu.clock.now())
        )
        org = emu.org.org_id
        emu.authorize_service_app(org)
        await sa.afetch_org_token(org)

        emu.clock.advance(FIFTEEN_DAYS)
        emu.clear_requests()
        waits: list[float] = []
        tokens = await asyncio.gather(
            *(_timed(integ.aget_access_token, waits) for _ in range(callers))
        )
        assert len(set(tokens)) == 1
        _report(f"{label} integration (async)", waits, emu.count("POST", "/v1/access_token"))

        emu.clock.advance(FIFTEEN_DAYS)
        emu.clear_requests()
        waits = []
        tokens = await asyncio.gather(
            *(_timed(lambda: sa.aget_org_token(org), waits) for _ in range(callers))
        )
        assert len(set(tokens)) == 1
        requests = emu.count("POST", "/v1/access_token") + emu.count("POST", "/v1/applications")
        _report(f"{label} one org (async)", waits, requests)

        threads_n = min(callers, 64)
        emu.clock.advance(FIFTEEN_DAYS)
        emu.clear_requests()
        waits = []
        lock = threading.Lock()

        def sync_caller() -> None:
            t0 = time.perf_counter()
            integ.get_access_token()
            with lock:
                waits.append(time.perf_counter() - t0)

        threads = [threading.Thread(target=sync_caller) for _ in range(threads_n)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        _report(f"{label} integration (sync threads)", waits, emu.count("POST", "/v1/access_token"))
        await http.aclose()


async def storage_throughput(name: str, store: KeyValueTokenStorage, ops: int) -> None:
    now = time.time()
    token = OAuthToken("a" * 106, now + 3600, "r" * 106, now + 7200, scope="s", obtained_at=now)
    orgs = [str(uuid.uuid4()) for _ in range(50)]
    t0 = time.perf_counter()
    for i in range(ops):
        await store.set_org_token(orgs[i % len(orgs)], token)
    set_rate = ops / (time.perf_counter() - t0)
    t0 = time.perf_counter()
    for i in range(ops):
        await store.get_org_token(orgs[i % len(orgs)])
    get_rate = ops / (time.perf_counter() - t0)
    print(f"  {name:<28} set {set_rate:>9,.0f}/s   get {get_rate:>9,.0f}/s")
    await store.aclose()


def _start_redis() -> tuple[subprocess.Popen[bytes], str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
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


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--callers", type=int, default=1000)
    parser.add_argument("--ops", type=int, default=2000)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-tokens-"))
    redis = _start_redis()
    try:
        print(f"Refresh storm ({args.callers} concurrent callers, expired token, emulator):")
        await refresh_storm(args.callers, InMemoryTokenStorage(), "memory")
        await refresh_storm(args.callers, SQLiteTokenStorage(tmp / "storm.db"), "sqlite")
        if redis is not None:
            from webex_byova.storage.redis import RedisTokenStorage

            await refresh_storm(args.callers, RedisTokenStorage(redis[1], prefix="storm:"), "redis")

        print(f"Token store throughput ({args.ops} sequential ops each):")
        key = generate_key()
        backends: list[tuple[str, Callable[[], KeyValueTokenStorage]]] = [
            ("memory", InMemoryTokenStorage),
            ("sqlite (synchronous=FULL)", lambda: SQLiteTokenStorage(tmp / "full.db")),
            (
                "sqlite (synchronous=NORMAL)",
                lambda: SQLiteTokenStorage(tmp / "normal.db", synchronous="NORMAL"),
            ),
            ("encrypted(memory)", lambda: EncryptedTokenStorage(InMemoryTokenStorage(), key)),
            (
                "encrypted(sqlite FULL)",
                lambda: EncryptedTokenStorage(SQLiteTokenStorage(tmp / "enc.db"), key),
            ),
        ]
        if redis is not None:
            from webex_byova.storage.redis import RedisTokenStorage

            url = redis[1]
            backends += [
                ("redis", lambda: RedisTokenStorage(url, prefix="tp:")),
                (
                    "encrypted(redis)",
                    lambda: EncryptedTokenStorage(RedisTokenStorage(url, prefix="tpe:"), key),
                ),
            ]
        else:
            print("  (redis-server not on PATH: Redis skipped)")
        for name, factory in backends:
            await storage_throughput(name, factory(), args.ops)
    finally:
        if redis is not None:
            redis[0].terminate()
            redis[0].wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
