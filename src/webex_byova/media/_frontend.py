"""The interface a transport front end (gRPC, WebSocket) drives the call core through.

A front end decodes its wire messages into :class:`~._messages.CallerRequest`, opens a turn
with :meth:`BYOVAMediaServer.open_turn <webex_byova.media.server.BYOVAMediaServer.open_turn>`
and gets a :class:`TurnHandle`; it feeds the turn's further messages, says when the caller
finished or went away, and writes out what :meth:`TurnHandle.responses` yields (encoded by its
codec). Refusals are :class:`CallRejected`, which each front end maps to its own error form
(gRPC status, WebSocket ERROR envelope / close code).

How a front end drives one turn::

    try:
        handle = await server.open_turn(first, transport="websocket", verified_org=org)
    except CallRejected as rejected:
        ...  # map rejected.kind / rejected.detail to the wire
    # in one task: pump the turn's responses to the peer
    async for response in handle.responses():
        await send(encode(response))
    # in another: feed the caller's messages
    for request in more_messages:
        if not handle.feed(request):  # this turn takes no more input
            ...  # gRPC: drop it; WebSocket: it opens the next turn
        await handle.drain()  # backpressure: bounded audio-handler queue
    handle.caller_done()  # gRPC half-close (WebSocket: never needed)
    # on a lost stream/socket or cancellation instead, for every open handle:
    handle.caller_gone()
    server.end_conversation(conversation_id)  # WebSocket: the socket was the call

A gRPC RPC carries exactly one turn. On WebSocket one socket carries many: a turn runs from the
first message after the previous turn's FINAL until its own FINAL; :meth:`TurnHandle.feed`
returns ``False`` (and does not consume the message) once the turn takes no more input, and
that message must open the next turn. No message is swallowed between turns.

Nothing here imports a proto stub, grpc or websockets.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING, Literal, Protocol

from ._messages import AgentResponse, AudioIn, CallerInput, CallerRequest

if TYPE_CHECKING:
    from .session import Session, Transport, Turn

__all__ = ["CallRejected", "FrontEnd", "RejectKind", "TurnHandle"]

RejectKind = Literal[
    "invalid_argument",
    "unauthenticated",
    "permission_denied",
    "not_found",
    "resource_exhausted",
    "unavailable",
    "failed_precondition",
    "internal",
]
_MAX_DETAIL = 200
#: How long a gRPC turn waits for its conversation record to be stored before its RPC
#: completes (:meth:`TurnHandle.saved`).
SAVE_WAIT_S = 2.0


class CallRejected(Exception):
    """The core refuses a turn (or a listing); each front end maps ``kind`` to its wire form.

    ``detail`` is bounded and safe to send to the peer (no secrets, no stack traces).
    """

    def __init__(self, kind: RejectKind, detail: str) -> None:
        detail = detail if len(detail) <= _MAX_DETAIL else detail[: _MAX_DETAIL - 1] + "…"
        super().__init__(detail)
        self.kind: RejectKind = kind
        self.detail = detail

    def __repr__(self) -> str:
        return f"CallRejected({self.kind!r}, {self.detail!r})"


class FrontEnd(Protocol):
    """A transport listener owned by ``BYOVAMediaServer`` (started and stopped with it).

    ``start`` binds and returns the bound port; ``begin_shutdown`` stops taking new calls
    (health NOT_SERVING) while live turns finish; ``stop`` closes what is left after ``grace``.
    """

    async def start(self) -> int: ...

    async def begin_shutdown(self) -> None: ...

    async def stop(self, grace: float) -> None: ...


class _Owner(Protocol):
    """What a handle reports back to (implemented by ``BYOVAMediaServer``)."""

    def _turn_finished(self, turn: Turn) -> asyncio.Task[None] | None: ...


class TurnHandle:
    """One open turn of a conversation, as a front end sees it.

    Attributes:
        turn: The core's :class:`~webex_byova.media.session.Turn` (what handlers act on).
        transport: ``"grpc"`` or ``"websocket"``.
    """

    def __init__(self, owner: _Owner, turn: Turn) -> None:
        self._owner = owner
        self.turn = turn
        self.transport: Transport = turn.transport
        self._iterating = False
        self._finished = False
        self._saved: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        return f"TurnHandle({self.turn!r}, transport={self.transport!r})"

    @property
    def session(self) -> Session:
        """The conversation the turn belongs to."""
        return self.turn.session

    @property
    def closed(self) -> bool:
        """True once the turn is over (its responses ended or the caller went away)."""
        return self.turn.closed

    def feed(self, request: CallerRequest) -> bool:
        """Give the turn one more caller message; never blocks.

        Returns ``False`` without consuming ``request`` once the turn takes no more input (its
        FINAL or terminal response is out, it is over, or on WebSocket it is a turn that
        answers nothing such as ``start_of_dtmf``). The message then belongs to the next turn
        (WebSocket) or is dropped (gRPC: Webex sends nothing after the FINAL on an RPC).
        """
        return self.feed_input(request.input)

    def feed_input(self, item: CallerInput | None) -> bool:
        """:meth:`feed` with a message's input alone (``request.input``), same result.

        A turn uses only the input of the messages after its first one (the conversation
        fields are the first message's), so a front end whose connection carries one turn
        of one conversation (gRPC: an RPC) decodes just the input of each 20 ms frame.
        """
        turn = self.turn
        if not turn._takes_input:
            return False
        turn._handle(item)
        return True

    def feed_audio(self, audio: bytes, like: AudioIn) -> bool:
        """:meth:`feed_input` of ``like`` with ``audio`` as its audio (the same metadata),
        same result.

        For a front end whose decoder recognises frames that differ from one it decoded only
        in their audio (gRPC: :class:`~._grpc_codec.CallerInputDecoder`): no ``AudioIn`` is
        built, and when ``like`` is the frame fed last the frame's checks are not repeated.
        """
        turn = self.turn
        if not turn._takes_input:
            return False
        turn._handle_like(audio, like)
        return True

    async def drain(self) -> None:
        """Wait while the turn's queue of ``audio_input`` handler events is full.

        Call after :meth:`feed` (and after :meth:`open_turn`) before reading the next message:
        this is the backpressure that keeps a slow ``audio_input`` handler bounded. A front
        end on the per-frame path may call it only when :attr:`backlogged` is true (the same
        wait, without making two coroutines per 20 ms frame).
        """
        await self.turn._audio_backlog()

    @property
    def backlogged(self) -> bool:
        """Whether :meth:`drain` would wait now (the ``audio_input`` queue is full)."""
        turn = self.turn  # no audio_input handler (the usual case): no queue, no consumer
        return turn._audio_task is not None and turn._audio_backlogged

    def caller_done(self) -> None:
        """The caller finished sending this turn (gRPC half-close). Idempotent."""
        turn = self.turn
        if not turn.closed and not turn._half_closed:
            turn._on_half_close()

    def caller_gone(self) -> None:
        """The stream/socket was lost or cancelled: end the turn now, outcome ``cancelled``.

        Any :meth:`responses` iteration ends; queued responses are discarded.
        """
        turn = self.turn
        if not turn.closed:
            turn._cancel()
        if not self._iterating:
            self._finish()

    async def responses(self) -> AsyncGenerator[AgentResponse, None]:
        """The turn's responses in order; ends after its FINAL or terminal response (once the
        turn completes: on gRPC after the half-close or its bound), or when nothing more is due.

        Iterate it exactly once. Closing the iterator early (or cancelling the task) ends the
        turn as ``cancelled``.
        """
        if self._iterating:
            raise RuntimeError("responses() of a turn may be iterated only once")
        self._iterating = True
        if self._finished:  # the caller went away before the front end started writing
            return
        try:
            async with contextlib.aclosing(self.turn._responses()) as stream:
                async for response in stream:
                    yield response
        finally:
            self.turn._close()
            self._finish()

    async def saved(self) -> None:
        """Wait until the conversation record written when the turn finished is stored.

        Only a shared store (Redis) writes in a task; call after :meth:`responses` ended and
        before completing the RPC, so the next turn, which Webex may send to another process,
        reads this one's state. Bounded by :data:`SAVE_WAIT_S`; a failed write was logged already.
        """
        task = self._saved
        if task is not None and not task.done():
            await asyncio.wait({task}, timeout=SAVE_WAIT_S)

    def _finish(self) -> None:
        if not self._finished:
            self._finished = True
            self.turn._close()
            self._saved = self._owner._turn_finished(self.turn)
