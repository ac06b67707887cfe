"""Sans-IO parts: response builders, DTMF mapping, input settings, records, configuration."""

from __future__ import annotations

import dataclasses
import json

import pytest

from webex_byova.media._grpc_codec import digits_from_enums, enums_from_digits, voice_va_response
from webex_byova.media._model import ConversationRecord, InputSettings
from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media._responses import (
    PromptSpec,
    TextSpec,
    boundary_response,
    chunk_response,
    final_response,
    is_terminal,
    output_event,
)
from webex_byova.media.config import MediaServerConfig
from webex_byova.media.store import InMemoryConversationStore


def test_dtmf_mapping_all_keys_zero_is_ten() -> None:
    keys = "1234567890ABCD*#"
    assert enums_from_digits(keys) == list(range(1, 17))
    assert digits_from_enums(list(range(17))) == keys  # 0 (unspecified) skipped
    assert enums_from_digits("a") == [11]
    with pytest.raises(ValueError, match="not a DTMF key"):
        enums_from_digits("5x")


def test_final_response_carries_next_input_settings() -> None:
    settings = InputSettings(mode="dtmf", dtmf_input_length=4, dtmf_terminator="*")
    resp = voice_va_response(
        final_response(
            prompts=[PromptSpec(text="hi", audio=b"RIFF", barge_in=True)],
            settings=settings,
            sensitive=True,
        )
    )
    assert resp.response_type == vva.VoiceVAResponse.FINAL
    assert resp.input_mode == vva.INPUT_EVENT_DTMF
    assert resp.input_sensitive
    dtmf = resp.input_handling_config.dtmf_config
    assert (dtmf.dtmf_input_length, dtmf.termchar, dtmf.inter_digit_timeout_msec) == (4, 15, 3000)
    timers = resp.input_handling_config.speech_timers
    assert (timers.complete_timeout_msec, timers.no_input_timeout_msec) == (800, 5000)
    assert resp.prompts[0].is_barge_in_enabled


def test_terminal_response_has_no_next_input_and_keeps_transcript() -> None:
    neutral = final_response(
        events=[output_event("session_end", "bye", {"score": 3})],
        settings=InputSettings(),
        transcript=TextSpec(text="t"),
        summary=TextSpec(ssml="<speak>s</speak>", language_code="en-US"),
    )
    assert is_terminal(neutral)
    resp = voice_va_response(neutral)
    assert not resp.HasField("input_handling_config")
    assert resp.input_mode == 0
    assert resp.session_transcript.text == "t"
    assert resp.session_summary.ssml == "<speak>s</speak>"
    assert dict(resp.output_events[0].metadata) == {"score": 3.0}
    with pytest.raises(ValueError, match="exactly one"):
        TextSpec(text="a", ssml="b")


def test_boundary_and_chunk_responses() -> None:
    start = voice_va_response(boundary_response("start_of_input"))
    assert start.response_type == vva.VoiceVAResponse.CHUNK
    assert start.output_events[0].event_type == 4
    end_neutral = boundary_response("end_of_input", response_type="partial", name="end_of_input")
    assert not is_terminal(end_neutral)
    end = voice_va_response(end_neutral)
    assert end.response_type == vva.VoiceVAResponse.PARTIAL
    assert (end.output_events[0].event_type, end.output_events[0].name) == (5, "end_of_input")
    chunk = voice_va_response(chunk_response(b"\xff" * 100))
    assert chunk.prompts[0].audio_content == b"\xff" * 100
    for size in (99, 65537):
        with pytest.raises(ValueError, match="CHUNK carries"):
            chunk_response(b"\xff" * size)
    with pytest.raises(ValueError, match="unknown output event"):
        output_event("hangup")


def test_input_settings_validation() -> None:
    with pytest.raises(ValueError, match="unknown input mode"):
        InputSettings(mode="video")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a DTMF key"):
        InputSettings(dtmf_terminator="x")
    with pytest.raises(ValueError, match="non-negative int32"):
        InputSettings(complete_timeout_ms=-1)


async def test_record_round_trips_as_plain_data() -> None:
    record = ConversationRecord("c1", "agent", settings=InputSettings(mode="voice"))
    record.user_state["cart"] = ["a", 1]
    data = json.loads(json.dumps(record.to_dict()))
    assert ConversationRecord.from_dict(data) == record
    store = InMemoryConversationStore()
    await store.put(record)
    record.user_state["cart"].append("mutated after put")
    copy = await store.get("c1")
    assert copy is not None
    assert copy.user_state == {"cart": ["a", 1]}
    copy.user_state["cart"].append("mutated after get")
    again = await store.get("c1")
    assert again is not None
    assert again.user_state == {"cart": ["a", 1]}
    await store.delete("c1")
    assert await store.get("c1") is None


def test_record_to_dict_covers_every_field() -> None:
    """to_dict is written by hand for speed: it must still carry every field of the record."""
    record = ConversationRecord(
        "c1", "agent", customer_org_id="org", created_at=1.5, last_active=2.5, started=True,
        turns=3, language_code="en-US", settings=InputSettings(mode="dtmf", dtmf_input_length=4),
        user_state={"k": {"nested": [1]}},
    )  # fmt: skip
    expected = dataclasses.asdict(record)
    expected["settings"] = dataclasses.asdict(record.settings)
    assert record.to_dict() == expected
    assert set(record.to_dict()) == {f.name for f in dataclasses.fields(ConversationRecord)}
    assert set(record.to_dict()["settings"]) == {f.name for f in dataclasses.fields(InputSettings)}


def test_config_from_env_and_errors() -> None:
    env = {
        "WEBEX_MEDIA_PORT": "6000",
        "WEBEX_MEDIA_AUDIO_MODE": "chunk",
        "WEBEX_MEDIA_SAMPLE_RATE": "16000",
        "WEBEX_MEDIA_CHUNK_MS": "40",
        "WEBEX_MEDIA_VERIFY_TOKENS": "false",
        "WEBEX_MEDIA_AGENTS": "a=Alpha, b",
        "WEBEX_MEDIA_DTMF_TERMINATOR": "*",
        "WEBEX_MEDIA_LOG_LEVEL": "debug",
        "WEBEX_MEDIA_EXPECTED_URL": "",
    }
    cfg = MediaServerConfig.from_env(env)
    assert (cfg.port, cfg.audio_mode, cfg.sample_rate, cfg.verify_tokens) == (
        6000,
        "chunk",
        16000,
        False,
    )
    assert cfg.chunk_bytes == 640
    assert cfg.agents == ("a=Alpha", "b")
    assert cfg.log_level == "DEBUG"
    assert cfg.expected_url is None
    assert MediaServerConfig().chunk_bytes == 640  # 80 ms of 8 kHz µ-law

    with pytest.raises(ValueError, match="WEBEX_MEDIA_PORT"):
        MediaServerConfig.from_env({"WEBEX_MEDIA_PORT": "http"})
    with pytest.raises(ValueError, match="WEBEX_MEDIA_SAMPLE_RATE: .*8000 or 16000"):
        MediaServerConfig.from_env({"WEBEX_MEDIA_SAMPLE_RATE": "44100"})
    with pytest.raises(ValueError, match="chunk"):
        MediaServerConfig(chunk_ms=10)  # 80 bytes < 100
    with pytest.raises(ValueError, match="set together"):
        MediaServerConfig(tls_cert_file="cert.pem")
    with pytest.raises(ValueError, match="extra"):
        MediaServerConfig(prot=1)  # type: ignore[call-arg]
