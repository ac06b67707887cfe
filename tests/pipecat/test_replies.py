"""The sans-IO rule that says when a pipecat bot response is over (one FINAL per reply)."""

from __future__ import annotations

from webex_byova.integrations.pipecat import BotResponse, ResponseTracker


def test_http_tts_inside_an_llm_response_ends_with_the_llm() -> None:
    tracker = ResponseTracker()
    tracker.llm_started()
    tracker.text("Hello")
    tracker.tts_started()
    tracker.audio()
    assert not tracker.tts_stopped()  # the LLM response is still open
    assert tracker.llm_ended()
    assert tracker.take() == BotResponse(text="", had_audio=True)  # the audio said it


def test_streaming_tts_outlives_the_llm_response() -> None:
    tracker = ResponseTracker()
    tracker.llm_started()
    tracker.tts_started()
    assert not tracker.llm_ended()  # audio still coming
    tracker.audio()
    assert tracker.tts_stopped()


def test_text_only_responses() -> None:
    tracker = ResponseTracker()
    tracker.llm_started()
    assert not tracker.text("Your ")
    assert not tracker.text("balance.")
    assert tracker.llm_ended()
    assert tracker.take() == BotResponse(text="Your balance.", had_audio=False)
    assert tracker.text("A whole answer.")  # a speak frame with nothing open
    assert tracker.take().text == "A whole answer."
    assert not tracker.active


def test_reset_forgets_an_interrupted_response() -> None:
    tracker = ResponseTracker()
    tracker.llm_started()
    tracker.tts_started()
    tracker.audio()
    assert tracker.active
    tracker.reset()
    assert not tracker.active
    assert tracker.tts_stopped()  # a late stop cannot go negative
    assert tracker.llm_open == 0
