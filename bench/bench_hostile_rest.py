"""Time to a bounded, typed answer for the REST-side hostile cases (issue 12, items 13-16).

Prints one line per case: the answer (a ``JWSVerificationError`` reason, a
``TokenStorageError``, a webhook disposition) and the median / max wall time over ``--runs``.
Each JWS case uses a fresh verifier, so the time includes fetching the hostile key set from a
loopback server; each store case opens the damaged file afresh.

Usage: ``.venv/bin/python bench/bench_hostile_rest.py [--runs 20]``
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.auth.test_corrupt_store import SQLITE_CASES, _prepare
from tests.jws.helpers import KeyServer, public_jwk, sign_rs256
from tests.jws.test_key_policy import HOSTILE, _hostile_cases
from webex_byova import TokenStorageError
from webex_byova.jws import JWKS_PATH, JWSVerificationError, JWSVerifier
from webex_byova.storage import SQLiteTokenStorage

DS_URL = "https://byova.example.com"


def _line(name: str, answer: str, times: list[float]) -> str:
    med, top = statistics.median(times) * 1000, max(times) * 1000
    return f"  {name:<34} {answer:<22} median {med:7.2f} ms   max {top:7.2f} ms"


def jws_cases(runs: int) -> int:
    strong = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    cases = _hostile_cases(strong, other)
    cases["1024-bit key (signed by it)"] = ([public_jwk(weak, "k")], "weak_key")
    print("JWS key sets (fresh verifier: key-set fetch + answer)")
    with KeyServer() as server:
        issuer = server.url + "/idb"
        for name in [*HOSTILE, "1024-bit key (signed by it)"]:
            entries, expected = cases[name]
            signer = weak if name.startswith("1024") else strong
            token = sign_rs256(signer, "k", issuer, time.time())
            server.routes["/idb" + JWKS_PATH] = {"keys": entries}
            times = []
            answer = ""
            for _ in range(runs):
                with JWSVerifier(issuers=[issuer], expected_url=DS_URL) as verifier:
                    start = time.perf_counter()
                    try:
                        verifier.verify(token)
                        answer = "accepted"
                    except JWSVerificationError as exc:
                        answer = exc.reason
                    times.append(time.perf_counter() - start)
            assert answer == expected, (name, answer)
            print(_line(name, answer, times))
    return len(cases)


async def store_cases(runs: int) -> int:
    print("Corrupt SQLite token stores (open + first read)")
    for name in SQLITE_CASES:
        times = []
        for i in range(runs):
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"tokens-{i}.db"
                await _prepare(name, path)
                store = SQLiteTokenStorage(path)
                start = time.perf_counter()
                try:
                    await store.get_integration_token()
                    answer = "read"
                except TokenStorageError:
                    answer = "TokenStorageError"
                times.append(time.perf_counter() - start)
                await store.aclose()
        print(_line(name, answer, times))
    return len(SQLITE_CASES)


async def _timed(fn: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    count = jws_cases(args.runs)
    count += asyncio.run(store_cases(args.runs))
    print(f"{count} bounded cases measured, {args.runs} runs each")


if __name__ == "__main__":
    main()
