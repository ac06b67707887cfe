"""The per-frame path of caller audio: decoders, frame energy, the input-only codec and feed.

The fast paths (an encoding resolved once per stream, G.711 through byte-plane tables, a
message's input decoded without its conversation fields) must give exactly what the general
functions give; the turn must still honour an encoding declared mid-turn and keep the preroll
and utterance bounds.
"""

from __future__ import annotations

import asyncio
import random
import struct
from typing import Any, cast

import pytest

from webex_byova.media import audio
from webex_byova.media._frontend import CallRejected, TurnHandle
from webex_byova.media._grpc_codec import (
    CallerInputDecoder,
    check_voice_va_request,
    decode_caller_input,
    decode_voice_va_request,
)
from webex_byova.media._messages import AgentResponse, AudioIn, CallerRequest
from webex_byova.media._proto import byova_common_pb2 as common
from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.media.vad import SpeechEnded, SpeechStarted, VADEvent

from .conftest import make_config

# ------------------------------------------------------------------------------ G.711 tables


def _ulaw_reference(code: int) -> int:
    """ITU-T G.711 µ-law expansion of one code (sign, 3-bit exponent, 4-bit mantissa)."""
    u = ~code & 0xFF
    magnitude = (((u & 0x0F) << 3) + 0x84) << ((u >> 4) & 0x07)
    return 0x84 - magnitude if u & 0x80 else magnitude - 0x84


def _alaw_reference(code: int) -> int:
    """ITU-T G.711 A-law expansion of one code (even bits inverted, segment, quantisation)."""
    a = code ^ 0x55
    mantissa, segment = a & 0x0F, (a >> 4) & 0x07
    step = (mantissa << 4) + 8 if segment == 0 else ((mantissa << 4) + 0x108) << (segment - 1)
    return step if a & 0x80 else -step


ALL_CODES = bytes(range(256))


@pytest.mark.parametrize(
    ("encoding", "reference"), [("mulaw", _ulaw_reference), ("alaw", _alaw_reference)]
)
def test_frame_decoder_equals_the_reference_expansion_for_all_256_codes(
    encoding: str, reference: Any
) -> None:
    expected = struct.pack("<256h", *(reference(c) for c in range(256)))
    decoder = audio.frame_decoder(encoding)
    assert decoder(ALL_CODES) == expected
    assert audio.decode(ALL_CODES, encoding) == expected
    # bytes-like inputs and each code on its own
    assert decoder(bytearray(ALL_CODES)) == expected
    assert decoder(memoryview(ALL_CODES)) == expected
    assert [decoder(bytes([c])) for c in range(256)] == [
        expected[2 * c : 2 * c + 2] for c in range(256)
    ]


def test_g711_anchor_values() -> None:
    ulaw = audio.frame_decoder(audio.AudioEncoding.MULAW)
    alaw = audio.frame_decoder(audio.AudioEncoding.ALAW)
    assert struct.unpack("<4h", ulaw(b"\xff\x7f\x00\x80")) == (0, 0, -32124, 32124)
    assert struct.unpack("<4h", alaw(b"\xd5\x55\xaa\x2a")) == (8, -8, 32256, -32256)


@pytest.mark.parametrize("encoding", ["mulaw", "alaw", "linear16"])
@pytest.mark.parametrize("size", [0, 1, 159, 160, 320, 2047, 2048, 4096, 65536])
def test_frame_decoder_equals_decode_on_both_paths(encoding: str, size: int) -> None:
    data = random.Random(size).randbytes(size)
    decoder = audio.frame_decoder(encoding)
    assert decoder(data) == audio.decode(data, encoding, use_numpy=False)
    if audio.numpy_available():
        assert decoder(data) == audio.decode(data, encoding, use_numpy=True)


def test_frame_decoder_without_numpy(monkeypatch: pytest.MonkeyPatch) -> None:
    data = random.Random(7).randbytes(4096)  # above the numpy threshold
    expected = {enc: audio.decode(data, enc) for enc in ("mulaw", "alaw", "linear16")}
    monkeypatch.setattr(audio, "_np", None)
    for enc, pcm in expected.items():
        assert audio.frame_decoder(enc)(data) == pcm


def test_frame_decoder_resolves_the_encoding_like_decode() -> None:
    assert audio.frame_decoder(None)(ALL_CODES) == audio.decode(ALL_CODES, "mulaw")
    assert audio.frame_decoder(0)(ALL_CODES) == audio.decode(ALL_CODES, "mulaw")
    assert audio.frame_decoder("PCMA")(ALL_CODES) == audio.decode(ALL_CODES, "alaw")
    assert audio.frame_decoder("linear16")(b"\x01\x02\x03") == b"\x01\x02"  # odd byte dropped
    with pytest.raises(ValueError, match="unknown audio encoding"):
        audio.frame_decoder("opus")


def test_pcm16_frame_energy_is_the_exact_sum_of_squares() -> None:
    rng = random.Random(3)
    frames = [rng.randbytes(320) for _ in range(50)]
    frames += [struct.pack("<160h", *([-32768] * 160)), struct.pack("<160h", *([32767] * 160))]
    frames += [b"", b"\x01", rng.randbytes(63), rng.randbytes(321)]
    for frame in frames:
        samples = struct.unpack(f"<{len(frame) // 2}h", frame[: len(frame) & ~1])
        exact = sum(s * s for s in samples)
        assert audio.pcm16_frame_energy(frame) == exact
        assert audio.pcm16_frame_energy(frame, use_numpy=False) == exact
        if audio.numpy_available():
            assert audio.pcm16_frame_energy(frame, use_numpy=True) == exact


# ------------------------------------------------------------------------- input-only codec


def _wire(**kwargs: Any) -> bytes:
    return vva.VoiceVARequest(
        conversation_id="c1",
        customer_org_id="org",
        virtual_agent_id="agent",
        additional_info={"k": "v"},
        **kwargs,
    ).SerializeToString()


WIRE_MESSAGES = [
    _wire(
        audio_input=vva.VoiceInput(
            caller_audio=b"\xff" * 160,
            encoding=vva.VoiceInput.ALAW_FORMAT,
            sample_rate_hertz=16000,
            language_code="en-US",
            is_single_utterance=True,
            audio_timestamp={"seconds": 12, "nanos": 500_000_000},
        )
    ),
    _wire(audio_input=vva.VoiceInput(caller_audio=b"\x00" * 320)),
    _wire(dtmf_input=common.DTMFInputs(dtmf_events=[common.DTMF_DIGIT_ZERO, 5])),
    _wire(
        event_input=common.EventInput(
            event_type=common.EventInput.CUSTOM_EVENT,
            name="hold",
            parameters={"fields": {"a": {"number_value": 1.0}}},
        )
    ),
    _wire(),
]


@pytest.mark.parametrize("data", WIRE_MESSAGES)
def test_decode_caller_input_is_the_input_of_the_full_decode(data: bytes) -> None:
    assert decode_caller_input(data) == decode_voice_va_request(data).input


@pytest.mark.parametrize("data", [b"\xff\xff\xff", b"\x0a\x02\xc3\x28"])  # junk; bad UTF-8
def test_decode_caller_input_refuses_what_the_full_decode_refuses(data: bytes) -> None:
    with pytest.raises(CallRejected) as full:
        decode_voice_va_request(data)
    with pytest.raises(CallRejected) as short:
        decode_caller_input(data)
    assert (short.value.kind, short.value.detail) == (full.value.kind, full.value.detail)


def _frame(audio_bytes: bytes, **voice: Any) -> bytes:
    return _wire(audio_input=vva.VoiceInput(caller_audio=audio_bytes, **voice))


def _same_as_full_decode(decoder: CallerInputDecoder, data: bytes) -> None:
    """``decoder`` gives what ``decode_caller_input`` gives (or refuses it the same way)."""
    try:
        expected: object = decode_caller_input(data)
    except CallRejected as full:
        expected = (full.kind, full.detail)
    try:
        got: object = decoder.decode(data)
    except CallRejected as short:
        got = (short.kind, short.detail)
    assert got == expected


def _mixed_stream() -> list[bytes]:
    """An RPC's messages of every kind: templated frames among near misses and junk."""
    rng = random.Random(7)
    mulaw = {"encoding": vva.VoiceInput.MULAW_FORMAT, "sample_rate_hertz": 8000}
    messages = [_frame(rng.randbytes(3), **mulaw)]  # Webex's first tiny packets
    messages += [_frame(rng.randbytes(160), **mulaw) for _ in range(20)]
    messages += [_frame(b"\xff" * 160, **mulaw), _frame(rng.randbytes(159), **mulaw)]
    messages += [_frame(rng.randbytes(160), language_code="fr-FR", **mulaw)]
    # same length as the template, another suffix (encoding) or prefix (conversation)
    messages += [_frame(rng.randbytes(160), **{**mulaw, "encoding": vva.VoiceInput.ALAW_FORMAT})]
    other = vva.VoiceVARequest(conversation_id="c2", customer_org_id="org")
    other.virtual_agent_id, other.additional_info["k"] = "agent", "v"
    other.audio_input.caller_audio = rng.randbytes(160)
    other.audio_input.encoding, other.audio_input.sample_rate_hertz = mulaw.values()
    messages += [_frame(rng.randbytes(160), **mulaw), other.SerializeToString()]
    messages += [_frame(rng.randbytes(160)) for _ in range(3)]  # caller_audio alone
    messages += WIRE_MESSAGES + [b"\xff\xff\xff", b"\x0a\x02\xc3\x28"]
    messages += [_frame(rng.randbytes(160), **mulaw) for _ in range(5)]
    stamped = [
        _frame(rng.randbytes(160), audio_timestamp={"seconds": 12, "nanos": n}, **mulaw)
        for n in range(0, 10**8, 10**7)
    ]
    return messages + stamped


def test_an_input_with_other_audio_keeps_every_other_field() -> None:
    voice = AudioIn(b"\x01" * 160, "alaw", 16000, "en-US", True, 12.5)
    assert voice.with_audio(b"\x02" * 3) == AudioIn(b"\x02" * 3, "alaw", 16000, "en-US", True, 12.5)
    assert voice.audio == b"\x01" * 160  # a new input; this one is unchanged


def test_the_rpc_decoder_gives_the_full_decode_for_every_kind_of_message() -> None:
    decoder = CallerInputDecoder()
    for data in _mixed_stream():
        _same_as_full_decode(decoder, data)


def test_a_frame_like_the_template_comes_as_its_audio_with_the_model_input() -> None:
    """``decode_frame``: the template's frames as bytes (the input is the model's with that
    audio; the model is what the frame the template was made from decoded to), the rest as
    ``decode`` gives them; ``check`` refuses just what the parse refuses."""
    decoder = CallerInputDecoder()
    sliced = 0
    decoded: list[object] = []
    for data in _mixed_stream():
        try:
            expected: object = decode_caller_input(data)
        except CallRejected as full:
            expected = (full.kind, full.detail)
            with pytest.raises(CallRejected):
                decoder.check(data)
        else:
            decoder.check(data)
        try:
            item: object = decoder.decode_frame(data)
        except CallRejected as short:
            item = (short.kind, short.detail)
        if isinstance(item, bytes):
            sliced += 1
            model = decoder.model
            assert any(model is earlier for earlier in decoded)
            item = model.with_audio(item)
        else:
            decoded.append(item)
        assert item == expected
    assert sliced >= 20


def test_frames_that_differ_only_in_audio_are_sliced_from_the_template() -> None:
    rng = random.Random(8)
    first = _frame(rng.randbytes(160), encoding=vva.VoiceInput.MULAW_FORMAT)
    decoder = CallerInputDecoder()
    decoder.decode(first)
    # the template is the frame around its audio: the audio field's tag and length end it
    assert decoder._size == len(first)
    assert decoder._prefix.endswith(b"\x0a\xa0\x01")
    assert decoder._end == decoder._start + 160
    assert first[: decoder._start] == decoder._prefix
    assert first[decoder._end :] == decoder._suffix
    for _ in range(10):
        audio_bytes = rng.randbytes(160)
        item = decoder.decode(_frame(audio_bytes, encoding=vva.VoiceInput.MULAW_FORMAT))
        assert item == AudioIn(audio_bytes, "mulaw")
    assert decoder._tries == 1  # learned once, used since


def test_a_frame_one_byte_off_the_template_is_decoded_in_full() -> None:
    """Every byte around the audio matters: right after the template is learned, a frame of
    its length with any one of them changed (the last byte to invalid UTF-8, a length
    varint, a field tag) gets exactly what the full decode gives, refusal included; and
    once one is, the next frame like the template still decodes right."""
    rng = random.Random(10)
    mulaw = {"encoding": vva.VoiceInput.MULAW_FORMAT, "sample_rate_hertz": 8000}
    template = _frame(rng.randbytes(160), **mulaw)
    learned = CallerInputDecoder()
    learned.decode(template)
    start, end = learned._start, learned._end
    refused = 0
    for pos in [*range(start), *range(end, len(template))]:
        for byte in {template[pos] ^ 0x01, 0xFF} - {template[pos]}:
            near = template[:pos] + bytes([byte]) + template[pos + 1 :]
            try:
                decode_caller_input(near)
            except CallRejected:
                refused += 1
            decoder = CallerInputDecoder()
            decoder.decode(template)
            _same_as_full_decode(decoder, near)
            _same_as_full_decode(decoder, _frame(rng.randbytes(160), **mulaw))
            # after the FINAL the reader only checks: the same near miss, the same verdict
            checker = CallerInputDecoder()
            checker.decode(template)
            try:
                check_voice_va_request(near)
            except CallRejected:
                with pytest.raises(CallRejected):
                    checker.check(near)
            else:
                checker.check(near)
            checker.check(_frame(rng.randbytes(160), **mulaw))
    assert refused > 10  # the near misses include messages the full decode refuses


def test_a_template_is_kept_only_where_the_audio_really_is() -> None:
    # The audio's bytes appear first in a string field (flipped, it is not UTF-8): no template.
    text = "a" * 20
    in_text = vva.VoiceVARequest(
        conversation_id=text, audio_input=vva.VoiceInput(caller_audio=text.encode())
    ).SerializeToString()
    # ... or in an unknown field before the audio (flipped, the audio is unchanged): none.
    audio_bytes = bytes(range(40))
    unknown = b"\x7a" + bytes([len(audio_bytes)]) + audio_bytes  # field 15, length-delimited
    in_unknown = (
        unknown
        + vva.VoiceVARequest(
            audio_input=vva.VoiceInput(caller_audio=audio_bytes)
        ).SerializeToString()
    )
    for data in (in_text, in_unknown):
        decoder = CallerInputDecoder()
        _same_as_full_decode(decoder, data)
        assert (decoder._size, decoder._tries) == (-1, 1)


def test_short_audio_is_not_templated_and_a_stream_that_never_repeats_stops_trying() -> None:
    rng = random.Random(9)
    decoder = CallerInputDecoder()
    for size in (1, 3, 15):
        _same_as_full_decode(decoder, _frame(rng.randbytes(size)))
    assert (decoder._size, decoder._tries) == (-1, 0)
    _same_as_full_decode(decoder, _frame(rng.randbytes(16)))
    assert (decoder._size, decoder._tries) == (len(_frame(b"x" * 16)), 1)
    # a new timestamp on every frame: each one misses the last template
    for n in range(1, 10):
        _same_as_full_decode(
            decoder, _frame(rng.randbytes(160), audio_timestamp={"seconds": n, "nanos": 0})
        )
    assert decoder._tries == 4  # _TEMPLATE_TRIES: after that, every message is parsed


# ---------------------------------------------------------------------- the turn's frame path


class ScriptedDetector:
    """Speech starts on frame ``start`` and ends on frame ``end`` (0-based, frames fed)."""

    complete_timeout_ms = 800.0
    max_speech_ms = 30000.0

    def __init__(self, sample_rate: int, start: int, end: int) -> None:
        self.sample_rate = sample_rate
        self.start, self.end = start, end
        self.fed: list[bytes] = []
        self.fed_ulaw: list[bytes] = []  # what came through feed_ulaw (also decoded in fed)

    @property
    def in_speech(self) -> bool:
        return self.start < len(self.fed) <= self.end

    def feed(self, pcm16: Any, now_ms: float | None = None) -> list[VADEvent]:
        n = len(self.fed)
        self.fed.append(bytes(pcm16))
        at = (n + 1) * 20.0
        if n == self.start:
            return [SpeechStarted(at_ms=at, onset_ms=at - 80)]
        if n == self.end:
            return [SpeechEnded(at_ms=at, reason="complete_timeout", onset_ms=0, last_voice_ms=at)]
        return []

    def feed_ulaw(self, ulaw: Any, now_ms: float | None = None) -> list[VADEvent]:
        self.fed_ulaw.append(bytes(ulaw))
        return self.feed(audio.ulaw_to_pcm16(ulaw), now_ms)

    def reset(self) -> None:
        self.fed.clear()

    def reset_turn(self) -> None:
        self.fed.clear()


class ScriptedUlawDetector(ScriptedDetector):
    """The same script, for a detector that reads µ-law itself: the turn then feeds µ-law
    frames as they came (``feed_ulaw``) and keeps them undecoded until the utterance."""

    reads_ulaw = True


async def _audio_turn(
    frames: list[AudioIn],
    *,
    start: int,
    end: int,
    rate: int = 8000,
    as_requests: bool = False,
    as_like: bool = False,
    reads_ulaw: bool = False,
    **config: Any,
) -> tuple[ScriptedDetector, list[Any], list[AgentResponse], BYOVAMediaServer]:
    """One gRPC-style audio turn of ``frames``; the detector, utterances and responses.

    ``as_like``: fed as the gRPC reader feeds what its decoder gives, a frame with the
    metadata of the last one fed in full as ``feed_audio(audio, that frame)``."""
    server, detectors, utterances = _scripted_server(
        start, end, reads_ulaw=reads_ulaw, input_sample_rate=rate, **config
    )
    handle = await server.open_turn(
        CallerRequest(conversation_id="c1", input=frames[0]), transport="grpc"
    )
    pump = asyncio.get_running_loop().create_task(_drain(handle))
    model: AudioIn | None = None
    for frame in frames[1:]:
        if as_requests:
            handle.feed(CallerRequest(conversation_id="c1", input=frame))
        elif as_like and model is not None and _metadata(model) == _metadata(frame):
            handle.feed_audio(frame.audio, model)
        else:
            handle.feed_input(frame)
            model = frame
        await handle.drain()
    for _ in range(5):
        await asyncio.sleep(0)
    handle.caller_done()
    responses = await asyncio.wait_for(pump, 10)
    await server.stop(grace=0.1)
    return detectors[0], utterances, responses, server


def _scripted_server(
    start: int, end: int, *, reads_ulaw: bool, **config: Any
) -> tuple[BYOVAMediaServer, list[ScriptedDetector], list[Any]]:
    """A server whose detectors follow the script, and that answers each utterance; the
    detectors it made and the utterance events, as they come."""
    detectors: list[ScriptedDetector] = []
    kind = ScriptedUlawDetector if reads_ulaw else ScriptedDetector

    def factory(sample_rate: int, settings: Any) -> ScriptedDetector:
        detectors.append(kind(sample_rate, start, end))
        return detectors[-1]

    server = BYOVAMediaServer(make_config(**config), detector_factory=factory)
    utterances: list[Any] = []

    @server.on("utterance")
    def heard(event: Any) -> None:
        utterances.append(event)
        event.turn.say("heard")

    return server, detectors, utterances


def _metadata(item: AudioIn) -> tuple[object, ...]:
    return (item.encoding, item.sample_rate_hz, item.language_code, item.is_single_utterance)


async def _drain(handle: TurnHandle) -> list[AgentResponse]:
    return [r async for r in handle.responses()]


def _tone_ulaw(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [rng.randbytes(160) for _ in range(n)]


@pytest.mark.parametrize("as_like", [False, True])
@pytest.mark.parametrize("reads_ulaw", [False, True])
@pytest.mark.parametrize("rate", [8000, 16000])
async def test_the_utterance_is_300_ms_of_preroll_then_the_speech(
    rate: int, reads_ulaw: bool, as_like: bool
) -> None:
    size = 160 if rate == 8000 else 320  # 20 ms of µ-law
    rng = random.Random(rate)
    codes = [rng.randbytes(size) for _ in range(60)]
    frames = [AudioIn(audio=c, encoding="mulaw", sample_rate_hz=rate) for c in codes[:1]]
    frames += [AudioIn(audio=c) for c in codes[1:]]  # later frames inherit what was declared
    detector, utterances, responses, server = await _audio_turn(
        frames, start=30, end=45, rate=rate, reads_ulaw=reads_ulaw, as_like=as_like
    )
    pcm = [audio.ulaw_to_pcm16(c) for c in codes]
    assert detector.sample_rate == rate
    assert detector.fed == pcm[:46]  # nothing fed after the end of input
    assert detector.fed_ulaw == (codes[:46] if reads_ulaw else [])
    # 300 ms before (and including) the frame that confirmed speech: 15 frames
    [utterance] = utterances
    assert utterance.pcm16 == b"".join(pcm[16:46])
    assert utterance.sample_rate == rate
    assert [e.type for r in responses for e in r.output_events] == [
        "start_of_input",
        "end_of_input",
    ]
    assert responses[-1].prompts[0].text == "heard"
    sample = server.metrics.registry.get_sample_value
    assert sample("webex_byova_frames_received_total", {"transport": "grpc"}) == 60
    dropped = {"transport": "grpc", "reason": "after_close"}
    assert sample("webex_byova_frames_dropped_total", dropped) == 60 - 46


@pytest.mark.parametrize("as_like", [False, True])
@pytest.mark.parametrize("reads_ulaw", [False, True])
async def test_the_preroll_keeps_the_fewest_frames_that_reach_300_ms(
    reads_ulaw: bool, as_like: bool
) -> None:
    """With frames of 170 µ-law bytes (21.25 ms) no whole number of them is 300 ms: the
    pre-roll keeps the newest 15 (318.75 ms), dropping a frame only while the rest still
    reach 300 ms, whether it holds the frames decoded or as they came (bytearrays too)."""
    rng = random.Random(7)
    codes = [rng.randbytes(170) for _ in range(40)]
    frames = [AudioIn(audio=codes[0], encoding="mulaw", sample_rate_hz=8000)]
    frames += [AudioIn(audio=cast(Any, bytearray(c))) for c in codes[1:]]
    _, [utterance], _, _ = await _audio_turn(
        frames, start=30, end=35, reads_ulaw=reads_ulaw, as_like=as_like
    )
    pcm = [audio.ulaw_to_pcm16(c) for c in codes]
    assert utterance.pcm16 == b"".join(pcm[16:36])


@pytest.mark.parametrize("as_like", [False, True])
@pytest.mark.parametrize("reads_ulaw", [False, True])
async def test_the_utterance_stops_growing_at_max_utterance_ms(
    reads_ulaw: bool, as_like: bool
) -> None:
    codes = _tone_ulaw(120)
    frames = [AudioIn(audio=c, encoding="mulaw", sample_rate_hz=8000) for c in codes]
    _, [utterance], _, _ = await _audio_turn(
        frames, start=20, end=110, max_utterance_ms=1000, reads_ulaw=reads_ulaw, as_like=as_like
    )
    pcm = [audio.ulaw_to_pcm16(c) for c in codes]
    # preroll (15 frames) + speech until 1000 ms of audio are kept: 50 frames from frame 6
    assert utterance.pcm16 == b"".join(pcm[6:56])


@pytest.mark.parametrize(
    ("as_requests", "as_like", "reads_ulaw"),
    [
        (False, False, False),
        (True, False, False),
        (False, False, True),
        (False, True, False),
        (False, True, True),
    ],
)
async def test_an_encoding_declared_mid_turn_is_honoured(
    as_requests: bool, as_like: bool, reads_ulaw: bool
) -> None:
    rng = random.Random(5)
    ulaw = [rng.randbytes(160) for _ in range(10)]
    alaw = [rng.randbytes(160) for _ in range(10)]
    linear = [rng.randbytes(320) for _ in range(10)]
    frames = [AudioIn(audio=ulaw[0], encoding="mulaw", sample_rate_hz=8000)]
    frames += [AudioIn(audio=f) for f in ulaw[1:]]
    frames += [AudioIn(audio=alaw[0], encoding="alaw")] + [AudioIn(audio=f) for f in alaw[1:]]
    # an unknown encoding is dropped and changes nothing: the next frames are still A-law
    frames.insert(15, AudioIn(audio=alaw[0], encoding=cast(Any, "opus")))
    frames += [AudioIn(audio=linear[0], encoding="linear16")]
    frames += [AudioIn(audio=f, encoding="linear16") for f in linear[1:]]
    detector, [utterance], _, server = await _audio_turn(
        frames, start=2, end=29, as_requests=as_requests, as_like=as_like, reads_ulaw=reads_ulaw
    )
    expected = [audio.ulaw_to_pcm16(f) for f in ulaw]
    expected += [audio.alaw_to_pcm16(f) for f in alaw]
    expected += linear
    assert detector.fed == expected
    # the µ-law frames kept undecoded until then are decoded when A-law arrives mid-utterance
    assert detector.fed_ulaw == (ulaw if reads_ulaw else [])
    assert utterance.pcm16 == b"".join(expected)
    sample = server.metrics.registry.get_sample_value
    assert sample("webex_byova_frames_received_total", {"transport": "grpc"}) == 31
    bad = {"transport": "grpc", "reason": "bad_rate"}
    assert sample("webex_byova_frames_dropped_total", bad) == 1


@pytest.mark.parametrize("as_like", [False, True])
@pytest.mark.parametrize("reads_ulaw", [False, True])
@pytest.mark.parametrize("speech_at", [25, 2])
async def test_the_buffer_bounds_hold_across_an_encoding_change(
    reads_ulaw: bool, speech_at: int, as_like: bool
) -> None:
    """µ-law frames (kept as they came by a detector that reads µ-law), then A-law from the
    11th frame on: the pre-roll (speech after the change) and the utterance (speech before
    it) keep the same 300 ms and ``max_utterance_ms`` bounds as a turn decoded throughout."""
    rng = random.Random(11)
    ulaw = [rng.randbytes(160) for _ in range(10)]
    alaw = [rng.randbytes(160) for _ in range(80)]
    frames = [AudioIn(audio=ulaw[0], encoding="mulaw", sample_rate_hz=8000)]
    frames += [AudioIn(audio=f) for f in ulaw[1:]]
    frames += [AudioIn(audio=alaw[0], encoding="alaw")] + [AudioIn(audio=f) for f in alaw[1:]]
    _, [utterance], _, _ = await _audio_turn(
        frames,
        start=speech_at,
        end=85,
        max_utterance_ms=1000,
        reads_ulaw=reads_ulaw,
        as_like=as_like,
    )
    pcm = [audio.ulaw_to_pcm16(f) for f in ulaw] + [audio.alaw_to_pcm16(f) for f in alaw]
    first = max(0, speech_at - 14)  # 15 frames of pre-roll, the confirming one included
    assert utterance.pcm16 == b"".join(pcm[first : first + 50])  # 1000 ms


async def _fed_turn(
    steps: list[tuple[bytes, AudioIn]], *, like: bool, reads_ulaw: bool
) -> tuple[object, ...]:
    """An audio turn fed ``(audio, frame)`` steps as ``feed_audio(audio, frame)`` (``like``)
    or as ``feed_input`` of the frame with that audio; what the turn did with them."""
    server, detectors, utterances = _scripted_server(
        12, len(steps) - 6, reads_ulaw=reads_ulaw, min_frame_bytes=4
    )
    first = AudioIn(audio=b"\xff" * 160, encoding="mulaw", sample_rate_hz=8000)
    handle = await server.open_turn(
        CallerRequest(conversation_id="c1", input=first), transport="grpc"
    )
    pump = asyncio.get_running_loop().create_task(_drain(handle))
    for data, frame in steps:
        if like:
            assert handle.feed_audio(data, frame)
        else:
            assert handle.feed_input(
                AudioIn(data, frame.encoding, frame.sample_rate_hz, frame.language_code)
            )
        await handle.drain()
    handle.caller_done()
    responses = await asyncio.wait_for(pump, 10)
    turn = handle.turn
    await server.stop(grace=0.1)
    [detector] = detectors
    return (
        detector.fed,
        detector.fed_ulaw,
        [u.pcm16 for u in utterances],
        responses,
        turn._frames_in,
        dict(turn._dropped),
        turn._offset_ms,
    )


@pytest.mark.parametrize("reads_ulaw", [False, True])
async def test_audio_fed_like_a_frame_is_that_frame_with_the_audio(reads_ulaw: bool) -> None:
    """``feed_audio(audio, frame)`` does what feeding ``frame`` with that audio does, whatever
    came before: frames like the last one fed (the per-frame path), other sizes, a frame too
    small to use, another encoding (also on a frame too small to use), a frame that is not the
    last one, after the input ended."""
    rng = random.Random(12)
    model = AudioIn(rng.randbytes(160), "mulaw", 8000)
    tiny = AudioIn(rng.randbytes(2), "mulaw", 8000)  # under min_frame_bytes: dropped
    alaw = AudioIn(rng.randbytes(160), "alaw")
    inherit = AudioIn(rng.randbytes(160))  # no metadata: what was declared holds

    def like(frame: AudioIn, size: int, n: int = 1) -> list[tuple[bytes, AudioIn]]:
        return [(rng.randbytes(size), frame) for _ in range(n)]

    steps = like(model, 160, 6) + like(model, 3)  # too small, right after frames like it
    steps += like(model, 160, 2) + like(AudioIn(b"", "alaw"), 2)  # declares A-law, too small
    steps += like(model, 160, 2) + like(model, 159) + like(model, 160)
    steps += like(tiny, 160) + like(tiny, 2) + like(model, 160, 3)
    steps += like(alaw, 160, 3) + like(inherit, 160, 3) + like(model, 160, 12)
    fed = await _fed_turn(steps, like=False, reads_ulaw=reads_ulaw)
    assert await _fed_turn(steps, like=True, reads_ulaw=reads_ulaw) == fed
    _, _, [utterance], _, frames_in, dropped, _ = fed
    assert utterance
    assert frames_in == len(steps) + 1
    # 3 frames too small; of the rest (and the first), the detector ends the input on the one
    # at index len(steps) - 6, so the last 3 come after it
    assert (dropped["small"], dropped["after_close"]) == (3, 3)


@pytest.mark.parametrize("as_like", [False, True])
async def test_the_reply_is_due_when_the_input_ends_on_a_frame_fed_like_the_last(
    as_like: bool,
) -> None:
    """No utterance handler: the turn's (empty) reply and FINAL are due at the end of the
    input, before Webex half-closes (Cisco's client waits for the reply to do so)."""
    server = BYOVAMediaServer(
        make_config(), detector_factory=lambda rate, settings: ScriptedDetector(rate, 2, 8)
    )
    model = AudioIn(b"\x10" * 160, "mulaw", 8000)
    handle = await server.open_turn(
        CallerRequest(conversation_id="c1", input=model), transport="grpc"
    )
    responses: list[AgentResponse] = []

    async def pump() -> None:
        async for response in handle.responses():
            responses.append(response)

    task = asyncio.get_running_loop().create_task(pump())
    for _ in range(8):
        if as_like:
            assert handle.feed_audio(b"\x20" * 160, model)
        else:
            assert handle.feed_input(AudioIn(b"\x20" * 160, "mulaw", 8000))
    for _ in range(100):  # no caller_done(): the reply goes out on its own
        if handle.turn._final_sent:
            break
        await asyncio.sleep(0.01)
    events = [[e.type for e in r.output_events] for r in responses]
    assert events == [["start_of_input"], ["end_of_input"], []]
    handle.caller_done()
    await asyncio.wait_for(task, 5)
    await server.stop(grace=0.1)


async def test_audio_input_events_carry_each_frame_in_its_declared_encoding() -> None:
    server = BYOVAMediaServer(make_config(vad="energy"))
    seen: list[tuple[bytes, bytes, str, float, int]] = []

    @server.on("audio_input")
    def frame(event: Any) -> None:
        seen.append((event.audio, event.pcm16, event.encoding, event.offset_ms, event.sample_rate))

    ulaw, alaw = b"\x10" * 160, b"\x20" * 160
    first = AudioIn(audio=ulaw, encoding="mulaw", sample_rate_hz=8000)
    handle = await server.open_turn(
        CallerRequest(conversation_id="c1", input=first), transport="grpc"
    )
    for item in (AudioIn(audio=ulaw), AudioIn(audio=alaw, encoding="alaw"), AudioIn(audio=alaw)):
        assert handle.feed_input(item)
        await handle.drain()
    for _ in range(10):
        await asyncio.sleep(0)
    handle.caller_gone()
    await server.stop(grace=0.1)
    upcm, apcm = audio.ulaw_to_pcm16(ulaw), audio.alaw_to_pcm16(alaw)
    assert seen == [
        (ulaw, upcm, "MULAW", 0.0, 8000),
        (ulaw, upcm, "MULAW", 20.0, 8000),
        (alaw, apcm, "ALAW", 40.0, 8000),
        (alaw, apcm, "ALAW", 60.0, 8000),
    ]
