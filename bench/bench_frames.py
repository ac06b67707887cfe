"""The server's per-frame cost, without the network: prints µs per caller frame (no assertions).

Run: ``.venv/bin/python bench/bench_frames.py [--calls 200] [--vad energy,auto]``.

A real :class:`~webex_byova.media.BYOVAMediaServer` (the app of ``bench_ops.py``: a greeting
and a reply) runs in this process's event loop. Each call is one audio turn of the wire bytes
a gRPC client sends: 160-byte µ-law ``VoiceVARequest`` frames (``bench_media``'s tone call:
1 s of a voiced tone between silences, 135 frames), handed to the gRPC front end's own reader
(``_grpc_frontend._read``: ``decode_caller_input``, ``TurnHandle.feed_input``, ``drain`` when
backlogged) for the frames after an RPC's first, including the frames after END_OF_INPUT.
Figures per frame, best of three runs of ``--calls`` calls:

* ``codec``: protobuf parse + conversion of the frame's input (``AudioIn``);
* ``core``: feed + drain of the decoded input (validation, decode, buffering, VAD);
* ``codec + core``: the two together, what the front end's reader task pays per frame;
* ``per call``: a whole call as the gRPC front end runs it (SESSION_START, the audio turn and
  SESSION_END, each an RPC's turn: ``open_turn``, a writer draining ``responses()``, handlers,
  the store writes), less its frames' ``codec + core`` share: what a call costs besides its
  audio (µs of this process's CPU time per call, so other load on the machine counts less).

``--profile`` prints the functions the whole calls spend the most time in (cProfile).

``--vad`` picks the speech detector (``WEBEX_MEDIA_VAD``): ``energy`` (dependency free) and
``auto`` (Silero when the ``vad`` extra is installed).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

FRAME = 160


def wire_call(ulaw: bytes) -> tuple[str, list[bytes]]:
    """One call's audio turn as serialized ``VoiceVARequest`` frames."""
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva

    cid = str(uuid.uuid4())
    frames = [
        vva.VoiceVARequest(
            conversation_id=cid,
            customer_org_id="org-bench",
            audio_input=vva.VoiceInput(
                caller_audio=ulaw[i : i + FRAME],
                encoding=vva.VoiceInput.MULAW_FORMAT,
                sample_rate_hertz=8000,
            ),
        ).SerializeToString()
        for i in range(0, len(ulaw), FRAME)
    ]
    return cid, frames


async def request_stream(frames: list[bytes]) -> AsyncIterator[bytes]:
    """An RPC's further requests, as the gRPC front end's reader (``_read``) gets them."""
    for data in frames:
        yield data


def make_server(vad: str) -> Any:
    from webex_byova.media import BYOVAMediaServer, MediaServerConfig

    server = BYOVAMediaServer(
        MediaServerConfig(vad=vad, verify_tokens=False, complete_timeout_ms=800)
    )

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("welcome")

    @server.on("utterance")
    def reply(event: Any) -> None:
        event.turn.say("reply")

    return server


async def run(vad: str, calls: int) -> dict[str, float]:
    """Seconds per frame of each stage over ``calls`` calls."""
    from bench_media import tone_call_audio

    from webex_byova.media._grpc_codec import decode_caller_input, decode_voice_va_request
    from webex_byova.media._grpc_frontend import _read

    server = make_server(vad)
    ulaw = tone_call_audio()
    wires = [wire_call(ulaw) for _ in range(calls)]
    codec_s = core_s = 0.0
    frames = 0
    gc.collect()
    for cid, wire in wires:
        # codec alone (the core gets its own decoded copies below)
        t0 = time.perf_counter()
        items = [decode_caller_input(data) for data in wire[1:]]
        codec_s += time.perf_counter() - t0
        handle = await server.open_turn(decode_voice_va_request(wire[0]), transport="grpc")
        t0 = time.perf_counter()
        for item in items:  # _read's loop, minus the decode
            if not handle.feed_input(item):
                if handle.closed:
                    break
                continue
            if handle.backlogged:
                await handle.drain()
        core_s += time.perf_counter() - t0
        frames += len(wire) - 1
        handle.caller_done()
        handle.caller_gone()
        server.end_conversation(cid, "bench")
        await asyncio.sleep(0)
    both_s = 0.0
    for cid, wire in wires:
        first = decode_voice_va_request(wire[0])
        cid = str(uuid.uuid4())  # a fresh conversation for the same bytes
        handle = await server.open_turn(replace(first, conversation_id=cid), transport="grpc")
        t0 = time.perf_counter()
        await _read(handle, request_stream(wire[1:]))  # the gRPC front end's own reader
        both_s += time.perf_counter() - t0
        handle.caller_done()
        handle.caller_gone()
        server.end_conversation(cid, "bench")
        await asyncio.sleep(0)
    return {
        "codec": codec_s / frames,
        "core": core_s / frames,
        "codec + core": both_s / frames,
    }


async def rpc_turn(server: Any, wire: list[bytes]) -> float:
    """One RPC's turn as the gRPC front end runs it; returns the seconds its frames took."""
    from webex_byova.media._grpc_codec import decode_voice_va_request
    from webex_byova.media._grpc_frontend import _read

    handle = await server.open_turn(decode_voice_va_request(wire[0]), transport="grpc")

    async def write() -> None:
        async for _ in handle.responses():
            pass

    writer = asyncio.get_running_loop().create_task(write())
    t0 = time.process_time()
    await _read(handle, request_stream(wire[1:]))
    frames_s = time.process_time() - t0
    handle.caller_done()
    await writer
    return frames_s


def event_wire(cid: str, event_type: int) -> list[bytes]:
    from webex_byova.media._proto import byova_common_pb2 as common
    from webex_byova.media._proto import voicevirtualagent_pb2 as vva

    request = vva.VoiceVARequest(
        conversation_id=cid,
        customer_org_id="org-bench",
        event_input=common.EventInput(event_type=event_type),
    )
    return [request.SerializeToString()]


async def run_calls(vad: str, calls: int) -> float:
    """Seconds per whole call, its frames' share taken out."""
    from bench_media import tone_call_audio

    from webex_byova.media._proto import byova_common_pb2 as common

    server = make_server(vad)
    ulaw = tone_call_audio()
    wires = [wire_call(ulaw) for _ in range(calls)]
    gc.collect()
    total_s = frames_s = 0.0
    for cid, audio_wire in wires:
        t0 = time.process_time()
        await rpc_turn(server, event_wire(cid, common.EventInput.SESSION_START))
        frames_s += await rpc_turn(server, audio_wire)
        await rpc_turn(server, event_wire(cid, common.EventInput.SESSION_END))
        for _ in range(3):  # the session_end handlers' task
            await asyncio.sleep(0)
        total_s += time.process_time() - t0
    return (total_s - frames_s) / calls


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--vad", default="energy,auto")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    import logging

    logging.getLogger("webex_byova").setLevel(logging.WARNING)
    print(
        f"µs per 20 ms caller frame (per call: µs per call), best of {args.repeat} runs of "
        f"{args.calls} calls"
    )
    for vad in args.vad.split(","):
        if args.profile:
            import cProfile
            import pstats

            profiler = cProfile.Profile()
            profiler.runcall(asyncio.run, run_calls(vad, args.calls))
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
            continue
        best: dict[str, float] = {}
        for _ in range(args.repeat):
            figures = asyncio.run(run(vad, args.calls))
            figures["per call"] = asyncio.run(run_calls(vad, args.calls))
            for key, value in figures.items():
                best[key] = min(best.get(key, value), value)
        print(
            f"  vad={vad:<7s} "
            + "  ".join(f"{key} {value * 1e6:6.2f}" for key, value in best.items())
        )


if __name__ == "__main__":
    main()
