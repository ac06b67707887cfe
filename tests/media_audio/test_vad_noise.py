"""End-pointing in non-stationary noise: music-like background, the line's loud noise, and the
Silero gate's hold. Generated signals (seeded), real detectors, nothing mocked."""

from __future__ import annotations

import random

import numpy as np
import pytest

from tests.media_audio.test_vad_endpoint import (
    RATE,
    TIMEOUT,
    feed,
    kinds,
    silence,
    white,
    with_noise,
    words,
)
from webex_byova.media import audio, vad
from webex_byova.media._endpoint import LevelWindow
from webex_byova.media.vad import EndPointer, EnergyVAD, SpeechEnded, WebRtcVAD


def music(ms: float, level_dbfs: float, seed: int = 3) -> np.ndarray:
    """Note-by-note tonal background: 3-note chords of harmonic tones, sharp attack, decay."""
    rng = np.random.default_rng(seed)
    n = int(ms * RATE / 1000)
    out = np.zeros(n)
    pos = 0
    while pos < n:
        dur = min(n - pos, int(rng.integers(1600, 4800)))
        t = np.arange(dur) / RATE
        env = np.minimum(1.0, t / 0.02) * np.exp(-t * 3.0)
        root = 110 * 2 ** (int(rng.integers(0, 24)) / 12)
        for ratio in (1.0, 1.26, 1.5):
            for h in range(1, 6):
                out[pos : pos + dur] += env * np.sin(2 * np.pi * root * ratio * h * t) / h
        pos += dur
    return out * (32768 * 10 ** (level_dbfs / 20) / np.sqrt((out**2).mean()))


class TwoBars:
    """A FrameClassifier taking anything above -45 dBFS for speech once a turn runs, and
    above -25 dBFS to start one (a classifier that cannot tell background from speech)."""

    sample_rate = RATE
    frame_ms = 20

    def classify(self, frame: bytes, level_dbfs: float, in_speech: bool) -> bool:
        return level_dbfs > (-45 if in_speech else -25)

    def reset(self) -> None:
        pass

    def reset_turn(self) -> None:
        pass


# -- the line's loud noise -----------------------------------------------------------------------


def test_level_window_quantile_slides() -> None:
    window = LevelWindow(5, delay=2)
    for _ in range(2):
        window.add(-70.0)
    assert window.quantile(0.9) is None  # both still waiting
    window.add(-70.0)
    assert window.quantile(0.9) == -70.0
    assert len(window) == 1
    window.add(-10.0)
    window.add(-10.0)
    window.drop_pending()  # the two loud ones never enter
    assert window.quantile(1.0) == -70.0
    window = LevelWindow(5)
    assert window.quantile(0.9) is None
    for level in (-30.0, -10.0, -50.0, -20.0, -40.0):
        window.add(level)
    assert window.quantile(0.0) == -50.0
    assert window.quantile(0.9) == -20.0  # index int(0.9 * 4) = 3 of the sorted five
    assert window.quantile(1.0) == -10.0
    window.add(-60.0)  # -30 leaves
    assert window.quantile(0.0) == -60.0
    assert window.quantile(0.5) == -40.0
    window.clear()
    assert window.quantile(0.5) is None
    with pytest.raises(ValueError, match="at least one frame"):
        LevelWindow(0)
    with pytest.raises(ValueError, match="delay"):
        LevelWindow(3, delay=-1)


@pytest.mark.parametrize("read_every", [1, 3, 8, 9, 25, 1000])
def test_level_window_quantile_matches_a_sorted_window_however_often_it_is_read(
    read_every: int,
) -> None:
    """Read every frame (Silero), now and then (the energy detector: a frame that clears the
    start bar) or almost never: the quantile is always that of the window's levels sorted,
    whether the window kept its sorted copy or dropped it and sorts again."""
    rng = random.Random(read_every)
    window = LevelWindow(20, delay=3)
    entered: list[float] = []
    pending: list[float] = []
    for step in range(3000):
        level = round(rng.uniform(-90.0, -10.0), 1)
        window.add(level)
        pending.append(level)
        if len(pending) > 3:
            entered = [*entered, pending.pop(0)][-20:]
        if step % 97 == 0:
            window.drop_pending()
            pending.clear()
        if step % 1201 == 0:
            window.clear()
            entered, pending = [], []
        if step % read_every == 0 or step % 211 == 0:
            q = rng.choice([0.0, 0.5, 0.95, 1.0])
            ordered = sorted(entered)
            expected = ordered[int(q * (len(ordered) - 1))] if ordered else None
            assert window.quantile(q) == expected
            assert len(window) == len(entered)


def test_background_at_the_lines_own_level_does_not_hold_the_turn() -> None:
    # the line carries a steady -32 dBFS background the classifier takes for speech in a turn
    background = white(6000, -32, seed=5)
    caller = words(4, level_dbfs=-18)
    x = background.copy()
    x[1500 * 8 : 1500 * 8 + len(caller)] += caller
    caller_end = 1500 + len(caller) / 8
    det = EndPointer(TwoBars())
    assert det.line_noise_dbfs is None
    events = feed(det, x)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]
    ended = events[1]
    assert isinstance(ended, SpeechEnded)
    assert ended.at_ms <= caller_end + vad.TALKER_HOLD_MS + TIMEOUT + 40
    loud = det.line_noise_dbfs
    assert loud is not None
    assert -33 < loud < -30
    # without the guard the background holds the turn open
    unguarded = EndPointer(TwoBars(), talker_margin_db=None)
    assert kinds(feed(unguarded, x)) == ["SpeechStarted"]
    # the line's noise is kept across turns and forgotten by reset()
    det.reset_turn()
    assert det.line_noise_dbfs == loud
    det.reset()
    assert det.line_noise_dbfs is None


def test_soft_speech_on_a_quiet_line_still_holds_the_turn() -> None:
    # 10 dB below the caller's peak but far above a quiet line: the caller's own soft tail
    loud, soft = words(3, level_dbfs=-18), words(6, level_dbfs=-28, seed=4)
    x = with_noise(np.concatenate([silence(600), loud, soft, silence(1500)]), -60)
    soft_end = 600 + (len(loud) + len(soft)) / 8
    events = feed(EndPointer(TwoBars()), x)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]
    ended = events[1]
    assert isinstance(ended, SpeechEnded)
    assert ended.last_voice_ms >= soft_end - 100  # the soft words counted to their end


# -- the energy detector in music ------------------------------------------------------------------


def test_music_like_noise_does_not_start_the_energy_detector() -> None:
    det = EnergyVAD()
    for seed in range(3):
        det.reset_turn()
        assert feed(det, music(6000, -33, seed=seed)) == [], seed


def test_music_like_noise_does_not_start_webrtc() -> None:
    det = WebRtcVAD()
    for seed in range(3):
        det.reset_turn()
        assert feed(det, music(6000, -33, seed=seed)) == [], seed


@pytest.mark.parametrize("seed", [1, 3])
def test_energy_starts_and_ends_in_music_at_10_db(seed: int) -> None:
    # (not every note attack stays under the bar: bench/bench_vad.py measures how often)
    turn_ms = 1500 + 3000 + 2000
    line = music(3000 + 2 * turn_ms, -33, seed=seed)  # one background for the whole call
    det = EnergyVAD()
    feed(det, line[: 3000 * 8])  # the line before the caller speaks
    for turn in range(2):
        speech = words(6, level_dbfs=-23, seed=seed + turn)
        start = (3000 + turn * turn_ms) * 8
        x = line[start : start + turn_ms * 8].copy()
        x[1500 * 8 : 1500 * 8 + len(speech)] += speech
        det.reset_turn()
        events = feed(det, x)
        assert kinds(events) == ["SpeechStarted", "SpeechEnded"], (turn, events)
        started, ended = events
        end_ms = 1500 + len(speech) / 8
        assert 1500 - 150 <= started.onset_ms <= 1500 + 300
        assert isinstance(ended, SpeechEnded)
        # the music counts at most TALKER_HOLD_MS past the caller's last louder frame (which
        # may be a note heard in the energy detector's hangover)
        hold = vad.TALKER_HOLD_MS + vad.DEFAULT_ENERGY_HANGOVER_MS
        assert end_ms <= ended.at_ms <= end_ms + hold + TIMEOUT + 40


# -- the neural detector's gate ------------------------------------------------------------------


def test_silero_starts_on_a_word_whose_tail_falls_under_the_gate(hello_ulaw: bytes) -> None:
    # 80 ms of a word, then the rest 30 dB down, under the gate in -40 dBFS noise: the model
    # must keep scoring it (it still hears speech) instead of the gate scoring it 0, which
    # broke the run that starts the turn
    hello = np.frombuffer(audio.ulaw_to_pcm16(hello_ulaw), dtype="<i2").astype(np.float64)
    word = hello[int(np.flatnonzero(np.abs(hello) > 300)[0]) :].copy()
    word[80 * 8 :] *= 10 ** (-30 / 20)
    x = with_noise(np.concatenate([silence(2000), word, silence(2000)]), -40, seed=3)
    gated, ungated = vad.SileroVAD(), vad.SileroVAD(gate_db=None)
    events, reference = feed(gated, x), feed(ungated, x)
    assert kinds(reference)[:1] == ["SpeechStarted"]
    assert kinds(events)[:1] == ["SpeechStarted"], events
    assert events[0] == reference[0]
    assert 2000 - 150 <= events[0].onset_ms <= 2000 + 300
    assert gated.classifier.inferences < ungated.classifier.inferences // 2  # still gated


def test_silero_lone_window_does_not_hold_a_turn_open() -> None:
    # the in-utterance decision over the model's window probabilities (one per call)
    def verdicts(probs: list[float]) -> list[bool]:
        classifier = vad.SileroClassifier()
        return [classifier._decide(p, -60.0, None, -30.0, True) for p in probs]

    # a lone window just over the bar after a drop is a blip, not speech
    assert verdicts([0.9, 0.9, 0.1, 0.6, 0.1]) == [True, True, False, False, False]
    # two windows in a row over the bar are speech again
    assert verdicts([0.9, 0.9, 0.1, 0.6, 0.6]) == [True, True, False, False, True]
    # a window the model is sure of counts at once (speech resuming after a pause)
    assert verdicts([0.9, 0.2, 0.85]) == [True, False, True]
    # frames between windows (no new probability) keep the verdict
    classifier = vad.SileroClassifier()
    assert [classifier._decide(p, -60.0, None, -30.0, True) for p in (0.6, None, 0.6, None)] == [
        False,
        False,
        True,
        True,
    ]
    # outside an utterance one window at the threshold is a candidate start frame
    assert vad.SileroClassifier()._decide(0.6, -60.0, None, -30.0, False)


# The decisions below take (probability, noise floor, the line's loud noise, level): a line
# whose noise sits at -40 dBFS (floor) and reaches -38 dBFS (loud).
FLOOR, LOUD = -40.0, -38.0


def test_silero_model_state_outlasting_the_caller_stops_counting() -> None:
    # in strong noise the model can stay sure of speech for 500 ms after the caller stopped:
    # once the frames have been at the line's noise for 200 ms, that no longer counts
    classifier = vad.SileroClassifier()
    assert classifier._decide(0.95, FLOOR, LOUD, -20.0, True)
    assert classifier._decide(0.95, FLOOR, LOUD, -20.0, True)
    tail = [classifier._decide(0.95, FLOOR, LOUD, -39.0, True) for _ in range(14)]
    assert tail == [True] * 10 + [False] * 4
    # sound again (above the line's loud noise) counts at once
    assert classifier._decide(0.95, FLOOR, LOUD, -30.0, True)
    # a quiet stretch again, then the model drops under the bar and is sure again: speech
    # resuming under the noise counts although the frames are at the noise's level
    assert all(classifier._decide(0.95, FLOOR, LOUD, -39.0, True) for _ in range(10))
    assert not classifier._decide(0.95, FLOOR, LOUD, -39.0, True)
    assert not classifier._decide(0.2, FLOOR, LOUD, -39.0, True)
    assert not classifier._decide(0.7, FLOOR, LOUD, -39.0, True)  # not sure yet
    assert classifier._decide(0.9, FLOOR, LOUD, -39.0, True)
    # without a known line noise the model decides alone
    alone = vad.SileroClassifier()
    assert all(alone._decide(0.95, FLOOR, None, -39.0, True) for _ in range(20))


def test_silero_sound_above_the_line_bridges_a_doubted_stretch() -> None:
    # a vowel the model doubts (0.2) in strong noise, 8 dB above anything the line makes,
    # still counts for 200 ms after the model's last window at the bar
    classifier = vad.SileroClassifier()
    assert classifier._decide(0.9, FLOOR, LOUD, -25.0, True)
    assert classifier._decide(0.9, FLOOR, LOUD, -25.0, True)
    doubted = [classifier._decide(0.2, FLOOR, LOUD, -30.0, True) for _ in range(12)]
    assert doubted == [True] * 10 + [False] * 2
    # not when the model all but excludes speech, nor at the line's own loud noise
    for prob, level in ((0.05, -30.0), (0.2, LOUD + 1.0)):
        other = vad.SileroClassifier()
        assert other._decide(0.9, FLOOR, LOUD, -25.0, True)
        assert other._decide(0.9, FLOOR, LOUD, -25.0, True)
        assert not other._decide(prob, FLOOR, LOUD, level, True)


def test_silero_half_belief_and_a_loud_frame_make_a_start_frame() -> None:
    def start(prob: float, loud: float | None, level: float) -> bool:
        return vad.SileroClassifier()._decide(prob, FLOOR, loud, level, False)

    assert start(0.35, LOUD, -30.0)  # half-believed, 8 dB above the line's loud noise
    assert not start(0.35, LOUD, LOUD + 2.0)  # within 3 dB of it
    assert not start(0.25, LOUD, -30.0)  # the model all but excludes speech
    assert not start(0.35, None, -30.0)  # the line not known yet
    assert start(0.5, None, -45.0)  # the model's own threshold needs nothing else
