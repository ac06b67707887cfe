"""The speech detector's cost inside the real server: CPU per call-second, energy vs Silero.

Run: ``.venv/bin/python bench/bench_vad_load.py [--calls 150] [--rounds 2] [--repeat 2]
[--detectors energy,silero,silero-unbatched] [--snr 20] [--profile-only]``.

Each detector gets its own ``byova serve`` (one worker, ``WEBEX_MEDIA_VAD=<detector>``)
driven by ``--calls`` real-time calls from this process (the driver of ``bench_ops.py``:
SESSION_START, one audio turn of 160-byte µ-law frames every 20 ms until END_OF_INPUT,
SESSION_END; ``--rounds`` calls per slot).

The audio is speech, so the neural model really runs: espeak-ng utterances from the
``bench_vad.py`` corpus (band-limited, µ-law) in 0.4-0.8 s of lead and 2 s of tail, mixed
with white noise at ``--snr`` dB (``--snr clean`` for none); slot ``i`` speaks utterance
``i`` of the set. Without espeak-ng and sox the bench falls back to ``bench_ops``'s tone call.

It prints one line per detector and run (CPU per second of call audio delivered, turns ended,
late frames) with the machine's load average, then the ratio to energy (``silero`` is the
server's default: batched with onnxruntime; ``silero-unbatched``: ``WEBEX_MEDIA_VAD_BATCH_MS=0``),
then an in-process profile of the same audio: CPU per frame of each detector and, for Silero,
the time inside the model run vs the Python around it. The machine is shared: read the
figures as indicative, and compare runs made back to back.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from bench_ops import (
    APP,
    FRAME,
    PROCESS_CALLER_INPUT,
    Stats,
    cpu_seconds,
    line,
    one_call,
    start_byova,
    stop,
)
from grpc import aio

UTTERANCES = 12


def speech_calls(snr: float | None, count: int = UTTERANCES) -> list[bytes]:
    """µ-law call audio: one turn of speech each (the bench_vad corpus), or the tone call."""
    import bench_vad

    from webex_byova.media import audio

    if not bench_vad.tools_available():
        print("(espeak-ng/sox missing: using the tone call instead of speech)")
        from bench_media import tone_call_audio

        return [tone_call_audio()]
    rng = np.random.default_rng(160)
    utts = bench_vad.build_utterances(count, rng)
    calls = []
    for utt in utts:
        lead = int(rng.integers(400, 801)) * 8
        x = np.zeros(lead + len(utt.speech) + 2000 * 8)
        x[lead : lead + len(utt.speech)] = utt.speech
        if snr is not None:
            rms = bench_vad.active_rms(utt.speech) / 10 ** (snr / 20)
            x += bench_vad.noise("white", len(x), rng, np.zeros(1)) * rms
        pcm = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
        ulaw = audio.pcm16_to_ulaw(pcm)
        calls.append(ulaw[: len(ulaw) - len(ulaw) % FRAME])
    return calls


async def drive(port: int, calls: int, rounds: int, audios: list[bytes]) -> Stats:
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva

    stats = Stats()
    pool = [
        aio.insecure_channel(f"127.0.0.1:{port}", options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(8)
    ]
    rpcs = [
        ch.stream_stream(
            PROCESS_CALLER_INPUT,
            request_serializer=None,  # bench_ops.one_call serializes each request once
            response_deserializer=vva.VoiceVAResponse.FromString,
        )
        for ch in pool
    ]

    async def slot(i: int) -> None:
        await asyncio.sleep(i / calls)  # spread the starts over one second
        for r in range(rounds):
            ulaw = audios[(i + r) % len(audios)]
            await one_call([rpcs[i % len(rpcs)]], ulaw, [stats], stop_at_eoi=True)

    await asyncio.gather(*(slot(i) for i in range(calls)))
    for ch in pool:
        await ch.close()
    return stats


def server_env(detector: str) -> dict[str, str]:
    """``silero-unbatched``: Silero scored per conversation as its audio arrives."""
    if detector == "silero-unbatched":
        return {"WEBEX_MEDIA_VAD": "silero", "WEBEX_MEDIA_VAD_BATCH_MS": "0"}
    return {"WEBEX_MEDIA_VAD": detector}


def run(app: Path, detector: str, calls: int, rounds: int, audios: list[bytes]) -> float:
    """One server, one load; prints its line and returns ms of CPU per call-second."""
    proc, port = start_byova(app, 1, server_env(detector))
    try:
        cpu0 = cpu_seconds(proc.pid)
        stats = asyncio.run(drive(port, calls, rounds, audios))
        cpu = cpu_seconds(proc.pid) - cpu0
    finally:
        stop(proc)
    load = os.getloadavg()[0]
    print(f"{line(f'vad={detector}', calls, stats, cpu)}  load {load:.1f}", flush=True)
    audio_s = stats.frames * FRAME / 8000
    return cpu / audio_s * 1000 if audio_s else float("nan")


class _TimedSession:
    """Wraps an onnxruntime session to count the CPU spent inside the model."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.cpu = 0.0

    def run(self, *args: Any) -> Any:
        t0 = time.process_time()
        try:
            return self.session.run(*args)
        finally:
            self.cpu += time.process_time() - t0


def profile(calls: int, audios: list[bytes]) -> None:
    """In-process, lock-step (one frame per conversation per tick): CPU per frame of each
    detector, and for Silero the share spent in the model run vs the Python around it."""
    from webex_byova.media import audio, vad

    pcms = [audio.ulaw_to_pcm16(a) for a in audios]
    streams = [pcms[i % len(pcms)] for i in range(calls)]
    length = min(map(len, streams)) // 320 * 320
    frames = calls * length // 320
    engine = vad.SileroBatch()
    timed = _TimedSession(engine._session)
    engine._session = timed
    print(f"\nin-process, {calls} conversations in lock-step: CPU per 20 ms frame")
    for name in ("energy", "silero-unbatched", "silero"):
        if name == "energy":
            dets: list[Any] = [vad.EnergyVAD() for _ in streams]
        elif name == "silero":
            dets = [vad.SileroVAD(batch=engine) for _ in streams]
        else:
            dets = [vad.SileroVAD() for _ in streams]
            shared = vad.SileroBatch.shared(8000)
            if shared is None:
                print("  (silero skipped: pip install 'webex-byova-sdk[vadbatch]')")
                return
            shared._session = timed
        timed.cpu = 0.0
        t0 = time.process_time()
        for pos in range(0, length, 320):
            if name == "silero":
                engine.feed([(d, s[pos : pos + 320]) for d, s in zip(dets, streams, strict=True)])
            else:
                for d, s in zip(dets, streams, strict=True):
                    d.feed(s[pos : pos + 320])
        cpu = time.process_time() - t0
        windows = sum(getattr(d.classifier, "windows", 0) for d in dets)
        runs = sum(getattr(d.classifier, "inferences", 0) for d in dets)
        model = f"  model {1e6 * timed.cpu / frames:5.1f} µs" if timed.cpu else ""
        scored = f" on {runs / windows:.0%} of windows" if windows else ""
        per_window = f", {1e6 * timed.cpu / runs:4.1f} µs per window" if runs else ""
        glue = 1e6 * (cpu - timed.cpu) / frames
        print(
            f"  {name:17s} {1e6 * cpu / frames:5.1f} µs{model}{scored}{per_window}, "
            f"the rest {glue:4.1f} µs"
        )
        if name == "silero-unbatched":
            shared._session = timed.session


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--detectors", default="energy,silero")
    parser.add_argument("--snr", default="20", help="dB of white noise under the speech, or clean")
    parser.add_argument("--profile-only", action="store_true", help="only the in-process table")
    args = parser.parse_args()
    snr = None if args.snr == "clean" else float(args.snr)
    audios = speech_calls(snr)
    if args.profile_only:
        profile(args.calls, audios)
        return 0
    seconds = sum(len(a) for a in audios) / len(audios) / 8000
    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} (shared machine); "
        f"{args.calls} calls x {args.rounds} rounds, {len(audios)} speech calls of "
        f"{seconds:.1f} s on average (noise: {args.snr})",
        flush=True,
    )
    detectors = args.detectors.split(",")
    figures: dict[str, list[float]] = {d: [] for d in detectors}
    with tempfile.TemporaryDirectory() as tmp:
        app = Path(tmp) / "bench_app.py"
        app.write_text(APP)
        for _ in range(args.repeat):
            for detector in detectors:  # alternate, so drifting load hits both alike
                figures[detector].append(run(app, detector, args.calls, args.rounds, audios))
    if "energy" in figures:
        base = sum(figures["energy"]) / len(figures["energy"])
        for detector, values in figures.items():
            mean = sum(values) / len(values)
            print(
                f"{detector:8s} mean {mean:5.2f} ms per call-second = {mean / base:4.2f}x energy "
                f"({100 * (mean / base - 1):+.0f}%)"
            )
    profile(args.calls, audios)
    return 0


if __name__ == "__main__":
    sys.exit(main())
