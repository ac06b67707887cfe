"""A pipecat bot as a Webex Contact Center virtual agent (extra ``pipecat``).

    byova serve examples/pipecat_bot.py             # WEBEX_MEDIA_* configure the server
    byova simulate --target 127.0.0.1:50051 --dtmf 0 # in another shell: one call, then "0"

With ``OPENAI_API_KEY`` set, each call runs speech-to-text, an LLM and text-to-speech from
pipecat's services: OpenAI's by default, Deepgram's STT with ``DEEPGRAM_API_KEY`` and
Cartesia's TTS with ``CARTESIA_API_KEY`` (``pip install "pipecat-ai[deepgram,cartesia]"``).
The media server's end-pointer drives the turns (``turn_taking="server"``).

With no key it runs offline: pipecat's Silero VAD (its ONNX model ships in the pipecat wheel)
decides when the caller stopped speaking (``turn_taking="pipecat"``: END_OF_INPUT goes out
when Silero says so) and :class:`EchoBot` plays the caller's words back. In both modes a key
press is answered with a text prompt and ``0`` transfers the call to an agent.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from webex_byova.integrations.pipecat import (
    BYOVATransferFrame,
    BYOVATransport,
    BYOVATransportParams,
)
from webex_byova.media import BYOVAMediaServer, MediaServerConfig

from pipecat.frames.frames import (  # isort: skip  (pipecat after the integration: quiet import)
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    TTSAudioRawFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from loguru import logger
from pipecat.pipeline.pipeline import Pipeline
from pipecat.pipeline.worker import PipelineParams, PipelineWorker
from pipecat.processors.frame_processor import FrameDirection, FrameProcessor
from pipecat.workers.runner import WorkerRunner

logger.remove()  # pipecat logs through loguru, at DEBUG by default
logger.add(sys.stderr, level=os.environ.get("PIPECAT_LOG_LEVEL", "INFO"))

WELCOME = "Welcome! Say something, or press 0 for an agent."
RATE = 16000  # the pipeline's audio rate; the transport converts from and to Webex's µ-law
MAX_ECHO_S = 5

# CHUNK mode, unpaced (Webex buffers and paces playback); WEBEX_MEDIA_* variables still win.
defaults = {"WEBEX_MEDIA_AUDIO_MODE": "chunk", "WEBEX_MEDIA_REALTIME_PACING": "false"}
server = BYOVAMediaServer(MediaServerConfig.from_env({**defaults, **os.environ}))
OFFLINE = not os.environ.get("OPENAI_API_KEY")


class Keypad(FrameProcessor):
    """``0`` transfers the call (with a summary for the agent); other keys get a text prompt."""

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        await self.push_frame(frame, direction)
        if isinstance(frame, InputDTMFFrame):
            key = frame.button.value
            if key == "0":
                await self.push_frame(BYOVATransferFrame(summary="The caller asked for an agent."))
            else:
                await self.push_frame(TTSSpeakFrame(f"You pressed {key}."))


class EchoBot(FrameProcessor):
    """Offline bot: Silero's VAD frames decide the user turn; the answer echoes the caller.

    It turns ``VADUserStarted/StoppedSpeakingFrame`` into the user-turn frames (interrupting
    the bot when the caller starts), then plays what the caller said, as a TTS would.
    """

    def __init__(self) -> None:
        super().__init__()
        self._speech = bytearray()
        self._listening = False

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if isinstance(frame, InputAudioRawFrame):
            if self._listening and len(self._speech) < MAX_ECHO_S * 2 * frame.sample_rate:
                self._speech += frame.audio
            return
        await self.push_frame(frame, direction)
        if isinstance(frame, VADUserStartedSpeakingFrame):
            self._listening, self._speech = True, bytearray()
            await self.push_frame(UserStartedSpeakingFrame())
            await self.broadcast_interruption()
        elif isinstance(frame, VADUserStoppedSpeakingFrame) and self._listening:
            self._listening = False
            await self.push_frame(UserStoppedSpeakingFrame())  # the transport: END_OF_INPUT
            await self.push_frame(TTSStartedFrame())
            echo = TTSAudioRawFrame(audio=bytes(self._speech), sample_rate=RATE, num_channels=1)
            await self.push_frame(echo)
            await self.push_frame(TTSStoppedFrame())


def offline_bot(transport: BYOVATransport) -> list[FrameProcessor]:
    """Silero VAD, the keypad and the echo: no network, no key."""
    from pipecat.audio.vad.silero import SileroVADAnalyzer
    from pipecat.audio.vad.vad_analyzer import VADParams
    from pipecat.processors.audio.vad_processor import VADProcessor

    # 0.6 s of silence ends the caller's turn (pipecat's default 0.2 s cuts between words).
    vad = VADProcessor(vad_analyzer=SileroVADAnalyzer(params=VADParams(stop_secs=0.6)))
    return [transport.input(), vad, Keypad(), EchoBot(), transport.output()]


def services() -> tuple[FrameProcessor, FrameProcessor, FrameProcessor]:
    """Speech-to-text, LLM and text-to-speech, chosen by the API keys set."""
    from pipecat.services.openai.llm import OpenAILLMService

    key = os.environ["OPENAI_API_KEY"]
    stt: FrameProcessor
    tts: FrameProcessor
    if os.environ.get("DEEPGRAM_API_KEY"):
        from pipecat.services.deepgram.stt import DeepgramSTTService

        stt = DeepgramSTTService(api_key=os.environ["DEEPGRAM_API_KEY"])
    else:
        from pipecat.services.openai.stt import OpenAISTTService

        stt = OpenAISTTService(api_key=key)
    if os.environ.get("CARTESIA_API_KEY"):
        from pipecat.services.cartesia.tts import CartesiaTTSService

        voice = os.environ.get("CARTESIA_VOICE_ID", "71a7ad14-091c-4e8e-a314-022ece01c121")
        tts = CartesiaTTSService(api_key=os.environ["CARTESIA_API_KEY"], voice_id=voice)
    else:
        from pipecat.services.openai.tts import OpenAITTSService

        tts = OpenAITTSService(api_key=key)
    model = os.environ.get("OPENAI_MODEL", "gpt-4o-mini")
    llm = OpenAILLMService(api_key=key, settings=OpenAILLMService.Settings(model=model))
    return stt, llm, tts


def service_bot(transport: BYOVATransport) -> list[FrameProcessor]:
    """The services with the LLM's context aggregators around them."""
    from pipecat.processors.aggregators.llm_context import LLMContext
    from pipecat.processors.aggregators.llm_response_universal import (
        LLMContextAggregatorPair,
        LLMUserAggregatorParams,
    )
    from pipecat.turns.user_turn_strategies import ExternalUserTurnStrategies

    stt, llm, tts = services()
    context = LLMContext(
        [{"role": "system", "content": "You are a contact-center voice agent. Be brief."}]
    )
    # The media server decides the user turns: the aggregator adopts them.
    user_params = LLMUserAggregatorParams(user_turn_strategies=ExternalUserTurnStrategies())
    pair = LLMContextAggregatorPair(context, user_params=user_params)
    return [
        transport.input(),
        stt,
        Keypad(),
        pair.user(),
        llm,
        tts,
        transport.output(),
        pair.assistant(),
    ]


@server.on("session_start")
async def run_bot(event: Any) -> None:
    """One pipecat pipeline per call; it ends when the call does."""
    turn_taking = "pipecat" if OFFLINE else "server"
    params = BYOVATransportParams(turn_taking=turn_taking)
    transport = BYOVATransport(event, server=server, params=params)
    pipeline = Pipeline(offline_bot(transport) if OFFLINE else service_bot(transport))
    worker = PipelineWorker(
        pipeline,
        params=PipelineParams(
            audio_in_sample_rate=RATE,
            audio_out_sample_rate=RATE,
            enable_metrics=True,  # pipecat's TTFB/processing metrics for every service
            enable_usage_metrics=True,
        ),
        enable_rtvi=False,
        idle_timeout_secs=None,  # the call's lifetime is Webex's to decide
    )

    @transport.event_handler("on_client_connected")
    async def welcome(transport: BYOVATransport, session: Any) -> None:
        await worker.queue_frames([TTSSpeakFrame(WELCOME)])

    @transport.event_handler("on_no_input")
    async def still_there(transport: BYOVATransport, no_input: Any) -> None:
        await worker.queue_frames([TTSSpeakFrame("Are you still there?")])

    runner = WorkerRunner(handle_sigint=False)
    await runner.add_workers(worker)
    await runner.run()


if __name__ == "__main__":
    asyncio.run(server.serve())
