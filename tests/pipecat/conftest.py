"""Pipecat transport fixtures: a real media server whose calls each run a real pipecat pipeline.

The Webex side is a parameter (``webex``): every scenario runs once over gRPC (the server with
``transport="grpc"``, driven by :class:`~webex_byova.testing.WebexCaller`) and once over
WebSocket (``transport="websocket"``, driven by :class:`~webex_byova.testing.WebexWsCaller`).
Tests get the server from ``serve`` and the caller from ``place_call``, both on that transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from pipecat.frames.frames import (
    EndWorkerFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    LLMTextFrame,
    MetricsFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
)
from pipecat.pipeline.pipeline import Pipeline  # noqa: E402
from pipecat.pipeline.worker import PipelineParams, PipelineWorker  # noqa: E402
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor  # noqa: E402
from pipecat.workers.runner import WorkerRunner  # noqa: E402

from webex_byova.integrations.pipecat import (  # noqa: E402
    BYOVATransferFrame,
    BYOVATransport,
    BYOVATransportParams,
)
from webex_byova.media import BYOVAMediaServer, MediaServerConfig  # noqa: E402
from webex_byova.testing import WebexCaller, WebexWsCaller  # noqa: E402

FAST: dict[str, Any] = {
    "host": "127.0.0.1",
    "port": 0,
    "verify_tokens": False,
    "audio_mode": "chunk",
    "realtime_pacing": False,
    "half_close_timeout_s": 5.0,
    "ws_host": "127.0.0.1",
    "ws_port": 0,
    "ws_close_grace_s": 2.0,
}
WELCOME = "Welcome to the pipecat bot."
RATE = 16000  # the pipeline's audio rate in these tests


@dataclass
class Record:
    """What one call's pipeline saw (filled by :class:`ScriptedBot` and the handlers)."""

    frames: list[str] = field(default_factory=list)
    audio_in_bytes: int = 0
    keys: list[str] = field(default_factory=list)
    interruptions: int = 0
    metrics: int = 0
    connected: int = 0
    disconnected: int = 0
    pipecat_turns: list[str] = field(default_factory=list)
    finished: asyncio.Event = field(default_factory=asyncio.Event)


class ScriptedBot(FrameProcessor):
    """A zero-latency bot: answers each utterance with ``reply_ms`` of audio (as a TTS would:
    TTSStarted, audio, TTSStopped), keys with a spoken text (TTSSpeakFrame, no TTS service:
    a Webex text prompt), ``3`` with an LLM-style streamed text, ``0`` with a transfer, ``9``
    by ending the pipeline and ``7`` not at all.

    ``pieces``/``piece_delay`` cut the reply into slow pieces (a TTS still generating), spoken
    in a task an interruption cancels, as pipecat services do.
    """

    def __init__(
        self, record: Record, *, reply_ms: int = 400, pieces: int = 1, piece_delay: float = 0.0
    ) -> None:
        super().__init__()
        self.record = record
        self.reply_ms = reply_ms
        self.pieces = pieces
        self.piece_delay = piece_delay
        self._speaking: asyncio.Task[None] | None = None

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        record = self.record
        if isinstance(frame, InputAudioRawFrame):
            record.audio_in_bytes += len(frame.audio)
            assert frame.sample_rate == RATE
            return  # consumed
        if isinstance(frame, InterruptionFrame):
            record.interruptions += 1
            if self._speaking is not None:
                await self.cancel_task(self._speaking)
                self._speaking = None
        elif isinstance(frame, MetricsFrame):
            record.metrics += 1
        elif isinstance(frame, UserStartedSpeakingFrame | UserStoppedSpeakingFrame):
            record.frames.append(type(frame).__name__)
        await self.push_frame(frame, direction)
        if isinstance(frame, UserStoppedSpeakingFrame):
            self._speaking = self.create_task(self._speak())
        elif isinstance(frame, InputDTMFFrame):
            key = frame.button.value
            record.keys.append(key)
            if key == "0":
                await self.push_frame(BYOVATransferFrame(summary="caller pressed 0"))
            elif key == "9":
                await self.push_frame(TTSSpeakFrame("Goodbye."))
                await self.push_frame(EndWorkerFrame(), FrameDirection.UPSTREAM)
            elif key == "3":
                await self.push_frame(LLMFullResponseStartFrame())
                for token in ("Your ", "balance ", "is ", "zero."):
                    await self.push_frame(LLMTextFrame(token))
                await self.push_frame(LLMFullResponseEndFrame())
            elif key != "7":
                await self.push_frame(TTSSpeakFrame(f"You pressed {key}."))

    async def _speak(self) -> None:
        await self.push_frame(TTSStartedFrame())
        size = RATE * 2 * self.reply_ms // 1000 // self.pieces
        for _ in range(self.pieces):
            tone = (b"\x00\x10\x00\xf0" * (size // 4))[:size]
            await self.push_frame(TTSAudioRawFrame(audio=tone, sample_rate=RATE, num_channels=1))
            if self.piece_delay:
                await asyncio.sleep(self.piece_delay)
        await self.push_frame(TTSStoppedFrame())


@dataclass
class BotServer:
    server: BYOVAMediaServer
    records: list[Record]
    transports: list[BYOVATransport]


def pipecat_server(
    *,
    bot: Callable[[Record], FrameProcessor] = ScriptedBot,
    params: BYOVATransportParams | None = None,
    setup: Callable[[BYOVATransport, PipelineWorker], None] | None = None,
    **config: Any,
) -> BotServer:
    """A media server whose session_start handler runs one pipecat pipeline per call."""
    server = BYOVAMediaServer(MediaServerConfig(**{**FAST, **config}))
    records: list[Record] = []
    transports: list[BYOVATransport] = []

    @server.on("session_start")
    async def run_bot(event: Any) -> None:
        record = Record()
        records.append(record)
        transport = BYOVATransport(
            event,
            server=server,
            params=params or BYOVATransportParams(audio_in_sample_rate=RATE),
        )
        transports.append(transport)

        @transport.event_handler("on_client_connected")
        async def welcome(transport: BYOVATransport, session: Any) -> None:
            record.connected += 1
            await worker.queue_frames([TTSSpeakFrame(WELCOME)])

        @transport.event_handler("on_client_disconnected")
        async def gone(transport: BYOVATransport, session: Any) -> None:
            record.disconnected += 1

        @transport.event_handler("on_no_input")
        async def still_there(transport: BYOVATransport, event: Any) -> None:
            await worker.queue_frames([TTSSpeakFrame("Are you still there?")])

        pipeline = Pipeline([transport.input(), bot(record), transport.output()])
        worker = PipelineWorker(
            pipeline,
            params=PipelineParams(
                audio_in_sample_rate=RATE, audio_out_sample_rate=RATE, enable_metrics=True
            ),
            enable_rtvi=False,
            idle_timeout_secs=None,
        )
        turns = worker.turn_tracking_observer
        assert turns is not None

        @turns.event_handler("on_turn_started")
        async def turn_started(observer: Any, number: int) -> None:
            record.pipecat_turns.append(f"started {number}")

        @turns.event_handler("on_turn_ended")
        async def turn_ended(observer: Any, number: int, duration: float, cut: bool) -> None:
            record.pipecat_turns.append(f"ended {number}")

        if setup is not None:
            setup(transport, worker)
        runner = WorkerRunner(handle_sigint=False)
        await runner.add_workers(worker)
        try:
            await runner.run()
        finally:
            record.finished.set()

    return BotServer(server, records, transports)


Caller = WebexCaller | WebexWsCaller


@pytest.fixture(params=["grpc", "websocket"])
def webex(request: pytest.FixtureRequest) -> str:
    """The Webex-side transport of the call: ``"grpc"`` or ``"websocket"``."""
    return str(request.param)


@pytest.fixture
def serve(webex: str) -> Callable[..., BotServer]:
    """:func:`pipecat_server` listening on the transport under test only."""

    def factory(**kwargs: Any) -> BotServer:
        return pipecat_server(transport=webex, **kwargs)

    return factory


@pytest.fixture
async def place_call(webex: str) -> AsyncIterator[Callable[[BYOVAMediaServer], Caller]]:
    """Factory of Webex-side callers for a server, on the transport under test (closed after)."""
    callers: list[Caller] = []

    def factory(server: BYOVAMediaServer) -> Caller:
        caller: Caller
        if webex == "websocket":
            caller = WebexWsCaller(server.ws_url, realtime=False, turn_timeout=20.0)
        else:
            caller = WebexCaller(server.address, realtime=False, rpc_timeout=20.0)
        callers.append(caller)
        return caller

    yield factory
    for caller in callers:
        await caller.aclose()
