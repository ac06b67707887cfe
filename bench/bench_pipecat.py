"""The pipecat transport's cost against a plain handler; prints figures.

Run: ``.venv/bin/python bench/bench_pipecat.py [TURNS] [CALLS]`` (default 30 turns, 20 calls).

Two servers, each in its own process (``bench_pipecat.py server plain|pipecat``), answer every
utterance with 400 ms of audio at once: the plain one from an ``utterance`` handler
(``turn.stream()``), the pipecat one from a zero-latency processor in a real pipeline
(``BYOVATransport``: input, the processor, output; the reply framed as a TTS frames it). The
servers run in CHUNK mode, unpaced. Figures:

* added latency per turn: END_OF_INPUT to the first reply CHUNK, as the Webex side sees it,
  over TURNS sequential turns (one call, unpaced caller); p50/p99 per server and the
  difference of the medians;
* CPU per call-second: the server process's CPU time over the summed call durations, for
  CALLS concurrent calls with real-time caller audio (welcome, one utterance, hang-up).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from typing import Any

REPLY_MS = 400


def proc_cpu(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def run_server(kind: str) -> None:
    from loguru import logger
    from pipecat.frames.frames import (
        Frame,
        TTSAudioRawFrame,
        TTSSpeakFrame,
        TTSStartedFrame,
        TTSStoppedFrame,
        UserStoppedSpeakingFrame,
    )
    from pipecat.pipeline.pipeline import Pipeline
    from pipecat.pipeline.worker import PipelineParams, PipelineWorker
    from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
    from pipecat.workers.runner import WorkerRunner

    from webex_byova.integrations.pipecat import BYOVATransport, BYOVATransportParams
    from webex_byova.media import BYOVAMediaServer, MediaServerConfig

    logger.remove()
    config = MediaServerConfig(
        host="127.0.0.1", port=0, verify_tokens=False, audio_mode="chunk", realtime_pacing=False
    )
    server = BYOVAMediaServer(config)
    reply_ulaw = b"\x7f" * (8 * REPLY_MS)
    reply_pcm = b"\x00\x01" * (16 * REPLY_MS)

    if kind == "plain":

        @server.on("session_start")
        def welcome(event: Any) -> None:
            event.turn.say("Welcome.")

        @server.on("utterance")
        def answer(event: Any) -> None:
            event.turn.stream(reply_ulaw, barge_in=True)

    else:

        class ZeroLatency(FrameProcessor):
            async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
                await super().process_frame(frame, direction)
                await self.push_frame(frame, direction)
                if isinstance(frame, UserStoppedSpeakingFrame):
                    await self.push_frame(TTSStartedFrame())
                    await self.push_frame(TTSAudioRawFrame(reply_pcm, 16000, 1))
                    await self.push_frame(TTSStoppedFrame())

        @server.on("session_start")
        async def bot(event: Any) -> None:
            params = BYOVATransportParams(audio_in_sample_rate=16000)
            transport = BYOVATransport(event, server=server, params=params)
            worker = PipelineWorker(
                Pipeline([transport.input(), ZeroLatency(), transport.output()]),
                params=PipelineParams(audio_in_sample_rate=16000, audio_out_sample_rate=16000),
                enable_rtvi=False,
                idle_timeout_secs=None,
            )

            @transport.event_handler("on_client_connected")
            async def hello(transport: Any, session: Any) -> None:
                await worker.queue_frames([TTSSpeakFrame("Welcome.")])

            runner = WorkerRunner(handle_sigint=False)
            await runner.add_workers(worker)
            await runner.run()

    await server.start()
    print(server.address, flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    await server.stop(grace=1.0)


def first_chunk_delay_ms(result: Any) -> float | None:
    eoi = result.event_time("END_OF_INPUT")
    for rec in result.responses:
        if rec.response_type == "CHUNK" and any(p.audio_content for p in rec.response.prompts):
            return None if eoi is None else (rec.at - eoi) * 1000
    return None


async def latency(address: str, turns: int) -> list[float]:
    from webex_byova.media.assets import load
    from webex_byova.testing import WebexCaller

    wav = load("speech_hello.wav")
    delays: list[float] = []
    async with WebexCaller(address, realtime=False) as caller:
        await caller.start_session()
        for _ in range(turns):
            delay = first_chunk_delay_ms(await caller.say(wav=wav, trailing_silence_ms=1500))
            if delay is not None:
                delays.append(delay)
        await caller.end_session()
    return delays


async def cpu_per_call_second(address: str, pid: int, calls: int) -> tuple[float, float]:
    from webex_byova.media.assets import load
    from webex_byova.testing import WebexCaller

    wav = load("speech_hello.wav")

    async def one(i: int) -> float:
        await asyncio.sleep(i * 0.05)
        async with WebexCaller(address, realtime=True) as caller:
            t0 = time.monotonic()
            await caller.start_session()
            await caller.say(wav=wav)
            await caller.end_session()
            return time.monotonic() - t0

    cpu0 = proc_cpu(pid)
    durations = await asyncio.gather(*(one(i) for i in range(calls)))
    await asyncio.sleep(0.5)  # let the pipelines wind down inside the measurement
    cpu = proc_cpu(pid) - cpu0
    seconds = sum(durations)
    return cpu / seconds * 100, seconds


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: list[str]) -> None:
    if argv[:1] == ["server"]:
        asyncio.run(run_server(argv[1]))
        return
    turns = int(argv[0]) if argv else 30
    calls = int(argv[1]) if len(argv) > 1 else 20
    print(f"{os.cpu_count()} CPUs; reply {REPLY_MS} ms of audio; {turns} turns; {calls} calls")
    medians: dict[str, float] = {}
    for kind in ("plain", "pipecat"):
        proc = subprocess.Popen(
            [sys.executable, __file__, "server", kind],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdin is not None
        address = proc.stdout.readline().strip()
        try:
            delays = asyncio.run(latency(address, turns))
            cpu, seconds = asyncio.run(cpu_per_call_second(address, proc.pid, calls))
        finally:
            proc.stdin.write("\n")
            proc.stdin.flush()
            proc.wait(timeout=30)
        medians[kind] = statistics.median(delays)
        print(
            f"{kind:8} END_OF_INPUT->first CHUNK p50 {medians[kind]:6.2f} ms  "
            f"p99 {pct(delays, 0.99):6.2f} ms  ({len(delays)} turns);  "
            f"CPU {cpu:5.2f} % of a core per call ({seconds:.0f} call-seconds)"
        )
    print(f"added by the pipecat transport (p50): {medians['pipecat'] - medians['plain']:.2f} ms")


if __name__ == "__main__":
    main(sys.argv[1:])
