"""The proxy's JSON protocol and adapters, both directions, without I/O."""

from __future__ import annotations

import base64
import json

import pytest

from webex_byova.media import audio
from webex_byova.media.proxy._protocol import (
    PROTOCOL_VERSION,
    AudioChunk,
    AudioEnd,
    AudioFrame,
    BackendEvent,
    ClientEvent,
    Dtmf,
    EndSession,
    InputConfig,
    InvalidMessage,
    Prompt,
    SessionEnded,
    SessionStarted,
    Transfer,
    UnknownMessage,
    decode_inbound,
    decode_outbound,
    encode_message,
)
from webex_byova.media.proxy.adapters import JsonAdapter, TwilioMediaStreamsAdapter

OUTBOUND = [
    SessionStarted(
        conversation_id="c1",
        org_id="o",
        agent_id="a",
        language="en-US",
        metadata={"trackingid": "t", "n": 1},
        resumed=True,
        next_seq=7,
    ),
    AudioFrame(seq=3, turn=2, audio=bytes(range(256)), encoding="LINEAR16", sample_rate=16000),
    Dtmf(digits="12#A", turn=4),
    ClientEvent(name="custom_event", event_name="hello", parameters={"k": [1, 2]}),
    SessionEnded(reason="caller_ended"),
]
INBOUND = [
    Prompt(text="Hi", audio=b"RIFF....", barge_in=True, input=InputConfig(mode="dtmf")),
    AudioChunk(audio=b"\xff" * 160, encoding="LINEAR16", sample_rate=16000),
    AudioEnd(input=InputConfig(dtmf_input_length=4, dtmf_terminator="#")),
    InputConfig(no_input_timeout_ms=3000),
    Transfer(text="One moment", reason="asked", metadata={"queue": "gold"}),
    EndSession(text="Bye", transcript="t", summary="s"),
    BackendEvent(name="lookup", metadata={"id": 5}),
]


@pytest.mark.parametrize("msg", OUTBOUND, ids=lambda m: m.type)
def test_outbound_round_trip(msg):
    text = encode_message(msg)
    data = json.loads(text)
    assert data["type"] == msg.type
    assert data["v"] == PROTOCOL_VERSION
    assert decode_outbound(text) == msg


@pytest.mark.parametrize("msg", INBOUND, ids=lambda m: m.type)
def test_inbound_round_trip(msg):
    assert decode_inbound(encode_message(msg)) == msg


def test_audio_is_standard_base64_on_the_wire():
    frame = AudioFrame(seq=0, audio=b"\x00\xfe\xff" * 100)
    data = json.loads(encode_message(frame))
    assert base64.b64decode(data["audio"], validate=True) == frame.audio
    assert "\n" not in data["audio"]


def test_minimal_backend_messages_use_defaults():
    msg = decode_inbound('{"type":"prompt","text":"hello"}')
    assert isinstance(msg, Prompt)
    assert (msg.text, msg.audio, msg.barge_in, msg.audio_format) == ("hello", b"", False, "wav")
    chunk = decode_inbound('{"type":"audio","audio":"//8=","encoding":"mulaw"}')
    assert isinstance(chunk, AudioChunk)
    assert chunk.encoding == "MULAW"


def test_unknown_fields_are_ignored_for_forward_compatibility():
    msg = decode_inbound('{"type":"end","text":"bye","future_field":{"x":1}}')
    assert msg == EndSession(text="bye")


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ("not json", "not JSON"),
        ("[1,2]", "not a JSON object"),
        ('{"text":"x"}', "missing string 'type'"),
        ('{"type":5}', "missing string 'type'"),
        ('{"type":"prompt","v":2}', "unsupported protocol version"),
        ('{"type":"audio","audio":"%%%"}', "base64"),
        ('{"type":"audio"}', "audio"),
        ('{"type":"prompt","barge_in":"maybe"}', "barge_in"),
        ('{"type":"input","dtmf_input_length":0}', "dtmf_input_length"),
        ('{"type":"event","name":""}', "name"),
        (b"\xff\xfe", "not JSON"),
    ],
)
def test_malformed_input_never_raises(raw, fragment):
    msg = decode_inbound(raw)
    assert isinstance(msg, InvalidMessage)
    assert fragment in msg.error


def test_unknown_type_is_reported_not_fatal():
    msg = decode_inbound('{"type":"telemetry","cpu":3}')
    assert isinstance(msg, UnknownMessage)
    assert msg.type == "telemetry"
    assert msg.data["cpu"] == 3


def test_input_config_changes_only_given_fields():
    assert InputConfig(mode="dtmf", dtmf_terminator="*").changes() == {
        "mode": "dtmf",
        "dtmf_terminator": "*",
    }
    assert InputConfig().changes() == {}


def test_dtmf_digits_are_validated():
    assert isinstance(decode_outbound('{"type":"dtmf","digits":"12x"}'), InvalidMessage)


def test_json_adapter_rejects_binary_frames():
    adapter = JsonAdapter()
    (msg,) = adapter.decode(b"\x00\x01")
    assert isinstance(msg, InvalidMessage)
    (frame,) = adapter.encode(Dtmf(digits="5"))
    assert decode_outbound(frame) == Dtmf(digits="5")


def test_twilio_adapter_outbound_dialect():
    adapter = TwilioMediaStreamsAdapter()
    start = SessionStarted(conversation_id="conv", org_id="org", agent_id="bot", language="en")
    frames = [json.loads(f) for f in adapter.encode(start)]
    assert [f["event"] for f in frames] == ["connected", "start"]
    assert frames[1]["start"]["callSid"] == "conv"
    assert frames[1]["start"]["customParameters"]["agentId"] == "bot"
    assert frames[1]["start"]["mediaFormat"] == {
        "encoding": "audio/x-mulaw",
        "sampleRate": 8000,
        "channels": 1,
    }
    # a resumed start does not repeat "connected"
    again = [json.loads(f) for f in adapter.encode(start.model_copy(update={"resumed": True}))]
    assert [f["event"] for f in again] == ["start"]
    assert again[0]["start"]["customParameters"]["resumed"] == "true"

    pcm = b"\x10\x00" * 160
    (media,) = (
        json.loads(f)
        for f in adapter.encode(AudioFrame(seq=0, audio=pcm, encoding="LINEAR16", sample_rate=8000))
    )
    assert media["event"] == "media"
    assert media["media"]["chunk"] == "1"
    assert base64.b64decode(media["media"]["payload"]) == audio.pcm16_to_ulaw(pcm)
    (media2,) = (json.loads(f) for f in adapter.encode(AudioFrame(seq=1, audio=b"\xff" * 160)))
    assert media2["media"]["timestamp"] == "20"
    seqs = [int(f["sequenceNumber"]) for f in [*frames[1:], *again, media, media2]]
    assert seqs == sorted(seqs)
    assert len(set(seqs)) == len(seqs)

    dtmf = [json.loads(f)["dtmf"]["digit"] for f in adapter.encode(Dtmf(digits="4#"))]
    assert dtmf == ["4", "#"]
    (mark,) = adapter.encode(ClientEvent(name="end_of_input"))
    assert json.loads(mark)["mark"]["name"] == "end_of_input"
    (stop,) = adapter.encode(SessionEnded(reason="caller_ended"))
    assert json.loads(stop)["event"] == "stop"


def test_twilio_adapter_inbound_dialect():
    adapter = TwilioMediaStreamsAdapter()
    payload = base64.b64encode(b"\x7f" * 320).decode()
    (chunk,) = adapter.decode(json.dumps({"event": "media", "media": {"payload": payload}}))
    assert chunk == AudioChunk(audio=b"\x7f" * 320)
    assert adapter.decode('{"event":"mark","mark":{"name":"x"}}') == (AudioEnd(),)
    assert adapter.decode('{"event":"transfer","text":"hold on"}') == (Transfer(text="hold on"),)
    assert adapter.decode('{"event":"hangup"}') == (EndSession(),)
    (clear,) = adapter.decode('{"event":"clear"}')
    assert isinstance(clear, UnknownMessage)
    for bad in (
        "{",
        '{"event":1}',
        '{"event":"media","media":{}}',
        '{"event":"media","media":{"payload":"**"}}',
    ):
        (msg,) = adapter.decode(bad)
        assert isinstance(msg, InvalidMessage), bad
