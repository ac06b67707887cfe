"""``byova demo``: one complete, verified BYOVA call, offline.

:func:`run_demo` starts the demo world (:mod:`._demo_env`), places one call with
:class:`~webex_byova.testing.WebexCaller`, writes the bot's audio to a WAV and checks the call
against :func:`expected_call` (pure). The rich rendering lives in ``_media_cmds``; here every
step is reported through plain callbacks.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..media import assets
from ..media import audio as _audio
from ..media.server import BYOVAMediaServer
from ..testing._caller import WebexCaller
from ..testing._ws_caller import WebexWsCaller
from ._call import CallReport, CallScript, TurnReport, run_call
from ._demo_agent import AGENT_ID, GOODBYE_TEXT, MENU_TEXT, TRANSFER_TEXT, WELCOME_TEXT
from ._demo_env import start_demo_environment

__all__ = ["Check", "DemoResult", "expected_call", "run_demo"]

Ending = Literal["transfer", "hangup"]
DEFAULT_OUTPUT = Path("demo-output") / "bot_audio.wav"
SPEECH_ASSET = "speech_hello.wav"


@dataclass(frozen=True)
class Check:
    """One expectation about the demo call."""

    name: str
    ok: bool
    detail: str = ""


@dataclass
class DemoResult:
    """Outcome of ``byova demo``."""

    report: CallReport
    checks: list[Check]
    output: Path | None
    target: str
    data_source_url: str
    setup_s: float
    timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """The call went as expected."""
        return all(c.ok for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "ok": self.ok,
            "target": self.target,
            "data_source_url": self.data_source_url,
            "setup_s": round(self.setup_s, 3),
            "output": str(self.output) if self.output else None,
            "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks],
            "call": self.report.to_json(),
        }


def demo_script(ending: Ending) -> CallScript:
    """Welcome, one spoken utterance, ``0`` (menu again), then ``5`` (agent) or ``9`` (bye)."""
    return CallScript(
        wav=assets.load(SPEECH_ASSET),
        utterances=1,
        dtmf=("0", "5" if ending == "transfer" else "9"),
        hang_up=True,
    )


def expected_call(report: CallReport, ending: Ending, *, texts: bool = True) -> list[Check]:
    """Check a demo call: welcome, answered utterance, menu on 0, transfer on 5 / bye on 9.

    ``texts=False`` for CHUNK mode, where prompts are streamed audio without text: the
    prompts are then recognised by their audio alone.
    """
    turns = report.turns

    def said(turn: TurnReport | None, text: str) -> bool:
        return turn is not None and turn.audio_ms > 0 and (not texts or text in turn.texts)

    checks = [Check("every RPC completed with OK", report.ok, report.error or "")]

    def first(kind: str, sent: str | None = None) -> TurnReport | None:
        for t in turns:
            if t.kind == kind and (sent is None or t.sent == sent):
                return t
        return None

    welcome = first("session_start")
    checks.append(
        Check(
            "welcome prompt on SESSION_START",
            said(welcome, WELCOME_TEXT),
            "" if welcome is None else f"{welcome.texts}",
        )
    )
    speech = first("audio")
    heard = speech is not None and speech.events[:2] == ["START_OF_INPUT", "END_OF_INPUT"]
    checks.append(
        Check(
            "speech detected (START_OF_INPUT, END_OF_INPUT)",
            heard,
            "" if speech is None else ", ".join(speech.events),
        )
    )
    answered = (
        speech is not None
        and (not texts or any(t.startswith("You spoke for") for t in speech.texts))
        and speech.audio_ms > 1000
    )
    checks.append(
        Check(
            "utterance answered (echo of the caller's words)",
            answered,
            "" if speech is None else f"{speech.texts} audio {speech.audio_ms:.0f} ms",
        )
    )
    menu = first("dtmf", "DTMF 0")
    checks.append(
        Check(
            "DTMF 0 repeats the menu",
            menu is not None and said(menu, MENU_TEXT) and not menu.terminal,
            "" if menu is None else f"{menu.texts}",
        )
    )
    if ending == "transfer":
        last = first("dtmf", "DTMF 5")
        checks.append(
            Check(
                "DTMF 5 transfers to an agent (TRANSFER_TO_AGENT)",
                last is not None
                and "TRANSFER_TO_AGENT" in last.events
                and said(last, TRANSFER_TEXT),
                "" if last is None else ", ".join(last.events),
            )
        )
        outcome = "transferred"
    else:
        last = first("dtmf", "DTMF 9")
        checks.append(
            Check(
                "DTMF 9 ends the call (SESSION_END)",
                last is not None and "SESSION_END" in last.events and said(last, GOODBYE_TEXT),
                "" if last is None else ", ".join(last.events),
            )
        )
        outcome = "ended_by_agent"
    checks.append(Check(f"call outcome is {outcome}", report.outcome == outcome, report.outcome))
    hung_up_after = [t for t in turns if t.kind == "session_end"]
    checks.append(
        Check(
            "no caller hang-up needed after the terminal response",
            not hung_up_after,
            f"{len(hung_up_after)} SESSION_END RPCs",
        )
    )
    return checks


def write_bot_audio(report: CallReport, output: Path) -> Path:
    """Write the call's prompt audio to ``output`` as a 16-bit PCM WAV (8 kHz mono).

    Webex gets 8 kHz µ-law; the file holds the same audio decoded to 16-bit PCM, which every
    player and Python's :mod:`wave` open (a µ-law WAV is format 7, which :mod:`wave` refuses).
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    pcm = _audio.ulaw_to_pcm16(report.bot_audio)
    output.write_bytes(_audio.make_wav(pcm, encoding=_audio.AudioEncoding.LINEAR16))
    return output


async def run_demo(
    *,
    output: Path | None = DEFAULT_OUTPUT,
    ending: Ending = "transfer",
    realtime: bool = True,
    audio_mode: Literal["wav", "chunk"] = "wav",
    transport: Literal["grpc", "websocket"] = "grpc",
    on_step: Callable[[str, str], None] | None = None,
    on_turn: Callable[[TurnReport], None] | None = None,
    on_send: Callable[[str, float], None] | None = None,
    on_server_event: Callable[[float, str], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> DemoResult:
    """Run the whole demo; return its result (``result.ok`` decides the exit code)."""
    t0 = clock()
    call_t0: list[float] = []

    def observe_server(server: BYOVAMediaServer) -> None:
        from ._demo_agent import install_demo_agent

        install_demo_agent(server)
        if on_server_event is None:
            return
        notify = on_server_event

        def since() -> float:
            return clock() - call_t0[0] if call_t0 else 0.0

        @server.on("start_of_input")
        def _soi(event: Any) -> None:
            notify(since(), f"server: caller started speaking ({event.offset_ms:.0f} ms in)")

        @server.on("utterance")
        def _utt(event: Any) -> None:
            notify(since(), f"server: utterance of {event.duration_ms:.0f} ms ({event.reason})")

        @server.on("session_end")
        def _end(event: Any) -> None:
            notify(since(), f"server: session ended ({event.reason})")

    env = await start_demo_environment(
        step=on_step,
        install=observe_server,
        audio_mode=audio_mode,
        realtime_pacing=realtime,
        transport=transport,
    )
    try:
        setup_s = clock() - t0
        kind = WebexWsCaller if transport == "websocket" else WebexCaller
        caller = kind(
            env.target,
            token=env.token,
            virtual_agent_id=AGENT_ID,
            customer_org_id=env.org_id,
            realtime=realtime,
        )
        async with caller:
            call_t0.append(clock())
            report = await run_call(
                caller,
                demo_script(ending),
                observe=on_turn,
                on_send=on_send,
                clock=clock,
                start_time=call_t0[0],  # one timeline for caller lines and server events
            )
    finally:
        await env.aclose()
    written = write_bot_audio(report, output) if output is not None else None
    return DemoResult(
        report=report,
        checks=expected_call(report, ending, texts=audio_mode == "wav"),
        output=written,
        target=env.target,
        data_source_url=env.data_source_url,
        setup_s=setup_s,
    )
