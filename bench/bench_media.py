"""Media server load: N concurrent real-time calls from a separate process; prints figures.

Run: ``.venv/bin/python bench/bench_media.py [--transport grpc|websocket]
[--calls-per-driver K] [N ...]`` (default ``50 100 200`` over gRPC, all calls from this
process). ``--transport websocket`` serves the same app on BYOVA over WebSocket (one socket
per call, JSON envelopes, Base64 audio) and drives it with ``WebexWsCaller``;
``--calls-per-driver K`` spreads the calls over driver processes of K calls each, so a caller
that cannot keep real time does not distort the server's figures.

For each N a fresh server process is started (``bench_media.py server``); this process drives
N calls: SESSION_START, then an audio turn of 160-byte µ-law frames every 20 ms (1 s of a
voiced tone, then silence) until END_OF_INPUT, then SESSION_END. Figures:

* END_OF_INPUT delay: from sending the frame that completes the end-of-speech silence (known
  exactly by running the same deterministic VAD on the same audio) to receiving END_OF_INPUT;
  p50/p99/max in ms;
* late frames: frames the caller process sent > 20 ms behind schedule (caller overload makes
  the run invalid rather than the server slow);
* server CPU per call (% of one core while the calls stream) and RSS per live conversation.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import struct
import subprocess
import sys
import time
from typing import Any

FRAME = 160
COMPLETE_TIMEOUT_MS = 800


def tone_call_audio() -> bytes:
    """1 s of a 220 Hz voiced tone at -12 dBFS then 1.5 s of silence, as 8 kHz µ-law."""
    from webex_byova.media import audio

    amp = 32767 * 10 ** (-12 / 20)
    pcm = b"".join(
        struct.pack("<h", int(amp * math.sin(2 * math.pi * 220 * i / 8000))) for i in range(8000)
    )
    pcm = b"\x00\x00" * 1600 + pcm + b"\x00\x00" * 12000
    return audio.pcm16_to_ulaw(pcm)


def deciding_frame(ulaw: bytes) -> int:
    """Index of the frame whose processing ends the utterance (same VAD as the server)."""
    from webex_byova.media.vad import EnergyVAD, SpeechEnded

    vad = EnergyVAD(complete_timeout_ms=COMPLETE_TIMEOUT_MS)
    for i in range(0, len(ulaw), FRAME):
        for event in vad.feed_ulaw(ulaw[i : i + FRAME]):
            if isinstance(event, SpeechEnded):
                return i // FRAME
    raise RuntimeError("the bench audio never ends an utterance")


def proc_stats(pid: int) -> tuple[float, int]:
    """(cpu seconds, rss bytes) of a process, from /proc."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))
    return cpu, rss


def thread_cpu(pid: int) -> dict[str, float]:
    """CPU seconds per thread of a process: ``main`` (the event loop) and ``other`` (gRPC's
    poller and executor threads), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    out = {"main": 0.0, "other": 0.0}
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            continue
        out["main" if int(tid) == pid else "other"] += (int(fields[11]) + int(fields[12])) / ticks
    return out


async def run_server(transport: str) -> None:
    from webex_byova.media import BYOVAMediaServer, MediaServerConfig

    server = BYOVAMediaServer(
        MediaServerConfig(
            host="127.0.0.1",
            port=0,
            ws_host="127.0.0.1",
            ws_port=0,
            transport=transport,
            verify_tokens=False,
            complete_timeout_ms=COMPLETE_TIMEOUT_MS,
            max_conversations=10000,
            log_level="WARNING",
        )
    )

    @server.on("session_start")
    def welcome(event: object) -> None:
        event.turn.say("welcome")  # type: ignore[attr-defined]

    @server.on("utterance")
    def reply(event: object) -> None:
        event.turn.say("reply")  # type: ignore[attr-defined]

    await server.start()
    print(server.ws_url if transport == "websocket" else server.address, flush=True)
    loop = asyncio.get_running_loop()
    # stdin commands from the driver: "mem" starts/reads tracemalloc, "" (EOF/blank) stops
    while (await loop.run_in_executor(None, sys.stdin.readline)).strip() == "mem":
        import gc
        import tracemalloc

        gc.collect()
        if not tracemalloc.is_tracing():
            tracemalloc.start()
        print(tracemalloc.get_traced_memory()[0], flush=True)
    await server.stop(1.0)


def make_caller(address: str, *, realtime: bool) -> Any:
    from webex_byova.testing import WebexCaller, WebexWsCaller

    if address.startswith("ws"):
        return WebexWsCaller(address, realtime=realtime, turn_timeout=60)
    return WebexCaller(address, realtime=realtime, rpc_timeout=60)


async def one_ws_call(
    address: str, ulaw: bytes, decide: int, start_delay: float
) -> dict[str, float]:
    """One call over WebSocket: the same steps on one socket (``stream_frames`` paces 20 ms)."""
    await asyncio.sleep(start_delay)
    frames = [ulaw[i : i + FRAME] for i in range(0, len(ulaw), FRAME)]
    async with make_caller(address, realtime=True) as caller:
        await caller.start_session()
        result = await caller.stream_frames(frames)
        end_at = result.event_time("END_OF_INPUT")
        await caller.end_session()
    times = result.frame_times
    late = sum(1 for i, t in enumerate(times) if t - (times[0] + i * 0.02) > 0.02)
    if end_at is None or len(times) <= decide:
        return {"delay": float("nan"), "late": late}
    return {"delay": (end_at - times[decide]) * 1000, "late": late}


async def one_call(address: str, ulaw: bytes, decide: int, start_delay: float) -> dict[str, float]:
    from webex_byova.testing import WebexCaller

    if address.startswith("ws"):
        return await one_ws_call(address, ulaw, decide, start_delay)
    await asyncio.sleep(start_delay)
    frames = [ulaw[i : i + FRAME] for i in range(0, len(ulaw), FRAME)]
    async with WebexCaller(address, realtime=True, rpc_timeout=60) as caller:
        await caller.start_session()
        turn = caller.open("audio")
        t0 = time.monotonic()
        late = 0
        for i, frame in enumerate(frames):
            if turn.end_of_input.is_set():
                break
            delay = t0 + i * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.02:
                late += 1
            await turn.send(caller.audio_request(frame))
            turn.result.frame_times.append(turn.elapsed())
        await turn.half_close()
        result = await turn.wait(30)
        end_at = result.event_time("END_OF_INPUT")
        await caller.end_session()
    if end_at is None or len(result.frame_times) <= decide:
        return {"delay": float("nan"), "late": late}
    return {"delay": (end_at - result.frame_times[decide]) * 1000, "late": late}


#: Calls one driver process places at most (``--calls-per-driver``, 0 = all in this one): a
#: Python caller of many real-time calls can fall behind its own 20 ms schedule (late frames)
#: before the server does, which would measure the caller instead of the server.
CALLS_PER_DRIVER = 0


async def calls_slice(address: str, first: int, count: int, total: int) -> list[dict[str, float]]:
    """Calls ``first .. first+count-1`` of ``total`` (start times spread as in one process)."""
    ulaw = tone_call_audio()
    decide = deciding_frame(ulaw)
    return list(
        await asyncio.gather(
            *(
                one_call(address, ulaw, decide, start_delay=(first + i) / total)
                for i in range(count)
            )
        )
    )


async def drive_in_processes(address: str, n: int) -> list[dict[str, float]]:
    """Run the ``n`` calls in driver subprocesses of ``CALLS_PER_DRIVER`` calls each."""
    procs = []
    for first in range(0, n, CALLS_PER_DRIVER):
        count = min(CALLS_PER_DRIVER, n - first)
        args = [sys.executable, __file__, "calls", address, str(first), str(count), str(n)]
        procs.append(await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE))
    results: list[dict[str, float]] = []
    for proc in procs:
        out, _ = await proc.communicate()
        results += json.loads(out)
    return results


async def drive(address: str, n: int, server_pid: int, server: subprocess.Popen[str]) -> None:
    ulaw = tone_call_audio()
    decide = deciding_frame(ulaw)
    cpu0, rss0 = proc_stats(server_pid)
    threads0 = thread_cpu(server_pid)
    t0 = time.monotonic()
    if CALLS_PER_DRIVER and n > CALLS_PER_DRIVER:
        results = await drive_in_processes(address, n)
    else:
        results = await asyncio.gather(
            *(one_call(address, ulaw, decide, start_delay=i / n) for i in range(n))
        )
    wall = time.monotonic() - t0
    cpu1, _rss1 = proc_stats(server_pid)
    threads1 = thread_cpu(server_pid)
    delays = sorted(r["delay"] for r in results if not math.isnan(r["delay"]))
    late = sum(int(r["late"]) for r in results)
    missing = n - len(delays)
    p99 = delays[min(len(delays) - 1, math.ceil(0.99 * len(delays)) - 1)] if delays else math.nan
    busy = (cpu1 - cpu0) / wall
    print(
        f"N={n:4d}  END_OF_INPUT delay ms p50={statistics.median(delays):6.1f} "
        f"p99={p99:6.1f} max={delays[-1]:6.1f}  missing={missing}  late frames={late}  "
        f"server CPU {busy * 100:5.1f}% of a core ({busy * 100 / n:.3f}%/call; event-loop "
        f"thread {(threads1['main'] - threads0['main']) / wall * 100:.0f}%, other threads "
        f"{(threads1['other'] - threads0['other']) / wall * 100:.0f}%)",
        flush=True,
    )

    # memory per live conversation: traced Python allocations in the server before and after
    # opening n sessions (tracemalloc, so RSS noise from the allocator does not count)
    def server_mem() -> int:
        assert server.stdin is not None
        assert server.stdout is not None
        server.stdin.write("mem\n")
        server.stdin.flush()
        return int(server.stdout.readline())

    server_mem()  # start tracing
    callers = [make_caller(address, realtime=False) for _ in range(n)]
    before = server_mem()
    await asyncio.gather(*(c.start_session() for c in callers))
    after = server_mem()
    for c in callers:
        await c.end_session()
        await c.aclose()
    print(
        f"        RSS {rss0 / 2**20:.0f} MiB at start; {(after - before) / n / 1024:.1f} KiB "
        f"traced per live conversation ({n} sessions)",
        flush=True,
    )


def main(argv: list[str]) -> None:
    if argv[:1] == ["server"]:
        asyncio.run(run_server(argv[1] if len(argv) > 1 else "grpc"))
        return
    if argv[:1] == ["calls"]:
        address, first, count, total = argv[1], int(argv[2]), int(argv[3]), int(argv[4])
        print(json.dumps(asyncio.run(calls_slice(address, first, count, total))), flush=True)
        return
    global CALLS_PER_DRIVER
    if "--calls-per-driver" in argv:
        at = argv.index("--calls-per-driver")
        CALLS_PER_DRIVER = int(argv[at + 1])
        argv = argv[:at] + argv[at + 2 :]
    transport = "grpc"
    if "--transport" in argv:
        at = argv.index("--transport")
        transport = argv[at + 1]
        argv = argv[:at] + argv[at + 2 :]
    if transport not in ("grpc", "websocket"):
        raise SystemExit("--transport must be grpc or websocket")
    counts = [int(a) for a in argv] or [50, 100, 200]
    drivers = f"{CALLS_PER_DRIVER} calls per driver process" if CALLS_PER_DRIVER else "1 driver"
    print(
        f"{os.cpu_count()} CPUs; {transport}; frames 160 B / 20 ms; "
        f"complete timeout {COMPLETE_TIMEOUT_MS} ms; {drivers}"
    )
    for n in counts:
        proc = subprocess.Popen(
            [sys.executable, __file__, "server", transport],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdin is not None
            address = proc.stdout.readline().strip()
            asyncio.run(drive(address, n, proc.pid, proc))
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(30)
        finally:
            if proc.poll() is None:
                proc.kill()


if __name__ == "__main__":
    main(sys.argv[1:])
