"""Pins every BYOVA message, field and enum value to the tables in wire-protocol.md §1."""

from __future__ import annotations

import pytest
from google.protobuf.descriptor import FieldDescriptor as FD

from webex_byova.media._proto import byova_common_pb2 as common
from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media._proto import voicevirtualagent_pb2_grpc as vva_grpc

PKG = "com.cisco.wcc.ccai.media.v1"
OPT, REP = "optional", "repeated"
STR, BOOL, I32, BYTES, ENUM, MSG = (
    FD.TYPE_STRING,
    FD.TYPE_BOOL,
    FD.TYPE_INT32,
    FD.TYPE_BYTES,
    FD.TYPE_ENUM,
    FD.TYPE_MESSAGE,
)

# message -> [(number, name, type, label, type name or None, oneof or None)]
MESSAGES: dict[str, list[tuple[int, str, int, str, str | None, str | None]]] = {
    "VoiceVARequest": [
        (1, "conversation_id", STR, OPT, None, None),
        (2, "customer_org_id", STR, OPT, None, None),
        (3, "virtual_agent_id", STR, OPT, None, None),
        (4, "allow_partial_responses", BOOL, OPT, None, None),
        (5, "vendor_specific_config", STR, OPT, None, None),
        (6, "audio_input", MSG, OPT, "VoiceInput", "voice_va_input_type"),
        (7, "dtmf_input", MSG, OPT, "DTMFInputs", "voice_va_input_type"),
        (8, "event_input", MSG, OPT, "EventInput", "voice_va_input_type"),
        (9, "additional_info", MSG, REP, "VoiceVARequest.AdditionalInfoEntry", None),
    ],
    "VoiceVARequest.AdditionalInfoEntry": [
        (1, "key", STR, OPT, None, None),
        (2, "value", STR, OPT, None, None),
    ],
    "VoiceInput": [
        (1, "caller_audio", BYTES, OPT, None, None),
        (2, "encoding", ENUM, OPT, "VoiceInput.VoiceEncoding", None),
        (3, "sample_rate_hertz", I32, OPT, None, None),
        (4, "audio_timestamp", MSG, OPT, "google.protobuf.Timestamp", None),
        (5, "language_code", STR, OPT, None, None),
        (6, "is_single_utterance", BOOL, OPT, None, None),
    ],
    "VoiceVAResponse": [
        (1, "prompts", MSG, REP, "Prompt", None),
        (2, "output_events", MSG, REP, "OutputEvent", None),
        (3, "input_sensitive", BOOL, OPT, None, None),
        (4, "input_mode", ENUM, OPT, "VoiceVAInputMode", None),
        (5, "input_handling_config", MSG, OPT, "InputHandlingConfig", None),
        (6, "session_transcript", MSG, OPT, "TextContent", None),
        (7, "session_summary", MSG, OPT, "TextContent", None),
        (8, "response_type", ENUM, OPT, "VoiceVAResponse.ResponseType", None),
    ],
    "Prompt": [
        (1, "text", STR, OPT, None, None),
        (2, "audio_uri", STR, OPT, None, None),
        (3, "audio_content", BYTES, OPT, None, None),
        (4, "is_barge_in_enabled", BOOL, OPT, None, None),
    ],
    "TextContent": [
        (1, "text", STR, OPT, None, "input_content"),
        (2, "ssml", STR, OPT, None, "input_content"),
        (3, "language_code", STR, OPT, None, None),
    ],
    "InputSpeechTimers": [
        (1, "max_speech_timeout_msec", I32, OPT, None, None),
        (2, "complete_timeout_msec", I32, OPT, None, None),
        (3, "incomplete_timeout_msec", I32, OPT, None, None),
        (4, "no_input_timeout_msec", I32, OPT, None, None),
    ],
    "InputHandlingConfig": [
        (1, "dtmf_config", MSG, OPT, "DTMFInputConfig", None),
        (2, "speech_timers", MSG, OPT, "InputSpeechTimers", None),
    ],
    "DTMFInputConfig": [
        (1, "inter_digit_timeout_msec", I32, OPT, None, None),
        (2, "termchar", ENUM, OPT, "DTMFDigits", None),
        (3, "dtmf_input_length", I32, OPT, None, None),
    ],
    "DTMFInputs": [(1, "dtmf_events", ENUM, REP, "DTMFDigits", None)],
    "ListVARequest": [
        (1, "customer_org_id", STR, OPT, None, None),
        (2, "is_default_virtual_agent_enabled", BOOL, OPT, None, None),
    ],
    "VirtualAgentInfo": [
        (1, "virtual_agent_id", STR, OPT, None, None),
        (2, "virtual_agent_name", STR, OPT, None, None),
        (3, "is_default", BOOL, OPT, None, None),
        (4, "attributes", MSG, REP, "VirtualAgentInfo.AttributesEntry", None),
    ],
    "VirtualAgentInfo.AttributesEntry": [
        (1, "key", STR, OPT, None, None),
        (2, "value", STR, OPT, None, None),
    ],
    "ListVAResponse": [(1, "virtual_agents", MSG, REP, "VirtualAgentInfo", None)],
    "OutputEvent": [
        (1, "event_type", ENUM, OPT, "OutputEvent.EventType", None),
        (2, "name", STR, OPT, None, None),
        (3, "metadata", MSG, OPT, "google.protobuf.Struct", None),
    ],
    "EventInput": [
        (1, "event_type", ENUM, OPT, "EventInput.EventType", None),
        (2, "name", STR, OPT, None, None),
        (3, "parameters", MSG, OPT, "google.protobuf.Struct", None),
    ],
}

ENUMS: dict[str, list[tuple[str, int]]] = {
    "VoiceVAInputMode": [
        ("INPUT_VOICE_MODE_UNSPECIFIED", 0),
        ("INPUT_VOICE", 1),
        ("INPUT_EVENT_DTMF", 2),
        ("INPUT_VOICE_DTMF", 3),
    ],
    "VoiceInput.VoiceEncoding": [
        ("UNSPECIFIED_FORMAT", 0),
        ("LINEAR16_FORMAT", 1),
        ("MULAW_FORMAT", 2),
        ("ALAW_FORMAT", 3),
    ],
    "VoiceVAResponse.ResponseType": [("FINAL", 0), ("PARTIAL", 1), ("CHUNK", 2)],
    "DTMFDigits": [
        ("DTMF_EVENT_UNSPECIFIED", 0),
        *[
            (f"DTMF_DIGIT_{n}", i)
            for i, n in enumerate(
                ["ONE", "TWO", "THREE", "FOUR", "FIVE", "SIX", "SEVEN", "EIGHT", "NINE"], 1
            )
        ],
        ("DTMF_DIGIT_ZERO", 10),
        ("DTMF_DIGIT_A", 11),
        ("DTMF_DIGIT_B", 12),
        ("DTMF_DIGIT_C", 13),
        ("DTMF_DIGIT_D", 14),
        ("DTMF_DIGIT_STAR", 15),
        ("DTMF_DIGIT_POUND", 16),
    ],
    "OutputEvent.EventType": [
        ("UNSPECIFIED_EVENT", 0),
        ("SESSION_END", 1),
        ("TRANSFER_TO_AGENT", 2),
        ("CUSTOM_EVENT", 3),
        ("START_OF_INPUT", 4),
        ("END_OF_INPUT", 5),
        ("NO_MATCH", 6),
        ("NO_INPUT", 7),
    ],
    "EventInput.EventType": [
        ("UNSPECIFIED_INPUT", 0),
        ("SESSION_START", 1),
        ("SESSION_END", 2),
        ("NO_INPUT", 3),
        ("START_OF_DTMF", 4),
        ("CUSTOM_EVENT", 5),
    ],
}

COMMON_ORDER = [
    "TextContent",
    "InputSpeechTimers",
    "InputHandlingConfig",
    "DTMFInputConfig",
    "DTMFInputs",
    "ListVARequest",
    "VirtualAgentInfo",
    "ListVAResponse",
    "OutputEvent",
    "EventInput",
]
VVA_ORDER = ["VoiceVARequest", "VoiceInput", "VoiceVAResponse", "Prompt"]


def _pool_message(name: str):  # type: ignore[no-untyped-def]
    return vva.DESCRIPTOR.pool.FindMessageTypeByName(f"{PKG}.{name}")


def _label(field: FD) -> str:
    # ``is_repeated`` is protobuf 6+; ``label`` is deprecated there but is all 5.x has.
    repeated = getattr(field, "is_repeated", None)
    if repeated is None:  # pragma: no cover - protobuf 5 only
        repeated = field.label == FD.LABEL_REPEATED
    return "repeated" if repeated else "optional"


def _qualified(name: str) -> str:
    return name if name.startswith("google.") else f"{PKG}.{name}"


@pytest.mark.parametrize("message", sorted(MESSAGES))
def test_message_fields_match_spec(message: str) -> None:
    desc = _pool_message(message)
    actual = []
    for f in sorted(desc.fields, key=lambda f: f.number):
        type_name = None
        if f.type == MSG:
            type_name = f.message_type.full_name
        elif f.type == ENUM:
            type_name = f.enum_type.full_name
        oneof = f.containing_oneof.name if f.containing_oneof else None
        actual.append((f.number, f.name, f.type, _label(f), type_name, oneof))
    expected = [
        (n, name, t, lab, _qualified(tn) if tn else None, oneof)
        for n, name, t, lab, tn, oneof in MESSAGES[message]
    ]
    assert actual == expected


@pytest.mark.parametrize("enum", sorted(ENUMS))
def test_enum_values_match_spec(enum: str) -> None:
    desc = vva.DESCRIPTOR.pool.FindEnumTypeByName(f"{PKG}.{enum}")
    assert [(v.name, v.number) for v in desc.values] == ENUMS[enum]


def test_files_packages_order_and_no_options() -> None:
    assert common.DESCRIPTOR.name == "byova_common.proto"
    assert vva.DESCRIPTOR.name == "voicevirtualagent.proto"
    for fd in (common.DESCRIPTOR, vva.DESCRIPTOR):
        assert fd.package == PKG
        assert fd.GetOptions().ListFields() == []
    assert list(common.DESCRIPTOR.message_types_by_name) == COMMON_ORDER
    assert list(vva.DESCRIPTOR.message_types_by_name) == VVA_ORDER
    assert [d.name for d in vva.DESCRIPTOR.dependencies] == [
        "byova_common.proto",
        "google/protobuf/timestamp.proto",
    ]
    # every message in the spec tables is defined, and nothing else
    defined = set(COMMON_ORDER) | set(VVA_ORDER)
    defined |= {"VoiceVARequest.AdditionalInfoEntry", "VirtualAgentInfo.AttributesEntry"}
    assert defined == set(MESSAGES)


def test_service_methods_and_paths() -> None:
    service = vva.DESCRIPTOR.services_by_name["VoiceVirtualAgent"]
    assert service.full_name == f"{PKG}.VoiceVirtualAgent"
    methods = [(m.name, m.input_type.full_name, m.output_type.full_name) for m in service.methods]
    assert methods == [
        ("ProcessCallerInput", f"{PKG}.VoiceVARequest", f"{PKG}.VoiceVAResponse"),
        ("ListVirtualAgents", f"{PKG}.ListVARequest", f"{PKG}.ListVAResponse"),
    ]
    assert hasattr(vva_grpc, "VoiceVirtualAgentStub")
    assert hasattr(vva_grpc, "add_VoiceVirtualAgentServicer_to_server")


def test_final_is_zero_so_absent_on_the_wire() -> None:
    resp = vva.VoiceVAResponse(response_type=vva.VoiceVAResponse.FINAL)
    assert resp.SerializeToString() == b""
    chunk = vva.VoiceVAResponse(response_type=vva.VoiceVAResponse.CHUNK)
    assert chunk.SerializeToString() == b"\x40\x02"  # field 8, varint 2


def test_dtmf_events_are_packed() -> None:
    msg = common.DTMFInputs(dtmf_events=[common.DTMF_DIGIT_FIVE, common.DTMF_DIGIT_ZERO])
    assert msg.SerializeToString() == b"\x0a\x02\x05\x0a"
