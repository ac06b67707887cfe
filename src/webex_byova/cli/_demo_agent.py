"""The bundled demo virtual agent behind ``byova demo``.

A small IVR written with the public media-server API, worth reading as an example:

* call start: a welcome prompt that announces the menu;
* each caller utterance: answered by echoing the caller's words back ("you said …"), so the
  bot's audio proves the whole audio path (caller µ-law in, VAD, utterance, WAV out);
* DTMF ``0`` repeats the menu, ``5`` transfers to a human agent, ``9`` ends the call, other
  keys get a "not on the menu" prompt; no input re-prompts.

Prompts carry text (what Webex would speak) plus audio: a short chime, and for answers the
caller's own utterance, because a demo cannot ship a text-to-speech engine.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..media import audio as _audio

if TYPE_CHECKING:
    from ..media.events import DtmfInput, NoInput, SessionStart, Utterance
    from ..media.server import BYOVAMediaServer

__all__ = [
    "AGENT_ID",
    "AGENT_NAME",
    "AUDIO_NOTE",
    "GOODBYE_TEXT",
    "MENU_TEXT",
    "TRANSFER_TEXT",
    "WELCOME_TEXT",
    "answer_text",
    "chime",
    "install_demo_agent",
]

#: What the demo's prompt audio is, for the demo's output (the agent has no TTS engine).
AUDIO_NOTE = (
    "audio: the demo agent has no text-to-speech, so each prompt's audio is a short chime "
    "standing in for its text (Webex would speak the text); its answer to caller speech is a "
    "chime followed by the caller's own words echoed back."
)

AGENT_ID = "demo-agent"
AGENT_NAME = "webex_byova demo agent"
MENU_TEXT = (
    "Say something and I will repeat it. Press 0 for this menu, 5 for an agent, 9 to hang up."
)
WELCOME_TEXT = "Welcome to the webex_byova demo. " + MENU_TEXT
TRANSFER_TEXT = "Transferring you to an agent. Please hold."
GOODBYE_TEXT = "Thank you for calling. Goodbye."
UNKNOWN_KEY_TEXT = "Sorry, that key is not on the menu. " + MENU_TEXT
NO_INPUT_TEXT = "I did not hear anything. " + MENU_TEXT

_RATE = 8000


def chime(*freqs: float, note_ms: int = 120, gap_ms: int = 30, level: float = 0.3) -> bytes:
    """A short sequence of sine notes as raw 8 kHz µ-law (the demo's "voice")."""
    pcm = bytearray()
    amp = int(32767 * level)
    n = _RATE * note_ms // 1000
    fade = max(1, n // 10)
    for freq in freqs:
        for i in range(n):
            env = min(1.0, i / fade, (n - i) / fade)
            sample = int(amp * env * math.sin(2 * math.pi * freq * i / _RATE))
            pcm += sample.to_bytes(2, "little", signed=True)
        pcm += bytes(2 * (_RATE * gap_ms // 1000))
    return _audio.pcm16_to_ulaw(bytes(pcm))


WELCOME_CHIME = chime(523.25, 659.25, 783.99)
ANSWER_CHIME = chime(659.25, 783.99)
TRANSFER_CHIME = chime(783.99, 659.25, 523.25)
GOODBYE_CHIME = chime(783.99, 523.25)
ERROR_CHIME = chime(311.13, 311.13)


def answer_text(duration_ms: float) -> str:
    """The text of the answer to an utterance of ``duration_ms``."""
    return f"You spoke for {duration_ms / 1000:.1f} seconds. Here is what you said."


def install_demo_agent(server: BYOVAMediaServer) -> BYOVAMediaServer:
    """Register the demo agent's handlers on a ``BYOVAMediaServer`` and return it."""

    @server.on("session_start")
    def _welcome(event: SessionStart) -> None:
        assert event.turn is not None
        event.turn.say(WELCOME_TEXT, audio=WELCOME_CHIME, barge_in=False)

    @server.on("utterance")
    def _answer(event: Utterance) -> None:
        assert event.turn is not None
        echo = _audio.pcm16_to_ulaw(event.pcm16)
        if event.sample_rate != _RATE:
            echo = _audio.to_webex_ulaw(event.pcm16, sample_rate=event.sample_rate)
        event.turn.say(answer_text(event.duration_ms), audio=ANSWER_CHIME + echo, barge_in=False)

    @server.on("dtmf_input")
    def _menu(event: DtmfInput) -> None:
        assert event.turn is not None
        key = event.digits[:1]
        if key == "0":
            event.turn.say(MENU_TEXT, audio=WELCOME_CHIME)
        elif key == "5":
            event.turn.transfer_to_agent(TRANSFER_TEXT, audio=TRANSFER_CHIME)
        elif key == "9":
            event.turn.end_session(GOODBYE_TEXT, audio=GOODBYE_CHIME)
        else:
            event.turn.say(UNKNOWN_KEY_TEXT, audio=ERROR_CHIME)

    @server.on("no_input")
    def _reprompt(event: NoInput) -> None:
        assert event.turn is not None
        event.turn.say(NO_INPUT_TEXT, audio=WELCOME_CHIME)

    return server
