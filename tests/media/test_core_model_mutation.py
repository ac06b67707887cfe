"""Exact outcomes of the call core's plain data: _model, _messages, _responses, CallRejected.

Written for the mutation run of the call core (``scripts/mutation.py media_core``): every
assertion pins a whole value (a response, a message, a record) so a changed comparison,
default or bound shows, and nothing here starts a server.
"""

from __future__ import annotations

import pytest

from webex_byova.media._frontend import CallRejected
from webex_byova.media._messages import AgentResponse, OutputEventSpec, PromptSpec, TextSpec
from webex_byova.media._model import (
    DTMF_KEYS,
    INPUT_MODES,
    ConversationRecord,
    InputSettings,
    PlainState,
    check_dtmf_keys,
    check_input_mode,
    plain_data_problem,
)
from webex_byova.media._responses import (
    MAX_CHUNK,
    MIN_CHUNK,
    boundary_response,
    chunk_response,
    final_response,
    is_terminal,
    output_event,
)

#: A mutant that makes a turn hang fails in seconds instead of the run's 60 s per test
#: (each test takes milliseconds).
pytestmark = pytest.mark.timeout(5)


# ------------------------------------------------------------------------------------ _model


def test_dtmf_keys_are_upper_cased_and_checked_one_by_one() -> None:
    assert check_dtmf_keys("0123456789*#abcd") == "0123456789*#ABCD"
    assert check_dtmf_keys("") == ""
    assert DTMF_KEYS == "0123456789*#ABCD"
    with pytest.raises(ValueError) as caught:
        check_dtmf_keys("12e")
    assert str(caught.value) == "not a DTMF key: 'E' (expected one of 0-9 * # A-D)"


def test_input_modes_are_exactly_three() -> None:
    assert INPUT_MODES == ("voice", "dtmf", "voice_dtmf")
    for mode in INPUT_MODES:
        assert check_input_mode(mode) == mode
    with pytest.raises(ValueError) as caught:
        check_input_mode("VOICE")
    assert str(caught.value) == (
        "unknown input mode 'VOICE'; expected one of ['dtmf', 'voice', 'voice_dtmf']"
    )


def test_input_settings_defaults() -> None:
    s = InputSettings()
    assert (
        s.mode,
        s.dtmf_input_length,
        s.dtmf_inter_digit_timeout_ms,
        s.dtmf_terminator,
        s.complete_timeout_ms,
        s.incomplete_timeout_ms,
        s.max_speech_timeout_ms,
        s.no_input_timeout_ms,
        s.sensitive,
    ) == ("voice_dtmf", 1, 3000, "#", 800, 0, 30000, 5000, False)


def test_input_settings_validation_messages() -> None:
    with pytest.raises(ValueError, match="unknown input mode 'x'"):
        InputSettings(mode="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError) as caught:
        InputSettings(sensitive=1)  # type: ignore[arg-type]
    assert str(caught.value) == "sensitive must be a bool, got int"
    with pytest.raises(TypeError) as caught:
        InputSettings(dtmf_terminator=None)  # type: ignore[arg-type]
    assert str(caught.value) == "dtmf_terminator must be a str (one key or '')"
    with pytest.raises(ValueError, match="not a DTMF key: 'X'"):
        InputSettings(dtmf_terminator="x")
    assert InputSettings(dtmf_terminator="").dtmf_terminator == ""
    names = (
        "dtmf_input_length",
        "dtmf_inter_digit_timeout_ms",
        "complete_timeout_ms",
        "incomplete_timeout_ms",
        "max_speech_timeout_ms",
        "no_input_timeout_ms",
    )
    for name in names:
        assert getattr(InputSettings(**{name: 0}), name) == 0
        assert getattr(InputSettings(**{name: 2**31 - 1}), name) == 2**31 - 1
        for bad in (-1, 2**31, True, 1.0, "1"):
            with pytest.raises(ValueError) as caught:
                InputSettings(**{name: bad})
            assert str(caught.value) == f"{name} must be a non-negative int32, got {bad!r}"


def test_input_settings_updated_is_a_validated_copy() -> None:
    s = InputSettings()
    t = s.updated(mode="dtmf", dtmf_input_length=4)
    assert (t.mode, t.dtmf_input_length, s.mode) == ("dtmf", 4, "voice_dtmf")
    with pytest.raises(ValueError, match="non-negative int32"):
        s.updated(no_input_timeout_ms=-5)


def test_plain_data_problem_names_the_first_problem_exactly() -> None:
    for ok in ("s", 1, 1.5, True, None, [1, (2, "x")], {"a": {"b": [None]}}, (), {}):
        assert plain_data_problem(ok) is None
    assert plain_data_problem(object()) == "value is a object, not plain data"
    assert plain_data_problem([1, {2}], "v") == "v[1] is a set, not plain data"
    assert plain_data_problem((0, 0, b""), "t") == "t[2] is a bytes, not plain data"
    assert plain_data_problem({"k": [1, object()]}) == "value['k'][1] is a object, not plain data"
    assert plain_data_problem({1: "x"}) == "value has a key of type int (keys must be str)"
    assert plain_data_problem({"a": 1, "b": {3: 1}}, "s") == (
        "s['b'] has a key of type int (keys must be str)"
    )
    long_key = "k" * 50
    assert plain_data_problem({long_key: b""}) == (
        f"value[{'k' * 40!r}] is a bytes, not plain data"
    )
    deep: list[object] = []
    node = deep
    for _ in range(31):
        child: list[object] = []
        node.append(child)
        node = child
    assert plain_data_problem(deep) is None  # 32 levels: still plain
    node.append([1])
    assert plain_data_problem(deep) == ("value" + "[0]" * 32 + " is nested deeper than 32 levels")
    nested: dict[str, object] = {}
    node_d = nested
    for _ in range(31):
        node_d["k"] = {}
        node_d = node_d["k"]  # type: ignore[assignment]
    assert plain_data_problem(nested) is None  # 32 levels of dicts: still plain
    node_d["k"] = {"x": 1}
    assert plain_data_problem(nested) == (
        "value" + "['k']" * 32 + " is nested deeper than 32 levels"
    )
    assert plain_data_problem([[]], _depth=31) is not None
    assert plain_data_problem("deep scalar", _depth=99) is None


def test_plain_state_refuses_live_values_on_every_write() -> None:
    state = PlainState({"a": 1})
    state["b"] = [1, "x"]
    state.update({"c": None}, d=2)
    assert state.setdefault("e", {"x": 1}) == {"x": 1}
    assert state.setdefault("e", "ignored") == {"x": 1}
    assert state.setdefault("f") is None
    state |= {"g": 3}
    assert dict(state) == {
        "a": 1,
        "b": [1, "x"],
        "c": None,
        "d": 2,
        "e": {"x": 1},
        "f": None,
        "g": 3,
    }
    with pytest.raises(TypeError) as caught:
        state[1] = "x"  # type: ignore[index]
    assert str(caught.value) == "session.state keys must be str, got int"
    with pytest.raises(TypeError) as caught:
        state["lock"] = object()
    assert str(caught.value) == (
        "session.state holds plain data only (str, int, float, bool, None, lists and "
        "str-keyed dicts): state['lock'] is a object, not plain data"
    )
    with pytest.raises(TypeError) as caught:
        state["k" * 50] = {1}
    assert str(caught.value).endswith(f"state[{'k' * 40!r}] is a set, not plain data")
    with pytest.raises(TypeError, match=r"state\['u'\] is a set"):
        state.update(u={1})
    with pytest.raises(TypeError, match=r"state\['v'\]"):
        state.setdefault("v", b"")
    with pytest.raises(TypeError, match=r"state\['w'\]"):
        state |= {"w": object()}
    assert set(state) == {"a", "b", "c", "d", "e", "f", "g"}


def test_conversation_record_round_trip_is_detached() -> None:
    settings = InputSettings(mode="dtmf", dtmf_input_length=3, sensitive=True)
    record = ConversationRecord(
        conversation_id="c",
        virtual_agent_id="a",
        customer_org_id="o",
        created_at=1.0,
        last_active=2.0,
        started=True,
        turns=3,
        language_code="en-US",
        settings=settings,
        user_state={"n": [1, 2]},
        transcript={"text": "t", "ssml": None, "language_code": ""},
        summary={"text": None, "ssml": "<s/>", "language_code": "de"},
    )
    data = record.to_dict()
    assert data == {
        "conversation_id": "c",
        "virtual_agent_id": "a",
        "customer_org_id": "o",
        "created_at": 1.0,
        "last_active": 2.0,
        "started": True,
        "turns": 3,
        "language_code": "en-US",
        "settings": {
            "mode": "dtmf",
            "dtmf_input_length": 3,
            "dtmf_inter_digit_timeout_ms": 3000,
            "dtmf_terminator": "#",
            "complete_timeout_ms": 800,
            "incomplete_timeout_ms": 0,
            "max_speech_timeout_ms": 30000,
            "no_input_timeout_ms": 5000,
            "sensitive": True,
        },
        "user_state": {"n": [1, 2]},
        "transcript": {"text": "t", "ssml": None, "language_code": ""},
        "summary": {"text": None, "ssml": "<s/>", "language_code": "de"},
    }
    data["user_state"]["n"].append(3)
    data["transcript"]["text"] = "changed"
    assert record.user_state == {"n": [1, 2]}
    assert record.transcript == {"text": "t", "ssml": None, "language_code": ""}
    back = ConversationRecord.from_dict(record.to_dict())
    assert back == record
    source = record.to_dict()
    again = ConversationRecord.from_dict(source)
    source["user_state"]["n"].append(9)
    source["summary"]["ssml"] = "x"
    assert again.user_state == {"n": [1, 2]}
    assert again.summary == {"text": None, "ssml": "<s/>", "language_code": "de"}
    empty = ConversationRecord(conversation_id="c", virtual_agent_id="a")
    assert empty.to_dict()["user_state"] == {}
    assert empty.to_dict()["transcript"] is None
    assert empty.to_dict()["summary"] is None
    minimal = ConversationRecord.from_dict({"conversation_id": "c", "virtual_agent_id": "a"})
    assert minimal == empty
    assert minimal.transcript is None
    assert minimal.summary is None
    assert ConversationRecord.from_dict({**empty.to_dict(), "transcript": {}}).transcript is None


# --------------------------------------------------------------------------------- _messages


def test_text_spec_needs_exactly_one_of_text_or_ssml() -> None:
    assert TextSpec(text="t") == TextSpec(text="t", ssml=None, language_code="")
    assert TextSpec(ssml="<s/>", language_code="en").ssml == "<s/>"
    assert TextSpec(text="").text == ""
    for bad in ({}, {"text": "a", "ssml": "b"}):
        with pytest.raises(ValueError) as caught:
            TextSpec(**bad)  # type: ignore[arg-type]
        assert str(caught.value) == "TextSpec needs exactly one of text= or ssml="
    for name, kwargs in (
        ("text", {"text": 1}),
        ("ssml", {"ssml": b"x"}),
        ("language_code", {"text": "t", "language_code": 5}),
    ):
        with pytest.raises(TypeError) as caught:
            TextSpec(**kwargs)  # type: ignore[arg-type]
        got = type(next(iter(v for k, v in kwargs.items() if k == name))).__name__
        assert str(caught.value) == f"TextSpec {name} must be a str, got {got}"


def test_agent_response_defaults_and_terminal_rule() -> None:
    r = AgentResponse()
    assert (
        r.response_type,
        r.prompts,
        r.output_events,
        r.settings,
        r.input_sensitive,
        r.transcript,
        r.summary,
        r.omit_input_mode,
    ) == ("final", (), (), None, False, None, None, False)
    assert not r.is_terminal
    for kind, terminal in (
        ("session_end", True),
        ("transfer_to_agent", True),
        ("custom_event", False),
        ("no_match", False),
        ("end_of_input", False),
    ):
        first = AgentResponse(output_events=(OutputEventSpec(kind),))  # type: ignore[arg-type]
        assert first.is_terminal is terminal
        assert is_terminal(first) is terminal
    second = AgentResponse(
        output_events=(OutputEventSpec("custom_event"), OutputEventSpec("session_end"))
    )
    assert second.is_terminal is False  # only the first event counts
    assert PromptSpec() == PromptSpec(text="", audio=b"", audio_uri="", barge_in=False)
    assert OutputEventSpec("no_input") == OutputEventSpec("no_input", "", None)


# -------------------------------------------------------------------------------- _responses


def test_output_event_checks_kind_and_metadata() -> None:
    assert output_event("custom_event") == OutputEventSpec("custom_event", "", None)
    assert output_event("no_match", "n", {}) == OutputEventSpec("no_match", "n", None)
    meta = {"a": [1, 2.5, None, True, "s", {"b": (1,)}]}
    event = output_event("custom_event", "n", meta)
    assert event == OutputEventSpec("custom_event", "n", meta)
    assert event.metadata is not meta  # copied
    with pytest.raises(ValueError) as caught:
        output_event("goodbye")
    assert str(caught.value) == (
        "unknown output event 'goodbye'; expected one of ['custom_event', 'end_of_input', "
        "'no_input', 'no_match', 'session_end', 'start_of_input', 'transfer_to_agent']"
    )
    cases = [
        ({"x": float("nan")}, "metadata.x: metadata numbers must be finite, got nan"),
        ({"x": [1, float("inf")]}, "metadata.x[1]: metadata numbers must be finite, got inf"),
        ({"x": {2: 1}}, "metadata.x: metadata keys must be str, got 2"),
        ({"x": {"y": b"z"}}, "metadata.x.y: metadata value of type bytes is not JSON-like"),
        ({"x": ({1},)}, "metadata.x[0]: metadata value of type set is not JSON-like"),
    ]
    for metadata, message in cases:
        with pytest.raises(ValueError) as caught:
            output_event("custom_event", "n", metadata)
        assert str(caught.value) == message


def test_boundary_responses_have_the_exact_shapes() -> None:
    settings = InputSettings(mode="dtmf")
    start = OutputEventSpec("start_of_input", "", None)
    end = OutputEventSpec("end_of_input", "eoi", None)
    assert boundary_response("start_of_input") == AgentResponse(
        response_type="chunk", output_events=(start,)
    )
    assert boundary_response("end_of_input", response_type="partial", name="eoi") == (
        AgentResponse(response_type="partial", output_events=(end,))
    )
    assert boundary_response(
        "start_of_input", response_type="final", settings=settings
    ) == AgentResponse(
        response_type="final", output_events=(start,), settings=settings, omit_input_mode=True
    )
    assert boundary_response(
        "end_of_input", response_type="final", name="eoi", settings=settings
    ) == AgentResponse(response_type="final", output_events=(end,), settings=settings)


def test_chunk_response_bounds() -> None:
    assert (MIN_CHUNK, MAX_CHUNK) == (100, 65536)
    for size in (100, 65536):
        audio = b"\x7f" * size
        assert chunk_response(audio) == AgentResponse(
            response_type="chunk", prompts=(PromptSpec(audio=audio),)
        )
    for size in (99, 65537):
        with pytest.raises(ValueError) as caught:
            chunk_response(b"\x7f" * size)
        assert str(caught.value) == f"a CHUNK carries 100..65536 bytes, got {size}"


def test_final_response_drops_next_input_on_a_terminal_first_event() -> None:
    settings = InputSettings()
    prompt = PromptSpec(text="p")
    t, s = TextSpec(text="t"), TextSpec(ssml="<s/>")
    assert final_response() == AgentResponse()
    assert final_response(
        prompts=[prompt], settings=settings, sensitive=True, transcript=t, summary=s
    ) == AgentResponse(
        prompts=(prompt,), settings=settings, input_sensitive=True, transcript=t, summary=s
    )
    assert final_response(sensitive=True) == AgentResponse()  # no settings: no sensitive
    for kind in ("session_end", "transfer_to_agent"):
        events = [output_event(kind), output_event("custom_event")]
        assert final_response(events=events, settings=settings, sensitive=True) == (
            AgentResponse(output_events=tuple(events))
        )
    events = [output_event("custom_event"), output_event("session_end")]
    assert final_response(events=events, settings=settings, response_type="partial") == (
        AgentResponse(response_type="partial", output_events=tuple(events), settings=settings)
    )


# -------------------------------------------------------------------------------- _frontend


def test_call_rejected_detail_is_bounded_to_200_characters() -> None:
    exact = CallRejected("internal", "x" * 200)
    assert exact.detail == "x" * 200
    assert str(exact) == "x" * 200
    long = CallRejected("not_found", "y" * 201)
    assert long.detail == "y" * 199 + "…"
    assert str(long) == long.detail
    assert long.kind == "not_found"
    assert repr(CallRejected("unavailable", "down")) == "CallRejected('unavailable', 'down')"
