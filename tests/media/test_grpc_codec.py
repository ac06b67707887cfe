"""The gRPC codec: protobuf <-> transport-neutral messages (pure functions)."""

from __future__ import annotations

from google.protobuf import struct_pb2, timestamp_pb2

from webex_byova.media._grpc_codec import caller_request, list_va_response, voice_va_response
from webex_byova.media._messages import AudioIn, DtmfIn, EventIn
from webex_byova.media._model import InputSettings
from webex_byova.media._proto import byova_common_pb2 as common
from webex_byova.media._proto import voicevirtualagent_pb2 as vva
from webex_byova.media._responses import boundary_response, final_response, output_event
from webex_byova.media.server import VirtualAgent


def test_requests_decode_every_input_kind() -> None:
    audio = caller_request(
        vva.VoiceVARequest(
            conversation_id="c",
            customer_org_id="o",
            virtual_agent_id="a",
            allow_partial_responses=True,
            additional_info={"k": "v"},
            audio_input=vva.VoiceInput(
                caller_audio=b"\xff" * 160,
                encoding=vva.VoiceInput.MULAW_FORMAT,
                sample_rate_hertz=8000,
                language_code="en-US",
                audio_timestamp=timestamp_pb2.Timestamp(seconds=10, nanos=500_000_000),
            ),
        )
    )
    assert (audio.conversation_id, audio.customer_org_id, audio.virtual_agent_id) == ("c", "o", "a")
    assert audio.allow_partial_responses
    assert dict(audio.additional_info) == {"k": "v"}
    assert audio.input == AudioIn(
        audio=b"\xff" * 160,
        encoding="mulaw",
        sample_rate_hz=8000,
        language_code="en-US",
        timestamp=10.5,
    )
    weird = caller_request(vva.VoiceVARequest(audio_input=vva.VoiceInput(encoding=9)))
    assert isinstance(weird.input, AudioIn)
    assert weird.input.encoding == "unspecified"
    assert weird.input.timestamp is None
    digits = caller_request(
        vva.VoiceVARequest(dtmf_input=common.DTMFInputs(dtmf_events=[5, 10, 0, 16]))
    )
    assert digits.input == DtmfIn(digits="50#")
    params = struct_pb2.Struct()
    params.update({"account": "A-1", "n": 2})
    event = caller_request(
        vva.VoiceVARequest(
            event_input=common.EventInput(
                event_type=common.EventInput.CUSTOM_EVENT, name="lookup", parameters=params
            )
        )
    )
    assert event.input == EventIn(
        type="custom_event", name="lookup", parameters={"account": "A-1", "n": 2.0}
    )
    unknown = caller_request(vva.VoiceVARequest(event_input=common.EventInput(event_type=42)))
    assert unknown.input == EventIn(type="unspecified")
    assert caller_request(vva.VoiceVARequest(conversation_id="c")).input is None


def test_gateway_boundary_shape_and_metadata_encode() -> None:
    settings = InputSettings(mode="voice")
    start = voice_va_response(boundary_response("start_of_input", response_type="final",
                                                settings=settings))  # fmt: skip
    assert start.response_type == vva.VoiceVAResponse.FINAL
    assert start.output_events[0].event_type == common.OutputEvent.START_OF_INPUT
    assert start.HasField("input_handling_config")
    assert start.input_mode == 0  # the gateway leaves input_mode unset on START_OF_INPUT
    end = voice_va_response(
        boundary_response(
            "end_of_input", response_type="final", name="end_of_input", settings=settings
        )  # fmt: skip
    )
    assert (end.output_events[0].name, end.input_mode) == ("end_of_input", vva.INPUT_VOICE)
    assert end.HasField("input_handling_config")
    nested = output_event("custom_event", "x", {"a": [1, {"b": (True, None)}]})
    msg = voice_va_response(final_response(events=[nested]))
    assert msg.output_events[0].metadata["a"][1]["b"][0] is True


def test_list_va_response_keeps_the_resolved_default() -> None:
    agents = [VirtualAgent("1", "One"), VirtualAgent("2", is_default=True, attributes={"x": "y"})]
    msg = list_va_response(agents)
    assert [
        (a.virtual_agent_id, a.virtual_agent_name, a.is_default) for a in msg.virtual_agents
    ] == [
        ("1", "One", False),
        ("2", "2", True),
    ]
    assert dict(msg.virtual_agents[1].attributes) == {"x": "y"}
    assert agents[0].to_proto(default=True).is_default
