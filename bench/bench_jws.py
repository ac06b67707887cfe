"""JWS verification throughput and JWKS fetch counts, against the local Webex emulator.

Prints:
* verifications/s for fresh tokens (each token seen once: signature + claims checked), sync
  and async;
* verifications/s for a repeated token (verified-token cache hit), sync and async;
* the JWKS fetches made during a 10,000-verification run with one key rotation (tokens
  signed by the old key keep arriving after the rotation);
* the JWKS fetches for 1000 concurrent verifications of one fresh token (single flight).

Usage: ``.venv/bin/python bench/bench_jws.py [--tokens 10000] [--repeat 200000]``
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator

from webex_byova.jws import JWSVerifier
from webex_byova.testing import EmulatorClock, WebexEmulator

URL = "https://byova.example.com"
JWKS_PREFIX = "/idb/oauth2/v2/keys/verificationjwk"


def _rate(count: int, seconds: float) -> str:
    return f"{count / seconds:>12,.0f} /s  ({count:,} in {seconds:.2f} s)"


def phases(emu: WebexEmulator, total: int) -> Iterator[list[str]]:
    """Yield the token batches of one run; the key rotation happens between the batches.

    Batch 1: a quarter of the run, signed by the current key. Then the emulator rotates its
    key (keeping the old one published, as a real rollover does) and simulated time moves
    on 2 minutes (past the 30 s refetch cooldown). Batch 2: the rest, tokens of the new key
    interleaved with old-key tokens still in flight. Minting happens outside the timing.
    """
    half, quarter = total // 2, total // 4
    old = [emu.mint_data_source_token(url=URL, extra_claims={"n": i}) for i in range(half)]
    yield old[:quarter]
    emu.rotate_keys(keep_old=True)
    emu.clock.advance(120)
    new = [emu.mint_data_source_token(url=URL, extra_claims={"n": i}) for i in range(total - half)]
    rest = old[quarter:]
    mixed = [tok for pair in zip(rest, new, strict=False) for tok in pair]
    yield mixed + new[len(rest) :]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=10_000, help="fresh tokens per run")
    parser.add_argument("--repeat", type=int, default=200_000, help="cache-hit verifications")
    args = parser.parse_args()

    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emu:
        # -- fresh tokens, sync, with one rotation in the run
        verifier = JWSVerifier(emu.config(), clock=emu.clock.now, expected_url=URL)
        emu.clear_requests()
        sync_fresh, count, token = 0.0, 0, ""
        for batch in phases(emu, args.tokens):
            t0 = time.perf_counter()
            for token in batch:
                verifier.verify(token)
            sync_fresh += time.perf_counter() - t0
            count += len(batch)
        sync_fetches = emu.count("GET", JWKS_PREFIX)

        # -- repeated token (cache hit), sync
        t0 = time.perf_counter()
        for _ in range(args.repeat):
            verifier.verify(token)
        sync_hit = time.perf_counter() - t0
        verifier.close()

        # -- the same, async (new verifier, another rotation)
        async def arun() -> tuple[float, float, int]:
            emu.clear_requests()
            fresh, last = 0.0, ""
            async with JWSVerifier(emu.config(), clock=emu.clock.now, expected_url=URL) as av:
                for batch in phases(emu, args.tokens):
                    t0 = time.perf_counter()
                    for last in batch:
                        await av.averify(last)
                    fresh += time.perf_counter() - t0
                fetches = emu.count("GET", JWKS_PREFIX)
                t0 = time.perf_counter()
                for _ in range(args.repeat):
                    await av.averify(last)
                hit = time.perf_counter() - t0
            return fresh, hit, fetches

        async_fresh, async_hit, async_fetches = asyncio.run(arun())

        # -- 1000 concurrent verifications of one fresh token on a cold verifier
        async def burst() -> int:
            emu.clear_requests()
            emu.add_latency(JWKS_PREFIX, 0.05, times=1)
            fresh = emu.mint_data_source_token(url=URL)
            async with JWSVerifier(emu.config(), clock=emu.clock.now, expected_url=URL) as bv:
                await asyncio.gather(*(bv.averify(fresh) for _ in range(1000)))
            return emu.count("GET", JWKS_PREFIX)

        burst_fetches = asyncio.run(burst())

    print("JWS verification (RS256, 2048-bit keys, emulator on 127.0.0.1)")
    print(f"  fresh tokens, sync        {_rate(count, sync_fresh)}")
    print(f"  fresh tokens, async       {_rate(count, async_fresh)}")
    print(f"  repeated token, sync      {_rate(args.repeat, sync_hit)}")
    print(f"  repeated token, async     {_rate(args.repeat, async_hit)}")
    print(
        f"  JWKS fetches in a {count:,}-verification run with one key rotation: "
        f"sync {sync_fetches}, async {async_fetches} (minimum possible: 2)"
    )
    print(f"  JWKS fetches for 1000 concurrent verifications of a fresh token: {burst_fetches}")


if __name__ == "__main__":
    main()
