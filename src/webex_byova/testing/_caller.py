"""A Webex-side BYOVA client: plays Webex Contact Center against a media server.

:class:`WebexCaller` speaks the protocol the way WxCC does: one ``ProcessCallerInput`` RPC per
step of the call, all with the same ``conversation_id``. Audio turns stream 20 ms frames
(160 bytes of 8 kHz µ-law) paced in real time (or as fast as possible with
``realtime=False``), stop sending and half-close when ``END_OF_INPUT`` arrives, then read the
reply until the server completes the RPC. Every response is recorded with a timestamp.

Example::

    async with WebexCaller(server.address, token=jws) as caller:
        welcome = await caller.start_session()
        reply = await caller.say(wav=load("speech_hello.wav"))
        assert reply.has_event("END_OF_INPUT")
        transfer = await caller.press("0")
        await caller.end_session()
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import grpc
from google.protobuf import struct_pb2
from grpc import aio

from ..media import audio as _audio
from ..media._grpc_codec import enums_from_digits
from ..media._proto import byova_common_pb2 as common
from ..media._proto import voicevirtualagent_pb2 as vva
from ..media._proto import voicevirtualagent_pb2_grpc as vva_grpc

__all__ = ["CallerTurn", "RecordedResponse", "TurnResult", "WebexCaller"]

_OUT = common.OutputEvent.EventType
_RESP = vva.VoiceVAResponse.ResponseType
_EVENTS: dict[str, int] = {
    "SESSION_START": common.EventInput.SESSION_START,
    "SESSION_END": common.EventInput.SESSION_END,
    "NO_INPUT": common.EventInput.NO_INPUT,
    "START_OF_DTMF": common.EventInput.START_OF_DTMF,
    "CUSTOM_EVENT": common.EventInput.CUSTOM_EVENT,
}


def cut_frames(
    frame_ms: int,
    *,
    wav: bytes | None = None,
    ulaw: bytes | None = None,
    pcm16: bytes | None = None,
    sample_rate: int = 8000,
    encoding: str = "MULAW",
    leading_silence_ms: int = 0,
    trailing_silence_ms: int = 0,
) -> list[bytes]:
    """Cut a ``wav``, raw 8 kHz ``ulaw`` or ``pcm16`` at ``sample_rate`` into ``frame_ms``
    frames of the wire ``encoding`` (8000 or 16000 Hz), with silence added around it.

    Shared by the gRPC and the WebSocket callers.
    """
    if sum(x is not None for x in (wav, ulaw, pcm16)) != 1:
        raise ValueError("pass exactly one of wav=, ulaw=, pcm16=")
    enc = _audio.AudioEncoding.coerce(encoding)
    if wav is not None:
        info = _audio.read_wav(wav)
        pcm = info.mono_pcm16()
        src_rate = info.sample_rate
    elif ulaw is not None:
        pcm, src_rate = _audio.decode(ulaw, "MULAW"), 8000
    else:
        assert pcm16 is not None
        pcm, src_rate = pcm16, sample_rate
    rate = sample_rate if sample_rate in (8000, 16000) else 8000
    if src_rate != rate:
        pcm = _audio.resample_pcm16(pcm, src_rate, rate)
    lead = b"\x00\x00" * (rate * leading_silence_ms // 1000)
    pcm = lead + pcm + b"\x00\x00" * (rate * trailing_silence_ms // 1000)
    payload = _audio.encode(pcm, enc)
    size = enc.sample_width * rate * frame_ms // 1000
    return [payload[i : i + size] for i in range(0, len(payload), size)]


@dataclass(frozen=True, slots=True)
class RecordedResponse:
    """One server response and when it arrived (seconds since the RPC started)."""

    at: float
    response: vva.VoiceVAResponse

    @property
    def response_type(self) -> str:
        """``FINAL``, ``PARTIAL`` or ``CHUNK``."""
        return _RESP.Name(self.response.response_type)

    @property
    def event_types(self) -> list[str]:
        """Names of the output events (``END_OF_INPUT`` …)."""
        return [_OUT.Name(e.event_type) for e in self.response.output_events]


_BOUNDARIES = frozenset({common.OutputEvent.START_OF_INPUT, common.OutputEvent.END_OF_INPUT})


def _is_boundary(response: vva.VoiceVAResponse) -> bool:
    """A speech-boundary response: only START_OF_INPUT/END_OF_INPUT events, no prompt."""
    events = response.output_events
    return (
        bool(events) and not response.prompts and all(e.event_type in _BOUNDARIES for e in events)
    )


@dataclass(slots=True)
class TurnResult:
    """Everything one RPC produced.

    Attributes:
        kind: What the caller sent (``session_start``, ``audio``, ``dtmf`` …).
        responses: Every response with its arrival time.
        code: Final gRPC status code; ``details`` its message.
        frames_sent: Audio frames sent (audio turns); ``frame_times`` when each was sent.
        half_closed_at: When the caller half-closed (seconds since the RPC started).
    """

    kind: str
    responses: list[RecordedResponse] = field(default_factory=list)
    code: grpc.StatusCode = grpc.StatusCode.OK
    details: str = ""
    frames_sent: int = 0
    frame_times: list[float] = field(default_factory=list)
    half_closed_at: float | None = None
    duration: float = 0.0

    @property
    def ok(self) -> bool:
        """The server completed the RPC with OK."""
        return self.code == grpc.StatusCode.OK

    @property
    def finals(self) -> list[vva.VoiceVAResponse]:
        """Reply FINAL responses (a correct server sends at most one per RPC).

        A standalone event-only START_OF_INPUT/END_OF_INPUT FINAL (the gateway's speech-boundary
        form) is not a reply and is not counted.
        """
        return [
            r.response
            for r in self.responses
            if r.response.response_type == _RESP.FINAL and not _is_boundary(r.response)
        ]

    @property
    def final(self) -> vva.VoiceVAResponse | None:
        """The FINAL response, if any."""
        finals = self.finals
        return finals[-1] if finals else None

    @property
    def chunks(self) -> list[vva.VoiceVAResponse]:
        """CHUNK responses that carry audio."""
        return [
            r.response
            for r in self.responses
            if r.response.response_type == _RESP.CHUNK
            and any(p.audio_content for p in r.response.prompts)
        ]

    @property
    def prompts(self) -> list[vva.Prompt]:
        """All prompts of all responses, in order."""
        return [p for r in self.responses for p in r.response.prompts]

    @property
    def texts(self) -> list[str]:
        """Non-empty prompt texts."""
        return [p.text for p in self.prompts if p.text]

    @property
    def events(self) -> list[tuple[str, str]]:
        """``(EVENT_TYPE, name)`` of every output event, in order."""
        return [
            (_OUT.Name(e.event_type), e.name)
            for r in self.responses
            for e in r.response.output_events
        ]

    @property
    def event_types(self) -> list[str]:
        """Output event type names, in order."""
        return [t for t, _ in self.events]

    def has_event(self, event_type: str) -> bool:
        """Whether any response carried ``event_type`` (e.g. ``"TRANSFER_TO_AGENT"``)."""
        return event_type in self.event_types

    def event_time(self, event_type: str) -> float | None:
        """Arrival time of the first response carrying ``event_type``."""
        for r in self.responses:
            if event_type in r.event_types:
                return r.at
        return None

    @property
    def audio(self) -> bytes:
        """All prompt audio as raw µ-law: WAV prompts unwrapped, CHUNK pieces concatenated."""
        out = bytearray()
        for prompt in self.prompts:
            data = prompt.audio_content
            if not data:
                continue
            if data[:4] == b"RIFF":
                out += _audio.wav_to_webex(data)
            else:
                out += data
        return bytes(out)

    @property
    def terminal(self) -> bool:
        """The server ended the session or transferred the call."""
        return self.has_event("SESSION_END") or self.has_event("TRANSFER_TO_AGENT")


#: What grpc-python reports when its own write fails because the call already ended.
_CORE_WRITE_RACE = "Internal error from Core"


class CallerTurn:
    """One open RPC under manual control (for concurrent RPCs and hostile input tests)."""

    def __init__(
        self,
        open_call: Callable[[AsyncIterator[vva.VoiceVARequest]], Any],
        kind: str,
        clock: Callable[[], float],
        queue_size: int = 64,
    ) -> None:
        # Requests go through a bounded queue consumed by gRPC (not call.write()), so a server
        # that ends the RPC early is reported with its own status, never a local write error.
        self._queue: asyncio.Queue[vva.VoiceVARequest | None] = asyncio.Queue(queue_size)
        self._call = open_call(self._requests())
        self._clock = clock
        self._t0 = clock()
        self.result = TurnResult(kind)
        self.end_of_input = asyncio.Event()
        self.first_response = asyncio.Event()
        self._finished = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())
        self._closed_writing = False

    async def _requests(self) -> AsyncIterator[vva.VoiceVARequest]:
        while (request := await self._queue.get()) is not None:
            yield request

    async def _put(self, item: vva.VoiceVARequest | None) -> bool:
        if self._finished.is_set():
            return False
        try:
            self._queue.put_nowait(item)
            return True
        except asyncio.QueueFull:
            pass
        put = asyncio.ensure_future(self._queue.put(item))
        finished = asyncio.ensure_future(self._finished.wait())
        await asyncio.wait({put, finished}, return_when=asyncio.FIRST_COMPLETED)
        finished.cancel()
        if not put.done():
            put.cancel()
            return False
        return True

    def elapsed(self) -> float:
        """Seconds since the RPC started."""
        return self._clock() - self._t0

    async def _read(self) -> None:
        try:
            while True:
                response = await self._call.read()
                if response is aio.EOF:  # type: ignore[attr-defined]
                    break
                rec = RecordedResponse(self.elapsed(), response)
                self.result.responses.append(rec)
                self.first_response.set()
                if "END_OF_INPUT" in rec.event_types:
                    self.end_of_input.set()
        except aio.AioRpcError:
            pass  # the status is read in wait()
        except asyncio.CancelledError:
            if not self._call.cancelled():
                raise  # our task was cancelled, not the RPC
        finally:
            self._finished.set()

    async def send(self, request: vva.VoiceVARequest) -> bool:
        """Queue one request (waits while the bounded queue is full); False if the RPC is over."""
        if self._closed_writing:
            return False
        return await self._put(request)

    async def half_close(self) -> None:
        """Half-close (no more requests)."""
        if self._closed_writing:
            return
        self._closed_writing = True
        self.result.half_closed_at = self.elapsed()
        await self._put(None)

    def cancel(self) -> None:
        """Cancel the RPC (like a caller that hangs up mid-prompt)."""
        self._call.cancel()

    async def wait(self, timeout: float | None = None) -> TurnResult:  # noqa: ASYNC109
        """Wait for the server to complete the RPC; fill in the status."""
        try:
            await asyncio.wait_for(asyncio.shield(self._reader), timeout)
        except TimeoutError:
            self._call.cancel()
            await asyncio.gather(self._reader, return_exceptions=True)
        try:
            code = await self._call.code()
            details = await self._call.details()
        except asyncio.CancelledError:
            code, details = grpc.StatusCode.CANCELLED, "cancelled"
        if (
            code == grpc.StatusCode.INTERNAL
            and details == _CORE_WRITE_RACE
            and self.result.terminal
        ):
            # The server sent its terminal response and completed the RPC (OK); a request
            # grpc-python was writing at that instant failed locally, and grpc-python then
            # reports its own INTERNAL instead of the server's status.
            code, details = grpc.StatusCode.OK, ""
        self.result.code = code
        self.result.details = details or ""
        self.result.duration = self.elapsed()
        return self.result


class WebexCaller:
    """A scripted Webex Contact Center for one conversation (call).

    Args:
        target: ``host:port`` of the media server (or pass ``channel``).
        conversation_id: Defaults to a random UUID.
        virtual_agent_id: Sent on every request ('' = the server's default agent).
        customer_org_id: Sent on every request.
        token: Data-source JWS sent as ``authorization`` metadata (raw, as Webex does, or
            ``Bearer`` with ``bearer=True``).
        tracking_id: Prefix of the ``trackingid`` metadata (``<prefix>_<rpc number>``).
        realtime: Pace audio at 20 ms per frame (False: send as fast as possible).
        speed: Pacing speed-up factor when ``realtime`` (e.g. 5.0 plays 5x faster than real
            time, still paced so the server's END_OF_INPUT can stop the stream mid-way).
        frame_ms: Audio per frame (20 ms = 160 µ-law bytes).
        credentials: Channel credentials for TLS/mTLS (default plaintext), e.g.
            ``grpc.ssl_channel_credentials(ca_pem, private_key=key_pem,
            certificate_chain=cert_pem)``.
        tls: With no ``credentials``: TLS trusting the system's root CAs.
        tls_server_name: The name the server's certificate must carry when it differs
            from ``target``'s host (e.g. calling ``127.0.0.1`` with a certificate for
            ``bot.example.com``); TLS only.
        rpc_timeout: Upper bound for one RPC.
        clock, sleep: Injectable time source and sleep for pacing.
    """

    def __init__(
        self,
        target: str | None = None,
        *,
        channel: aio.Channel | None = None,
        conversation_id: str | None = None,
        virtual_agent_id: str = "",
        customer_org_id: str = "org-test",
        token: str | None = None,
        bearer: bool = False,
        tracking_id: str | None = None,
        realtime: bool = True,
        speed: float = 1.0,
        frame_ms: int = 20,
        credentials: grpc.ChannelCredentials | None = None,
        tls: bool = False,
        tls_server_name: str | None = None,
        rpc_timeout: float = 60.0,
        language_code: str = "en-US",
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if channel is None and target is None:
            raise ValueError("pass target='host:port' or channel=")
        if frame_ms not in (10, 20, 30, 40, 60, 80, 100):
            raise ValueError("frame_ms must be one of 10, 20, 30, 40, 60, 80, 100")
        if speed <= 0:
            raise ValueError("speed must be > 0")
        if tls and credentials is None:
            credentials = grpc.ssl_channel_credentials()
        if tls_server_name is not None and credentials is None:
            raise ValueError("tls_server_name needs TLS (tls=True or credentials=)")
        self._owns_channel = channel is None
        if channel is None:
            assert target is not None
            if credentials is not None:
                options = (
                    [("grpc.ssl_target_name_override", tls_server_name)] if tls_server_name else []
                )
                channel = aio.secure_channel(target, credentials, options=options)
            else:
                channel = aio.insecure_channel(target)
        self.channel = channel
        self.stub = vva_grpc.VoiceVirtualAgentStub(channel)
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self.virtual_agent_id = virtual_agent_id
        self.customer_org_id = customer_org_id
        self.token = token
        self.bearer = bearer
        self.tracking_id = tracking_id or f"WEBEXCALLER_{uuid.uuid4().hex[:12]}"
        self.realtime = realtime
        self.speed = speed
        self.frame_ms = frame_ms
        self.rpc_timeout = rpc_timeout
        self.language_code = language_code
        self._clock = clock
        self._sleep = sleep
        self._rpcs = 0
        self.history: list[TurnResult] = []

    async def __aenter__(self) -> WebexCaller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the channel (if this caller created it)."""
        if self._owns_channel:
            await self.channel.close(None)

    # ------------------------------------------------------------------ building blocks

    def metadata(self) -> list[tuple[str, str]]:
        """Metadata for the next RPC (``authorization``, ``trackingid``)."""
        self._rpcs += 1
        md = [("trackingid", f"{self.tracking_id}_{self._rpcs}")]
        if self.token is not None:
            md.append(("authorization", f"Bearer {self.token}" if self.bearer else self.token))
        return md

    def request(self, **fields: Any) -> vva.VoiceVARequest:
        """A request with this conversation's ids plus ``fields``."""
        return vva.VoiceVARequest(
            conversation_id=self.conversation_id,
            customer_org_id=self.customer_org_id,
            virtual_agent_id=self.virtual_agent_id,
            **fields,
        )

    def event_request(
        self, event_type: str, name: str = "", parameters: Mapping[str, Any] | None = None
    ) -> vva.VoiceVARequest:
        """An ``event_input`` request (``SESSION_START``, ``NO_INPUT`` …)."""
        event = common.EventInput(event_type=_EVENTS[event_type], name=name)  # type: ignore[arg-type]
        if parameters:
            struct = struct_pb2.Struct()
            struct.update(dict(parameters))
            event.parameters.CopyFrom(struct)
        return self.request(event_input=event)

    def audio_request(
        self, audio: bytes, *, encoding: str = "MULAW", sample_rate: int = 8000
    ) -> vva.VoiceVARequest:
        """An ``audio_input`` request."""
        return self.request(
            audio_input=vva.VoiceInput(
                caller_audio=audio,
                encoding=int(_audio.AudioEncoding.coerce(encoding)),  # type: ignore[arg-type]
                sample_rate_hertz=sample_rate,
                language_code=self.language_code,
            )
        )

    def open(self, kind: str = "manual") -> CallerTurn:
        """Open an RPC under manual control (send/half_close/wait)."""
        metadata = self.metadata()

        def open_call(requests: AsyncIterator[vva.VoiceVARequest]) -> Any:
            return self.stub.ProcessCallerInput(
                requests, metadata=metadata, timeout=self.rpc_timeout
            )

        return CallerTurn(open_call, kind, self._clock)

    async def _simple(self, kind: str, requests: Sequence[vva.VoiceVARequest]) -> TurnResult:
        turn = self.open(kind)
        for req in requests:
            await turn.send(req)
        await turn.half_close()
        result = await turn.wait(self.rpc_timeout)
        self.history.append(result)
        return result

    # ------------------------------------------------------------------ call steps

    async def start_session(
        self, name: str = "call_start", parameters: Mapping[str, Any] | None = None
    ) -> TurnResult:
        """RPC with ``SESSION_START``; returns the welcome turn."""
        return await self._simple(
            "session_start", [self.event_request("SESSION_START", name, parameters)]
        )

    async def end_session(self, name: str = "call_end") -> TurnResult:
        """RPC with ``SESSION_END`` (the caller hung up)."""
        return await self._simple("session_end", [self.event_request("SESSION_END", name)])

    async def no_input(self, name: str = "no_input") -> TurnResult:
        """RPC with ``NO_INPUT`` (Webex's no-input timer fired)."""
        return await self._simple("no_input", [self.event_request("NO_INPUT", name)])

    async def custom_event(
        self, name: str, parameters: Mapping[str, Any] | None = None
    ) -> TurnResult:
        """RPC with a ``CUSTOM_EVENT``."""
        return await self._simple(
            "custom_event", [self.event_request("CUSTOM_EVENT", name, parameters)]
        )

    async def start_dtmf(self) -> TurnResult:
        """RPC with ``START_OF_DTMF`` (the caller pressed a first key)."""
        return await self._simple("start_of_dtmf", [self.event_request("START_OF_DTMF")])

    async def send_dtmf(self, digits: str) -> TurnResult:
        """RPC with ``dtmf_input`` carrying ``digits`` (``0-9 * # A-D``)."""
        events = enums_from_digits(digits)
        req = self.request(dtmf_input=common.DTMFInputs(dtmf_events=events))  # type: ignore[arg-type]
        return await self._simple("dtmf", [req])

    async def press(self, digits: str) -> TurnResult:
        """Like Webex: ``START_OF_DTMF`` RPC, then the digits RPC; returns the digits turn."""
        await self.start_dtmf()
        return await self.send_dtmf(digits)

    async def list_agents(
        self, customer_org_id: str | None = None
    ) -> list[common.VirtualAgentInfo]:
        """Call ``ListVirtualAgents``."""
        response = await self.stub.ListVirtualAgents(
            common.ListVARequest(customer_org_id=customer_org_id or self.customer_org_id),
            metadata=self.metadata(),
            timeout=self.rpc_timeout,
        )
        return list(response.virtual_agents)

    async def say(
        self,
        *,
        wav: bytes | None = None,
        ulaw: bytes | None = None,
        pcm16: bytes | None = None,
        sample_rate: int = 8000,
        encoding: Literal["MULAW", "LINEAR16", "ALAW"] = "MULAW",
        leading_silence_ms: int = 200,
        trailing_silence_ms: int = 2000,
        stop_on_end_of_input: bool = True,
        turn: CallerTurn | None = None,
    ) -> TurnResult:
        """One audio turn: stream the utterance in frames, then silence, as Webex does.

        Give a ``wav`` (any format :func:`~webex_byova.media.audio.read_wav` accepts), raw
        8 kHz ``ulaw`` or ``pcm16`` at ``sample_rate``. Frames go out as ``encoding`` (µ-law
        by default) at ``sample_rate`` (8000 for µ-law/A-law unless given). Sending stops at
        ``END_OF_INPUT`` (then the caller half-closes); otherwise after the trailing silence.
        """
        frames = self.frames(
            wav=wav,
            ulaw=ulaw,
            pcm16=pcm16,
            sample_rate=sample_rate,
            encoding=encoding,
            leading_silence_ms=leading_silence_ms,
            trailing_silence_ms=trailing_silence_ms,
        )
        rate = sample_rate if sample_rate in (8000, 16000) else 8000
        return await self.stream_frames(
            frames,
            encoding=encoding,
            sample_rate=rate,
            stop_on_end_of_input=stop_on_end_of_input,
            turn=turn,
        )

    def frames(
        self,
        *,
        wav: bytes | None = None,
        ulaw: bytes | None = None,
        pcm16: bytes | None = None,
        sample_rate: int = 8000,
        encoding: str = "MULAW",
        leading_silence_ms: int = 0,
        trailing_silence_ms: int = 0,
    ) -> list[bytes]:
        """Cut audio into ``frame_ms`` frames in the wire ``encoding``."""
        return cut_frames(
            self.frame_ms,
            wav=wav,
            ulaw=ulaw,
            pcm16=pcm16,
            sample_rate=sample_rate,
            encoding=encoding,
            leading_silence_ms=leading_silence_ms,
            trailing_silence_ms=trailing_silence_ms,
        )

    async def stream_frames(
        self,
        frames: Iterable[bytes],
        *,
        encoding: str = "MULAW",
        sample_rate: int = 8000,
        stop_on_end_of_input: bool = True,
        turn: CallerTurn | None = None,
        first_request: vva.VoiceVARequest | None = None,
    ) -> TurnResult:
        """Send ``frames`` paced every ``frame_ms`` on a new (or given) RPC, then half-close."""
        turn = turn or self.open("audio")
        if first_request is not None:
            await turn.send(first_request)
        interval = self.frame_ms / 1000 / self.speed
        start = self._clock()
        for i, frame in enumerate(frames):
            if stop_on_end_of_input and turn.end_of_input.is_set():
                break
            if self.realtime:
                delay = start + i * interval - self._clock()
                if delay > 0:
                    await self._sleep(delay)
                    if stop_on_end_of_input and turn.end_of_input.is_set():
                        break
            if not await turn.send(
                self.audio_request(frame, encoding=encoding, sample_rate=sample_rate)
            ):
                break
            turn.result.frames_sent += 1
            turn.result.frame_times.append(turn.elapsed())
            if not self.realtime and i % 8 == 7:
                await asyncio.sleep(0)  # let END_OF_INPUT be read, as in real time
        await turn.half_close()
        result = await turn.wait(self.rpc_timeout)
        self.history.append(result)
        return result
