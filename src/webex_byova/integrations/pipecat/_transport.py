"""A pipecat transport bound to one BYOVA conversation, built on the media server's public API.

Caller side (router handlers registered once per server -> :class:`BYOVAInputTransport`):
caller audio (``audio_input``) as ``InputAudioRawFrame`` at the pipeline's rate, DTMF keys as
``InputDTMFFrame``, speech boundaries as ``UserStartedSpeakingFrame`` /
``UserStoppedSpeakingFrame`` (``turn_taking="server"``), no-input and custom events as
transport events, the hang-up as ``on_client_disconnected`` plus a cancelled pipeline.

Bot side (:class:`BYOVAOutputTransport` -> :class:`_CallLink`): audio goes unpaced into
``turn.stream()`` of the turn awaiting the bot's reply; when :class:`ResponseTracker` says the
response is over the turn gets its FINAL (``turn.finish()``); text with no audio becomes a
prompt; an interruption cancels our own output; ``EndFrame`` ends the session;
:class:`BYOVATransferFrame` transfers the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from pipecat.audio.dtmf.types import KeypadEntry
from pipecat.frames.frames import (
    CancelFrame,
    CancelWorkerFrame,
    ClientConnectedFrame,
    EndFrame,
    Frame,
    InputAudioRawFrame,
    InputDTMFFrame,
    InterruptionFrame,
    LLMFullResponseEndFrame,
    LLMFullResponseStartFrame,
    StartFrame,
    TextFrame,
    TranscriptionFrame,
    TTSSpeakFrame,
    TTSStartedFrame,
    TTSStoppedFrame,
    TTSTextFrame,
    UserStartedSpeakingFrame,
    UserStoppedSpeakingFrame,
    VADUserStartedSpeakingFrame,
    VADUserStoppedSpeakingFrame,
)
from pipecat.processors.frame_processor import FrameDirection
from pipecat.transports.base_input import BaseInputTransport
from pipecat.transports.base_output import BaseOutputTransport
from pipecat.transports.base_transport import BaseTransport, TransportParams
from pydantic import Field

from ..._logging import get_logger
from ...media import audio as _audio
from ...media.events import (
    AudioInput,
    CustomEvent,
    DtmfInput,
    MediaEvent,
    NoInput,
    SessionEnd,
    StartOfDtmf,
    StartOfInput,
    Utterance,
)
from ...media.server import BYOVAMediaServer
from ...media.session import Session, Turn
from ._frames import BYOVATransferFrame
from ._replies import ResponseTracker

__all__ = [
    "BYOVAInputTransport",
    "BYOVAOutputTransport",
    "BYOVATransport",
    "BYOVATransportParams",
]

_log = get_logger("webex_byova.integrations.pipecat")

#: Transport events a bot may register with ``@transport.event_handler(name)``.
TRANSPORT_EVENTS = (
    "on_client_connected",
    "on_client_disconnected",
    "on_no_input",
    "on_custom_event",
)


class BYOVATransportParams(TransportParams):
    """Transport settings: pipecat's :class:`TransportParams` plus the BYOVA ones.

    Audio in and out are on; ``audio_in_sample_rate`` / ``audio_out_sample_rate`` default to
    the pipeline's rates (caller audio is resampled to the first, bot audio from the second to
    the server's ``sample_rate`` as µ-law). No trailing silence is sent on an ``EndFrame``.

    Parameters:
        turn_taking: ``"server"`` (default): the media server's end-pointer decides when the
            caller speaks (it already answers START_OF_INPUT/END_OF_INPUT on the wire) and the
            transport pushes ``UserStartedSpeakingFrame`` / ``UserStoppedSpeakingFrame``; use
            pipecat's ``ExternalUserTurnStrategies`` in the user aggregator. ``"pipecat"``: the
            pipeline's own VAD / turn analyzer decides; its ``UserStoppedSpeakingFrame`` ends
            the caller's input on the wire (``turn.end_input()``: END_OF_INPUT), with the
            server's ``complete_timeout_ms`` as the upper bound.
        interruptions: ``turn_taking="server"``: caller speech or a key press interrupts the
            bot (an ``InterruptionFrame`` is broadcast).
        barge_in: Prompts and streams are barge-in enabled (Webex stops playback when the
            caller speaks; the server cuts a stream still being sent).
        reply_timeout_s: A turn the bot has not answered this long after its input gets its
            FINAL anyway (with whatever was said); kept under the server's
            ``handler_timeout_s``.
    """

    audio_in_enabled: bool = True
    audio_out_enabled: bool = True
    audio_out_end_silence_secs: int = 0
    turn_taking: Literal["server", "pipecat"] = "server"
    interruptions: bool = True
    barge_in: bool = True
    reply_timeout_s: float = Field(10.0, gt=0)


@dataclass(eq=False, slots=True)
class _Reply:
    """A turn waiting for the bot's answer."""

    turn: Turn
    done: asyncio.Future[bool]
    timer: asyncio.TimerHandle | None = None


@dataclass(eq=False, slots=True)
class _Stream:
    """Bot audio flowing into one ``turn.stream()`` (raw µ-law at the server's rate)."""

    turn: Turn
    resampler: _audio.Resampler
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    closed: bool = False

    async def source(self) -> AsyncIterator[bytes]:
        while not self.cancelled:
            piece = await self.queue.get()
            if piece is None or self.cancelled:
                return
            yield piece


class _CallLink:
    """What the transport knows about the call: the turns awaiting replies and the bot audio."""

    def __init__(self, session: Session, params: BYOVATransportParams, server: BYOVAMediaServer):
        self.session = session
        self.params = params
        config = server.config
        self.webex_rate = config.sample_rate
        limit = config.handler_timeout_s
        timeout = params.reply_timeout_s
        # Never let the server's handler timeout fire first: it would cancel the handler that
        # runs the pipeline (session_start) or answer with the error prompt.
        self.reply_timeout = min(timeout, max(0.1, limit * 0.75)) if limit else timeout
        self.tracker = ResponseTracker()
        self.pending: list[_Reply] = []
        self.stream: _Stream | None = None
        self.ended = False  # the call is over
        self.pipeline_ending = False  # an EndFrame/CancelFrame reached the output
        self.end_requested: BYOVATransferFrame | Literal["end"] | None = None
        # InterruptionFrames we broadcast ourselves (caller input, turn_taking="server"): they
        # were handled when sent, and must not cut a reply that started since.
        self.own_interruptions = 0

    # ------------------------------------------------------------------ turns awaiting replies

    def expect_reply(self, turn: Turn) -> asyncio.Future[bool]:
        """``turn`` waits for the bot; the returned future is done once it got its FINAL."""
        for waiting in self.pending:
            if waiting.turn is turn:
                return waiting.done
        loop = asyncio.get_running_loop()
        reply = _Reply(turn, loop.create_future())
        if self.ended or turn.closed or turn.finished:
            reply.done.set_result(False)
            return reply.done
        reply.timer = loop.call_later(self.reply_timeout, self._timed_out, reply)
        self.pending.append(reply)
        self.retry_terminal()
        return reply.done

    def _timed_out(self, reply: _Reply) -> None:
        reply.timer = None
        if reply in self.pending:
            reply.turn.log.info(
                "pipecat bot gave no complete reply within %.1fs; sending the FINAL",
                self.reply_timeout,
            )
            if self.stream is not None and self.stream.turn is reply.turn:
                self._close_stream()
            self._answer(reply)

    def _answer(self, reply: _Reply) -> None:
        """Send ``reply``'s FINAL (after its queued audio) and forget it."""
        with contextlib.suppress(ValueError):
            self.pending.remove(reply)
        if reply.timer is not None:
            reply.timer.cancel()
            reply.timer = None
        if reply.turn.finished or reply.turn.closed:
            if not reply.done.done():
                reply.done.set_result(False)
            return
        sent = reply.turn.finish()
        sent.add_done_callback(lambda f: _resolve(reply.done, f))

    def answer_now(self, turn: Turn) -> None:
        """Nothing in the pipeline answers this input: send ``turn``'s FINAL at once."""
        for reply in list(self.pending):
            if reply.turn is turn:
                self._answer(reply)

    def _live_pending(self) -> _Reply | None:
        while self.pending:
            reply = self.pending[0]
            if not reply.turn.finished and not reply.turn.closed:
                return reply
            self.pending.pop(0)
            if reply.timer is not None:
                reply.timer.cancel()
            if not reply.done.done():
                reply.done.set_result(reply.turn.finished)
        return None

    def target(self) -> Turn | None:
        """Where bot output goes: the oldest turn awaiting a reply, else a listening audio turn."""
        reply = self._live_pending()
        if reply is not None:
            return reply.turn
        turn = self.session.current_turn
        if turn is not None and turn.kind == "audio":
            return turn
        return None

    # ------------------------------------------------------------------ bot output

    def audio(self, pcm: bytes, sample_rate: int) -> None:
        if self.ended:
            return
        if self.own_interruptions:
            # The reply the caller just cut, still generated until our InterruptionFrame reaches
            # the bot: not the next turn's answer.
            return
        turn = self.target()
        if turn is None:
            _log.debug("[%s] bot audio with no open turn dropped", self.session.conversation_id)
            return
        stream = self.stream
        if stream is None or stream.turn is not turn or stream.closed:
            self._close_stream()
            stream = _Stream(turn, _audio.Resampler(sample_rate, self.webex_rate))
            self.stream = stream
            turn.stream(stream.source(), barge_in=self.params.barge_in)
        self.tracker.audio()
        ulaw = _audio.pcm16_to_ulaw(stream.resampler.process(pcm))
        if ulaw:
            stream.queue.put_nowait(ulaw)

    def _close_stream(self, *, cancel: bool = False) -> None:
        stream, self.stream = self.stream, None
        if stream is None or stream.closed:
            return
        stream.closed = True
        if cancel:
            stream.cancelled = True
        else:
            tail = _audio.pcm16_to_ulaw(stream.resampler.flush())
            if tail:
                stream.queue.put_nowait(tail)
        stream.queue.put_nowait(None)

    def observe(self, frame: Frame) -> None:
        """A frame leaving the output transport downstream (in order with the bot audio)."""
        if isinstance(frame, InterruptionFrame):
            if self.own_interruptions:
                self.own_interruptions -= 1
            else:
                self.interrupted()
        elif isinstance(frame, LLMFullResponseStartFrame):
            self.tracker.llm_started()
        elif isinstance(frame, LLMFullResponseEndFrame):
            if self.tracker.llm_ended():
                self.response_over()
        elif isinstance(frame, TTSStartedFrame):
            self.tracker.tts_started()
        elif isinstance(frame, TTSStoppedFrame):
            if self.tracker.tts_stopped():
                self.response_over()
        elif _is_caller_text(frame):
            if self.tracker.text(getattr(frame, "text", "")):
                self.response_over()
        elif isinstance(frame, BYOVATransferFrame):
            self._terminal(frame)

    def response_over(self) -> None:
        """The bot's response ended: say its text, close its audio, send the turn's FINAL."""
        response = self.tracker.take()
        if self.ended:
            return
        turn = self.target()
        if turn is not None and response.text:
            turn.say(response.text, barge_in=self.params.barge_in)
        self._close_stream()
        reply = self._live_pending()
        if reply is not None and reply.turn is turn:
            self._answer(reply)

    def interrupted(self) -> None:
        """Caller input cut the bot: drop our unsent audio and answer the turns still waiting."""
        self.tracker.reset()
        self._close_stream(cancel=True)
        for reply in list(self.pending):
            self._answer(reply)

    def _terminal(self, what: BYOVATransferFrame | Literal["end"]) -> None:
        """Transfer or end the call on the turn that can answer (or the next one that opens)."""
        if self.ended:
            return
        response = self.tracker.take()
        turn = self.target()
        if turn is None:
            self.end_requested = what
            return
        self.end_requested = None
        self._close_stream()
        text = response.text or None
        if isinstance(what, BYOVATransferFrame):
            metadata = {"summary": what.summary, **what.metadata} if what.summary else None
            turn.transfer_to_agent(
                what.text if what.text is not None else text,
                name=what.event_name,
                metadata=metadata or what.metadata or None,
                transcript=what.transcript,
                summary=what.summary or None,
            )
        else:
            turn.end_session(text)
        for reply in list(self.pending):
            self._answer(reply)

    def retry_terminal(self) -> None:
        """A turn opened: send the transfer or end the bot asked for while none was open."""
        if self.end_requested is not None:
            self._terminal(self.end_requested)

    def pipeline_ended(self, *, cancelled: bool) -> None:
        """An EndFrame (after all queued audio) or a CancelFrame reached the output."""
        self.pipeline_ending = True
        if self.ended:
            return
        if cancelled:
            self.tracker.reset()
            self._close_stream(cancel=True)
        self._terminal("end")

    def call_ended(self) -> None:
        """The conversation is over (hang-up, transfer, end, expiry, server stop)."""
        self.ended = True
        self.tracker.reset()
        self._close_stream(cancel=True)
        for reply in self.pending:
            if reply.timer is not None:
                reply.timer.cancel()
            if not reply.done.done():
                reply.done.set_result(False)
        self.pending.clear()


def _is_caller_text(frame: Frame) -> bool:
    """Text for the caller: a speak frame, or text that is not a transcript of either side."""
    if isinstance(frame, TTSSpeakFrame):
        return True
    return isinstance(frame, TextFrame) and not isinstance(frame, TTSTextFrame | TranscriptionFrame)


def _resolve(target: asyncio.Future[bool], source: asyncio.Future[bool]) -> None:
    if not target.done():
        target.set_result(bool(source.result()) if not source.cancelled() else False)


class BYOVAInputTransport(BaseInputTransport):
    """Caller side of :class:`BYOVATransport`: pushes what Webex sends into the pipeline."""

    def __init__(self, transport: BYOVATransport, params: BYOVATransportParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._transport = transport
        self._resampler: _audio.Resampler | None = None
        self._running = False

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)
        self._running = True
        await self.push_frame(ClientConnectedFrame())
        await self._transport._call_event_handler("on_client_connected", self._transport.session)

    async def stop(self, frame: EndFrame) -> None:
        self._running = False
        await super().stop(frame)

    async def cancel(self, frame: CancelFrame) -> None:
        self._running = False
        await super().cancel(frame)

    @property
    def running(self) -> bool:
        """Whether the pipeline started and has not ended."""
        return self._running

    async def caller_audio(self, pcm16: bytes, sample_rate: int) -> None:
        """One caller frame (16-bit PCM at ``sample_rate``), resampled to the pipeline's rate."""
        if not self._running:
            return
        resampler = self._resampler
        if resampler is None or resampler.from_rate != sample_rate:
            resampler = self._resampler = _audio.Resampler(sample_rate, self.sample_rate)
        pcm = resampler.process(pcm16)
        if pcm:
            frame = InputAudioRawFrame(audio=pcm, sample_rate=self.sample_rate, num_channels=1)
            await self.push_audio_frame(frame)

    async def push_when_running(self, frame: Frame) -> None:
        if self._running:
            await self.push_frame(frame)

    async def interrupt(self) -> None:
        if self._running:
            await self.broadcast_interruption()  # type: ignore[no-untyped-call]

    async def end_pipeline(self, reason: str) -> None:
        """Ask the pipeline's worker to cancel (the caller is gone: nothing more to say)."""
        if self._running:
            await self.push_frame(CancelWorkerFrame(reason=reason), FrameDirection.UPSTREAM)


class BYOVAOutputTransport(BaseOutputTransport):
    """Bot side of :class:`BYOVATransport`: sends what the pipeline produces to Webex, unpaced."""

    def __init__(self, transport: BYOVATransport, params: BYOVATransportParams, **kwargs: Any):
        super().__init__(params, **kwargs)
        self._transport = transport

    async def start(self, frame: StartFrame) -> None:
        await super().start(frame)
        await self.set_transport_ready(frame)

    async def stop(self, frame: EndFrame) -> None:
        await super().stop(frame)  # waits until the audio queued before the EndFrame is written
        self._transport._link.pipeline_ended(cancelled=False)

    async def cancel(self, frame: CancelFrame) -> None:
        await super().cancel(frame)
        self._transport._link.pipeline_ended(cancelled=True)

    async def write_audio_frame(self, frame: Any) -> bool:
        """Hand the audio to Webex at once: no sleep (Webex buffers and paces playback)."""
        self._transport._link.audio(frame.audio, self.sample_rate)
        return True

    async def push_frame(
        self, frame: Frame, direction: FrameDirection = FrameDirection.DOWNSTREAM
    ) -> None:
        # Frames leave downstream in order with the audio written before them: the place to see
        # where a bot response ends.
        if direction == FrameDirection.DOWNSTREAM:
            self._transport._link.observe(frame)
        await super().push_frame(frame, direction)

    async def process_frame(self, frame: Frame, direction: FrameDirection) -> None:
        await super().process_frame(frame, direction)
        if (
            isinstance(frame, UserStoppedSpeakingFrame)
            and self._transport.params.turn_taking == "pipecat"
        ):
            self._transport._end_caller_input()


class BYOVATransport(BaseTransport):
    """A pipecat transport for one BYOVA conversation (gRPC or WebSocket alike).

    Create it in a ``session_start`` handler and run the pipeline in that handler::

        @server.on("session_start")
        async def bot(event):
            transport = BYOVATransport(event, server=server)
            worker = PipelineWorker(Pipeline([transport.input(), ..., transport.output()]))
            runner = WorkerRunner(handle_sigint=False)
            await runner.add_workers(worker)
            await runner.run()

    The handler keeps the welcome turn open until the bot's first response is over; the
    pipeline ends when the call does. Event handlers (``@transport.event_handler(name)``):
    ``on_client_connected(transport, session)`` when the pipeline started (queue the welcome),
    ``on_client_disconnected(transport, session)`` when the call is over,
    ``on_no_input(transport, event)`` and ``on_custom_event(transport, event)`` with the
    :class:`~webex_byova.media.NoInput` / :class:`~webex_byova.media.CustomEvent`; a turn with
    no such handler is answered at once.

    Args:
        event: The ``session_start`` event (its turn awaits the welcome).
        server: The media server the call arrived on.
        params: :class:`BYOVATransportParams`.
    """

    def __init__(
        self,
        event: MediaEvent,
        *,
        server: BYOVAMediaServer,
        params: BYOVATransportParams | None = None,
        input_name: str | None = None,
        output_name: str | None = None,
    ) -> None:
        super().__init__(input_name=input_name, output_name=output_name)
        self.params = params or BYOVATransportParams()
        self.session = event.session
        self._link = _CallLink(event.session, self.params, server)
        self._input = BYOVAInputTransport(self, self.params, name=input_name)
        self._output = BYOVAOutputTransport(self, self.params, name=output_name)
        for name in TRANSPORT_EVENTS:
            self._register_event_handler(name)
        if event.turn is not None:
            self._link.expect_reply(event.turn)
        _router(server).attach(self)

    def input(self) -> BYOVAInputTransport:
        """The processor that pushes the caller's audio, keys and speech boundaries."""
        return self._input

    def output(self) -> BYOVAOutputTransport:
        """The processor that sends the bot's audio, text, transfer and end to Webex."""
        return self._output

    def get_client_id(self, client: Any) -> str:
        """The conversation id (``client`` is the :class:`~webex_byova.media.Session`)."""
        return str(getattr(client, "conversation_id", ""))

    def _handles(self, event_name: str) -> bool:
        handler = self._event_handlers.get(event_name)
        return bool(handler is not None and handler.handlers)

    def _end_caller_input(self) -> None:
        """``turn_taking="pipecat"``: the pipeline decided the caller is done: END_OF_INPUT."""
        turn = self.session.current_turn
        if turn is not None and turn.kind == "audio" and not self._link.ended:
            turn.end_input()
            # The turn awaits the bot from now on, before its utterance event is even routed:
            # the bot's answer may be under way already.
            self._link.expect_reply(turn)

    # ------------------------------------------------------------------ caller events

    async def _caller_event(self, event: MediaEvent) -> None:
        """One event of this call from the media server (see ``_Router``)."""
        link, input_ = self._link, self._input
        server_turns = self.params.turn_taking == "server"
        if isinstance(event, AudioInput):
            if link.end_requested is not None:  # the bot ended the call between two turns
                link.retry_terminal()
            await input_.caller_audio(event.pcm16, event.sample_rate)
        elif isinstance(event, StartOfInput | StartOfDtmf):
            if not server_turns:
                return
            if isinstance(event, StartOfInput):
                # The server's end-pointer is the VAD: segmented STT services cut on VAD frames.
                await input_.push_when_running(VADUserStartedSpeakingFrame())
                await input_.push_when_running(UserStartedSpeakingFrame())
            if self.params.interruptions and input_.running:
                link.interrupted()
                link.own_interruptions += 1
                await input_.interrupt()
        elif isinstance(event, Utterance | DtmfInput | NoInput | CustomEvent):
            turn = event.turn
            if turn is None:
                return
            done = link.expect_reply(turn)
            if isinstance(event, Utterance):
                if server_turns:
                    await input_.push_when_running(VADUserStoppedSpeakingFrame())
                    await input_.push_when_running(UserStoppedSpeakingFrame())
            elif isinstance(event, DtmfInput):
                for key in event.digits:
                    try:
                        entry = KeypadEntry(key)
                    except ValueError:  # A-D have no pipecat keypad entry
                        turn.log.info("DTMF key %r has no pipecat KeypadEntry; skipped", key)
                        continue
                    await input_.push_when_running(InputDTMFFrame(button=entry))
            else:
                name = "on_no_input" if isinstance(event, NoInput) else "on_custom_event"
                if self._handles(name) and input_.running:
                    await self._call_event_handler(name, event)
                else:
                    link.answer_now(turn)
            if not input_.running:
                link.answer_now(turn)
            await done
        elif isinstance(event, SessionEnd):
            link.call_ended()
            await self._call_event_handler("on_client_disconnected", self.session)
            if not link.pipeline_ending:
                await input_.end_pipeline(f"BYOVA session ended: {event.reason}")


class _Router:
    """The media server handlers that route one server's call events to their transports."""

    _EVENTS = (
        "audio_input",
        "start_of_input",
        "start_of_dtmf",
        "utterance",
        "dtmf_input",
        "no_input",
        "custom_event",
        "session_end",
    )

    def __init__(self, server: BYOVAMediaServer) -> None:
        self._transports: dict[Session, BYOVATransport] = {}
        for name in self._EVENTS:
            server.on(name)(self._route)

    def attach(self, transport: BYOVATransport) -> None:
        if transport.session.ended:
            return
        self._transports[transport.session] = transport

    async def _route(self, event: MediaEvent) -> None:
        transport = self._transports.get(event.session)
        if transport is None:
            return
        if isinstance(event, SessionEnd):
            del self._transports[event.session]
        await transport._caller_event(event)


_ROUTERS: weakref.WeakKeyDictionary[BYOVAMediaServer, _Router] = weakref.WeakKeyDictionary()


def _router(server: BYOVAMediaServer) -> _Router:
    router = _ROUTERS.get(server)
    if router is None:
        router = _ROUTERS[server] = _Router(server)
    return router
