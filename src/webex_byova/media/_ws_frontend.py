"""WebSocket front end of the media server: the thin I/O shell of BYOVA over WebSocket.

A ``websockets`` asyncio server on ``/v1/va`` (one socket per conversation, many turns) and
``/v1/listVirtualAgents`` (one bare request, one bare answer, then close). Every protocol decision
is made by the sans-IO :class:`~webex_byova.media._ws_codec.VaConnection`; every call decision
by the call core (:meth:`BYOVAMediaServer.open_turn
<webex_byova.media.server.BYOVAMediaServer.open_turn>` and its
:class:`~webex_byova.media._frontend.TurnHandle`). This module only moves frames, keeps time
and owns the socket.

* **Upgrade.** ``process_request`` answers 404 for other paths and, when tokens are verified,
  HTTP 401 before the socket opens unless ``Authorization: Bearer <JWS>`` verifies with the
  WebSocket schema id, ``ws_expected_url`` and the org (``expected_org_id``, else any org, but
  the ``com.cisco.org.uuid`` claim must be there); that org is then bound to the socket.
* **Per socket** one reader (this handler) and one writer task. Responses and ERRORs go through
  one bounded queue to the writer, so the wire order is the ``seq`` order; a PONG (it echoes
  the PING's ``seq``) is sent by the reader directly, so it goes out at once, also while a long
  reply is being written.
* **Turns.** A request is fed to the open turn; when the turn takes no more input
  (``feed`` is false: its FINAL is out), or it is caller audio after the open audio turn's
  END_OF_INPUT (barge-in over a reply still being sent), it opens the next turn. Each turn's
  responses are pumped by a task that first waits for the previous turn's pump, so replies
  never interleave.
* **Limits.** ``SESSION_START`` within ``ws_session_start_timeout_s``; one socket per live
  conversation (a second is refused with ``bad_request``/409, close 1008); frames above
  ``ws_max_message_bytes`` (the library closes 1009 above twice that); WebSocket
  ping/pong keepalive; after a terminal response or the caller's ``SESSION_END`` the socket is
  closed with 1000 when Webex closes it or after ``ws_close_grace_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from .._logging import get_logger
from ..jws import CLAIM_ORG, JWSVerificationError
from ._frontend import CallRejected, TurnHandle
from ._messages import AudioIn
from ._ws_codec import (
    CLOSE_GOING_AWAY,
    CLOSE_NORMAL,
    CLOSE_POLICY_VIOLATION,
    LIST_PATH,
    VA_PATH,
    Fatal,
    PeerError,
    PingIn,
    RequestIn,
    VaConnection,
    WsLimits,
    WsProtocolError,
    list_error,
    list_response,
    parse_list_request,
    rejection_error,
)

if TYPE_CHECKING:
    from ..jws import JWSVerifier
    from .server import BYOVAMediaServer

__all__ = ["WsFrontEnd"]

_log = get_logger("webex_byova.media.websocket")
_CLOSE = object()  # tells the writer to close the socket


@dataclass(frozen=True, slots=True)
class _Peer:
    """What the upgrade established about a socket."""

    org: str | None
    tracking_id: str


class WsFrontEnd:
    """The WebSocket listener of a :class:`~webex_byova.media.server.BYOVAMediaServer`."""

    def __init__(
        self,
        core: BYOVAMediaServer,
        *,
        verifier: JWSVerifier | None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._core = core
        self._verifier = verifier
        self._wall = wall_clock
        cfg = core.config
        self._limits = WsLimits(
            max_message_bytes=cfg.ws_max_message_bytes,
            max_audio_bytes=cfg.ws_max_audio_bytes,
            reply_chunk_bytes=cfg.ws_reply_chunk_bytes,
        )
        self._server: Server | None = None
        # what each upgrade established, until its handler runs (weak: a handshake that fails
        # after process_request leaves nothing behind)
        self._peers: weakref.WeakKeyDictionary[ServerConnection, _Peer] = (
            weakref.WeakKeyDictionary()
        )
        self._owners: dict[str, ServerConnection] = {}  # conversation id -> owning socket
        self._sockets: set[ServerConnection] = set()
        self._shutting_down = False
        self.port = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> int:
        """Bind and start; returns the bound port."""
        cfg = self._core.config
        context = None
        if cfg.ws_tls:
            assert cfg.ws_tls_cert_file is not None
            assert cfg.ws_tls_key_file is not None
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            context.load_cert_chain(cfg.ws_tls_cert_file, cfg.ws_tls_key_file)
        self._server = await serve(
            self._handle,
            cfg.ws_host,
            cfg.ws_port,
            process_request=self._process_request,
            ssl=context,
            compression=None,
            # the codec answers oversized messages with an ERROR; the library's own hard limit
            # (close 1009 without one) sits above it
            max_size=2 * cfg.ws_max_message_bytes,
            max_queue=cfg.ws_queue_size,
            ping_interval=20,
            ping_timeout=20,
            close_timeout=5,
            open_timeout=10,
            server_header=None,
        )
        self.port = next(iter(self._server.sockets)).getsockname()[1]
        return self.port

    async def begin_shutdown(self) -> None:
        """Refuse new sockets with HTTP 503 (each is a new conversation); open ones go on.

        The listener stays open until :meth:`stop`, so Webex gets a clear answer (and can take
        the flow's error path) instead of a refused connection while the server drains.
        """
        self._shutting_down = True

    async def stop(self, grace: float) -> None:
        """Close open sockets with 1001 after ``grace`` seconds (the listener first)."""
        server, self._server = self._server, None
        if server is None:
            return
        server.close(close_connections=False)
        if self._sockets:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.gather(*(ws.wait_closed() for ws in list(self._sockets))),
                    max(0.0, grace),
                )
        for ws in list(self._sockets):
            with contextlib.suppress(Exception):
                await ws.close(CLOSE_GOING_AWAY, "server shutting down")
        await server.wait_closed()

    # ------------------------------------------------------------------ upgrade

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        path = request.path.split("?", 1)[0]
        if path not in (VA_PATH, LIST_PATH):
            return ws.respond(HTTPStatus.NOT_FOUND, "not found\n")
        tracking = (request.headers.get("trackingId") or "")[:128]
        if self._shutting_down:
            return ws.respond(HTTPStatus.SERVICE_UNAVAILABLE, "server is draining\n")
        org: str | None = None
        if self._verifier is not None:
            reason = None
            header = request.headers.get("Authorization") or ""
            scheme, _, token = header.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                reason = "missing_bearer_token"
            else:
                cfg = self._core.config
                try:
                    claims = await self._verifier.averify(
                        token,
                        expected_url=cfg.ws_expected_url,
                        expected_schema_id=cfg.ws_expected_schema_id,
                        expected_org_id=cfg.expected_org_id,
                    )
                    claim = claims.get(CLAIM_ORG)
                    if isinstance(claim, str) and claim.strip():
                        org = claim
                    else:
                        reason = f"missing_claim:{CLAIM_ORG}"
                except JWSVerificationError as exc:
                    reason = exc.reason
                except Exception as exc:  # key fetch failures: still never an open socket
                    _log.warning("token verification failed: %s", type(exc).__name__)
                    reason = "verification_failed"
            if reason is not None:
                self._core.metrics.auth_refused("websocket", reason.partition(":")[0])
                _log.info(
                    "WebSocket upgrade to %s refused: %s",
                    path,
                    reason,
                    extra={
                        "trackingid": _printable(tracking),
                        "event": "auth_refused",
                        "reason": reason.partition(":")[0],
                        "transport": "websocket",
                    },
                )
                response = ws.respond(HTTPStatus.UNAUTHORIZED, "unauthorized\n")
                response.headers["WWW-Authenticate"] = 'Bearer realm="byova"'
                return response
        self._peers[ws] = _Peer(org, tracking)
        return None

    # ------------------------------------------------------------------ sockets

    async def _handle(self, ws: ServerConnection) -> None:
        peer = self._peers.pop(ws, None)
        if peer is None:  # pragma: no cover - process_request always records the peer
            await ws.close(CLOSE_POLICY_VIOLATION)
            return
        self._sockets.add(ws)
        metrics = self._core.metrics
        metrics.stream_opened("websocket")
        try:
            if ws.request is not None and ws.request.path.split("?", 1)[0] == LIST_PATH:
                await self._list(ws, peer)
            else:
                await _Conversation(self, ws, peer).run()
        finally:
            metrics.stream_closed("websocket")
            self._sockets.discard(ws)

    async def _list(self, ws: ServerConnection, peer: _Peer) -> None:
        try:
            try:
                # the discovery request is due as promptly as a SESSION_START
                deadline = self._core.config.ws_session_start_timeout_s
                message = await asyncio.wait_for(ws.recv(), deadline)
            except TimeoutError:
                raise WsProtocolError("timeout", "no listVirtualAgents request") from None
            if isinstance(message, bytes):
                raise WsProtocolError("unsupported_media", "binary frames are not supported")
            request = parse_list_request(message, expected_org=peer.org, limits=self._limits)
            try:
                agents = await self._core.offered_agents(request.customer_org_id)
            except CallRejected as rejected:
                raise rejection_error(rejected.kind, rejected.detail) from None
            await ws.send(list_response(agents))
            await ws.close(CLOSE_NORMAL)
        except WsProtocolError as exc:
            with contextlib.suppress(ConnectionClosed):
                await ws.send(list_error(exc))
                await ws.close(exc.close_code, exc.code)
        except ConnectionClosed:
            pass

    def _claim(self, conversation_id: str, ws: ServerConnection) -> bool:
        """Lease ``conversation_id`` to ``ws``; False if another socket (or RPC) has it."""
        owner = self._owners.get(conversation_id)
        if owner is not None and owner is not ws:
            return False
        if owner is None and conversation_id in self._core.sessions:
            return False
        self._owners[conversation_id] = ws
        return True

    def _release(self, conversation_id: str | None, ws: ServerConnection) -> None:
        if conversation_id is not None and self._owners.get(conversation_id) is ws:
            del self._owners[conversation_id]


def _starts_next_turn(handle: TurnHandle, request: Any) -> bool:
    """Caller audio after an audio turn's END_OF_INPUT belongs to the next turn, at once.

    Webex keeps streaming the caller while a barge-in enabled reply plays; fed to the answered
    turn that audio would be dropped until its FINAL, so speech over a reply still being
    generated could never cut it. As a new turn (what Webex's next RPC is on gRPC) its
    end-pointer hears the barge-in while the reply is still being sent; its responses wait
    for that reply's FINAL (pumps never interleave).
    """
    turn = handle.turn
    return isinstance(request.input, AudioIn) and turn.kind == "audio" and turn._input_ended


def _printable(text: str) -> str:
    """Caller-supplied text made safe for one log line (bounded, control characters escaped)."""
    return repr(text[:100])[1:-1]


class _Outbox:
    """Frames waiting for the writer, in ``seq`` order.

    A pump waits for :meth:`room` *before* it builds a response's frames and then pushes them
    all at once, so frames are queued in the order their ``seq`` was taken; an ERROR is pushed
    without waiting. The bound is ``ws_queue_size`` plus at most one response's frames.
    """

    def __init__(self, limit: int) -> None:
        self._items: deque[Any] = deque()
        self._limit = limit
        self._changed = asyncio.Event()

    async def room(self) -> None:
        while len(self._items) >= self._limit:
            self._changed.clear()
            await self._changed.wait()

    def push(self, *items: Any) -> None:
        self._items.extend(items)
        self._changed.set()

    async def pop(self) -> Any:
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        item = self._items.popleft()
        self._changed.set()
        return item


class _Conversation:
    """One ``/v1/va`` socket: the reader (this object's :meth:`run`), a writer, turn pumps."""

    def __init__(self, front: WsFrontEnd, ws: ServerConnection, peer: _Peer) -> None:
        self.front = front
        self.ws = ws
        self.peer = peer
        self.cfg = front._core.config
        self.conn = VaConnection(expected_org=peer.org, limits=front._limits)
        self.out = _Outbox(self.cfg.ws_queue_size)
        self.handle: TurnHandle | None = None
        self.handles: list[TurnHandle] = []
        self.pump: asyncio.Task[None] | None = None
        self.closer: asyncio.Task[None] | None = None
        self.close_code = CLOSE_NORMAL
        self.close_reason = ""
        self.leased = False
        self.ended_at: float | None = None

    def now(self) -> float:
        return self.front._wall()

    def log(self, message: str, *args: Any) -> None:
        _log.info(
            "[%s] " + message,
            _printable(self.conn.conversation_id or "-"),
            *args,
            extra={"trackingid": _printable(self.peer.tracking_id)},
        )

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        writer = loop.create_task(self._write())
        try:
            await self._read(loop.time())
        except ConnectionClosed:
            pass
        finally:
            for handle in self.handles:
                handle.caller_gone()
            # Webex never reconnects: once the socket is gone the conversation is over
            if self.handle is not None:
                self.front._core.end_conversation(self.handle.session.conversation_id)
            for task in (self.pump, self.closer):
                if task is not None and not task.done():
                    task.cancel()
            self.out.push(_CLOSE)
            with contextlib.suppress(TimeoutError, asyncio.CancelledError, ConnectionClosed):
                await asyncio.wait_for(writer, 5.0)
            if self.leased:
                self.front._release(self.conn.conversation_id, self.ws)
            await self.ws.close(self.close_code, self.close_reason)

    def _wait(self, started_at: float) -> float:
        """Seconds the next read may wait."""
        loop = asyncio.get_running_loop()
        if not self.conn.started:
            return started_at + self.cfg.ws_session_start_timeout_s - loop.time()
        if self.conn.ended:
            if self.ended_at is None:
                self.ended_at = loop.time()
            return self.ended_at + self.cfg.ws_close_grace_s - loop.time()
        return self.cfg.idle_timeout_s

    async def _read(self, started_at: float) -> None:
        conn = self.conn
        while True:
            try:
                # asyncio.timeout, not wait_for: no extra task per message
                async with asyncio.timeout(max(0.0, self._wait(started_at))):
                    message = await self.ws.recv()
            except TimeoutError:
                if conn.ended:
                    return  # the close grace is over: close normally
                what = "no SESSION_START in time" if not conn.started else "idle for too long"
                self._fatal(conn.fail(WsProtocolError("timeout", what), self.now()))
                return
            now = self.now()
            if isinstance(message, bytes):
                result = conn.receive_bytes(message, now)
            else:
                result = conn.receive_text(message, now)
            if isinstance(result, PingIn):
                await self.ws.send(result.pong)  # at once, even in the middle of a reply
            elif isinstance(result, RequestIn):
                if not await self._request(result):
                    return
            elif isinstance(result, Fatal):
                self._fatal(result)
                return
            elif isinstance(result, PeerError):
                self.log("Webex sent ERROR %s (%d)", result.code, result.status)
                return
            else:
                _log.debug(
                    "[%s] ignored: %s", _printable(conn.conversation_id or "-"), result.reason
                )

    def _fatal(self, fatal: Fatal) -> None:
        self.log("closing: %s", fatal.error)
        self.out.push(fatal.frame, _CLOSE)
        self.close_code, self.close_reason = fatal.close_code, fatal.error.code

    async def _request(self, msg: RequestIn) -> bool:
        """Feed the open turn or open the next one; False when the socket must close."""
        request = msg.request
        handle = self.handle
        if handle is not None and not _starts_next_turn(handle, request) and handle.feed(request):
            await handle.drain()
            return True
        if not self.leased:
            if not self.front._claim(request.conversation_id, self.ws):
                busy = rejection_error("failed_precondition", "the conversation is already live")
                self._fatal(self.conn.fail(busy, self.now()))
                return False
            self.leased = True
        try:
            handle = await self.front._core.open_turn(
                request,
                transport="websocket",
                tracking_id=self.peer.tracking_id,
                verified_org=self.peer.org,
            )
        except CallRejected as rejected:
            error = rejection_error(rejected.kind, rejected.detail)
            self._fatal(self.conn.fail(error, self.now()))
            return False
        self.handle = handle
        self.handles = [h for h in self.handles if not h.closed] + [handle]
        self.pump = asyncio.get_running_loop().create_task(self._pump(handle, self.pump))
        return True

    async def _pump(self, handle: TurnHandle, previous: asyncio.Task[None] | None) -> None:
        """Write one turn's responses, after the previous turn's (replies never interleave)."""
        if previous is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await previous
        try:
            async with contextlib.aclosing(handle.responses()) as responses:
                async for response in responses:
                    await self.out.room()
                    try:
                        frames = self.conn.respond(response, self.now())
                    except ValueError as exc:  # an undecodable WAV prompt from a handler
                        handle.turn.log.warning("reply audio dropped: %s", type(exc).__name__)
                        continue
                    self.out.push(*frames)
                    if self.conn.terminal_sent and self.closer is None:
                        self.closer = asyncio.get_running_loop().create_task(self._close_later())
        except Exception:
            _log.exception("[%s] turn failed", _printable(self.conn.conversation_id or "-"))
            failed = WsProtocolError("upstream_error", "the call core failed")
            self._fatal(self.conn.fail(failed, self.now()))

    async def _close_later(self) -> None:
        """After a terminal response: let Webex close first, within the grace."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.ws.wait_closed(), self.cfg.ws_close_grace_s)
        self.out.push(_CLOSE)

    async def _write(self) -> None:
        while (item := await self.out.pop()) is not _CLOSE:
            await self.ws.send(item)
        await self.ws.close(self.close_code, self.close_reason)
