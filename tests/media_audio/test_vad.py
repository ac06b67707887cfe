"""End-pointing on real speech (the shipped espeak-ng fixture), silence, noise and garbage."""

from __future__ import annotations

import random

import pytest

from tests.media_audio.conftest import mix, noise, sine, unpack
from webex_byova.media import audio, vad
from webex_byova.media.audio import AudioEncoding
from webex_byova.media.vad import EnergyVAD, SpeechEnded, SpeechStarted, WebRtcVAD

LEAD_MS = 500


def voice_span_ms(ulaw: bytes, threshold: int = 300) -> tuple[float, float]:
    """First and last sample of ``ulaw`` louder than ``threshold``, in ms."""
    x = unpack(audio.ulaw_to_pcm16(ulaw))
    loud = [i for i, v in enumerate(x) if abs(v) >= threshold]
    return loud[0] / 8, (loud[-1] + 1) / 8


def utterance(hello_ulaw: bytes, tail_ms: int = 1500) -> bytes:
    return audio.silence(LEAD_MS) + hello_ulaw + audio.silence(tail_ms)


def feed_in_pieces(
    det: vad.SpeechDetector, data: bytes, sizes: list[int], ulaw: bool = True
) -> list[vad.VADEvent]:
    events: list[vad.VADEvent] = []
    pos, i = 0, 0
    while pos < len(data):
        piece = data[pos : pos + sizes[i % len(sizes)]]
        events += det.feed_ulaw(piece) if ulaw else det.feed(piece)
        pos += len(piece)
        i += 1
    return events


def test_speech_fixture_start_and_complete_timeout(hello_ulaw: bytes) -> None:
    onset, end = voice_span_ms(hello_ulaw)
    onset, end = onset + LEAD_MS, end + LEAD_MS
    det = EnergyVAD()
    events = feed_in_pieces(det, utterance(hello_ulaw), [160])
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    started, ended = events
    assert isinstance(started, SpeechStarted)
    assert isinstance(ended, SpeechEnded)
    assert LEAD_MS - 20 <= started.onset_ms <= onset + 200
    assert started.at_ms == started.onset_ms + 80  # min_speech_ms of consecutive speech
    assert started.at_ms <= onset + 1000
    assert ended.reason == "complete_timeout"
    # the hangover counts the (possibly masked) quiet end of the word as speech
    assert end - 300 <= ended.last_voice_ms <= end + vad.DEFAULT_ENERGY_HANGOVER_MS + 60
    assert ended.at_ms == ended.last_voice_ms + vad.DEFAULT_COMPLETE_TIMEOUT_MS
    assert ended.onset_ms == started.onset_ms
    assert not det.in_speech


def test_events_do_not_depend_on_piece_sizes_or_path(hello_ulaw: bytes) -> None:
    data = utterance(hello_ulaw)
    reference = EnergyVAD().feed_ulaw(data)
    assert len(reference) == 2
    for sizes in ([1], [3, 500, 17], [160], [8000], [15, 145, 320, 7]):
        assert feed_in_pieces(EnergyVAD(), data, sizes) == reference
    pcm = audio.ulaw_to_pcm16(data)
    assert feed_in_pieces(EnergyVAD(), pcm, [320, 33, 641], ulaw=False) == reference
    assert vad.feed_audio(EnergyVAD(), data, AudioEncoding.UNSPECIFIED) == reference
    assert vad.feed_audio(EnergyVAD(), pcm, "linear16") == reference
    # mixing µ-law and PCM feeds with a partial frame pending
    det = EnergyVAD()
    mixed = det.feed_ulaw(data[:1001]) + det.feed(pcm[2002:5000]) + det.feed_ulaw(data[2500:])
    assert mixed == reference


def test_timeline_origin_and_reset(hello_ulaw: bytes) -> None:
    data = utterance(hello_ulaw)
    reference = EnergyVAD().feed_ulaw(data)
    det = EnergyVAD()
    shifted = det.feed_ulaw(data[:800], now_ms=10_000) + det.feed_ulaw(data[800:], now_ms=1)
    assert [e.at_ms - 10_000 for e in shifted] == [e.at_ms for e in reference]
    assert det.stream_ms == 10_000 + len(data) // 160 * 20
    det.reset()
    assert det.feed_ulaw(data) == reference  # a new timeline from 0


def test_alaw_feed(hello_ulaw: bytes) -> None:
    alaw = audio.pcm16_to_alaw(audio.ulaw_to_pcm16(utterance(hello_ulaw)))
    events = vad.feed_audio(EnergyVAD(), alaw, AudioEncoding.ALAW)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]


def test_changed_complete_timeout_between_turns(hello_ulaw: bytes) -> None:
    det = EnergyVAD()
    det.complete_timeout_ms = 400
    events = det.feed_ulaw(utterance(hello_ulaw))
    ended = events[-1]
    assert isinstance(ended, SpeechEnded)
    assert ended.at_ms == ended.last_voice_ms + 400


def test_max_speech_cut(hello_ulaw: bytes) -> None:
    det = EnergyVAD(max_speech_ms=2000)
    events = det.feed_ulaw(utterance(hello_ulaw))
    started, cut = events[0], events[1]
    assert isinstance(started, SpeechStarted)
    assert isinstance(cut, SpeechEnded)
    assert cut.reason == "max_speech"
    assert cut.at_ms == started.onset_ms + 2000
    # the caller keeps talking: a new utterance starts (and ends)
    assert isinstance(events[2], SpeechStarted)
    assert events[2].at_ms > cut.at_ms
    assert isinstance(events[-1], SpeechEnded)
    assert not det.in_speech


def test_continuous_tone_is_cut_at_max_speech() -> None:
    det = EnergyVAD(max_speech_ms=1500)
    events = det.feed(bytes(16000) + sine(300, 8000, 2.0, amp=6000))
    started, cut = events[0], events[1]
    assert isinstance(started, SpeechStarted)
    assert started.onset_ms == 1000
    assert isinstance(cut, SpeechEnded)
    assert cut.reason == "max_speech"
    assert cut.at_ms == 2500


def test_steady_sound_becomes_noise_floor() -> None:
    # A steady hum counts as speech only until the noise window (2 s) forgets the silence.
    det = EnergyVAD()
    events = det.feed(bytes(16000) + sine(300, 8000, 6.0, amp=6000))
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert events[0].onset_ms == 1000
    assert isinstance(events[1], SpeechEnded)
    assert events[1].reason == "complete_timeout"
    # the frame ending at 3000 ms is the first whose 2 s window holds no silence; the
    # hangover after the last frame clearly above the floor still counts
    last = 2980 + vad.DEFAULT_ENERGY_HANGOVER_MS
    assert events[1].last_voice_ms == last
    assert events[1].at_ms == last + vad.DEFAULT_COMPLETE_TIMEOUT_MS
    assert det.noise_floor_dbfs == pytest.approx(audio.rms_dbfs(sine(300, 8000, 1.0, 6000)), abs=1)


def test_no_event_in_silence() -> None:
    det = EnergyVAD()
    assert det.feed_ulaw(audio.silence(10_000)) == []
    assert det.feed(bytes(16000)) == []
    assert not det.in_speech


@pytest.mark.parametrize("rms", [30.0, 100.0, 300.0, 1000.0])  # about -61 .. -30 dBFS
def test_no_event_in_steady_noise(rms: float) -> None:
    det = EnergyVAD()
    assert det.feed_ulaw(audio.pcm16_to_ulaw(noise(8000, 10.0, rms))) == []
    assert det.noise_floor_dbfs is not None


def test_noise_after_silence_does_not_trigger() -> None:
    det = EnergyVAD()
    assert det.feed_ulaw(audio.silence(2000)) == []
    # white noise appears at -45 dBFS: loud enough vs the floor, but rejected by its ZCR
    assert det.feed(noise(8000, 5.0, 180.0)) == []


def test_short_click_is_not_speech() -> None:
    det = EnergyVAD()
    click = sine(500, 8000, 0.04, amp=20000)
    assert det.feed(bytes(8000) + click + bytes(16000)) == []


def test_speech_in_noise(hello_ulaw: bytes) -> None:
    pcm = audio.ulaw_to_pcm16(utterance(hello_ulaw))
    noisy = mix(pcm, noise(8000, len(pcm) / 16000, 150.0, seed=3))
    events = EnergyVAD().feed(noisy)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    onset, _ = voice_span_ms(hello_ulaw)
    assert events[0].at_ms <= onset + LEAD_MS + 1000


@pytest.mark.parametrize("frame_ms", [10, 20, 30])
def test_frame_sizes_and_16k(hello_ulaw: bytes, frame_ms: int) -> None:
    pcm16k = audio.resample_pcm16(audio.ulaw_to_pcm16(utterance(hello_ulaw)), 8000, 16000)
    events = EnergyVAD(sample_rate=16000, frame_ms=frame_ms).feed(pcm16k)
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    ref = EnergyVAD().feed_ulaw(utterance(hello_ulaw))
    assert abs(events[0].onset_ms - ref[0].onset_ms) <= 60
    assert abs(events[1].at_ms - ref[1].at_ms) <= 60


def test_garbage_audio_never_raises() -> None:
    rng = random.Random(11)
    det = EnergyVAD()
    for _ in range(2000):
        blob = rng.randbytes(rng.choice([0, 1, 2, 3, 14, 15, 159, 160, 161, 999]))
        enc = rng.choice(list(AudioEncoding))
        for ev in vad.feed_audio(det, blob, enc, now_ms=rng.random() * 1e6):
            assert isinstance(ev, SpeechStarted | SpeechEnded)
    assert isinstance(det.in_speech, bool)


def test_parameter_validation() -> None:
    with pytest.raises(ValueError, match="frame_ms must be 10, 20 or 30"):
        EnergyVAD(frame_ms=25)
    with pytest.raises(ValueError, match="sample_rate 11025 does not give whole"):
        EnergyVAD(sample_rate=11025)
    with pytest.raises(ValueError, match="timeouts"):
        EnergyVAD(complete_timeout_ms=0)
    with pytest.raises(ValueError, match="hysteresis"):
        EnergyVAD(start_margin_db=3, continue_margin_db=6)
    with pytest.raises(ValueError, match="webrtcvad supports 8, 16, 32 or 48 kHz"):
        WebRtcVAD(sample_rate=24000)
    with pytest.raises(ValueError, match="aggressiveness"):
        WebRtcVAD(aggressiveness=4)


def test_detectors_satisfy_protocol() -> None:
    assert isinstance(EnergyVAD(), vad.SpeechDetector)
    assert isinstance(WebRtcVAD(), vad.SpeechDetector)


def test_webrtc_adapter_on_speech(hello_ulaw: bytes) -> None:
    onset, _ = voice_span_ms(hello_ulaw)
    det = WebRtcVAD(aggressiveness=3)
    data = utterance(hello_ulaw)
    events = feed_in_pieces(det, data, [160, 7, 333])
    assert [type(e) for e in events] == [SpeechStarted, SpeechEnded]
    assert LEAD_MS - 20 <= events[0].onset_ms <= onset + LEAD_MS + 300
    assert isinstance(events[1], SpeechEnded)
    assert events[1].reason == "complete_timeout"
    assert events[1].at_ms == events[1].last_voice_ms + vad.DEFAULT_COMPLETE_TIMEOUT_MS
    assert WebRtcVAD().feed(audio.ulaw_to_pcm16(data)) == WebRtcVAD().feed_ulaw(data)
    assert WebRtcVAD().feed_ulaw(audio.silence(5000)) == []
