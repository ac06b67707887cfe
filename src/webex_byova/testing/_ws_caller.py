"""A Webex-side BYOVA-over-WebSocket client: plays Webex Contact Center against a ``/v1/va`` server.

:class:`WebexWsCaller` has the script API of :class:`~webex_byova.testing.WebexCaller`
(``start_session``, ``say``, ``press``, ``custom_event``, ``end_session`` …) but speaks the
WebSocket flavour the way the spec says Webex does: one socket per conversation opened with
``Authorization: Bearer <JWS>`` on the upgrade, JSON text envelopes with its own strictly
increasing ``seq``, an RFC 3339 ``ts`` and the ``conversation_id``; ``SESSION_START`` first;
caller audio as Base64 µ-law in 20 ms envelopes (paced in real time unless ``realtime=False``)
that stop at ``END_OF_INPUT``; ``SESSION_END`` then a normal close when the caller hangs up.

A step ends with the reply's ``FINAL`` (or an ERROR, or the socket closing). Every response is
converted to the same ``VoiceVAResponse`` message the gRPC caller records, so
:class:`~webex_byova.testing._caller.TurnResult` helpers (``final``, ``texts``, ``audio``,
``has_event``) and ``byova simulate``'s reports work for both transports. The raw envelopes stay
available, and everything the server does against the protocol (a ``seq`` that does not
increase, a WAV header or an out-of-range audio piece, a missing ``response_type``, a
``no_input_timeout_msec``, a PONG that does not echo …) is listed in :attr:`violations`.

Example::

    async with WebexWsCaller("ws://127.0.0.1:8765", token=jws) as caller:
        welcome = await caller.start_session()
        reply = await caller.say(wav=load("speech_hello.wav"))
        assert reply.has_event("END_OF_INPUT") and not caller.violations
        await caller.end_session()
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import inspect
import json
import ssl as _ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import grpc
from google.protobuf import json_format
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ..media import audio as _audio
from ..media._proto import voicevirtualagent_pb2 as vva
from ..media._ws_codec import (
    DTMF_KEY_TO_NAME,
    LIST_PATH,
    MAX_REPLY_CHUNK,
    MIN_REPLY_CHUNK,
    VA_PATH,
    format_ts,
    parse_ts,
)
from ._caller import RecordedResponse, TurnResult, cut_frames

__all__ = ["WebexWsCaller", "WsTurnResult", "WsUpgradeRefused"]

#: ERROR ``code`` -> the gRPC status a report shows for it (reports share one status column).
_ERROR_STATUS: dict[str, grpc.StatusCode] = {
    "unauthorized": grpc.StatusCode.UNAUTHENTICATED,
    "bad_request": grpc.StatusCode.INVALID_ARGUMENT,
    "unsupported_media": grpc.StatusCode.INVALID_ARGUMENT,
    "upstream_error": grpc.StatusCode.INTERNAL,
    "rate_limit": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "timeout": grpc.StatusCode.DEADLINE_EXCEEDED,
}
_RESPONSE_TYPES = ("FINAL", "PARTIAL", "CHUNK")
# websockets >= 15 reads proxy settings from the environment; a loopback test never wants that.
_NO_PROXY: dict[str, Any] = (
    {"proxy": None} if "proxy" in inspect.signature(connect.__init__).parameters else {}
)


@lru_cache(maxsize=16)
def _encoding_name(encoding: str) -> str:
    """``"MULAW"``/``"mulaw"``/``"PCMU"``... -> the wire value name (``MULAW_FORMAT``)."""
    return f"{_audio.AudioEncoding.coerce(encoding).name}_FORMAT"


class WsUpgradeRefused(Exception):
    """The server refused the WebSocket upgrade (e.g. HTTP 401 for a bad token)."""

    def __init__(self, status: int, body: bytes) -> None:
        super().__init__(f"upgrade refused with HTTP {status}")
        self.status = status
        self.body = body


@dataclass(slots=True)
class WsTurnResult(TurnResult):
    """A :class:`TurnResult` of one WebSocket step, plus what only this transport has.

    Attributes:
        envelopes: Every envelope received during the step (PONGs excluded), as JSON objects.
        error: The server's ERROR envelope, if one arrived; ``code`` then shows it as a
            gRPC status (``bad_request`` -> INVALID_ARGUMENT …) and ``details`` its detail.
        close_code: The socket's close code if it closed during the step.
    """

    envelopes: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    close_code: int | None = None
    close_reason: str = ""


def _response_message(payload: dict[str, Any]) -> vva.VoiceVAResponse:
    """A WebSocket ``VoiceVAResponse`` JSON payload as the proto message (for shared helpers)."""
    data = json.loads(json.dumps(payload))  # a private copy to rename in
    for prompt in data.get("prompts") or ():
        if isinstance(prompt, dict) and "audio_content_b64" in prompt:
            prompt["audio_content"] = prompt.pop("audio_content_b64")
    return json_format.ParseDict(data, vva.VoiceVAResponse(), ignore_unknown_fields=True)


class _Step:
    def __init__(self, kind: str, clock: Callable[[], float], *, expects_reply: bool) -> None:
        self.result = WsTurnResult(kind)
        self._clock = clock
        self._t0 = clock()
        self.expects_reply = expects_reply
        self.done = asyncio.Event()
        self.end_of_input = asyncio.Event()
        if not expects_reply:
            self.done.set()

    def elapsed(self) -> float:
        return self._clock() - self._t0

    def finish(self) -> None:
        self.result.duration = self.elapsed()
        self.done.set()
        self.end_of_input.set()


class WebexWsCaller:
    """A scripted Webex Contact Center for one conversation over BYOVA WebSocket.

    Args:
        url: The partner's origin (``ws://host:port`` or ``wss://host``; ``/v1/va`` is
            appended when the URL has no path) or ``host:port`` (plain ``ws://``).
        conversation_id: Defaults to a random UUID.
        virtual_agent_id: Sent on every request ('' = the server's default agent).
        customer_org_id: Sent on every request (use the token's org).
        token: Data-source JWS sent as ``Authorization: Bearer <token>`` on the upgrade.
        tracking_id: Sent as the ``trackingId`` upgrade header.
        realtime: Pace audio at ``frame_ms`` per envelope (False: as fast as possible).
        speed: Pacing speed-up factor when ``realtime``.
        frame_ms: Audio per envelope (20 ms = 160 µ-law bytes).
        ssl: TLS context for ``wss://`` (default: the system trust store).
        turn_timeout: Upper bound for one step's wait for its FINAL.
        clock, sleep: Injectable time source and sleep for pacing.
    """

    def __init__(
        self,
        url: str,
        *,
        conversation_id: str | None = None,
        virtual_agent_id: str = "",
        customer_org_id: str = "org-test",
        token: str | None = None,
        tracking_id: str | None = None,
        realtime: bool = True,
        speed: float = 1.0,
        frame_ms: int = 20,
        ssl: _ssl.SSLContext | None = None,
        turn_timeout: float = 60.0,
        open_timeout: float = 10.0,
        language_code: str = "en-US",
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if frame_ms not in (10, 20, 30, 40, 60, 80, 100):
            raise ValueError("frame_ms must be one of 10, 20, 30, 40, 60, 80, 100")
        if speed <= 0:
            raise ValueError("speed must be > 0")
        if "://" not in url:
            url = f"ws://{url}"
        scheme, _, rest = url.partition("://")
        if scheme not in ("ws", "wss"):
            raise ValueError(f"url must be ws:// or wss://, got {url!r}")
        self.origin = f"{scheme}://{rest.split('/', 1)[0]}"
        path = rest[len(rest.split("/", 1)[0]) :]
        self.url = url if path not in ("", "/") else self.origin + VA_PATH
        self.conversation_id = conversation_id or str(uuid.uuid4())
        self.virtual_agent_id = virtual_agent_id
        self.customer_org_id = customer_org_id
        self.token = token
        self.tracking_id = tracking_id or f"WEBEXWSCALLER_{uuid.uuid4().hex[:12]}"
        self.realtime = realtime
        self.speed = speed
        self.frame_ms = frame_ms
        self.ssl = ssl
        self.turn_timeout = turn_timeout
        self.open_timeout = open_timeout
        self.language_code = language_code
        self._clock = clock
        self._wall = wall_clock
        self._sleep = sleep
        self._ws: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._send_lock = asyncio.Lock()
        self._seq = 0
        self._server_seq = 0
        self._step: _Step | None = None
        self._pings: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.closed = asyncio.Event()
        self.history: list[WsTurnResult] = []
        #: Envelopes received with no step waiting for them (after a FINAL, between steps).
        self.unsolicited: list[dict[str, Any]] = []
        #: Every message sent (JSON objects) and received (JSON objects, PONGs included).
        self.sent: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        #: Protocol rules the server broke, in order (empty for a conforming server).
        self.violations: list[str] = []
        self.close_code: int | None = None
        self.close_reason: str = ""

    # ------------------------------------------------------------------ connection

    def _headers(self) -> dict[str, str]:
        headers = {"trackingId": self.tracking_id}
        if self.token is not None:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    async def _open(self, url: str) -> ClientConnection:
        options: dict[str, Any] = dict(_NO_PROXY)
        if self.ssl is not None and url.startswith("wss://"):
            options["ssl"] = self.ssl
        try:
            return await connect(
                url,
                additional_headers=self._headers(),
                open_timeout=self.open_timeout,
                compression=None,
                max_size=1024 * 1024,
                ping_interval=None,
                close_timeout=5.0,
                **options,
            )
        except InvalidStatus as exc:
            body = bytes(exc.response.body or b"")
            raise WsUpgradeRefused(exc.response.status_code, body) from None

    async def connect(self) -> None:
        """Open the ``/v1/va`` socket (done by the first step if not called)."""
        if self._ws is not None:
            return
        self._ws = await self._open(self.url)
        self._reader = asyncio.get_running_loop().create_task(self._read(self._ws))

    @property
    def connected(self) -> bool:
        """The socket is open (connected and not closed yet)."""
        return self._ws is not None and not self.closed.is_set()

    async def __aenter__(self) -> WebexWsCaller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close the socket normally (if open) and wait for the reader to finish."""
        if self._ws is not None and not self.closed.is_set():
            with contextlib.suppress(Exception):
                await self._ws.close(code, reason)
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader

    async def wait_closed(self, timeout: float | None = None) -> int | None:  # noqa: ASYNC109
        """Wait for the server to close the socket; return its close code (``None`` on timeout)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.closed.wait(), timeout)
        return self.close_code

    # ------------------------------------------------------------------ receiving

    def _violate(self, what: str) -> None:
        self.violations.append(what)

    def _check(self, env: dict[str, Any]) -> None:
        kind = env.get("type")
        seq = env.get("seq")
        if kind == "PONG":
            if seq not in self._pings:
                self._violate(f"PONG seq {seq!r} echoes no PING")
        elif not isinstance(seq, int) or isinstance(seq, bool) or seq <= self._server_seq:
            self._violate(f"{kind} seq {seq!r} not above {self._server_seq}")
        else:
            self._server_seq = seq
        try:
            parse_ts(env.get("ts"))
        except ValueError:
            self._violate(f"{kind} ts {env.get('ts')!r} is not RFC 3339")
        if env.get("conversation_id") != self.conversation_id:
            self._violate(f"{kind} conversation_id {env.get('conversation_id')!r}")
        if kind == "ERROR":
            if env.get("code") not in _ERROR_STATUS or not isinstance(env.get("status"), int):
                self._violate(f"ERROR code/status {env.get('code')!r}/{env.get('status')!r}")
            if "payload" in env or len(str(env.get("detail", ""))) > 200:
                self._violate("ERROR carries a payload or an unbounded detail")
        elif kind == "VOICE_VA_RESPONSE":
            self._check_payload(env.get("payload"))
        elif kind != "PONG":
            self._violate(f"unexpected message type {kind!r}")

    def _check_payload(self, payload: Any) -> None:
        if not isinstance(payload, dict):
            self._violate("VOICE_VA_RESPONSE without a payload object")
            return
        if payload.get("response_type") not in _RESPONSE_TYPES:
            self._violate(f"response_type {payload.get('response_type')!r}")
        timers = (payload.get("input_handling_config") or {}).get("speech_timers") or {}
        if "no_input_timeout_msec" in timers:
            self._violate("no_input_timeout_msec sent (not in the WebSocket schema)")
        for prompt in payload.get("prompts") or ():
            b64 = prompt.get("audio_content_b64") if isinstance(prompt, dict) else None
            if not b64:
                continue
            try:
                data = base64.b64decode(b64, validate=True)
            except (binascii.Error, ValueError):
                self._violate("audio_content_b64 is not Base64")
                continue
            if data[:4] == b"RIFF":
                self._violate("reply audio has a WAV header")
            if not MIN_REPLY_CHUNK <= len(data) <= MAX_REPLY_CHUNK:
                self._violate(f"reply audio piece of {len(data)} bytes")

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    self._violate("binary frame from the server")
                    continue
                self._on_text(message)
        except ConnectionClosed:
            pass
        finally:
            self.close_code = ws.close_code
            self.close_reason = ws.close_reason or ""
            self.closed.set()
            step = self._step
            if step is not None and not step.done.is_set():
                step.result.close_code = self.close_code
                step.result.close_reason = self.close_reason
                if step.result.error is None and step.result.final is None:
                    step.result.code = grpc.StatusCode.UNAVAILABLE
                    step.result.details = f"socket closed ({self.close_code})"
                step.finish()
            for future in self._pings.values():
                if not future.done():
                    future.cancel()

    def _on_text(self, message: str) -> None:
        try:
            env = json.loads(message)
        except ValueError:
            self._violate("non-JSON text frame from the server")
            return
        if not isinstance(env, dict):
            self._violate("a message that is not a JSON object")
            return
        self.received.append(env)
        self._check(env)
        kind = env.get("type")
        if kind == "PONG":
            future = self._pings.get(env.get("seq"))  # type: ignore[arg-type]
            if future is not None and not future.done():
                future.set_result(env)
            return
        step = self._step
        if step is None or step.done.is_set():
            self.unsolicited.append(env)
            return
        step.result.envelopes.append(env)
        if kind == "ERROR":
            step.result.error = env
            step.result.code = _ERROR_STATUS.get(str(env.get("code")), grpc.StatusCode.UNKNOWN)
            step.result.details = str(env.get("detail", ""))
            step.finish()
            return
        if kind != "VOICE_VA_RESPONSE" or not isinstance(env.get("payload"), dict):
            return
        try:
            response = _response_message(env["payload"])
        except (json_format.ParseError, ValueError, TypeError) as exc:
            self._violate(f"payload does not map to VoiceVAResponse: {type(exc).__name__}")
            return
        rec = RecordedResponse(step.elapsed(), response)
        step.result.responses.append(rec)
        if "END_OF_INPUT" in rec.event_types:
            step.end_of_input.set()
        if env["payload"].get("response_type") == "FINAL":
            step.finish()

    # ------------------------------------------------------------------ sending

    def envelope(self, kind: str = "VOICE_VA_REQUEST", **fields: Any) -> dict[str, Any]:
        """A Webex envelope of ``kind`` with the next ``seq`` and a fresh ``ts``."""
        self._seq += 1
        env: dict[str, Any] = {
            "type": kind,
            "seq": self._seq,
            "ts": format_ts(self._wall()),
            "conversation_id": self.conversation_id,
        }
        env.update(fields)
        return env

    def payload(self, **voice_va_input_type: Any) -> dict[str, Any]:
        """A ``VoiceVARequest`` payload with this conversation's ids and one input."""
        return {
            "conversation_id": self.conversation_id,
            "customer_org_id": self.customer_org_id,
            "virtual_agent_id": self.virtual_agent_id,
            "allow_partial_responses": False,
            "voice_va_input_type": voice_va_input_type,
            "additional_info": [],  # as real Webex sends an empty map
        }

    def event_payload(
        self, event_type: str, name: str = "", parameters: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """An ``event_input`` payload (``SESSION_START``, ``NO_INPUT`` …)."""
        event = {"event_type": event_type, "name": name, "parameters": dict(parameters or {})}
        return self.payload(event_input=event)

    def audio_payload(
        self, audio: bytes, *, encoding: str = "MULAW", sample_rate: int = 8000
    ) -> dict[str, Any]:
        """An ``audio_input`` payload (Base64 audio, encoding by value name)."""
        return self.payload(
            audio_input={
                "caller_audio_b64": base64.b64encode(audio).decode("ascii"),
                "encoding": _encoding_name(encoding),
                "sample_rate_hertz": sample_rate,
                "language_code": self.language_code,
                "is_single_utterance": None,
            }
        )

    async def send_raw(self, message: str | bytes) -> bool:
        """Send one frame as is (hostile tests); False if the socket is closed."""
        if self._ws is None:
            await self.connect()
        assert self._ws is not None
        try:
            await self._ws.send(message)
        except ConnectionClosed:
            return False
        return True

    async def send(self, envelope: dict[str, Any]) -> bool:
        """Send one envelope (its ``seq`` was taken when built); False if the socket is closed."""
        await self.connect()
        async with self._send_lock:
            self.sent.append(envelope)
            return await self.send_raw(json.dumps(envelope, separators=(",", ":")))

    async def send_request(self, payload: dict[str, Any]) -> bool:
        """Send a ``VOICE_VA_REQUEST`` carrying ``payload``."""
        if self._ws is None:
            await self.connect()
        async with self._send_lock:
            envelope = self.envelope(payload=payload)
            self.sent.append(envelope)
            return await self.send_raw(json.dumps(envelope, separators=(",", ":")))

    def _begin(self, kind: str, *, expects_reply: bool = True) -> _Step:
        step = _Step(kind, self._clock, expects_reply=expects_reply)
        self._step = step
        if self.closed.is_set():
            step.result.code = grpc.StatusCode.UNAVAILABLE
            step.result.details = f"socket closed ({self.close_code})"
            step.result.close_code = self.close_code
            step.finish()
        return step

    async def _finish(self, step: _Step) -> WsTurnResult:
        if step.expects_reply:
            try:
                await asyncio.wait_for(step.done.wait(), self.turn_timeout)
            except TimeoutError:
                step.result.code = grpc.StatusCode.DEADLINE_EXCEEDED
                step.result.details = f"no FINAL within {self.turn_timeout:g} s"
        step.result.duration = step.elapsed()
        self.history.append(step.result)
        return step.result

    async def _simple(
        self, kind: str, payload: dict[str, Any], *, expects_reply: bool = True
    ) -> WsTurnResult:
        await self.connect()
        step = self._begin(kind, expects_reply=expects_reply)
        if not self.closed.is_set():
            await self.send_request(payload)
            step.result.half_closed_at = step.elapsed()  # the caller's input is complete
        return await self._finish(step)

    # ------------------------------------------------------------------ call steps

    async def start_session(
        self, name: str = "call_start", parameters: Mapping[str, Any] | None = None
    ) -> WsTurnResult:
        """Open the socket and send ``SESSION_START``; returns the welcome (until its FINAL)."""
        payload = self.event_payload("SESSION_START", name, parameters)
        return await self._simple("session_start", payload)

    async def end_session(self, name: str = "call_end") -> WsTurnResult:
        """Send ``SESSION_END`` (the caller hung up), then close the socket normally."""
        step = self._begin("session_end", expects_reply=False)
        if not self.closed.is_set():
            await self.send_request(self.event_payload("SESSION_END", name))
            step.result.half_closed_at = step.elapsed()
            await self.aclose()
        step.result.close_code = self.close_code
        return await self._finish(step)

    async def no_input(self, name: str = "no_input") -> WsTurnResult:
        """Send ``NO_INPUT`` (Webex's no-input timer fired)."""
        return await self._simple("no_input", self.event_payload("NO_INPUT", name))

    async def custom_event(
        self, name: str, parameters: Mapping[str, Any] | None = None
    ) -> WsTurnResult:
        """Send a ``CUSTOM_EVENT``."""
        return await self._simple(
            "custom_event", self.event_payload("CUSTOM_EVENT", name, parameters)
        )

    async def start_dtmf(self) -> WsTurnResult:
        """Send ``START_OF_DTMF`` (no response is expected, so this returns once sent)."""
        return await self._simple(
            "start_of_dtmf", self.event_payload("START_OF_DTMF"), expects_reply=False
        )

    async def send_dtmf(self, digits: str) -> WsTurnResult:
        """Send a ``dtmf_input`` with ``digits`` (``0-9 * # A-D``) and wait for the FINAL."""
        names = []
        for key in digits.upper():
            if key not in DTMF_KEY_TO_NAME:
                raise ValueError(f"not a DTMF key: {key!r} (expected one of 0-9 * # A-D)")
            names.append(DTMF_KEY_TO_NAME[key])
        return await self._simple("dtmf", self.payload(dtmf_input={"dtmf_events": names}))

    async def press(self, digits: str) -> WsTurnResult:
        """Like Webex: ``START_OF_DTMF``, then the digits; returns the digits step."""
        await self.start_dtmf()
        return await self.send_dtmf(digits)

    async def ping(self, timeout: float = 10.0) -> dict[str, Any]:  # noqa: ASYNC109
        """Send a JSON ``PING`` and return the server's ``PONG`` (raises TimeoutError)."""
        await self.connect()
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        async with self._send_lock:
            envelope = self.envelope("PING")
            self._pings[envelope["seq"]] = future
            self.sent.append(envelope)
            await self.send_raw(json.dumps(envelope, separators=(",", ":")))
        return await asyncio.wait_for(future, timeout)

    async def list_agents(self, customer_org_id: str | None = None) -> dict[str, Any]:
        """One ``/v1/listVirtualAgents`` exchange on its own socket: the bare JSON answer."""
        ws = await self._open(self.origin + LIST_PATH)
        try:
            org = customer_org_id if customer_org_id is not None else self.customer_org_id
            await ws.send(json.dumps({"customer_org_id": org}))
            answer = await asyncio.wait_for(ws.recv(), self.turn_timeout)
        finally:
            await ws.close()
        data = json.loads(answer)
        if not isinstance(data, dict):
            raise ValueError("listVirtualAgents answered with a non-object")
        return data

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
    ) -> WsTurnResult:
        """One audio turn: stream the utterance then silence; stop at END_OF_INPUT; await FINAL."""
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
            frames, encoding=encoding, sample_rate=rate, stop_on_end_of_input=stop_on_end_of_input
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
    ) -> WsTurnResult:
        """Send ``frames`` as audio envelopes paced every ``frame_ms``, then await the FINAL."""
        await self.connect()
        step = self._begin("audio")
        interval = self.frame_ms / 1000 / self.speed
        start = self._clock()
        for i, frame in enumerate(frames):
            if step.done.is_set() or (stop_on_end_of_input and step.end_of_input.is_set()):
                break
            if self.realtime:
                delay = start + i * interval - self._clock()
                if delay > 0:
                    await self._sleep(delay)
                    if step.done.is_set() or (stop_on_end_of_input and step.end_of_input.is_set()):
                        break
            payload = self.audio_payload(frame, encoding=encoding, sample_rate=sample_rate)
            if not await self.send_request(payload):
                break
            step.result.frames_sent += 1
            step.result.frame_times.append(step.elapsed())
            if not self.realtime and i % 8 == 7:
                await asyncio.sleep(0)  # let END_OF_INPUT be read, as in real time
        step.result.half_closed_at = step.elapsed()  # no more caller audio for this turn
        return await self._finish(step)
