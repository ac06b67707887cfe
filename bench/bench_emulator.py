"""Emulator figures: start/stop time, request latency and threaded throughput.

Run: ``.venv/bin/python bench/bench_emulator.py``. Prints one line per figure.
"""

from __future__ import annotations

import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx

from webex_byova.testing import WebexEmulator


def timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1000)
    return out


def show(name: str, ms: list[float]) -> None:
    ms = sorted(ms)
    p95 = ms[int(len(ms) * 0.95) - 1]
    print(f"{name:<44} median {statistics.median(ms):7.2f} ms   p95 {p95:7.2f} ms")


def main() -> None:
    def start_stop() -> None:
        WebexEmulator().start().stop()

    show("construct+start+stop (no key yet)", timed(start_stop, 20))
    with WebexEmulator() as emu, httpx.Client() as http:
        show("first JWKS fetch (RSA-2048 keygen)", timed(lambda: http.get(emu.jwks_url), 1))
        tok = emu.issue_integration_token()["access_token"]
        h = {"Authorization": f"Bearer {tok}"}
        show(
            "GET /v1/webhooks (keep-alive)",
            timed(lambda: http.get(emu.base_url + "/webhooks", headers=h), 300),
        )
        emu.authorize_service_app(emu.org.org_id)
        sat = emu.issue_service_app_token(emu.org.org_id)["access_token"]
        sh = {"Authorization": f"Bearer {sat}"}

        def create() -> None:
            body = {
                "schemaId": "5397013b-7920-4ffc-807c-e8a3e0a18f43",
                "url": "https://va.example.com",
                "audience": "a",
                "subject": "s",
                "nonce": str(uuid.uuid4()),
                "tokenLifetimeMinutes": 60,
            }
            assert (
                http.post(emu.base_url + "/dataSources", headers=sh, json=body).status_code == 200
            )

        show("POST /v1/dataSources (mints RS256 JWS)", timed(create, 200))
        show(
            "mint_data_source_token (in-process)",
            timed(lambda: emu.mint_data_source_token(url="https://x"), 200),
        )

        def burst() -> None:
            with httpx.Client() as c:
                for _ in range(100):
                    c.get(emu.jwks_url)

        t = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            for f in [pool.submit(burst) for _ in range(8)]:
                f.result()
        elapsed = time.perf_counter() - t
        print(f"{'8 threads x 100 GET JWKS':<44} {800 / elapsed:7.0f} req/s")


if __name__ == "__main__":
    main()
