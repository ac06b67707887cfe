"""Instructions per caller frame, counted by valgrind: figures a shared machine cannot skew.

Run: ``.venv/bin/python bench/bench_instructions.py [--vad energy] [--calls 2,12]``
(needs ``valgrind`` on PATH; prints figures, asserts nothing).

CPU-time benchmarks (``bench_ops.py``, ``bench_frames.py``) move with the machine's load, which
makes a change of a few percent invisible on a busy 2-core box. An instruction count does not
move: this script runs the same work twice under callgrind, with few and with many calls, and
divides the difference in instructions by the difference in frames, so start-up (imports,
building the server) cancels out. Two figures per detector:

* ``reader path``: what the gRPC front end's reader task does with each 20 ms caller frame
  after an RPC's first (``_grpc_frontend._read``: ``decode_caller_input``,
  ``TurnHandle.feed_input``, the backpressure check), with a writer draining
  ``responses()``, on the speech call of ``bench_ops.py`` (``speech_hello.wav`` between
  silences; every frame of it, as a paced caller sends them);
* ``end-pointer``: the detector the server makes (``server.make_detector``) fed the same
  frames as LINEAR16, alone: the share of the reader path that is speech detection.

Read the figures as relative (before/after a change, one detector against another); an
instruction is not a fixed time (numpy's vector loops retire several per cycle), and the
kernel's share of a real server (sockets, wake-ups) is not in them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
#: Same hashes every run, and no idle BLAS threads (their spinning is counted by wall time).
QUIET_ENV = {"PYTHONHASHSEED": "0", "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1"}
sys.path.insert(0, str(HERE))


def _frames(audio: str = "speech") -> tuple[bytes, list[bytes]]:
    """The call's µ-law audio and its 160-byte frames: the speech call of ``bench_ops.py``, or
    (``silence``) as many frames of digital silence, or (``noise``) of a quiet line's noise."""
    from bench_ops import FRAME, call_audio

    ulaw = call_audio()
    if audio == "silence":
        ulaw = b"\xff" * len(ulaw)
    elif audio == "noise":
        ulaw = _line_noise(len(ulaw))
    return ulaw, [ulaw[i : i + FRAME] for i in range(0, len(ulaw) - FRAME + 1, FRAME)]


def _line_noise(size: int) -> bytes:
    """Seeded white noise about 60 dB below full scale, as µ-law."""
    import random

    from webex_byova.media import audio

    rng = random.Random(7)
    samples = [round(rng.gauss(0, 33)) for _ in range(size)]
    pcm = b"".join(s.to_bytes(2, "little", signed=True) for s in samples)
    return audio.pcm16_to_ulaw(pcm)


async def reader_path(vad: str, calls: int, built: int, audio: str) -> int:
    """``calls`` audio turns through the gRPC reader; returns the frames fed.

    ``built`` calls' wire bytes are serialized first, whatever ``calls`` is, so both runs
    pay the same for them."""
    from bench_frames import make_server, request_stream, wire_call

    from webex_byova.media._grpc_codec import decode_voice_va_request
    from webex_byova.media._grpc_frontend import _read

    server = make_server(vad)
    ulaw, _ = _frames(audio)
    wires = [wire_call(ulaw) for _ in range(max(built, calls))]
    frames = 0
    for cid, wire in wires[:calls]:
        handle = await server.open_turn(decode_voice_va_request(wire[0]), transport="grpc")

        async def write(turn: Any = handle) -> None:
            async for _ in turn.responses():
                pass

        writer = asyncio.get_running_loop().create_task(write())
        await _read(handle, request_stream(wire[1:]))
        await writer
        server.end_conversation(cid, "bench")
        frames += len(wire) - 1
    await server.stop(grace=0)
    return frames


def end_pointer(vad: str, calls: int, audio_kind: str) -> int:
    """The server's detector fed ``calls`` times the call's frames (LINEAR16)."""
    from bench_frames import make_server

    from webex_byova.media import audio
    from webex_byova.media._model import InputSettings

    server = make_server(vad)
    _, frames = _frames(audio_kind)
    pcm = [audio.ulaw_to_pcm16(f) for f in frames]
    for _ in range(calls):
        detector = server.make_detector(8000, InputSettings(complete_timeout_ms=800))
        for data in pcm:
            detector.feed(data)
    return calls * len(pcm)


def worker(what: str, vad: str, calls: int, built: int, audio: str) -> None:
    if what == "path":
        frames = asyncio.run(reader_path(vad, calls, built, audio))
    else:
        frames = end_pointer(vad, calls, audio)
    print(f"frames={frames}", flush=True)


def counted(what: str, vad: str, calls: int, built: int, audio: str) -> tuple[int, int]:
    """(frames, instructions) of one worker run under callgrind."""
    proc = subprocess.run(
        [
            "valgrind",
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            sys.executable,
            __file__,
            "worker",
            what,
            vad,
            str(calls),
            str(built),
            audio,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, **QUIET_ENV},
        check=False,
    )
    frames = re.search(r"frames=(\d+)", proc.stdout)
    total = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or frames is None or total is None:
        raise RuntimeError(f"the callgrind run failed:\n{proc.stderr[-2000:]}")
    return int(frames.group(1)), int(total.group(1))


def main() -> None:
    if sys.argv[1:2] == ["worker"]:
        worker(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), sys.argv[6])
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vad", default="energy", help="comma list of WEBEX_MEDIA_VAD values")
    parser.add_argument("--calls", default="2,12", help="the few and the many calls: N,M")
    parser.add_argument(
        "--audio", default="speech", help="comma list of: speech, silence, noise (see _frames)"
    )
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("valgrind is needed (apt install valgrind)")
    few, many = (int(n) for n in args.calls.split(","))
    print("instructions per 20 ms caller frame (callgrind, difference of two runs)")
    for audio in args.audio.split(","):
        for vad in args.vad.split(","):
            for what, label in (("path", "reader path"), ("endpointer", "end-pointer")):
                f1, i1 = counted(what, vad, few, many, audio)
                f2, i2 = counted(what, vad, many, many, audio)
                per = (i2 - i1) / (f2 - f1)
                print(f"  {audio:<8} vad={vad:<7} {label:<12} {per:9,.0f}", flush=True)


if __name__ == "__main__":
    main()
