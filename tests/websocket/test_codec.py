"""The sans-IO WebSocket codec: envelopes, payload mapping, connection rules, hostile input."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from webex_byova.media import audio
from webex_byova.media._messages import (
    AgentResponse,
    AudioIn,
    DtmfIn,
    EventIn,
    OutputEventSpec,
    PromptSpec,
    TextSpec,
)
from webex_byova.media._model import InputSettings
from webex_byova.media._ws_codec import (
    CLOSE_GOING_AWAY,
    CLOSE_INTERNAL_ERROR,
    CLOSE_POLICY_VIOLATION,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    CLOSE_TRY_AGAIN_LATER,
    CLOSE_UNSUPPORTED_DATA,
    ERROR_CODES,
    MAX_REPLY_CHUNK,
    MIN_REPLY_CHUNK,
    Fatal,
    Ignored,
    PeerError,
    PingIn,
    RequestIn,
    VaConnection,
    WsLimits,
    WsProtocolError,
    bound_detail,
    check_ts,
    format_ts,
    list_error,
    list_response,
    parse_list_request,
    parse_ts,
    rejection_error,
    response_payload,
)

CID = "conv-1"
ORG = "5a1e7d1c-0b6c-4d77-9d0f-2f6a6b4f0c11"
TS = "2026-12-01T09:10:00.000Z"
NOW = 1_796_000_000.0


def env(kind: str = "VOICE_VA_REQUEST", seq: int = 1, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"type": kind, "seq": seq, "ts": TS, "conversation_id": CID}
    body.update(over)
    return body


def payload(inp: dict[str, Any] | None = None, **over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "conversation_id": CID,
        "customer_org_id": ORG,
        "virtual_agent_id": "agent-1",
        "voice_va_input_type": inp if inp is not None else {},
    }
    body.update(over)
    return body


def event(kind: str = "SESSION_START", **over: Any) -> dict[str, Any]:
    return {"event_input": {"event_type": kind, "name": "call_start", **over}}


def req(seq: int, inp: dict[str, Any] | None = None, **over: Any) -> str:
    return json.dumps(env(seq=seq, payload=payload(inp, **over)))


def started(**kwargs: Any) -> VaConnection:
    conn = VaConnection(**kwargs)
    assert isinstance(conn.receive_text(req(1, event()), NOW), RequestIn)
    return conn


def fatal(result: Any, code: str, status: int, close: int) -> dict[str, Any]:
    assert isinstance(result, Fatal), result
    assert (result.error.code, result.error.status, result.close_code) == (code, status, close)
    frame = json.loads(result.frame)
    assert frame["type"] == "ERROR"
    assert set(frame) == {"type", "seq", "ts", "conversation_id", "code", "status", "detail"}
    assert frame["code"] in ERROR_CODES
    assert frame["status"] == status
    assert len(frame["detail"]) <= 200
    parse_ts(frame["ts"])
    return frame


# --------------------------------------------------------------------------- inbound mapping


def test_session_start_maps_to_caller_request() -> None:
    conn = VaConnection(expected_org=ORG)
    text = req(
        1,
        event(parameters=[{"key": "lang", "value": "en"}]),
        allow_partial_responses=None,
        additional_info=[{"key": "ani", "value": "+15550100"}],
        vendor_specific_config='{"x":1}',
        some_future_field={"ignored": True},
    )
    result = conn.receive_text(text, NOW)
    assert isinstance(result, RequestIn)
    r = result.request
    assert result.seq == 1
    assert r.conversation_id == CID
    assert r.customer_org_id == ORG
    assert r.virtual_agent_id == "agent-1"
    assert r.allow_partial_responses is False
    assert r.vendor_specific_config == '{"x":1}'
    assert r.additional_info == {"ani": "+15550100"}
    assert r.input == EventIn("session_start", "call_start", {"lang": "en"})
    assert conn.started
    assert conn.conversation_id == CID


def test_audio_input_decodes_base64_and_media() -> None:
    conn = started()
    pcm = bytes(range(256)) * 2
    text = req(
        2,
        {
            "audio_input": {
                "caller_audio_b64": base64.b64encode(pcm).decode(),
                "encoding": "MULAW_FORMAT",
                "sample_rate_hertz": 8000,
                "language_code": "en-US",
                "is_single_utterance": None,
                "audio_timestamp": "2026-12-01T09:10:00.250+01:00",
            }
        },
    )
    result = conn.receive_text(text, NOW)
    assert isinstance(result, RequestIn)
    inp = result.request.input
    assert isinstance(inp, AudioIn)
    assert inp.audio == pcm
    assert inp.encoding == "mulaw"
    assert inp.sample_rate_hz == 8000
    assert inp.language_code == "en-US"
    assert inp.is_single_utterance is False
    assert inp.timestamp == parse_ts("2026-12-01T08:10:00.250Z")


@pytest.mark.parametrize(
    ("encoding", "rate", "expected"),
    [
        (None, None, ("unspecified", 0)),
        ("UNSPECIFIED_FORMAT", 8000, ("unspecified", 8000)),
        ("ALAW_FORMAT", 8000, ("alaw", 8000)),
        ("LINEAR16_FORMAT", 16000, ("linear16", 16000)),
        (2, 8000, ("mulaw", 8000)),  # a proto number is tolerated
    ],
)
def test_supported_media(encoding: Any, rate: Any, expected: tuple[str, int]) -> None:
    conn = started()
    inp = {"audio_input": {"caller_audio_b64": "", "encoding": encoding, "sample_rate_hertz": rate}}
    result = conn.receive_text(req(2, inp), NOW)
    assert isinstance(result, RequestIn)
    assert isinstance(result.request.input, AudioIn)
    assert (result.request.input.encoding, result.request.input.sample_rate_hz) == expected
    assert result.request.input.audio == b""


@pytest.mark.parametrize(
    ("encoding", "rate"),
    [("OPUS_FORMAT", 48000), ("MULAW_FORMAT", 16000), ("LINEAR16_FORMAT", 44100), (9, 8000)],
)
def test_unsupported_media_is_terminal(encoding: Any, rate: int) -> None:
    conn = started()
    inp = {
        "audio_input": {"caller_audio_b64": "AAAA", "encoding": encoding, "sample_rate_hertz": rate}
    }
    fatal(conn.receive_text(req(2, inp), NOW), "unsupported_media", 415, CLOSE_UNSUPPORTED_DATA)
    assert conn.closed
    assert isinstance(conn.receive_text(req(3, event("NO_INPUT")), NOW), Ignored)


def test_dtmf_names_map_to_keys_and_unknown_are_skipped() -> None:
    conn = started()
    names = ["DTMF_DIGIT_ONE", "DTMF_DIGIT_ZERO", "DTMF_EVENT_UNSPECIFIED", "DTMF_DIGIT_STAR"]
    names += ["DTMF_DIGIT_POUND", "DTMF_DIGIT_D", "DTMF_DIGIT_FUTURE", 10]
    result = conn.receive_text(req(2, {"dtmf_input": {"dtmf_events": names}}), NOW)
    assert isinstance(result, RequestIn)
    assert result.request.input == DtmfIn("10*#D0")


def test_empty_wrapper_and_map_forms() -> None:
    conn = started()
    result = conn.receive_text(req(2, {}, additional_info=[], customer_org_id=ORG), NOW)
    assert isinstance(result, RequestIn)
    assert result.request.input is None
    assert result.request.additional_info == {}
    result = conn.receive_text(req(3, event("CUSTOM_EVENT", parameters={"a": {"b": [1]}})), NOW)
    assert isinstance(result, RequestIn)
    assert result.request.input == EventIn("custom_event", "call_start", {"a": {"b": [1]}})
    result = conn.receive_text(req(4, event("SOMETHING_NEW", parameters=None)), NOW)
    assert isinstance(result, RequestIn)
    assert result.request.input == EventIn("unspecified", "call_start", {})


def test_empty_virtual_agent_id_inherits_the_bound_one() -> None:
    conn = started()
    result = conn.receive_text(req(2, event("NO_INPUT"), virtual_agent_id=""), NOW)
    assert isinstance(result, RequestIn)
    assert result.request.virtual_agent_id == "agent-1"


# --------------------------------------------------------------------------- envelope rules


def test_ping_gets_pong_with_the_same_seq_outside_the_own_counter() -> None:
    conn = VaConnection()
    result = conn.receive_text(json.dumps(env("PING", seq=7)), NOW)
    assert isinstance(result, PingIn)
    assert result.seq == 7
    pong = json.loads(result.pong)
    assert pong == {"type": "PONG", "seq": 7, "ts": format_ts(NOW), "conversation_id": CID}
    assert conn.last_own_seq == 0
    # gaps are fine; the SESSION_START may follow a PING
    assert isinstance(conn.receive_text(req(10, event()), NOW), RequestIn)


def test_own_seq_strictly_increases_across_responses_and_errors() -> None:
    conn = started()
    frames = conn.respond(AgentResponse(prompts=(PromptSpec(text="hi"),)), NOW)
    frames += conn.respond(AgentResponse(response_type="partial"), NOW + 1)
    ping = conn.receive_text(json.dumps(env("PING", seq=5)), NOW)
    assert isinstance(ping, PingIn)
    err = conn.fail(WsProtocolError("timeout", "x"), NOW + 2)
    seqs = [json.loads(f)["seq"] for f in [*frames, err.frame]]
    assert seqs == [1, 2, 3]


@pytest.mark.parametrize("seq", [1, 0, -3, True, 1.0, 1.5, "2", None, 2**63, 10**30])
def test_bad_or_repeated_seq_is_fatal(seq: Any) -> None:
    conn = started()
    fatal(
        conn.receive_text(
            req(1, event("NO_INPUT")).replace('"seq": 1', f'"seq": {json.dumps(seq)}'), NOW
        ),
        "bad_request",
        400,
        CLOSE_PROTOCOL_ERROR,
    )


def test_regressed_seq_is_fatal() -> None:
    conn = started()
    assert isinstance(conn.receive_text(req(5, event("NO_INPUT")), NOW), RequestIn)
    frame = fatal(conn.receive_text(req(4, event("NO_INPUT")), NOW), "bad_request", 400, 1002)
    assert "seq" in frame["detail"]
    assert frame["conversation_id"] == CID


@pytest.mark.parametrize(
    "over",
    [
        {"conversation_id": "other"},
        {"conversation_id": ""},
        {"conversation_id": 5},
        {"conversation_id": None},
        {"ts": "yesterday"},
        {"ts": "2026-13-01T00:00:00Z"},
        {"ts": "2026-12-01T09:10:00"},
        {"ts": 1_796_000_000},
        {"ts": None},
        {"type": 3},
        {"type": None},
    ],
)
def test_bad_envelope_fields_are_fatal(over: dict[str, Any]) -> None:
    conn = started()
    body = env(seq=2, payload=payload(event("NO_INPUT")))
    body.update(over)
    fatal(conn.receive_text(json.dumps(body), NOW), "bad_request", 400, CLOSE_PROTOCOL_ERROR)


def test_payload_conversation_must_match_envelope() -> None:
    conn = started()
    text = json.dumps(env(seq=2, payload=payload(event("NO_INPUT"), conversation_id="conv-2")))
    fatal(conn.receive_text(text, NOW), "bad_request", 400, CLOSE_PROTOCOL_ERROR)


def test_first_request_must_be_session_start_and_only_once() -> None:
    conn = VaConnection()
    fatal(conn.receive_text(req(1, event("NO_INPUT")), NOW), "bad_request", 400, 1002)
    conn = started()
    fatal(conn.receive_text(req(2, event()), NOW), "bad_request", 400, 1002)


def test_org_must_match_the_token_and_stay_fixed() -> None:
    conn = VaConnection(expected_org=ORG)
    bad = req(1, event(), customer_org_id="11111111-2222-3333-4444-555555555555")
    fatal(conn.receive_text(bad, NOW), "unauthorized", 403, CLOSE_POLICY_VIOLATION)
    conn = VaConnection(expected_org=ORG)
    fatal(
        conn.receive_text(req(1, event(), customer_org_id="not-an-org"), NOW),
        "unauthorized",
        403,
        1008,
    )
    conn = started()  # no token org: the first request binds it
    fatal(
        conn.receive_text(req(2, event("NO_INPUT"), customer_org_id="x"), NOW),
        "bad_request",
        400,
        1002,
    )


def test_agent_must_stay_fixed() -> None:
    conn = started()
    fatal(
        conn.receive_text(req(2, event("NO_INPUT"), virtual_agent_id="b"), NOW),
        "bad_request",
        400,
        1002,
    )


def test_unknown_and_wrong_direction_types_are_ignored() -> None:
    conn = started()
    assert isinstance(conn.receive_text(json.dumps(env("FUTURE_THING", seq=1)), NOW), Ignored)
    assert isinstance(conn.receive_text(json.dumps(env("PONG", seq=2)), NOW), Ignored)
    assert isinstance(conn.receive_text(json.dumps(env("VOICE_VA_RESPONSE", seq=3)), NOW), Ignored)
    assert not conn.closed
    # a wrong-direction message still counts for seq
    fatal(conn.receive_text(req(3, event("NO_INPUT")), NOW), "bad_request", 400, 1002)


def test_peer_error_ends_the_conversation_without_an_answer() -> None:
    conn = started()
    text = json.dumps(env("ERROR", seq=2, code="upstream_error", status=502, detail="x\n" * 500))
    result = conn.receive_text(text, NOW)
    assert isinstance(result, PeerError)
    assert (result.code, result.status) == ("upstream_error", 502)
    assert len(result.detail) <= 200
    assert "\n" not in result.detail
    assert conn.ended
    assert isinstance(conn.receive_text(req(3, event("NO_INPUT")), NOW), Ignored)
    assert conn.respond(AgentResponse(), NOW) == []


def test_caller_session_end_stops_input_but_allows_the_acknowledgement() -> None:
    conn = started()
    result = conn.receive_text(req(2, event("SESSION_END")), NOW)
    assert isinstance(result, RequestIn)
    assert conn.ended
    assert isinstance(conn.receive_text(req(3, event("NO_INPUT")), NOW), Ignored)
    assert isinstance(conn.receive_text(json.dumps(env("PING", seq=4)), NOW), PingIn)
    ack = AgentResponse(output_events=(OutputEventSpec("session_end", "by_client"),))
    assert len(conn.respond(ack, NOW)) == 1
    assert conn.terminal_sent
    assert conn.respond(AgentResponse(), NOW) == []


def test_terminal_response_ends_the_conversation() -> None:
    conn = started()
    out = conn.respond(
        AgentResponse(
            prompts=(PromptSpec(text="bye"),),
            output_events=(OutputEventSpec("transfer_to_agent"),),
            settings=InputSettings(),
        ),
        NOW,
    )
    assert len(out) == 1
    body = json.loads(out[0])["payload"]
    assert "input_mode" not in body
    assert "input_handling_config" not in body
    assert conn.ended
    assert conn.terminal_sent
    assert conn.respond(AgentResponse(), NOW) == []
    assert isinstance(conn.receive_text(req(2, event("NO_INPUT")), NOW), Ignored)
    assert isinstance(conn.receive_text(json.dumps(env("PING", seq=3)), NOW), PingIn)


# --------------------------------------------------------------------------- hostile input


HOSTILE = [
    "",
    "{",
    "null",
    "[]",
    '"text"',
    "42",
    "{'single': 'quotes'}",
    '{"type": "VOICE_VA_REQUEST"',
    "[" * 60_000 + "]" * 60_000,
    '{"seq": ' + "9" * 5000 + "}",
    json.dumps(env(seq=1, payload=None)),
    json.dumps(env(seq=1, payload="x")),
    json.dumps(env(seq=1, payload=[1, 2])),
    json.dumps(env(seq=1, payload={"conversation_id": CID})),  # no input: not SESSION_START
    json.dumps(env(seq=1, payload=payload({"event_input": "SESSION_START"}))),
    json.dumps(env(seq=1, payload=payload([1]))),  # type: ignore[arg-type]
    json.dumps(env(seq=1, payload=payload({**event(), "dtmf_input": {"dtmf_events": []}}))),
    json.dumps(env(seq=1, payload=payload(event(), customer_org_id=["x"]))),
    json.dumps(env(seq=1, payload=payload(event(), allow_partial_responses="yes"))),
    json.dumps(env(seq=1, payload=payload(event(), additional_info="a=b"))),
    json.dumps(env(seq=1, payload=payload(event(), additional_info=[{"k": 1}]))),
    json.dumps(env(seq=1, payload=payload(event(), additional_info={"a": {"nested": 1}}))),
    json.dumps(
        env(seq=1, payload=payload(event(), additional_info={str(i): "" for i in range(300)}))
    ),
    json.dumps(env(seq=1, payload=payload(event(name=7)))),
    json.dumps(env(seq=1, payload=payload(event(event_type=True)))),
    json.dumps(
        env(seq=1, payload=payload(event(), conversation_id="c" * 300), conversation_id="c" * 300)
    ),
]


@pytest.mark.parametrize("text", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_first_messages_are_bad_requests(text: str) -> None:
    conn = VaConnection()
    fatal(conn.receive_text(text, NOW), "bad_request", 400, CLOSE_PROTOCOL_ERROR)


HOSTILE_AUDIO = [
    {"caller_audio_b64": "not base64!!"},
    {"caller_audio_b64": "AAA"},  # bad padding
    {"caller_audio_b64": "AA==AA=="},
    {"caller_audio_b64": 123},
    {"caller_audio_b64": ["AAAA"]},
    {"caller_audio_b64": base64.b64encode(bytes(64 * 1024 + 1)).decode()},
    {"sample_rate_hertz": "8000"},
    {"sample_rate_hertz": -1},
    {"sample_rate_hertz": 8000.5},
    {"is_single_utterance": "true"},
    {"audio_timestamp": "noon"},
    {"language_code": "x" * 100},
]


@pytest.mark.parametrize("fields", HOSTILE_AUDIO, ids=range(len(HOSTILE_AUDIO)))
def test_hostile_audio_is_a_bad_request(fields: dict[str, Any]) -> None:
    conn = started()
    audio_input = {"encoding": "MULAW_FORMAT", "sample_rate_hertz": 8000, **fields}
    fatal(conn.receive_text(req(2, {"audio_input": audio_input}), NOW), "bad_request", 400, 1002)


@pytest.mark.parametrize(
    "dtmf",
    [
        {"dtmf_events": "DTMF_DIGIT_ONE"},
        {"dtmf_events": [None]},
        {"dtmf_events": [["x"]]},
        {"dtmf_events": ["DTMF_DIGIT_ONE"] * 65},
    ],
)
def test_hostile_dtmf_is_a_bad_request(dtmf: dict[str, Any]) -> None:
    conn = started()
    fatal(conn.receive_text(req(2, {"dtmf_input": dtmf}), NOW), "bad_request", 400, 1002)


def test_audio_at_the_limit_is_accepted() -> None:
    conn = started()
    data = bytes(64 * 1024)
    inp = {
        "audio_input": {
            "caller_audio_b64": base64.b64encode(data).decode(),
            "encoding": "MULAW_FORMAT",
        }
    }
    result = conn.receive_text(req(2, inp), NOW)
    assert isinstance(result, RequestIn)
    assert isinstance(result.request.input, AudioIn)
    assert result.request.input.audio == data


def test_oversized_message_is_too_big() -> None:
    conn = started()
    text = req(2, event("NO_INPUT"), vendor_specific_config="x" * (128 * 1024))
    fatal(conn.receive_text(text, NOW), "bad_request", 413, CLOSE_TOO_BIG)
    # counted in UTF-8 bytes, not characters
    conn = started(limits=WsLimits(max_message_bytes=4096))
    body = env(seq=2, payload=payload(event("NO_INPUT"), vendor_specific_config="€" * 1300))
    text = json.dumps(body, ensure_ascii=False)
    assert len(text) < 4096 < len(text.encode())
    fatal(conn.receive_text(text, NOW), "bad_request", 413, CLOSE_TOO_BIG)


def test_binary_frames_are_unsupported_media() -> None:
    conn = started()
    fatal(conn.receive_bytes(b"\x00\x01", NOW), "unsupported_media", 415, CLOSE_UNSUPPORTED_DATA)
    assert conn.closed
    assert isinstance(conn.receive_bytes(b"\x00", NOW), Ignored)


def test_error_before_binding_has_an_empty_conversation_id() -> None:
    frame = fatal(VaConnection().receive_text("{", NOW), "bad_request", 400, 1002)
    assert frame["conversation_id"] == ""
    assert frame["seq"] == 1


# --------------------------------------------------------------------------- outbound


def test_final_response_payload_shape() -> None:
    settings = InputSettings(mode="dtmf", dtmf_terminator="#", dtmf_input_length=4)
    resp = AgentResponse(
        prompts=(PromptSpec(text="Hello", barge_in=True), PromptSpec(audio_uri="https://a/b.wav")),
        output_events=(OutputEventSpec("custom_event", "ev", {"k": 1}),),
        settings=settings,
        input_sensitive=True,
        transcript=TextSpec(text="t", language_code="en-US"),
        summary=TextSpec(ssml="<speak/>"),
    )
    body = response_payload(resp)
    assert body == {
        "prompts": [
            {"text": "Hello", "is_barge_in_enabled": True},
            {"text": "", "audio_uri": "https://a/b.wav", "is_barge_in_enabled": False},
        ],
        "output_events": [{"event_type": "CUSTOM_EVENT", "name": "ev", "metadata": {"k": 1}}],
        "response_type": "FINAL",
        "input_mode": "INPUT_EVENT_DTMF",
        "input_handling_config": {
            "dtmf_config": {
                "inter_digit_timeout_msec": 3000,
                "dtmf_input_length": 4,
                "termchar": "DTMF_DIGIT_POUND",
            },
            "speech_timers": {
                "max_speech_timeout_msec": 30000,
                "complete_timeout_msec": 800,
                "incomplete_timeout_msec": 0,
            },
        },
        "input_sensitive": True,
        "session_transcript": {"text": "t", "language_code": "en-US"},
        "session_summary": {"ssml": "<speak/>"},
    }
    assert "no_input_timeout_msec" not in json.dumps(body)
    no_term = response_payload(AgentResponse(settings=InputSettings(dtmf_terminator="")))
    assert "termchar" not in no_term["input_handling_config"]["dtmf_config"]
    bare = response_payload(AgentResponse(settings=InputSettings(), omit_input_mode=True))
    assert "input_mode" not in bare
    assert "input_handling_config" in bare


def test_response_envelope_fields() -> None:
    conn = started()
    (frame,) = conn.respond(AgentResponse(response_type="partial"), NOW)
    body = json.loads(frame)
    assert set(body) == {"type", "seq", "ts", "conversation_id", "payload"}
    assert body["type"] == "VOICE_VA_RESPONSE"
    assert body["conversation_id"] == CID
    assert body["ts"] == format_ts(NOW)
    assert parse_ts(body["ts"]) == pytest.approx(NOW, abs=0.001)
    assert body["payload"]["response_type"] == "PARTIAL"


def _audio_of(frames: list[str]) -> list[tuple[str, int, bytes]]:
    out = []
    for f in frames:
        p = json.loads(f)["payload"]
        data = b"".join(base64.b64decode(x.get("audio_content_b64", "")) for x in p["prompts"])
        out.append((p["response_type"], len(data), data))
    return out


def test_short_reply_audio_is_inline_and_wav_headers_are_removed() -> None:
    conn = started()
    ulaw = bytes(range(256)) * 20  # 5120 B
    wav = audio.make_wav(ulaw, sample_rate=8000, encoding="MULAW")
    frames = conn.respond(AgentResponse(prompts=(PromptSpec(text="hi", audio=wav),)), NOW)
    ((kind, size, data),) = _audio_of(frames)
    assert kind == "FINAL"
    assert data == ulaw
    assert data[:4] != b"RIFF"


def test_long_reply_audio_is_split_into_chunks_before_the_final() -> None:
    conn = started(limits=WsLimits(reply_chunk_bytes=8000))
    ulaw = bytes([0x7F]) * 40_100
    frames = conn.respond(
        AgentResponse(
            prompts=(PromptSpec(text="long", audio=ulaw, barge_in=True),),
            output_events=(OutputEventSpec("end_of_input"),),
        ),
        NOW,
    )
    got = _audio_of(frames)
    assert [k for k, _, _ in got] == ["CHUNK"] * 5 + ["FINAL"]
    assert [n for _, n, _ in got] == [8000, 8000, 8000, 8000, 8100, 0]
    assert b"".join(d for _, _, d in got) == ulaw
    final = json.loads(frames[-1])["payload"]
    assert final["prompts"] == [{"text": "long", "is_barge_in_enabled": True}]
    assert final["output_events"] == [{"event_type": "END_OF_INPUT", "name": ""}]
    chunk = json.loads(frames[0])["payload"]
    assert chunk["prompts"][0]["is_barge_in_enabled"] is True


def test_streamed_chunks_are_coalesced_to_at_least_320_bytes() -> None:
    conn = started()
    piece = AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x01" * 160),))
    assert conn.respond(piece, NOW) == []  # 160 B is below the minimum: held
    out = conn.respond(piece, NOW)
    assert [(k, n) for k, n, _ in _audio_of(out)] == [("CHUNK", 320)]
    assert conn.respond(piece, NOW) == []
    final = conn.respond(AgentResponse(), NOW)  # the FINAL flushes, padded with silence
    got = _audio_of(final)
    assert [(k, n) for k, n, _ in got] == [("CHUNK", 320), ("FINAL", 0)]
    assert got[0][2] == b"\x01" * 160 + b"\xff" * 160


def test_big_streamed_chunks_are_split() -> None:
    conn = started(limits=WsLimits(reply_chunk_bytes=16_000))
    out = conn.respond(
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=bytes(40_000)),)), NOW
    )
    assert [n for _, n, _ in _audio_of(out)] == [16_000, 16_000, 8000]


def test_boundary_event_chunk_flushes_pending_audio_first() -> None:
    conn = started()
    conn.respond(
        AgentResponse(response_type="chunk", prompts=(PromptSpec(audio=b"\x02" * 100),)), NOW
    )
    out = conn.respond(
        AgentResponse(response_type="chunk", output_events=(OutputEventSpec("start_of_input"),)),
        NOW,
    )
    got = _audio_of(out)
    assert [(k, n) for k, n, _ in got] == [("CHUNK", 320), ("CHUNK", 0)]
    assert json.loads(out[1])["payload"]["output_events"][0]["event_type"] == "START_OF_INPUT"


@pytest.mark.parametrize(
    "size", [1, 319, 320, 8000, 16_000, 31_999, 32_000, 32_001, 64_000, 100_003]
)
@pytest.mark.parametrize("chunk", [320, 8000, 16_000, 32_000])
def test_every_audio_piece_is_within_bounds(size: int, chunk: int) -> None:
    conn = started(limits=WsLimits(reply_chunk_bytes=chunk))
    data = bytes(i % 251 for i in range(size))
    got = _audio_of(conn.respond(AgentResponse(prompts=(PromptSpec(audio=data),)), NOW))
    pieces = [(n, d) for _, n, d in got if n]
    assert all(MIN_REPLY_CHUNK <= n <= MAX_REPLY_CHUNK for n, _ in pieces)
    joined = b"".join(d for _, d in pieces)
    assert joined[:size] == data
    assert set(joined[size:]) <= {0xFF}


def test_undecodable_wav_raises() -> None:
    conn = started()
    with pytest.raises(audio.WavFormatError):
        conn.respond(AgentResponse(prompts=(PromptSpec(audio=b"RIFF\x00\x00garbage"),)), NOW)


def test_limits_are_validated() -> None:
    with pytest.raises(ValueError, match="reply_chunk_bytes"):
        WsLimits(reply_chunk_bytes=100)
    with pytest.raises(ValueError, match="reply_chunk_bytes"):
        WsLimits(reply_chunk_bytes=40_000)
    with pytest.raises(ValueError, match="max_message_bytes"):
        WsLimits(max_message_bytes=10)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kind", "code", "status", "close"),
    [
        ("invalid_argument", "bad_request", 400, CLOSE_PROTOCOL_ERROR),
        ("unauthenticated", "unauthorized", 401, CLOSE_POLICY_VIOLATION),
        ("permission_denied", "unauthorized", 403, CLOSE_POLICY_VIOLATION),
        ("not_found", "bad_request", 404, CLOSE_POLICY_VIOLATION),
        ("failed_precondition", "bad_request", 409, CLOSE_POLICY_VIOLATION),
        ("resource_exhausted", "rate_limit", 429, CLOSE_TRY_AGAIN_LATER),
        ("unavailable", "upstream_error", 503, CLOSE_GOING_AWAY),
        ("internal", "upstream_error", 500, CLOSE_INTERNAL_ERROR),
        ("anything_else", "upstream_error", 500, CLOSE_INTERNAL_ERROR),
    ],
)
def test_rejection_mapping(kind: str, code: str, status: int, close: int) -> None:
    err = rejection_error(kind, "why")
    assert (err.code, err.status, err.close_code, err.detail) == (code, status, close, "why")


def test_error_codes_are_only_the_spec_enum() -> None:
    with pytest.raises(ValueError, match="not an ERROR code"):
        WsProtocolError("not_found", "x")  # type: ignore[arg-type]


def test_detail_is_bounded_and_printable() -> None:
    text = bound_detail("a\x00b\r\nc\t" + "x" * 500)
    assert text.startswith("a b c x")
    assert len(text) == 200
    assert text.endswith("…")


def test_timestamps() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000Z"
    assert parse_ts("1970-01-01T00:00:01.5+00:00") == 1.5
    assert parse_ts("1970-01-01t01:00:00-01:00") == 7200
    assert parse_ts("1998-12-31T23:59:60Z") == parse_ts("1999-01-01T00:00:00Z")
    good = ["1970-01-01T00:00:01.5+00:00", "1970-01-01t01:00:00-01:00", "1998-12-31T23:59:60Z"]
    for text in good:
        check_ts(text)  # the per-message check accepts what parse_ts accepts
    bad = ["1970-01-01T00:00:00+24:00", "1970-02-30T00:00:00Z", "x" * 50, 5]
    bad += ["1970-01-01T24:00:00Z", "1970-01-01T00:60:00Z", "1970-01-01T00:00:61Z"]
    bad += ["1970-01-01T00:00:00+01:60", "1970-01-01 00:00:00", "2026-12-01T09:10:00"]
    for value in bad:
        with pytest.raises(ValueError):
            parse_ts(value)
        with pytest.raises(ValueError):
            check_ts(value)


# --------------------------------------------------------------------------- listVirtualAgents


@dataclass
class Agent:
    virtual_agent_id: str
    name: str = ""
    is_default: bool = False
    attributes: dict[str, str] = field(default_factory=dict)


def test_list_request_and_response() -> None:
    got = parse_list_request(
        json.dumps({"customer_org_id": ORG, "is_default_virtual_agent_enabled": None, "x": 1}),
        expected_org=ORG,
    )
    assert (got.customer_org_id, got.is_default_virtual_agent_enabled) == (ORG, False)
    body = json.loads(
        list_response(
            [Agent("a", "A"), Agent("b", "", True, {"description": "Bee"}), Agent("c", "C")]
        )
    )
    assert body == {
        "virtual_agents": [
            {"id": "b", "name": "b", "description": "Bee"},
            {"id": "a", "name": "A"},
            {"id": "c", "name": "C"},
        ]
    }
    assert json.loads(list_response([])) == {"virtual_agents": []}


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("{", 400),
        ("[]", 400),
        (json.dumps({}), 400),
        (json.dumps({"customer_org_id": 5}), 400),
        (json.dumps({"customer_org_id": ORG, "is_default_virtual_agent_enabled": "y"}), 400),
        (json.dumps({"customer_org_id": "11111111-2222-3333-4444-555555555555"}), 403),
        (json.dumps({"customer_org_id": "junk"}), 403),
        ("x" * 200_000, 413),
    ],
)
def test_list_request_rejections(text: str, status: int) -> None:
    with pytest.raises(WsProtocolError) as info:
        parse_list_request(text, expected_org=ORG)
    assert info.value.status == status
    body = json.loads(list_error(info.value))
    assert set(body) == {"code", "status", "detail"}
    assert body["status"] == status
