"""When a pipecat bot response is over (sans-IO): the rule that decides each turn's FINAL.

Webex needs exactly one FINAL per reply, after the reply's last audio; pipecat streams frames
with no "reply complete" marker of its own. :class:`ResponseTracker` is fed the frames that
reach the output transport, in order with the audio, and says when the bot's response ended:

* an LLM response (``LLMFullResponseStartFrame`` ... ``LLMFullResponseEndFrame``) is open
  until its end frame;
* a TTS segment (``TTSStartedFrame`` ... ``TTSStoppedFrame``) is open until its stop frame,
  which a TTS service sends after the segment's audio;
* the response is over when an LLM end or TTS stop frame leaves neither open (a streaming TTS
  may still be speaking when the LLM response ends; an HTTP TTS speaks inside it), or when a
  text or speak frame arrives while neither is open (a processor that answers with one
  ``TTSSpeakFrame``/``TextFrame``).

Text is collected and becomes one Webex text prompt only when the response had no audio:
with a TTS in the pipeline the audio already says it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BotResponse", "ResponseTracker"]


@dataclass(frozen=True, slots=True)
class BotResponse:
    """A finished response: ``text`` to send as a prompt (empty when audio carried it)."""

    text: str
    had_audio: bool


@dataclass(slots=True)
class ResponseTracker:
    """Counts open LLM responses and TTS segments; collects text; says when a response ended."""

    llm_open: int = 0
    tts_open: int = 0
    had_audio: bool = False
    _text: list[str] = field(default_factory=list)

    @property
    def active(self) -> bool:
        """Whether a response is under way (something open or collected)."""
        return bool(self.llm_open or self.tts_open or self.had_audio or self._text)

    def llm_started(self) -> None:
        self.llm_open += 1

    def llm_ended(self) -> bool:
        """An LLM response ended; True if the bot's response is over."""
        self.llm_open = max(0, self.llm_open - 1)
        return self._idle()

    def tts_started(self) -> None:
        self.tts_open += 1

    def tts_stopped(self) -> bool:
        """A TTS segment stopped (after its audio); True if the bot's response is over."""
        self.tts_open = max(0, self.tts_open - 1)
        return self._idle()

    def audio(self) -> None:
        self.had_audio = True

    def text(self, text: str) -> bool:
        """Text for the caller; True if it is a whole response by itself (nothing open)."""
        if text:
            self._text.append(text)
        return self._idle()

    def take(self) -> BotResponse:
        """The finished response; the tracker starts over."""
        text = "" if self.had_audio else "".join(self._text).strip()
        response = BotResponse(text=text, had_audio=self.had_audio)
        self.reset()
        return response

    def reset(self) -> None:
        """Forget the response (an interruption, or it was taken)."""
        self.llm_open = 0
        self.tts_open = 0
        self.had_audio = False
        self._text.clear()

    def _idle(self) -> bool:
        return self.llm_open == 0 and self.tts_open == 0
