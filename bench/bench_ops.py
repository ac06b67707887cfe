"""Production layout figures: workers, the Redis store, and our overhead over bare grpc.aio.

Run: ``.venv/bin/python bench/bench_ops.py [--calls 150,300] [--rounds 2]``. Each scenario
starts real server processes on loopback and drives real-time calls from this process:
SESSION_START, one audio turn of 160-byte µ-law frames every 20 ms (1 s of a voiced tone, then
1.5 s of silence), SESSION_END; ``--rounds`` calls per call slot, one after another. Calls are
spread over several gRPC connections so ``SO_REUSEPORT`` balances them across workers.

Scenarios (each prints one line):

* ``byova serve`` with 1 and with 2 workers at each ``--calls`` level: server CPU per
  call-second (CPU seconds of every server process / seconds of calls in progress), p99 turn
  latency (END_OF_INPUT received -> first reply response), late frames (frames this driver
  sent > 20 ms behind schedule: the driver could not keep up, the run is pessimistic);
* the same with ``WEBEX_MEDIA_CONVERSATION_STORE=redis://`` (a private redis-server): the
  store's cost per turn;
* side by side in one run: our server (1 process) and a bare ``grpc.aio`` server that only
  drains the frames, both under the same calls at the same time (every frame sent to both,
  no stop at END_OF_INPUT); the CPU ratio is our overhead per process. On a shared machine
  the ratio of one run varies with the load: ``--trials N`` repeats it and prints the median.

``--vad energy,auto`` (the default) runs every scenario once per speech detector
(``WEBEX_MEDIA_VAD``): ``energy`` is what a core install gets (no dependencies), ``auto`` the
default, which picks Silero when the ``vad`` extra is installed (a neural model per frame).

The machine is shared: keep runs short and read figures as indicative.
"""

from __future__ import annotations

import argparse
import asyncio
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

import grpc
from grpc import aio

FRAME = 160
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


def tone_call_audio() -> bytes:
    from bench_media import tone_call_audio as tone

    return tone()


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


async def one_call(stub: object, n: int, ulaw: bytes, stats: Stats, *, stop_at_eoi: bool) -> None:
    import uuid

    from webex_byova.media import audio
    from webex_byova.media._proto import byova_common_pb2 as common
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva

    ids = {"conversation_id": str(uuid.uuid4()), "customer_org_id": "org-bench"}
    start = vva.VoiceVARequest(
        **ids, event_input=common.EventInput(event_type=common.EventInput.SESSION_START)
    )
    end = vva.VoiceVARequest(
        **ids, event_input=common.EventInput(event_type=common.EventInput.SESSION_END)
    )
    mulaw = int(audio.AudioEncoding.coerce("MULAW"))
    frames = [
        vva.VoiceVARequest(
            **ids,
            audio_input=vva.VoiceInput(
                caller_audio=ulaw[i : i + FRAME], encoding=mulaw, sample_rate_hertz=8000
            ),
        )
        for i in range(0, len(ulaw), FRAME)
    ]
    rpc = stub.ProcessCallerInput  # type: ignore[attr-defined]
    t0 = time.monotonic()
    try:
        async for _ in rpc(iter([start]), timeout=60):
            pass
        call = rpc(timeout=60)
        eoi_at: float | None = None
        reply_at: float | None = None

        async def read() -> None:
            nonlocal eoi_at, reply_at
            async for response in call:
                kinds = [e.event_type for e in response.output_events]
                if eoi_at is None and 5 in kinds:  # END_OF_INPUT
                    eoi_at = time.monotonic()
                elif eoi_at is not None and reply_at is None and not kinds:
                    reply_at = time.monotonic()

        reader = asyncio.ensure_future(read())
        began = time.monotonic()
        for i, frame in enumerate(frames):
            if stop_at_eoi and eoi_at is not None:
                break
            delay = began + i * 0.02 - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            elif delay < -0.02:
                stats.late += 1
            await call.write(frame)
            stats.frames += 1
        await call.done_writing()
        await reader
        if eoi_at is not None and reply_at is not None:
            stats.latencies.append(reply_at - eoi_at)
        async for _ in rpc(iter([end]), timeout=60):
            pass
    except grpc.RpcError:
        stats.failed += 1
    stats.call_seconds += time.monotonic() - t0


async def drive(ports: list[int], calls: int, rounds: int, *, stop_at_eoi: bool) -> list[Stats]:
    """``calls`` concurrent call slots against every port at once; one Stats per port."""
    ulaw = tone_call_audio()
    out = []
    jobs = []
    channels = []
    for port in ports:
        stats = Stats()
        out.append(stats)
        pool = [
            aio.insecure_channel(
                f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)]
            )
            for _ in range(8)
        ]
        channels += pool
        from webex_byova.media._proto import voicevirtualagent_pb2_grpc as vva_grpc

        stubs = [vva_grpc.VoiceVirtualAgentStub(ch) for ch in pool]

        async def slot(i: int, stubs: list[object] = stubs, stats: Stats = stats) -> None:
            await asyncio.sleep(i / calls)  # spread the starts over one second
            for _ in range(rounds):
                await one_call(stubs[i % len(stubs)], i, ulaw, stats, stop_at_eoi=stop_at_eoi)

        jobs += [slot(i) for i in range(calls)]
    await asyncio.gather(*jobs)
    for ch in channels:
        await ch.close()
    return out


def p99(values: list[float]) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.99 * len(ordered)) - 1)]


def measure(
    procs: list[subprocess.Popen[bytes]], ports: list[int], calls: int, rounds: int, **kw: bool
) -> list[tuple[Stats, float]]:
    cpu0 = [cpu_seconds(p.pid) for p in procs]
    stats = asyncio.run(drive(ports, calls, rounds, **kw))
    cpu1 = [cpu_seconds(p.pid) for p in procs]
    return [(s, c1 - c0) for s, c0, c1 in zip(stats, cpu0, cpu1, strict=True)]


def line(label: str, calls: int, stats: Stats, cpu: float) -> str:
    """One result line. The CPU is per second of call audio *delivered* (frames x 20 ms), so a
    driver that falls behind (late frames) does not flatter the server."""
    audio_s = stats.frames * FRAME / 8000
    per = cpu / audio_s * 1000 if audio_s else math.nan
    per_frame = cpu / stats.frames * 1e6 if stats.frames else math.nan
    return (
        f"{label:<28} calls={calls:4d}  CPU {per:5.2f} ms per call-second "
        f"({per_frame:4.0f} us/frame, {cpu:5.1f} CPU-s)  p99 turn latency "
        f"{p99(stats.latencies) * 1000:6.1f} ms ({len(stats.latencies)} turns)  late frames "
        f"{stats.late}/{stats.frames}  failed {stats.failed}"
    )


def main() -> None:
    if sys.argv[1:2] == ["bare"]:
        asyncio.run(run_bare(int(sys.argv[2])))
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
        "--vad",
        default="energy,auto",
        help="comma list of WEBEX_MEDIA_VAD values; every scenario runs once per value",
    )
    args = parser.parse_args()
    levels = [int(c) for c in args.calls.split(",")]
    skip = set(args.skip.split(","))
    load = os.getloadavg()
    print(
        f"{os.cpu_count()} CPUs, load average {load[0]:.1f} (shared machine); "
        f"{args.rounds} calls per slot, 2.5 s of audio each"
    )
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "bench_app.py"
        app.write_text(APP)
        for vad in args.vad.split(","):
            print(f"--- WEBEX_MEDIA_VAD={vad}", flush=True)
            scenarios(app, levels, args.rounds, skip, {"WEBEX_MEDIA_VAD": vad}, args.trials)
    load = os.getloadavg()
    print(f"load average at the end {load[0]:.1f}")


def scenarios(
    app: Path,
    levels: list[int],
    rounds: int,
    skip: set[str],
    vad_env: dict[str, str],
    trials: int = 1,
) -> None:
    """Every scenario not in ``skip`` with the server environment ``vad_env``."""
    if "workers" not in skip:
        for calls in levels:
            for workers in (1, 2):
                proc, port = start_byova(app, workers, vad_env)
                try:
                    [(stats, cpu)] = measure([proc], [port], calls, rounds, stop_at_eoi=True)
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
                    [(stats, cpu)] = measure([proc], [port], calls, rounds, stop_at_eoi=True)
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
        calls = levels[0]
        vad = vad_env.get("WEBEX_MEDIA_VAD", "default")
        ratios = []
        for _ in range(trials):
            ours, our_port = start_byova(app, 1, vad_env)
            bare, bare_port = start_bare()
            try:
                (s_ours, c_ours), (s_bare, c_bare) = measure(
                    [ours, bare], [our_port, bare_port], calls, rounds, stop_at_eoi=False
                )
            finally:
                stop(ours)
                stop(bare)
            ratios.append(c_ours / c_bare)
            print(line("ours (side by side)", calls, s_ours, c_ours), flush=True)
            print(line("bare grpc.aio (side by side)", calls, s_bare, c_bare), flush=True)
            print(
                f"ours / bare CPU per process (vad={vad}): {ratios[-1]:.2f}x  "
                f"(load average {os.getloadavg()[0]:.1f})",
                flush=True,
            )
        if trials > 1:
            listed = ", ".join(f"{r:.2f}" for r in ratios)
            print(
                f"ours / bare CPU per process (vad={vad}), median of {trials} side-by-side "
                f"runs: {statistics.median(ratios):.2f}x ({listed})",
                flush=True,
            )


if __name__ == "__main__":
    main()
