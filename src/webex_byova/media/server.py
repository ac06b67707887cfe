"""The BYOVA media server (:class:`BYOVAMediaServer`).

Webex Contact Center connects to this server for every call. The server owns the
transport-neutral call core and its front ends:

* conversation/turn state lives in :mod:`webex_byova.media.session`, responses are built by
  :mod:`webex_byova.media._responses`, end-pointing by :mod:`webex_byova.media.vad`;
* this module keeps the registry of handlers, agents and live conversations, and offers the
  front-end interface (:meth:`BYOVAMediaServer.open_turn`, :class:`~._frontend.TurnHandle`,
  :class:`~._frontend.CallRejected`, :meth:`BYOVAMediaServer.offered_agents`);
* the gRPC front end (servicer, health, reflection, TLS, auth interceptor) is
  :mod:`webex_byova.media._grpc_frontend`, its wire mapping :mod:`webex_byova.media._grpc_codec`.

This module composes the core with its front ends; it never touches a wire message itself.

Example::

    server = BYOVAMediaServer(MediaServerConfig(port=50051, verify_tokens=False))

    @server.on("session_start")
    async def welcome(event):
        event.turn.say("Hello! How can I help?", wav=WELCOME_WAV)

    @server.on("utterance")
    async def reply(event):
        text = await my_asr(event.pcm16)
        event.turn.say(f"You said {text}")

    @server.on("dtmf_input")
    def keys(event):
        if event.digits == "0":
            event.turn.transfer_to_agent("Connecting you to an agent.")

    await server.serve()
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import inspect
import signal
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from .._ids import org_uuid
from .._logging import get_logger
from .._logsetup import configure_logging
from ._bounds import check_first_request, printable
from ._frontend import CallRejected, FrontEnd, TurnHandle
from ._grpc_frontend import SERVICE_NAME, GrpcFrontEnd
from ._messages import CallerRequest, EventIn
from ._metrics import MediaMetrics, conversation_outcome
from ._model import ConversationRecord, InputSettings, plain_data_problem
from ._redis_store import ConversationConflictError, conversation_store_for
from ._tracing import MediaTracer
from ._vad_batch import BatchedDetector, VadBatcher
from .config import MediaServerConfig
from .events import EVENT_NAMES, ErrorEvent, MediaEvent, SessionEnd, TurnEnded, TurnStarted
from .session import (
    HandlerCancelledError,
    HandlerTimeoutError,
    Session,
    Transport,
    Turn,
    log_context,
    turn_kind,
)
from .store import ConversationStore, InMemoryConversationStore
from .vad import SileroBatch, SileroVAD, SpeechDetector, detector_from_config

if TYPE_CHECKING:
    from ..jws import JWSVerifier
    from ._connector import MediaConnector
    from ._proto import byova_common_pb2 as common
    from ._ws_frontend import WsFrontEnd

__all__ = ["SERVICE_NAME", "BYOVAMediaServer", "Handler", "VirtualAgent"]

_log = get_logger("webex_byova.media")

Handler = Callable[[Any], Any]
H = TypeVar("H", bound=Handler)
AgentProvider = Callable[
    ..., "Iterable[VirtualAgent | str] | Awaitable[Iterable[VirtualAgent | str]]"
]


def _org_key(org_id: str) -> str | None:
    """The bare UUID of an org id in UUID or Hydra form; None if it is neither."""
    try:
        return org_uuid(org_id)
    except ValueError:
        return None


def _same_org(a: str, b: str) -> bool:
    """Whether two org ids name the same org (UUID and Hydra forms alike; else verbatim)."""
    return (_org_key(a) or a) == (_org_key(b) or b)


def _self_cancelled(exc: BaseException) -> HandlerCancelledError | None:
    """A ``CancelledError`` the handler raised itself (nobody cancelled its task), as an error.

    ``None`` when the server (or the loop) really cancels the running task: that propagates.
    """
    task = asyncio.current_task()
    if not isinstance(exc, asyncio.CancelledError) or task is None or task.cancelling():
        return None
    error = HandlerCancelledError("the handler raised CancelledError (not cancelled by the server)")
    error.__cause__ = exc
    return error


@dataclass(frozen=True, slots=True)
class VirtualAgent:
    """A virtual agent offered to Webex by ``ListVirtualAgents``.

    ``VirtualAgent.parse("id=Display name")`` builds one from a config string.
    """

    virtual_agent_id: str
    name: str = ""
    is_default: bool = False
    attributes: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.virtual_agent_id:
            raise ValueError("virtual_agent_id must not be empty")

    @classmethod
    def parse(cls, value: VirtualAgent | str) -> VirtualAgent:
        """Accept a :class:`VirtualAgent`, ``"id"`` or ``"id=Name"``."""
        if isinstance(value, VirtualAgent):
            return value
        agent_id, _, name = value.partition("=")
        return cls(agent_id.strip(), name.strip() or agent_id.strip())

    def to_proto(self, *, default: bool) -> common.VirtualAgentInfo:
        """gRPC wire form (``VirtualAgentInfo``)."""
        from ._grpc_codec import virtual_agent_info

        return virtual_agent_info(self, default=default)


class BYOVAMediaServer:
    """Developer-hosted BYOVA gRPC media server.

    Args:
        config: Server settings (default: :class:`MediaServerConfig` defaults).
        agents: Virtual agents to offer (strings ``"id"``/``"id=Name"`` or
            :class:`VirtualAgent`); added to ``config.agents``. With none configured and no
            provider, one agent ``"default"`` is offered.
        verifier: A :class:`~webex_byova.jws.JWSVerifier` for ``verify_tokens`` (default:
            built from the config).
        store: Where conversation records are kept (default: ``config.conversation_store``,
            in memory unless it names a ``redis://`` URL).
        detector_factory: ``(sample_rate, settings) -> SpeechDetector`` for end-pointing.
        clock: Monotonic clock in seconds (tests inject one).
        metrics: Where the call core records its Prometheus metrics (default: a new
            :class:`~webex_byova.media._metrics.MediaMetrics`, as :attr:`metrics`).
        tracer_provider: OpenTelemetry tracer provider for conversation/turn spans (default:
            the global one; a no-op without the ``otel`` extra).
    """

    def __init__(
        self,
        config: MediaServerConfig | None = None,
        *,
        agents: Iterable[VirtualAgent | str] = (),
        verifier: JWSVerifier | None = None,
        store: ConversationStore | None = None,
        detector_factory: Callable[[int, InputSettings], SpeechDetector] | None = None,
        clock: Callable[[], float] = time.monotonic,
        metrics: MediaMetrics | None = None,
        tracer_provider: Any = None,
    ) -> None:
        self.config = config or MediaServerConfig()
        self.metrics = metrics if metrics is not None else MediaMetrics()
        self.tracer = MediaTracer(tracer_provider)
        self._clock = clock
        self._agents: list[VirtualAgent] = [
            VirtualAgent.parse(a) for a in (*self.config.agents, *agents)
        ]
        self._agent_provider: AgentProvider | None = None
        self._provider_takes_org = False
        self._handlers: dict[tuple[str, str | None], list[Handler]] = {}
        self._wanted: set[str] = set()
        self._connector: MediaConnector | None = None
        self._verifier = verifier
        self._owns_verifier = False
        self._store: ConversationStore = (
            store if store is not None else conversation_store_for(self.config)
        )
        self._owns_store = store is None
        #: a store other processes share: records may move (see _attach and expire_idle)
        self._shared_store = not isinstance(self._store, InMemoryConversationStore)
        #: the plain in-memory store (not a subclass, whose async methods may do more):
        #: written inline, no task per write
        self._memory_store = self._store if type(self._store) is InMemoryConversationStore else None
        self._draining = False
        self._conversation_ended = asyncio.Event()  # set whenever one ends (drain waits)
        self._detector_factory = detector_factory
        self._vad_batchers: dict[int, VadBatcher | None] = {}  # per sample rate
        self._live: dict[str, Session] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._grpc: GrpcFrontEnd | None = None
        self._ws: WsFrontEnd | None = None
        self._ws_port = 0
        self._front_ends: list[FrontEnd] = []
        self._port = 0
        self._stopping = False
        self._stopped = asyncio.Event()
        self._sweeper: asyncio.Task[None] | None = None
        self._open_rpcs = 0
        self._rpcs_idle = asyncio.Event()
        #: Conversations ended (reason ``evicted``) to make room at ``max_conversations``:
        #: the least recently active one without an open turn goes first. A counter for
        #: metrics; it only grows.
        self.conversations_evicted = 0
        self._default_settings = InputSettings(
            mode=self.config.input_mode,
            dtmf_input_length=self.config.dtmf_input_length,
            dtmf_inter_digit_timeout_ms=self.config.dtmf_inter_digit_timeout_ms,
            dtmf_terminator=self.config.dtmf_terminator,
            complete_timeout_ms=self.config.complete_timeout_ms,
            incomplete_timeout_ms=self.config.incomplete_timeout_ms,
            max_speech_timeout_ms=self.config.max_speech_timeout_ms,
            no_input_timeout_ms=self.config.no_input_timeout_ms,
        )

    @classmethod
    def from_env(cls, **kwargs: Any) -> BYOVAMediaServer:
        """Construct server from ``WEBEX_MEDIA_*`` environment variables."""
        return cls(MediaServerConfig.from_env(), **kwargs)

    # ------------------------------------------------------------------ registration

    def on(self, event: str, *, virtual_agent_id: str | None = None) -> Callable[[H], H]:
        """Decorator to register an async or sync event handler.

        The handler is called with the event object (see :mod:`webex_byova.media.events`).
        With ``virtual_agent_id`` it only runs for conversations of that agent, and replaces
        the agent-independent handlers of that event for them. Unknown names raise
        :class:`ValueError`. Sync handlers run on the event loop: keep them short.
        """
        if event not in EVENT_NAMES:
            raise ValueError(f"unknown event {event!r}; expected one of {sorted(EVENT_NAMES)}")

        def register(func: H) -> H:
            if not callable(func):
                raise TypeError("a handler must be callable")
            self._handlers.setdefault((event, virtual_agent_id), []).append(func)
            self._wanted.add(event)
            return func

        return register

    def handler(self, event: str, *, virtual_agent_id: str | None = None) -> Callable[[H], H]:
        """Alias for :meth:`on`."""
        return self.on(event, virtual_agent_id=virtual_agent_id)

    def use_proxy(self, connector: Any) -> None:
        """Attach a proxy connector (:class:`~webex_byova.media._connector.MediaConnector`).

        It receives every event after the local handlers, and acts on the same objects.
        """
        if not callable(getattr(connector, "on_event", None)):
            raise TypeError("a connector needs an async on_event(event) method")
        self._connector = connector

    def add_agent(
        self,
        virtual_agent_id: str,
        name: str = "",
        *,
        is_default: bool = False,
        attributes: Mapping[str, str] | None = None,
    ) -> VirtualAgent:
        """Offer another virtual agent in ``ListVirtualAgents``."""
        agent = VirtualAgent(virtual_agent_id, name, is_default, dict(attributes or {}))
        self._agents.append(agent)
        return agent

    def agent_provider(self, func: AgentProvider) -> AgentProvider:
        """Decorator: ``func(customer_org_id)`` (sync or async) lists the agents dynamically.

        A provider that takes a ``verified_org`` keyword (or ``**kwargs``) also gets the org
        of the caller's verified token (a bare UUID; ``None`` when tokens are not verified).
        With tokens verified, a ``customer_org_id`` of another org never reaches it.
        """
        self._agent_provider = func
        try:
            params = list(inspect.signature(func).parameters.values())
        except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
            params = []
        self._provider_takes_org = any(
            p.name == "verified_org" or p.kind is inspect.Parameter.VAR_KEYWORD for p in params
        )
        return func

    # ------------------------------------------------------------------ properties

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        return self._port

    @property
    def address(self) -> str:
        """``host:port`` for clients (``127.0.0.1`` when bound to all interfaces)."""
        host = self.config.host
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        return f"{host}:{self._port}"

    @property
    def ws_port(self) -> int:
        """The bound WebSocket port (after :meth:`start` with ``transport`` websocket/both)."""
        return self._ws_port

    @property
    def ws_url(self) -> str:
        """The WebSocket origin for clients (``ws://127.0.0.1:P``; ``wss://`` with TLS)."""
        host = self.config.ws_host
        if host in ("0.0.0.0", "::", "[::]", ""):
            host = "127.0.0.1"
        return f"{'wss' if self.config.ws_tls else 'ws'}://{host}:{self._ws_port}"

    @property
    def sessions(self) -> Mapping[str, Session]:
        """Live conversations by id (read-only view)."""
        return dict(self._live)

    # ------------------------------------------------------------------ hub interface

    def clock(self) -> float:
        """Monotonic time in seconds."""
        return self._clock()

    def wants(self, event_name: str, virtual_agent_id: str) -> bool:
        """Whether anyone (handler or connector) receives ``event_name``."""
        return self._connector is not None or event_name in self._wanted

    def make_detector(self, sample_rate: int, settings: InputSettings) -> SpeechDetector:
        """A new end-pointer for a conversation's audio (``config.vad`` picks the detector).

        The call core keeps it for the whole conversation and calls ``reset_turn()`` between
        turns; ``settings`` give the speech timers. A Silero detector is batched (one model run
        per ``vad_batch_ms`` for all conversations, see :mod:`._vad_batch`) when onnxruntime
        is installed and ``vad_batch_ms`` > 0.
        """
        if self._detector_factory is not None:
            return self._detector_factory(sample_rate, settings)
        batcher = self._vad_batcher(sample_rate)
        detector = detector_from_config(
            self.config,
            sample_rate=sample_rate,
            complete_timeout_ms=settings.complete_timeout_ms,
            max_speech_ms=settings.max_speech_timeout_ms,
            batch=None if batcher is None else batcher.engine,
        )
        if batcher is None or not isinstance(detector, SileroVAD):
            return detector
        fallback = self.config.model_copy(update={"vad": "energy"})
        return BatchedDetector(
            detector,
            batcher,
            lambda: detector_from_config(fallback, sample_rate=sample_rate).classifier,
        )

    def _vad_batcher(self, sample_rate: int) -> VadBatcher | None:
        """This server's Silero batch for ``sample_rate`` (None: not batching)."""
        if sample_rate not in self._vad_batchers:
            batcher = None
            kind = self.config.vad
            if self.config.vad_batch_ms > 0 and kind in ("auto", "silero"):
                engine = SileroBatch.shared(sample_rate)
                if engine is not None:
                    batcher = VadBatcher(engine, tick_ms=self.config.vad_batch_ms)
            self._vad_batchers[sample_rate] = batcher
        return self._vad_batchers[sample_rate]

    def _handlers_for(self, name: str, agent_id: str) -> list[Handler]:
        specific = self._handlers.get((name, agent_id))
        if specific:
            return specific
        return self._handlers.get((name, None), [])

    def dispatch(self, event: MediaEvent) -> None:
        """Run the handlers (and connector) of ``event`` in a task of their own."""
        if not self._handlers_for(event.name, event.session.virtual_agent_id) and (
            self._connector is None
        ):
            return
        task = asyncio.get_running_loop().create_task(self.run_handlers(event))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        if event.turn is not None and not event.turn.closed:
            event.turn._track(task)

    async def run_handlers(self, event: MediaEvent) -> None:
        """Call each handler of ``event`` in order, then the connector."""
        handlers = list(self._handlers_for(event.name, event.session.virtual_agent_id))
        connector = self._connector
        for handler in handlers:
            try:
                result = handler(event)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                await self._handler_failed(event, exc)
                return
            except asyncio.CancelledError as exc:
                if (error := _self_cancelled(exc)) is None:
                    raise
                await self._handler_failed(event, error)
                return
        if connector is not None:
            try:
                await connector.on_event(event)
            except Exception as exc:
                await self._handler_failed(event, exc)
            except asyncio.CancelledError as exc:
                if (error := _self_cancelled(exc)) is None:
                    raise
                await self._handler_failed(event, error)

    def report_error(
        self, turn: Turn, exc: Exception, what: str, event: MediaEvent | None = None
    ) -> None:
        """A failure outside a handler call (a prompt's audio source raised, a handler timeout).

        Handled like a handler exception (logged, ``error`` dispatched once, Webex answered);
        the turn stays open until that is done. ``event`` is the error's ``source``, if any.
        """
        task = asyncio.get_running_loop().create_task(
            self._failed(turn.session, turn, exc, event, what, own_reply=True)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        turn._error_tasks.add(task)
        task.add_done_callback(turn._error_tasks.discard)
        turn._track(task)

    async def _handler_failed(self, event: MediaEvent, exc: Exception) -> None:
        await self._failed(event.session, event.turn, exc, event, f"{event.name} handler")

    async def _failed(
        self,
        session: Session,
        failed_turn: Turn | None,
        exc: Exception,
        event: MediaEvent | None,
        what: str,
        *,
        own_reply: bool = False,
    ) -> None:
        """Log, dispatch ``error`` once, and answer Webex so the call continues.

        Each ``error`` handler gets at most ``handler_timeout_s`` (then it is cancelled), so
        the answer goes out even if they hang. ``own_reply``: the failure is the turn's own
        reply (its audio source, its timeout): answer on it while its FINAL is not built.
        """
        session_log = _log.getChild("handler")
        tracking = failed_turn.tracking_id if failed_turn is not None else session.tracking_id
        context = log_context(session.conversation_id, tracking)
        transport = failed_turn.transport if failed_turn is not None else session._transport
        timed_out = isinstance(exc, HandlerTimeoutError)
        if timed_out:
            self.metrics.handler_timeout(transport)
        else:
            self.metrics.handler_error(transport)
        session_log.error(
            "[%s] %s raised %s: %s",
            session.log_id,
            what,
            type(exc).__name__,
            printable(exc, 500),
            exc_info=exc,
            extra={
                **context,
                "event": "handler_error",
                "outcome": "timeout" if timed_out else "error",
                "transport": transport,
            },
        )
        if not isinstance(event, ErrorEvent):
            error = ErrorEvent(session=session, turn=failed_turn, exception=exc, source=event)
            targets: list[Handler] = list(self._handlers_for("error", session.virtual_agent_id))
            if self._connector is not None:
                targets.append(self._connector.on_event)
            for target in targets:
                await self._run_error_handler(target, error, session.log_id, context)
        if session.ended or isinstance(event, SessionEnd | TurnEnded):
            return
        turn = failed_turn
        if own_reply and turn is not None and not turn._final_sent and not turn.closed:
            pass  # still answerable, even if its FINAL is already queued
        elif turn is None or turn.finished or turn.closed:
            # Answer on the turn this handler now works for (e.g. the one whose input it got
            # from collect_input()), never on an unrelated open RPC of the call.
            task = asyncio.current_task()
            turn = next(
                (t for t in session.turns if task in t._tasks and not t.finished and not t.closed),
                None,
            )
        if turn is None:
            return
        turn._failure = "timeout" if timed_out else "error"
        cfg = self.config
        text = cfg.error_prompt_text if cfg.error_response == "prompt" else None
        turn._error_reply(text, end_call=cfg.end_call_on_error, error=type(exc).__name__)

    async def _run_error_handler(
        self, target: Handler, error: ErrorEvent, log_id: str, context: Mapping[str, str]
    ) -> None:
        """One ``error`` handler, bounded by ``handler_timeout_s``; its failures are logged."""
        session_log = _log.getChild("handler")
        timeout = self.config.handler_timeout_s or None
        try:
            async with asyncio.timeout(timeout) as scope:
                result = target(error)
                if inspect.isawaitable(result):
                    await result
        except TimeoutError:
            if not scope.expired():
                session_log.exception("[%s] error handler raised", log_id, extra=context)
            else:
                session_log.error(
                    "[%s] error handler did not return within handler_timeout_s=%g; cancelled",
                    log_id,
                    timeout,
                    extra=context,
                )
        except Exception:
            session_log.exception("[%s] error handler raised", log_id, extra=context)
        except asyncio.CancelledError as exc:
            if _self_cancelled(exc) is None:
                raise
            session_log.error("[%s] error handler raised CancelledError", log_id, extra=context)

    def session_ended(self, session: Session, reason: str, event: SessionEnd | None) -> None:
        """Drop an ended conversation and dispatch ``session_end``."""
        if self._live.get(session.conversation_id) is session:
            del self._live[session.conversation_id]
        self._store_delete(session.conversation_id)
        self._conversation_ended.set()
        outcome = conversation_outcome(reason)
        self.metrics.conversation_ended(session._transport, outcome)
        if reason in ("idle_timeout", "server_stop"):
            self.metrics.conversation_evicted("idle" if reason == "idle_timeout" else reason)
        session._span.end(outcome)
        _log.info(
            "[%s] session ended: %s (%s)",
            session.log_id,
            reason,
            outcome,
            extra={
                **log_context(session.conversation_id, session.tracking_id),
                "event": "session_end",
                "outcome": outcome,
                "reason": reason,
                "transport": session._transport,
            },
        )
        self.dispatch(event or SessionEnd(session=session, reason=reason))

    def _store_put(self, record: ConversationRecord) -> asyncio.Task[None] | None:
        """Write ``record`` to the store: inline for the in-memory store (a dict write, in the
        order the writes are made, as the tasks of other stores run), else in a task (returned:
        a gRPC turn completes its RPC once it is done, see :meth:`TurnHandle.saved`)."""
        memory = self._memory_store
        if memory is None:
            return self._spawn(self._store.put(record))
        try:
            memory.put_now(record)
        except Exception:
            _log.exception("conversation store write failed")
        return None

    def _store_delete(self, conversation_id: str) -> None:
        """Forget a record (inline for the in-memory store, like :meth:`_store_put`)."""
        memory = self._memory_store
        if memory is None:
            self._spawn(self._store.delete(conversation_id))
        else:
            memory.delete_now(conversation_id)  # a dict pop: cannot fail

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task[None]:
        async def run() -> None:
            try:
                await coro
            except ConversationConflictError:
                pass  # the store logged it (a write of another process won; nothing lost)
            except Exception:
                _log.exception("conversation store write failed")

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # ------------------------------------------------------------------ agents

    async def list_agents(
        self, customer_org_id: str = "", *, verified_org: str | None = None
    ) -> list[VirtualAgent]:
        """The agents offered to ``customer_org_id`` (provider first, then configured).

        ``verified_org`` (the verified token's org) is passed on to a provider that takes it.
        """
        if self._agent_provider is not None:
            if self._provider_takes_org:
                result = self._agent_provider(customer_org_id, verified_org=verified_org)
            else:
                result = self._agent_provider(customer_org_id)
            if inspect.isawaitable(result):
                result = await result
            return [VirtualAgent.parse(a) for a in result]
        if self._agents:
            return list(self._agents)
        return [VirtualAgent("default", "Default virtual agent", is_default=True)]

    @staticmethod
    def _default_index(agents: list[VirtualAgent]) -> int:
        for i, agent in enumerate(agents):
            if agent.is_default:
                return i
        return 0

    async def _agents_or_reject(self, org_id: str, verified_org: str | None) -> list[VirtualAgent]:
        try:
            agents = await self.list_agents(org_id, verified_org=verified_org)
        except Exception as exc:
            _log.exception("agent provider failed")
            raise CallRejected("internal", "agent provider failed") from exc
        except asyncio.CancelledError as exc:
            if _self_cancelled(exc) is None:
                raise
            _log.error("agent provider raised CancelledError")
            raise CallRejected("internal", "agent provider failed") from exc
        return agents

    @staticmethod
    def _bound_org(customer_org_id: str, verified_org: str | None) -> str:
        """The org a request is served for: a verified caller speaks only for its own org.

        Without a verified token: ``customer_org_id`` as sent. With one: an org id (UUID or
        Hydra) of another org is refused (``permission_denied``); an empty value, or one that
        is no org id at all (it names no tenant), is replaced by the token's org.
        """
        if verified_org is None:
            return customer_org_id
        if not customer_org_id:
            return verified_org
        if _org_key(customer_org_id) is None and _org_key(verified_org) is not None:
            return verified_org
        if not _same_org(customer_org_id, verified_org):
            raise CallRejected("permission_denied", "customer_org_id does not match the token")
        return customer_org_id

    async def offered_agents(
        self, customer_org_id: str = "", *, verified_org: str | None = None
    ) -> list[VirtualAgent]:
        """The agents to list to a front end's discovery call, exactly one marked default.

        ``verified_org`` is the org of the caller's verified token: a ``customer_org_id`` of
        another org is refused (``permission_denied``). Raises
        :class:`~webex_byova.media._frontend.CallRejected` (``internal``) when the agent
        provider fails, ``invalid_argument`` for an org id over the size limit.
        """
        from ._bounds import MAX_ORG_ID

        if len(customer_org_id) > MAX_ORG_ID:
            raise CallRejected(
                "invalid_argument", f"customer_org_id longer than {MAX_ORG_ID} characters"
            )
        org = self._bound_org(customer_org_id, verified_org)
        agents = await self._agents_or_reject(org, verified_org)
        default = self._default_index(agents)
        return [
            dataclasses.replace(agent, is_default=i == default) for i, agent in enumerate(agents)
        ]

    async def _resolve_agent(self, agent_id: str, org_id: str, verified_org: str | None) -> str:
        agents = await self._agents_or_reject(org_id, verified_org)
        if not agents:
            raise CallRejected("invalid_argument", "No virtual agents available")
        if not agent_id:
            return agents[self._default_index(agents)].virtual_agent_id
        if any(a.virtual_agent_id == agent_id for a in agents):
            return agent_id
        raise CallRejected("not_found", f"Agent not found: {printable(agent_id)}")

    # ------------------------------------------------------------------ front-end interface

    def _check_accepting(self) -> None:
        """Raise ``unavailable`` while the server shuts down."""
        if self._stopping:
            raise CallRejected("unavailable", "server is shutting down")

    async def _attach(
        self, first: CallerRequest, verified_org: str | None, transport: Transport, tracking: str
    ) -> Session:
        check_first_request(first)
        cid = first.conversation_id
        if self._draining and cid not in self._live:
            raise CallRejected("unavailable", "server is draining: no new conversations")
        org = self._bound_org(first.customer_org_id, verified_org)
        agent_id = first.virtual_agent_id
        session = self._live.get(cid)
        if session is not None and self._shared_store:
            await self._refresh(session)
        if session is None:
            record = await self._store.get(cid)
            resolved = await self._resolve_agent(agent_id, org, verified_org)
            if record is not None and agent_id and record.virtual_agent_id != resolved:
                raise CallRejected(
                    "invalid_argument", "virtual_agent_id does not match the existing conversation"
                )
            session = self._live.get(cid)  # another turn may have created it meanwhile
            if session is None:
                if len(self._live) >= self.config.max_conversations and not self._evict_one():
                    raise CallRejected(
                        "resource_exhausted",
                        f"too many conversations (max {self.config.max_conversations})",
                    )
                now = self.clock()
                loaded = record is not None
                if record is None:
                    record = ConversationRecord(
                        conversation_id=cid,
                        virtual_agent_id=resolved,
                        customer_org_id=org,
                        created_at=now,
                        last_active=now,
                        settings=self._default_settings,
                    )
                self._check_org(record.customer_org_id, verified_org)
                session = Session(self, record)
                self._live[cid] = session
                self._began(session, transport, tracking, loaded=loaded)
                self._store_put(record)
                return session
        if agent_id and agent_id != session.virtual_agent_id:
            raise CallRejected(
                "invalid_argument", "virtual_agent_id does not match the existing conversation"
            )
        self._check_org(session.customer_org_id, verified_org)
        if len(session.turns) >= self.config.max_rpcs_per_conversation:
            raise CallRejected(
                "resource_exhausted",
                f"too many concurrent RPCs for conversation {printable(cid)}",
            )
        return session

    def _began(
        self, session: Session, transport: Transport, tracking: str, *, loaded: bool
    ) -> None:
        """A Session object now lives in this process: metrics, span and the start log."""
        session._transport = transport
        session._span = self.tracer.conversation(
            session.conversation_id,
            virtual_agent_id=session.virtual_agent_id,
            transport=transport,
            tracking_id=tracking,
        )
        if loaded:  # a turn of a conversation another process (or a restart) served before
            self.metrics.conversation_resumed(transport)
        else:
            self.metrics.conversation_started(transport)
        _log.info(
            "[%s] conversation %s (%s, agent %s)",
            session.log_id,
            "loaded from the store" if loaded else "started",
            transport,
            printable(session.virtual_agent_id, 200),
            extra={
                **log_context(session.conversation_id, tracking),
                "event": "session_resume" if loaded else "session_start",
                "transport": transport,
            },
        )

    async def _refresh(self, session: Session) -> None:
        """Shared store: adopt the stored record when another process served later turns.

        ``turns`` counts every turn opened for the conversation (in any process), so a stored
        record with more turns than ours is newer: its ``session.state``, input settings and
        transcript replace this process's stale copy. Reading also tells the store the
        current version, so this process's next write builds on it.
        """
        record = await self._store.get(session.conversation_id)
        if record is not None and record.turns > session.record.turns:
            session.record = record

    @staticmethod
    def _check_org(conversation_org: str, verified_org: str | None) -> None:
        if (
            verified_org is not None
            and conversation_org
            and not _same_org(conversation_org, verified_org)
        ):
            raise CallRejected("permission_denied", "conversation belongs to another org")

    def _evict_one(self) -> bool:
        """At capacity: end the least recently active conversation with no open turn.

        Returns False when every live conversation has an open turn (then the new one is
        refused). Counted in :attr:`conversations_evicted`.
        """
        idle = [s for s in self._live.values() if not s.turns and not s.ended]
        if not idle:
            return False
        victim = min(idle, key=lambda s: s.record.last_active)
        self.conversations_evicted += 1
        _log.warning(
            "[%s] evicted (max_conversations=%d reached; least recently active, no open turn)",
            victim.log_id,
            self.config.max_conversations,
            extra=log_context(victim.conversation_id, victim.tracking_id),
        )
        victim._end("evicted", None)
        return True

    async def open_turn(
        self,
        first: CallerRequest,
        *,
        transport: Transport,
        tracking_id: str = "",
        verified_org: str | None = None,
    ) -> TurnHandle:
        """Open a turn of ``first.conversation_id`` with its first message (front ends only).

        Binds or creates the conversation (agent resolution, limits), handles ``first`` and
        returns the :class:`~webex_byova.media._frontend.TurnHandle` the front end drives.
        ``verified_org`` is the org claim of the caller's verified token, if the front end has
        one: a request or conversation of another org is refused. Raises
        :class:`~webex_byova.media._frontend.CallRejected`.
        """
        try:
            self._check_accepting()
            try:
                session = await self._attach(first, verified_org, transport, tracking_id)
            except CallRejected:
                raise
            except Exception as exc:  # the conversation store failed (Redis down …)
                _log.exception("[%s] conversation store failed", printable(first.conversation_id))
                raise CallRejected("unavailable", "conversation store unavailable") from exc
        except CallRejected as rejected:
            _log.info(
                "[%s] rejected: %s",
                printable(first.conversation_id),
                printable(rejected.detail, 300),
                extra={
                    **log_context(first.conversation_id, tracking_id),
                    "event": "turn_rejected",
                    "reason": rejected.kind,
                    "transport": transport,
                },
            )
            raise
        turn = session._open_turn(turn_kind(first), tracking_id, transport)
        self._open_rpcs += 1
        self._rpcs_idle.clear()
        turn.log.debug("%s turn started (%s)", turn.kind, transport)
        self.dispatch(TurnStarted(session=session, turn=turn, kind=turn.kind))
        handle = TurnHandle(self, turn)
        hangup = isinstance(first.input, EventIn) and first.input.type == "session_end"
        if session._drain_action is not None and not hangup:
            # Drained: the conversation outlived drain_timeout_s; this is the turn that ends it.
            turn._end_for_drain(session._drain_action)
        else:
            turn._handle(first.input)
        await handle.drain()
        return handle

    def end_conversation(self, conversation_id: str, reason: str = "connection_lost") -> bool:
        """End a live conversation from a front end (e.g. its WebSocket was lost).

        Open turns are completed without a FINAL, a waiting ``collect_input()`` fails and
        ``session_end`` is dispatched with ``reason``. Returns ``False`` if it was not live.
        """
        session = self._live.get(conversation_id)
        if session is None or session.ended:
            return False
        session._end(reason, None)
        return True

    def _turn_finished(self, turn: Turn) -> asyncio.Task[None] | None:
        """A turn's handle is done (responses ended or the caller went away).

        Returns the store write of the conversation's record when it runs in a task (a
        shared store), for the front end to wait for before it completes the RPC.
        """
        session = turn.session
        self._open_rpcs -= 1
        if not self._open_rpcs:
            self._rpcs_idle.set()
        turn.log.debug("%s turn %s", turn.kind, turn.outcome)
        self.dispatch(TurnEnded(session=session, turn=None, kind=turn.kind, outcome=turn.outcome))
        if not session.ended:
            session.record.last_active = self.clock()
            problem = plain_data_problem(session.record.user_state, "state")
            if problem is None:
                return self._store_put(session.record)
            if not session._state_reported:  # once per conversation: no log flood
                session._state_reported = True
                _log.error(
                    "[%s] session.state is not plain data, conversation not saved: %s",
                    session.log_id,
                    printable(problem, 300),
                    extra=log_context(session.conversation_id, session.tracking_id),
                )
        return None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Bind and start the configured front ends (gRPC, WebSocket or both)."""
        if self._front_ends:
            raise RuntimeError("server already started")
        cfg = self.config
        _log.setLevel(cfg.log_level)
        if cfg.verify_tokens and self._verifier is None:
            self._verifier = self._build_verifier()
            self._owns_verifier = True
        self._stopping = False
        self._draining = False
        verifier = self._verifier if cfg.verify_tokens else None
        grpc_front = GrpcFrontEnd(self, verifier=verifier) if cfg.transport != "websocket" else None
        ws_front = None
        if cfg.transport != "grpc":
            from ._ws_frontend import WsFrontEnd  # websockets is loaded only when used

            ws_front = WsFrontEnd(self, verifier=verifier)
        fronts: list[FrontEnd] = [f for f in (grpc_front, ws_front) if f is not None]
        started: list[FrontEnd] = []
        try:
            for front in fronts:
                await front.start()
                started.append(front)
        except BaseException:
            for front in started:
                await front.stop(0)
            raise
        self._front_ends = started
        self._grpc, self._ws = grpc_front, ws_front
        if cfg.verify_tokens and not self._expects_url():
            _log.warning(
                "tokens are verified but no expected_url is configured: any data-source token "
                "of a trusted issuer is accepted (set WEBEX_MEDIA_EXPECTED_URL to this "
                "server's data-source URL)"
            )
        self._port = grpc_front.port if grpc_front is not None else 0
        self._ws_port = ws_front.port if ws_front is not None else 0
        self._stopped.clear()
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        if self._grpc is not None:
            _log.info(
                "BYOVA media server listening on %s:%d (%s, %s mode, tokens %s)",
                cfg.host,
                self._port,
                "TLS" if cfg.tls else "plaintext",
                cfg.audio_mode,
                "verified" if cfg.verify_tokens else "NOT verified",
            )
        if self._ws is not None:
            _log.info(
                "BYOVA WebSocket server listening on %s:%d (%s, tokens %s)",
                cfg.ws_host,
                self._ws_port,
                "wss" if cfg.ws_tls else "plaintext ws",
                "verified" if cfg.verify_tokens else "NOT verified",
            )

    def _expects_url(self) -> bool:
        """Whether every transport that runs pins the data-source URL its tokens must name."""
        cfg = self.config
        defaults = getattr(self._verifier, "_defaults", None)
        grpc_pinned = bool(cfg.expected_url or getattr(defaults, "url", None))
        ws_pinned = bool(cfg.ws_expected_url)
        if cfg.transport == "websocket":
            return ws_pinned
        if cfg.transport == "both":
            return grpc_pinned and ws_pinned
        return grpc_pinned

    def _build_verifier(self) -> JWSVerifier:
        from ..config import BYOVAConfig
        from ..jws import JWSVerifier

        cfg = self.config
        return JWSVerifier(
            BYOVAConfig(region=cfg.region),
            extra_issuers=cfg.extra_issuers,
            expected_url=cfg.expected_url,
            expected_schema_id=cfg.expected_schema_id,
            expected_audience=cfg.expected_audience,
            expected_org_id=cfg.expected_org_id,
            leeway=cfg.token_leeway_s,
        )

    async def drain(self, drain_timeout_s: float | None = None, *, grace: float = 5.0) -> int:
        """Graceful drain: stop taking conversations, let the live ones end, end the rest.

        Health goes NOT_SERVING and turns of *new* conversations are refused (``unavailable``:
        gRPC ``UNAVAILABLE``, HTTP 503 on a WebSocket upgrade) while turns of live ones go on.
        After ``drain_timeout_s`` seconds (default: the config's) every conversation still live is
        ended with ``drain_action`` (``TRANSFER_TO_AGENT`` by default, or ``SESSION_END``): on
        its open turn if it has one that can still answer, else on the next turn Webex opens
        for it, waiting up to ``grace`` seconds for that turn (not at all when the drain timeout
        is 0). A conversation that got no turn by then is left to :meth:`stop`, which logs it
        as dropped. Returns how many
        conversations were ended by the drain action. :meth:`serve` and ``byova serve`` run
        this on SIGTERM/SIGINT (``stop(drain=True)``).
        """
        if not self._front_ends:
            return 0
        loop = asyncio.get_running_loop()
        self._draining = True
        for front in self._front_ends:
            await front.begin_shutdown()
        await self._forget_moved()
        limit = (
            self.config.drain_timeout_s if drain_timeout_s is None else max(0.0, drain_timeout_s)
        )
        _log.info(
            "draining: %d live conversations continue for up to %gs; new ones refused",
            len(self._live),
            limit,
            extra={"event": "drain"},
        )
        deadline = loop.time() + limit
        while self._live and loop.time() < deadline:
            await self._until(lambda: not self._live, min(deadline, loop.time() + 1.0))
            await self._forget_moved()  # shared store: calls the balancer moved elsewhere
        action = self.config.drain_action
        ended = 0
        answered: set[str] = set()  # ended on their open turn (counted here, once)
        for session in list(self._live.values()):
            if session.ended or session._drain_action is not None:
                continue
            session._drain_action = action
            turn = session.current_turn
            if turn is not None and turn._end_for_drain(action):
                ended += 1
                answered.add(session.conversation_id)
        waiting = [s for s in self._live.values() if not s.ended]
        next_turn = [s for s in waiting if s.conversation_id not in answered]
        if next_turn:
            _log.warning(
                "drain timed out: %d conversations get %s on their next turn",
                len(next_turn),
                action,
                extra={"event": "drain_timeout"},
            )
        # drain_timeout_s=0 asks for no waiting at all: nor for the next turns
        wait = max(0.0, grace) if limit else 0.0
        await self._until(lambda: all(s.ended for s in waiting), loop.time() + wait)
        reason = "session_end" if action == "end_session" else "transfer_to_agent"
        ended += sum(1 for s in next_turn if s.ended and s.end_reason == reason)
        return ended

    async def _until(self, done: Callable[[], bool], deadline: float) -> None:
        """Wait until ``done()`` (checked whenever a conversation ends) or the loop's
        ``deadline``."""
        loop = asyncio.get_running_loop()
        while not done() and loop.time() < deadline:
            self._conversation_ended.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._conversation_ended.wait(), deadline - loop.time())

    async def stop(self, grace: float = 5.0, *, drain: bool = False) -> None:
        """Stop the server: refuse new RPCs, let turns in flight finish for ``grace``.

        With ``drain=True`` a graceful :meth:`drain` comes first (live conversations continue
        up to ``drain_timeout_s``, then get ``drain_action``). Without it, conversations still
        live are ended at once (``server_stop``, logged as dropped).
        """
        fronts = self._front_ends
        if not fronts:
            return
        if drain:
            await self.drain(grace=grace)
        self._stopping = True
        for front in fronts:
            await front.begin_shutdown()
        deadline = self.clock() + max(0.0, grace)
        if self._open_rpcs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rpcs_idle.wait(), max(0.0, grace))
        for front in fronts:
            await front.stop(max(0.0, deadline - self.clock()))
        await self._forget_moved()
        dropped = [s for s in self._live.values() if not s.ended]
        if dropped:
            _log.warning(
                "stopping with %d live conversations: dropped without a transfer",
                len(dropped),
                extra={"event": "server_stop"},
            )
        for session in dropped:
            session._end("server_stop", None)
        for batcher in self._vad_batchers.values():
            if batcher is not None:
                batcher.close()
        self._vad_batchers.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        pending = [t for t in self._tasks if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=max(0.1, deadline - self.clock()))
            for task in pending:
                task.cancel()
        if self._connector is not None:
            with contextlib.suppress(Exception):
                await self._connector.aclose()
        if self._owns_verifier and self._verifier is not None:
            with contextlib.suppress(Exception):
                await self._verifier.aclose()
            self._verifier = None
        close_store = getattr(self._store, "aclose", None) if self._owns_store else None
        if close_store is not None:
            with contextlib.suppress(Exception):
                await close_store()
        self._grpc = None
        self._ws = None
        self._front_ends = []
        self._stopped.set()
        _log.info("BYOVA media server stopped")

    async def wait_closed(self) -> None:
        """Wait until :meth:`stop` has finished."""
        await self._stopped.wait()

    async def serve(self) -> None:
        """Start the server and wait until interrupted (SIGINT/SIGTERM), then drain and stop.

        Configures logging (``log_level``, ``WEBEX_MEDIA_LOG_FORMAT``) unless the application
        already did, and serves :attr:`metrics` on ``/metrics`` when ``metrics_port`` is set;
        a signal runs the graceful :meth:`drain` before stopping.
        """
        configure_logging(self.config.log_level)
        await self.start()
        exporter = None
        if self.config.metrics_port is not None:
            from ._metrics import start_metrics_server

            exporter = start_metrics_server(
                self.config.metrics_port, self.config.host, metrics=self.metrics
            )
            _log.info("metrics on %s", exporter.url)
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        installed = []
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
            except (NotImplementedError, RuntimeError) as exc:
                # A loop outside the main thread (RuntimeError), or a platform without
                # loop signal handlers (NotImplementedError): stop() still ends serve().
                _log.info("%s not handled here (%s): stop() ends serve()", sig.name, exc)
        try:
            waiter = loop.create_task(stop.wait())
            closed = loop.create_task(self._stopped.wait())
            await asyncio.wait({waiter, closed}, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            closed.cancel()
        finally:
            for sig in installed:
                loop.remove_signal_handler(sig)
            try:
                await self.stop(drain=True)
            finally:
                if exporter is not None:
                    exporter.stop()

    async def __aenter__(self) -> BYOVAMediaServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ------------------------------------------------------------------ expiry

    async def expire_idle(self) -> int:
        """End conversations without an open RPC idle for ``idle_timeout_s``; return count."""
        now = self.clock()
        limit = self.config.idle_timeout_s
        expired = [
            s
            for s in self._live.values()
            if not s.turns and now - s.record.last_active >= limit and not s.ended
        ]
        for session in expired:
            if self._shared_store and await self._moved(session):
                continue
            if not session.ended and not session.turns:
                session._end("idle_timeout", None)
        return len(expired)

    async def _forget_moved(self) -> None:
        """Shared store: forget copies of conversations other processes continued or ended
        (they must not hold up a drain, nor be ended a second time by a stop)."""
        if self._shared_store:
            for session in list(self._live.values()):
                if not session.turns and not session.ended:
                    await self._moved(session)

    async def _moved(self, session: Session) -> bool:
        """Shared store: forget (quietly) a copy another process took over or ended.

        Only the process holding the newest record ends an idle conversation, so handlers see
        one ``session_end`` per call. True if ``session`` was forgotten.
        """
        try:
            record = await self._store.get(session.conversation_id)
        except Exception:
            _log.exception("[%s] conversation store read failed", session.log_id)
            return False
        if record is not None and record.turns <= session.record.turns:
            return False
        if self._live.get(session.conversation_id) is session:
            del self._live[session.conversation_id]
        session._forget("moved" if record is not None else "ended_elsewhere")
        self.metrics.conversation_released(session._transport)
        session._span.end("moved")
        _log.debug(
            "[%s] conversation continued elsewhere; local copy forgotten",
            session.log_id,
            extra={
                **log_context(session.conversation_id, session.tracking_id),
                "event": "session_moved",
            },
        )
        return True

    def expire_overdue_turns(self) -> int:
        """Answer turns whose handlers overran ``handler_timeout_s``; return how many.

        Per-turn timers do this on their own; the deadline is read from :meth:`clock`, so call
        this after moving an injected clock. Each overdue turn is handled like a handler
        exception with a :class:`~webex_byova.media.session.HandlerTimeoutError`.
        """
        turns = [turn for session in list(self._live.values()) for turn in list(session.turns)]
        return sum(turn._reply_overdue() for turn in turns)

    async def _sweep(self) -> None:
        interval = min(30.0, self.config.idle_timeout_s / 2)
        while True:
            await asyncio.sleep(interval)
            try:
                await self.expire_idle()
            except Exception:  # pragma: no cover - defensive
                _log.exception("idle sweep failed")
