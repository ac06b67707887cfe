"""The Webex-side WebSocket caller against a scripted partner over real loopback sockets."""

from __future__ import annotations

import asyncio
import base64
import json

import pytest

from webex_byova.cli._call import CallScript, run_call, run_load
from webex_byova.media import audio
from webex_byova.testing import WebexWsCaller, WsUpgradeRefused

from .conftest import REPLY_AUDIO, TOKEN, WELCOME_AUDIO, ScriptedPartner


def make(partner: ScriptedPartner, **kwargs: object) -> WebexWsCaller:
    kwargs.setdefault("token", TOKEN)
    kwargs.setdefault("realtime", False)
    kwargs.setdefault("turn_timeout", 10.0)
    return WebexWsCaller(partner.url, **kwargs)  # type: ignore[arg-type]


async def test_a_whole_call(partner: ScriptedPartner) -> None:
    async with make(partner, customer_org_id="org-1", virtual_agent_id="va") as caller:
        welcome = await caller.start_session()
        assert welcome.ok
        assert welcome.texts == ["Welcome"]
        assert welcome.audio == WELCOME_AUDIO
        assert welcome.final is not None
        assert welcome.final.input_mode == 3  # INPUT_VOICE_DTMF
        caller.realtime, caller.speed = True, 4.0  # paced, so END_OF_INPUT can stop the stream
        reply = await caller.say(ulaw=b"\x10" * 16000, leading_silence_ms=0, trailing_silence_ms=0)
        caller.realtime = False
        assert reply.ok
        assert reply.event_types == ["START_OF_INPUT", "END_OF_INPUT"]
        assert 10 <= reply.frames_sent < 100  # sending stopped at END_OF_INPUT
        assert reply.audio == REPLY_AUDIO
        kinds = [r.response_type for r in reply.responses]
        assert kinds == ["CHUNK"] * 7 + ["FINAL"]
        start = await caller.start_dtmf()
        assert start.ok
        assert start.responses == []
        pressed = await caller.send_dtmf("5#")
        assert pressed.texts == ["You pressed 5#"]
        custom = await caller.custom_event("lookup", {"account": "42"})
        assert custom.events == [("CUSTOM_EVENT", "lookup")]
        transfer = await caller.press("0")
        assert transfer.terminal
        assert transfer.has_event("TRANSFER_TO_AGENT")
        assert await caller.wait_closed(5.0) == 1000
    assert caller.violations == []
    sent = caller.sent
    assert [e["seq"] for e in sent] == list(range(1, len(sent) + 1))
    first = sent[0]["payload"]
    assert first["voice_va_input_type"]["event_input"]["event_type"] == "SESSION_START"
    assert first["customer_org_id"] == "org-1"
    assert first["virtual_agent_id"] == "va"
    audio = sent[1]["payload"]["voice_va_input_type"]["audio_input"]
    assert audio["encoding"] == "MULAW_FORMAT"
    assert audio["sample_rate_hertz"] == 8000
    assert base64.b64decode(audio["caller_audio_b64"]) == b"\x10" * 160
    assert [e["seq"] for e in caller.received] == list(range(1, len(caller.received) + 1))
    assert len(caller.history) == 7


async def test_end_session_closes_normally(partner: ScriptedPartner) -> None:
    caller = make(partner)
    await caller.start_session()
    end = await caller.end_session()
    assert end.ok
    assert end.close_code == 1000
    assert (
        caller.sent[-1]["payload"]["voice_va_input_type"]["event_input"]["event_type"]
        == "SESSION_END"
    )
    for _ in range(100):  # the partner's handler records its side of the close
        if partner.closes:
            break
        await asyncio.sleep(0.01)
    assert partner.closes == [1000]


async def test_ping_while_a_step_is_open_gets_its_pong(partner: ScriptedPartner) -> None:
    partner.reply_delay = 0.3
    async with make(partner) as caller:
        await caller.start_session()
        turn = asyncio.ensure_future(
            caller.say(ulaw=b"\x10" * 8000, leading_silence_ms=0, trailing_silence_ms=0)
        )
        while not any("END_OF_INPUT" in json.dumps(e) for e in caller.received):
            await asyncio.sleep(0.01)
        pong = await caller.ping()
        result = await turn
    ping = next(e for e in caller.sent if e["type"] == "PING")
    assert pong["seq"] == ping["seq"]
    assert pong["conversation_id"] == caller.conversation_id
    assert result.ok
    assert caller.violations == []


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_refused_upgrade_is_reported(partner: ScriptedPartner, token: str | None) -> None:
    caller = make(partner, token=token)
    with pytest.raises(WsUpgradeRefused) as info:
        await caller.start_session()
    assert info.value.status == 401
    assert not caller.connected


async def test_server_error_ends_the_step(partner: ScriptedPartner) -> None:
    async with make(partner) as caller:
        result = await caller.no_input()  # not SESSION_START: a protocol error
        assert not result.ok
        assert result.error is not None
        assert result.error["code"] == "bad_request"
        assert result.code.name == "INVALID_ARGUMENT"
        assert await caller.wait_closed(5.0) == 1002
        after = await caller.custom_event("x")
        assert after.code.name == "UNAVAILABLE"
    assert caller.violations == []


async def test_hostile_frames_are_answered_with_errors(partner: ScriptedPartner) -> None:
    async with make(partner) as caller:
        await caller.start_session()
        caller._step = None
        assert await caller.send_raw(b"\x00binary")
        assert await caller.wait_closed(5.0) == 1003
    err = caller.unsolicited[-1]
    assert (err["type"], err["code"], err["status"]) == ("ERROR", "unsupported_media", 415)


async def test_violations_are_detected() -> None:
    caller = WebexWsCaller("127.0.0.1:1", conversation_id="c")
    ts = "2026-12-01T00:00:00Z"
    wav = base64.b64encode(b"RIFF" + bytes(400)).decode()
    prompts = [
        {"audio_content_b64": wav},
        {"audio_content_b64": "!!"},
        {"audio_content_b64": "AA=="},
    ]
    timers = {"speech_timers": {"no_input_timeout_msec": 1}}
    payload = {"prompts": prompts, "input_handling_config": timers}
    messages = [
        {
            "type": "VOICE_VA_RESPONSE",
            "seq": 1,
            "ts": "x",
            "conversation_id": "d",
            "payload": payload,
        },
        {"type": "PONG", "seq": 9, "ts": ts, "conversation_id": "c"},
        {"type": "ERROR", "seq": 1, "ts": ts, "conversation_id": "c", "code": "no", "status": 1},
        {"type": "HELLO", "seq": 2, "ts": ts, "conversation_id": "c"},
    ]
    for message in messages:
        caller._on_text(json.dumps(message))
    caller._on_text("not json")
    caller._on_text("[1]")
    text = " | ".join(caller.violations)
    expected = [
        "ts 'x'",
        "conversation_id 'd'",
        "response_type None",
        "no_input_timeout_msec",
        "WAV header",
        "not Base64",
        "piece of 1 bytes",
        "echoes no PING",
        "seq 1 not above 1",
        "code/status",
        "'HELLO'",
        "non-JSON",
        "not a JSON object",
    ]
    for item in expected:
        assert item in text, item


def test_url_forms() -> None:
    assert WebexWsCaller("127.0.0.1:9").url == "ws://127.0.0.1:9/v1/va"
    assert WebexWsCaller("wss://byova.example.com").url == "wss://byova.example.com/v1/va"
    assert WebexWsCaller("ws://h:1/custom").url == "ws://h:1/custom"
    assert WebexWsCaller("ws://h:1/custom").origin == "ws://h:1"
    with pytest.raises(ValueError, match="ws://"):
        WebexWsCaller("http://h")
    with pytest.raises(ValueError, match="frame_ms"):
        WebexWsCaller("h:1", frame_ms=7)
    with pytest.raises(ValueError, match="DTMF"):
        asyncio.run(WebexWsCaller("h:1").send_dtmf("x"))


async def test_scripted_calls_and_load_run_over_websocket(partner: ScriptedPartner) -> None:
    wav = audio.make_wav(b"\x10" * 8000)
    script = CallScript(wav=wav, utterances=1, dtmf=("5",), trailing_silence_ms=0)
    report = await run_call(make(partner), script)
    assert report.ok, report.to_json()
    assert report.outcome == "caller_hung_up"
    assert [t.sent for t in report.turns] == [
        "SESSION_START",
        "caller speech",
        "START_OF_DTMF",
        "DTMF 5",
        "SESSION_END (hang up)",
    ]
    stats = await run_load(lambda i: make(partner), script, calls=5, rate=100.0)
    assert stats.to_json()["completed"] == 5
    assert stats.to_json()["failed"] == 0
