"""Production layout figures: workers, the Redis store, and our overhead over bare grpc.aio.

Run: ``.venv/bin/python bench/bench_ops.py [--calls 150,300] [--rounds 2] [--drivers N]``.
Each scenario starts real server processes on loopback and drives real-time calls at them:
SESSION_START, one audio turn of 160-byte µ-law frames every 20 ms (0.2 s of silence, a
caller saying "hello" (the packaged ``speech_hello.wav``), 1.5 s of silence: both the energy
and the Silero end-pointer end a turn on it), SESSION_END; ``--rounds`` calls per call slot,
one after another. The call slots are dealt over ``--drivers`` driver processes (default:
the CPU count, at least 2), each with its own event loop and gRPC connections, whose figures
are merged, so one starved driver loop does not bunch the frames; within a process the
calls are spread over several connections so ``SO_REUSEPORT`` balances them across workers.

Scenarios (each prints one line):

* ``byova serve`` with 1 and with 2 workers at each ``--calls`` level: server CPU per
  call-second (CPU seconds of every server process / seconds of calls in progress), p99 turn
  latency (END_OF_INPUT received -> first reply response), late frames (frames the drivers
  sent > 20 ms behind schedule: they could not keep up, the run is pessimistic);
* the same with ``WEBEX_MEDIA_CONVERSATION_STORE=redis://`` (a private redis-server): the
  store's cost per turn;
* side by side in one run: our server (1 process) and a bare ``grpc.aio`` server that only
  drains the frames, both under the same calls at the same time (each call has a leg to
  each server and every frame is written to both at the same tick, no stop at
  END_OF_INPUT); the CPU ratio is our overhead per process. On a shared machine
  the ratio of one run varies with the load: ``--trials N`` repeats it and prints the median.
  ``--bare-calls 50,150`` runs it at other call levels than the first of ``--calls``. Read
  it where the late frames are near 0: on a machine the two servers and the drivers
  saturate, frames arrive bunched, the bare server's per-wake-up costs are shared by several
  frames while ours are per frame, and the ratio measures the scheduler as much as the
  servers.

``--vad energy,auto`` (the default) runs every scenario once per speech detector
(``WEBEX_MEDIA_VAD``): ``energy`` is what a core install gets (no dependencies), ``auto`` the
default, which picks Silero when the ``vad`` extra is installed (a neural model per frame).

The machine is shared: keep runs short and read figures as indicative.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc
from grpc import aio

FRAME = 160
PROCESS_CALLER_INPUT = "/com.cisco.wcc.ccai.media.v1.VoiceVirtualAgent/ProcessCallerInput"
CHANNELS = 8  # gRPC connections per server and driver process
APP = """
from webex_byova.media import BYOVAMediaServer, MediaServerConfig

server = BYOVAMediaServer(MediaServerConfig.from_env())

@server.on("session_start")
def welcome(event):
    event.turn.say("welcome")

@server.on("utterance")
def reply(event):
    event.turn.say("reply")
"""
ENV = {
    "WEBEX_MEDIA_VERIFY_TOKENS": "false",
    "WEBEX_MEDIA_COMPLETE_TIMEOUT_MS": "800",
    "WEBEX_MEDIA_MAX_CONVERSATIONS": "10000",
    "WEBEX_MEDIA_LOG_LEVEL": "WARNING",
    "WEBEX_MEDIA_DRAIN_TIMEOUT_S": "0",
}
BYOVA = Path(sys.executable).with_name("byova")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def call_audio() -> bytes:
    """A caller saying "hello" (the packaged speech asset) between 0.2 s of silence before and
    1.5 s after, as 8 kHz µ-law: both speech detectors (energy and Silero) start and end a
    turn on it."""
    from webex_byova.media import assets, audio

    speech = audio.wav_to_webex(assets.load("speech_hello.wav"))
    silence = b"\xff"  # µ-law zero
    return silence * 1600 + speech + silence * 12000


def cpu_seconds(pid: int) -> float:
    """CPU seconds of ``pid`` and its live children (a supervisor and its workers)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == pid or int(fields[1]) == pid:
            total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def wait_port(port: int, proc: subprocess.Popen[bytes], count: int = 1) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.5 * count)  # let every worker bind
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not listen")


def start_byova(
    app: Path, workers: int, extra_env: dict[str, str]
) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    argv = [str(BYOVA), "serve", str(app), "--host", "127.0.0.1", "--port", str(port)]
    if workers > 1:
        argv += ["--workers", str(workers)]
    proc = subprocess.Popen(
        argv,
        env={**os.environ, **ENV, **extra_env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_port(port, proc, workers)
    return proc, port


def stop(proc: subprocess.Popen[bytes]) -> None:
    import signal

    with_group = proc.pid
    try:
        os.killpg(with_group, signal.SIGTERM)
        proc.wait(30)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(with_group, signal.SIGKILL)
        proc.wait()


# --------------------------------------------------------------------------- bare server


async def run_bare(port: int) -> None:
    """A grpc.aio ProcessCallerInput that only drains the request stream, then one FINAL."""
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva
    from webex_byova.media._proto import voicevirtualagent_pb2_grpc as vva_grpc

    final = vva.VoiceVAResponse(response_type=vva.VoiceVAResponse.FINAL)

    class Bare(vva_grpc.VoiceVirtualAgentServicer):  # type: ignore[misc]
        async def ProcessCallerInput(self, request_iterator, context):  # type: ignore[no-untyped-def]
            async for _ in request_iterator:
                pass
            yield final

    server = aio.server(options=[("grpc.so_reuseport", 0)])
    vva_grpc.add_VoiceVirtualAgentServicer_to_server(Bare(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def start_bare() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, __file__, "bare", str(port)], start_new_session=True)
    wait_port(port, proc)
    return proc, port


# --------------------------------------------------------------------------- driver


class Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.late = 0
        self.frames = 0
        self.call_seconds = 0.0
        self.failed = 0

    def to_dict(self) -> dict[str, object]:
        return dict(vars(self))

    def merge(self, data: dict[str, Any]) -> None:
        """Add one driver process's figures (``to_dict`` of its Stats) to these."""
        self.latencies += data["latencies"]
        self.late += data["late"]
        self.frames += data["frames"]
        self.call_seconds += data["call_seconds"]
        self.failed += data["failed"]


class Leg:
    """One call's RPCs to one server (the side-by-side scenario has one leg per server)."""

    def __init__(self, rpc: Any, stats: Stats) -> None:
        self.rpc = rpc  # ProcessCallerInput taking serialized requests (see drive)
        self.stats = stats
        self.call: Any = None
        self.reader: asyncio.Future[None] | None = None
        self.eoi_at: float | None = None
        self.reply_at: float | None = None
        self.failed = False

    def fail(self) -> None:
        if not self.failed:
            self.failed = True
            self.stats.failed += 1
        self.call = None

    async def open(self, start: object) -> None:
        """SESSION_START (its own RPC), then the audio turn's RPC and its reader."""
        try:
            async for _ in self.rpc(iter([start]), timeout=60):
                pass
        except grpc.RpcError:
            self.fail()
            return
        self.call = self.rpc(timeout=60)
        self.reader = asyncio.ensure_future(self.read())

    async def read(self) -> None:
        try:
            async for response in self.call:
                kinds = [e.event_type for e in response.output_events]
                if self.eoi_at is None and 5 in kinds:  # END_OF_INPUT
                    self.eoi_at = time.monotonic()
                elif self.eoi_at is not None and self.reply_at is None and not kinds:
                    self.reply_at = time.monotonic()
        except grpc.RpcError:
            self.fail()

    async def write(self, frame: object, late: bool) -> None:
        try:
            await self.call.write(frame)
        except (grpc.RpcError, asyncio.InvalidStateError):
            self.fail()
            return
        self.stats.frames += 1
        self.stats.late += late

    async def close(self, end: object) -> None:
        """Half-close the audio turn, wait for its responses, then SESSION_END."""
        if self.call is not None:
            try:
                await self.call.done_writing()
            except (grpc.RpcError, asyncio.InvalidStateError):
                self.fail()
        if self.reader is not None:
            await self.reader
        if self.failed:
            return
        if self.eoi_at is not None and self.reply_at is not None:
            self.stats.latencies.append(self.reply_at - self.eoi_at)
        try:
            async for _ in self.rpc(iter([end]), timeout=60):
                pass
        except grpc.RpcError:
            self.fail()


async def one_call(rpcs: list[Any], ulaw: bytes, stats: list[Stats], *, stop_at_eoi: bool) -> None:
    """One call to every server at once: each frame goes to all of them at the same instant
    (serialized once for all of them: the drivers' CPU is what starves them)."""
    import uuid

    from webex_byova.media import audio
    from webex_byova.media._proto import byova_common_pb2 as common
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva

    ids = {"conversation_id": str(uuid.uuid4()), "customer_org_id": "org-bench"}
    start = vva.VoiceVARequest(
        **ids, event_input=common.EventInput(event_type=common.EventInput.SESSION_START)
    ).SerializeToString()
    end = vva.VoiceVARequest(
        **ids, event_input=common.EventInput(event_type=common.EventInput.SESSION_END)
    ).SerializeToString()
    mulaw = int(audio.AudioEncoding.coerce("MULAW"))
    frames = [
        vva.VoiceVARequest(
            **ids,
            audio_input=vva.VoiceInput(
                caller_audio=ulaw[i : i + FRAME], encoding=mulaw, sample_rate_hertz=8000
            ),
        ).SerializeToString()
        for i in range(0, len(ulaw), FRAME)
    ]
    legs = [Leg(rpc, s) for rpc, s in zip(rpcs, stats, strict=True)]
    t0 = time.monotonic()
    await asyncio.gather(*(leg.open(start) for leg in legs))
    began = time.monotonic()
    for i, frame in enumerate(frames):
        live = [
            leg
            for leg in legs
            if leg.call is not None and not (stop_at_eoi and leg.eoi_at is not None)
        ]
        if not live:
            break
        delay = began + i * 0.02 - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        for leg in live:
            await leg.write(frame, delay < -0.02)
    await asyncio.gather(*(leg.close(end) for leg in legs))
    for s in stats:
        s.call_seconds += time.monotonic() - t0


async def drive(
    ports: list[int],
    calls: int,
    slots: list[int],
    rounds: int,
    start_at: float,
    *,
    stop_at_eoi: bool,
) -> list[Stats]:
    """Call slots ``slots`` (of ``calls``) against every port at once; one Stats per port.

    Slot ``i`` starts at ``start_at + i / calls`` (wall clock, shared by every driver
    process), so the starts of all slots spread over one second.
    """
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva

    ulaw = call_audio()
    out = [Stats() for _ in ports]
    pools = [
        [
            aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(CHANNELS)
        ]
        for port in ports
    ]
    rpcs = [
        [
            ch.stream_stream(
                PROCESS_CALLER_INPUT,
                request_serializer=None,  # the requests are serialized once per call
                response_deserializer=vva.VoiceVAResponse.FromString,
            )
            for ch in pool
        ]
        for pool in pools
    ]

    async def slot(i: int) -> None:
        await asyncio.sleep(max(0.0, start_at + i / calls - time.time()))
        chosen = [pool[i % CHANNELS] for pool in rpcs]
        for _ in range(rounds):
            await one_call(chosen, ulaw, out, stop_at_eoi=stop_at_eoi)

    await asyncio.gather(*(slot(i) for i in slots))
    for pool in pools:
        for ch in pool:
            await ch.close()
    return out


def driver_process() -> None:
    """A driver process: its job (JSON) on stdin, "ready", the start time, then its figures."""
    job = json.loads(sys.stdin.readline())
    call_audio()  # import and build everything before the clock starts
    print("ready", flush=True)
    start_at = float(sys.stdin.readline())
    stats = asyncio.run(
        drive(
            job["ports"],
            job["calls"],
            job["slots"],
            job["rounds"],
            start_at,
            stop_at_eoi=job["stop_at_eoi"],
        )
    )
    print(json.dumps([s.to_dict() for s in stats]), flush=True)


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def measure(
    procs: list[subprocess.Popen[bytes]],
    ports: list[int],
    calls: int,
    rounds: int,
    drivers: int,
    *,
    stop_at_eoi: bool,
) -> list[tuple[Stats, float]]:
    """Drive ``calls`` call slots from ``drivers`` processes (slots dealt round-robin, each
    process its own event loop and channels) against every port; per port the merged Stats
    and the CPU seconds its server used meanwhile."""
    children = [
        subprocess.Popen(
            [sys.executable, __file__, "drive"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(min(drivers, calls))
    ]
    for k, child in enumerate(children):
        assert child.stdin is not None
        assert child.stdout is not None
        job = {
            "ports": ports,
            "calls": calls,
            "slots": list(range(k, calls, len(children))),
            "rounds": rounds,
            "stop_at_eoi": stop_at_eoi,
        }
        child.stdin.write(json.dumps(job) + "\n")
        child.stdin.flush()
    for child in children:
        assert child.stdout is not None
        if child.stdout.readline().strip() != "ready":
            raise RuntimeError("a driver process failed to start")
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    start_at = time.time() + 0.2
    merged = [Stats() for _ in ports]
    for child in children:
        assert child.stdin is not None
        child.stdin.write(f"{start_at}\n")
        child.stdin.close()
    outputs = []
    for child in children:
        assert child.stdout is not None
        outputs.append(child.stdout.read())
        child.wait()
    cpu1 = [cpu_seconds(p.pid) for p in procs]
    for child, output in zip(children, outputs, strict=True):
        if child.returncode:
            raise RuntimeError("a driver process failed")
        for stats, data in zip(merged, json.loads(output), strict=True):
            stats.merge(data)
    return [(s, c1 - c0) for s, c0, c1 in zip(merged, cpu0, cpu1, strict=True)]


def line(label: str, calls: int, stats: Stats, cpu: float) -> str:
    """One result line. The CPU is per second of call audio *delivered* (frames x 20 ms), so a
    driver that falls behind (late frames) does not flatter the server."""
    audio_s = stats.frames * FRAME / 8000
    per = cpu / audio_s * 1000 if audio_s else math.nan
    per_frame = cpu / stats.frames * 1e6 if stats.frames else math.nan
    late = stats.late / stats.frames if stats.frames else math.nan
    return (
        f"{label:<28} calls={calls:4d}  CPU {per:5.2f} ms per call-second "
        f"({per_frame:4.0f} us/frame, {cpu:5.1f} CPU-s)  p99 turn latency "
        f"{p99(stats.latencies) * 1000:6.1f} ms ({len(stats.latencies)} turns)  late frames "
        f"{stats.late}/{stats.frames} ({late:.1%})  failed {stats.failed}"
    )


def main() -> None:
    if sys.argv[1:2] == ["bare"]:
        asyncio.run(run_bare(int(sys.argv[2])))
        return
    if sys.argv[1:2] == ["drive"]:
        driver_process()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", default="150,300")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--skip", default="", help="comma list of: workers,redis,bare")
    parser.add_argument(
        "--trials",
        type=int,
        default=1,
        help="side-by-side runs of the bare scenario (their median is printed too)",
    )
    parser.add_argument(
        "--bare-calls",
        default="",
        help="comma list of call levels of the bare scenario (default: the first of --calls)",
    )
    parser.add_argument(
        "--vad",
        default="energy,auto",
        help="comma list of WEBEX_MEDIA_VAD values; every scenario runs once per value",
    )
    parser.add_argument(
        "--drivers",
        type=int,
        default=max(2, os.cpu_count() or 1),
        help="driver processes the calls of a run are split over (each its own event loop)",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.calls.split(",")]
    skip = set(args.skip.split(","))
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} (shared machine); "
        f"{args.rounds} calls per slot, {len(call_audio()) / 8000:.2f} s of audio each, "
        f"{args.drivers} driver processes"
    )
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "bench_app.py"
        app.write_text(APP)
        for vad in args.vad.split(","):
            print(f"--- WEBEX_MEDIA_VAD={vad}", flush=True)
            scenarios(
                app,
                levels,
                args.rounds,
                skip,
                {"WEBEX_MEDIA_VAD": vad},
                args.trials,
                args.drivers,
                [int(c) for c in args.bare_calls.split(",") if c] or levels[:1],
            )
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f}")


def scenarios(
    app: Path,
    levels: list[int],
    rounds: int,
    skip: set[str],
    vad_env: dict[str, str],
    trials: int = 1,
    drivers: int = 2,
    bare_levels: list[int] | None = None,
) -> None:
    """Every scenario not in ``skip`` with the server environment ``vad_env``."""
    if "workers" not in skip:
        for calls in levels:
            for workers in (1, 2):
                proc, port = start_byova(app, workers, vad_env)
                try:
                    [(stats, cpu)] = measure(
                        [proc], [port], calls, rounds, drivers, stop_at_eoi=True
                    )
                finally:
                    stop(proc)
                print(line(f"byova serve, {workers} worker(s)", calls, stats, cpu), flush=True)
    if "redis" not in skip:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is needed"
        rport = free_port()
        redis = subprocess.Popen(
            [
                binary,
                "--port",
                str(rport),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            calls = levels[0]
            for label, env in (
                ("memory store, 1 worker", {}),
                (
                    "redis store, 1 worker",
                    {"WEBEX_MEDIA_CONVERSATION_STORE": f"redis://127.0.0.1:{rport}/0"},
                ),
            ):
                proc, port = start_byova(app, 1, {**vad_env, **env})
                try:
                    [(stats, cpu)] = measure(
                        [proc], [port], calls, rounds, drivers, stop_at_eoi=True
                    )
                finally:
                    stop(proc)
                turns = 3 * calls * rounds
                print(
                    line(label, calls, stats, cpu) + f"  ({cpu / turns * 1000:.2f} ms CPU/turn)",
                    flush=True,
                )
        finally:
            redis.terminate()
            redis.wait()
    if "bare" not in skip:
        for calls in bare_levels or levels[:1]:
            bare_scenario(app, calls, rounds, vad_env, trials, drivers)


def bare_scenario(
    app: Path, calls: int, rounds: int, vad_env: dict[str, str], trials: int, drivers: int
) -> None:
    """Our server and the bare one side by side at ``calls``, ``trials`` times."""
    vad = vad_env.get("WEBEX_MEDIA_VAD", "default")
    ratios = []
    for _ in range(trials):
        ours, our_port = start_byova(app, 1, vad_env)
        bare, bare_port = start_bare()
        try:
            (s_ours, c_ours), (s_bare, c_bare) = measure(
                [ours, bare], [our_port, bare_port], calls, rounds, drivers, stop_at_eoi=False
            )
        finally:
            stop(ours)
            stop(bare)
        ratios.append(c_ours / c_bare)
        print(line("ours (side by side)", calls, s_ours, c_ours), flush=True)
        print(line("bare grpc.aio (side by side)", calls, s_bare, c_bare), flush=True)
        print(
            f"ours / bare CPU per process (vad={vad}, {calls} calls): {ratios[-1]:.2f}x  "
            f"(load average {os.getloadavg()[0]:.1f})",
            flush=True,
        )
    if trials > 1:
        listed = ", ".join(f"{r:.2f}" for r in ratios)
        print(
            f"ours / bare CPU per process (vad={vad}, {calls} calls), median of {trials} "
            f"side-by-side runs: {statistics.median(ratios):.2f}x ({listed})",
            flush=True,
        )


if __name__ == "__main__":
    main()
