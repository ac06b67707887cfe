"""Codec, resampler and VAD throughput: prints figures (no assertions).

Run: ``.venv/bin/python bench/bench_codec.py``. Each figure is the best of several repeats.
The per-frame numbers are what the media server pays per 20 ms caller frame (160 µ-law bytes).
"""

from __future__ import annotations

import math
import random
import struct
import timeit
from collections.abc import Callable

from webex_byova.media import assets, audio, vad


def best(fn: Callable[[], object], number: int, repeat: int = 7) -> float:
    """Best seconds per call."""
    return min(timeit.repeat(fn, number=number, repeat=repeat)) / number


def main() -> None:
    rng = random.Random(1)
    ulaw_1mb = rng.randbytes(1 << 20)
    pcm_1mb = rng.randbytes(1 << 20)
    frame = audio.read_wav(assets.load("speech_hello.wav")).payload[4000:4160]
    paths = [("pure", False)] + ([("numpy", True)] if audio.numpy_available() else [])

    print("G.711 throughput (MB/s of input, 1 MiB buffers)")
    for name, use_np in paths:
        for label, fn, data in (
            ("µ-law decode", audio.ulaw_to_pcm16, ulaw_1mb),
            ("A-law decode", audio.alaw_to_pcm16, ulaw_1mb),
            ("µ-law encode", audio.pcm16_to_ulaw, pcm_1mb),
            ("A-law encode", audio.pcm16_to_alaw, pcm_1mb),
        ):
            t = best(lambda fn=fn, data=data, use_np=use_np: fn(data, use_numpy=use_np), 5)
            print(f"  {label:14s} {name:5s} {len(data) / t / 1e6:9.1f} MB/s")

    print("Per 20 ms frame (160 µ-law bytes), µs")
    for name, use_np in paths:
        t = best(lambda use_np=use_np: audio.ulaw_to_pcm16(frame, use_numpy=use_np), 20000)
        print(f"  µ-law decode   {name:5s} {t * 1e6:7.2f}")
    t = best(lambda: audio.ulaw_frame_energy(frame), 20000)
    print(f"  ulaw_frame_energy    {t * 1e6:7.2f}")

    speech = audio.read_wav(assets.load("speech_hello.wav")).payload
    stream = audio.silence(500) + speech + audio.silence(1500)
    frames = [stream[i : i + 160] for i in range(0, len(stream) - 159, 160)]
    pcm_frames = [audio.ulaw_to_pcm16(f) for f in frames]

    def run_ulaw(det: vad.SpeechDetector) -> None:
        det.reset()
        for f in frames:
            det.feed_ulaw(f)

    def run_decode_then_pcm(det: vad.SpeechDetector) -> None:
        det.reset()
        for f in frames:
            det.feed(audio.ulaw_to_pcm16(f))

    def run_pcm(det: vad.SpeechDetector) -> None:
        det.reset()
        for f in pcm_frames:
            det.feed(f)

    detectors: list[tuple[str, vad.SpeechDetector]] = [("EnergyVAD", vad.EnergyVAD())]
    try:
        detectors.append(("WebRtcVAD", vad.WebRtcVAD()))
    except ImportError:
        print("  (webrtcvad not installed: WebRtcVAD skipped)")
    for name, det in detectors:
        for label, runner in (
            ("feed_ulaw(160 B)", run_ulaw),
            ("decode + feed(320 B)", run_decode_then_pcm),
            ("feed(320 B pcm)", run_pcm),
        ):
            t = best(lambda runner=runner, det=det: runner(det), 3) / len(frames)
            print(f"  {name:9s} {label:22s} {t * 1e6:7.2f}")
    energy = best(lambda: run_ulaw(detectors[0][1]), 3) / len(frames)
    calls_per_core = 0.020 / (energy + best(lambda: audio.ulaw_to_pcm16(frame), 20000))
    print(
        f"  => decode + EnergyVAD per frame uses {100 * (calls_per_core**-1) * 500:.2f}% of one"
        f" core for 500 calls (capacity ~{calls_per_core:,.0f} calls/core on this stage alone)"
    )

    print("Resampling (x real time, 10 s of audio)")
    for src, dst in ((16000, 8000), (8000, 16000), (24000, 8000), (48000, 8000), (22050, 8000)):
        n = src * 10
        pcm = struct.pack(
            f"<{n}h", *(int(8000 * math.sin(2 * math.pi * 440 * i / src)) for i in range(n))
        )
        for name, use_np in paths:
            t = best(
                lambda p=pcm, s=src, d=dst, u=use_np: audio.resample_pcm16(p, s, d, use_numpy=u),
                1,
                3,
            )
            print(f"  {src:>5d} -> {dst:<5d} {name:5s} {10.0 / t:8.0f}x")
    wav = assets.load("speech_hello.wav")
    t = best(lambda: audio.wav_to_webex(wav), 200)
    print(f"wav_to_webex(4 s 8 kHz µ-law WAV): {t * 1e6:.1f} µs (pass-through)")
    wav16 = audio.make_wav(
        audio.resample_pcm16(audio.ulaw_to_pcm16(speech), 8000, 16000),
        encoding=audio.AudioEncoding.LINEAR16,
        sample_rate=16000,
    )
    t = best(lambda: audio.wav_to_webex(wav16), 20)
    print(f"wav_to_webex(4 s 16 kHz PCM16 WAV): {t * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
