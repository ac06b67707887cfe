"""gRPC front end of the media server: the thin I/O shell over the call core.

Owns everything gRPC: the ``VoiceVirtualAgent`` servicer (one ``ProcessCallerInput`` RPC per
turn, unary ``ListVirtualAgents``), the mapping of
:class:`~webex_byova.media._frontend.CallRejected` to status codes, ``grpc.health.v1``,
optional reflection, TLS / mutual TLS and the token-verifying interceptor. Messages are
translated by :mod:`webex_byova.media._grpc_codec`; all call logic is in the core
(:meth:`BYOVAMediaServer.open_turn <webex_byova.media.server.BYOVAMediaServer.open_turn>` and
the :class:`~webex_byova.media._frontend.TurnHandle` it returns).

Per RPC: read the first request, open the turn, then a reader task feeds the remaining requests
(``feed`` + ``drain``) and reports the half-close (``caller_done``); the servicer writes what
``responses()`` yields. A request that arrives after the turn's FINAL is dropped (an RPC is one
turn). Cancellation by the client closes the response iterator, which ends the turn as
``cancelled``.

Requests arrive as raw bytes (the methods are registered without a deserializer) and are
decoded here, so an undecodable message is answered ``INVALID_ARGUMENT`` with a neutral text:
as the first message of an RPC at once; later in the RPC it ends the caller's input like a
half-close, the reply that was due goes out, then the RPC ends ``INVALID_ARGUMENT``.

HTTP/2 keepalive (:func:`keepalive_options`): the server pings an idle connection every
``keepalive_time_s`` (30 s) and drops it when the ping is not answered within
``keepalive_timeout_s`` (10 s), so a vanished peer's RPCs end (cancelled) instead of holding
their turn; clients may ping every 10 s or more, even without calls.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, AsyncIterator
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from ._auth import verified_org
from ._frontend import CallRejected, RejectKind, TurnHandle
from ._grpc_codec import (
    CallerInputDecoder,
    decode_list_va_request,
    decode_voice_va_request,
    list_va_response,
    voice_va_response,
)
from ._proto import byova_common_pb2 as common
from ._proto import voicevirtualagent_pb2 as vva

if TYPE_CHECKING:
    from ..jws import JWSVerifier
    from .config import MediaServerConfig
    from .server import BYOVAMediaServer

__all__ = ["SERVICE_NAME", "STATUS_CODES", "GrpcFrontEnd", "keepalive_options"]

SERVICE_NAME = "com.cisco.wcc.ccai.media.v1.VoiceVirtualAgent"

_Context = aio.ServicerContext[Any, Any]

#: How a neutral refusal becomes a gRPC status.
STATUS_CODES: dict[RejectKind, grpc.StatusCode] = {
    "invalid_argument": grpc.StatusCode.INVALID_ARGUMENT,
    "unauthenticated": grpc.StatusCode.UNAUTHENTICATED,
    "permission_denied": grpc.StatusCode.PERMISSION_DENIED,
    "not_found": grpc.StatusCode.NOT_FOUND,
    "resource_exhausted": grpc.StatusCode.RESOURCE_EXHAUSTED,
    "unavailable": grpc.StatusCode.UNAVAILABLE,
    "failed_precondition": grpc.StatusCode.FAILED_PRECONDITION,
    "internal": grpc.StatusCode.INTERNAL,
}


def keepalive_options(cfg: MediaServerConfig) -> list[tuple[str, int]]:
    """Server HTTP/2 keepalive: detect dead peers (documented in docs/media-server.md)."""
    return [
        ("grpc.keepalive_time_ms", round(cfg.keepalive_time_s * 1000)),
        ("grpc.keepalive_timeout_ms", round(cfg.keepalive_timeout_s * 1000)),
        # Any unanswered ping (not only keepalive's) drops the peer after the same time.
        ("grpc.http2.ping_timeout_ms", round(cfg.keepalive_timeout_s * 1000)),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
    ]


class GrpcFrontEnd:
    """The gRPC listener of a :class:`~webex_byova.media.server.BYOVAMediaServer`."""

    def __init__(self, core: BYOVAMediaServer, *, verifier: JWSVerifier | None) -> None:
        self._core = core
        self._verifier = verifier
        self._server: aio.Server | None = None
        self._health: _Health | None = None
        self.port = 0

    async def start(self) -> int:
        """Bind and start; returns the bound port."""
        cfg = self._core.config
        interceptors: list[Any] = []
        if self._verifier is not None:
            from ._auth import TokenAuthInterceptor

            interceptors.append(
                TokenAuthInterceptor(
                    self._verifier,
                    exempt_health=not cfg.health_requires_auth,
                    metrics=self._core.metrics,
                )
            )
        server = aio.server(
            interceptors=interceptors,
            options=[
                ("grpc.max_receive_message_length", cfg.max_message_bytes),
                ("grpc.max_send_message_length", 64 * 1024 * 1024),
                ("grpc.so_reuseport", 1 if cfg.reuse_port else 0),
                *keepalive_options(cfg),
            ],
        )
        server.add_generic_rpc_handlers((self._method_handlers(),))
        self._health = _add_health(server)
        if cfg.reflection:
            from grpc_reflection.v1alpha import reflection

            reflection.enable_server_reflection(
                (SERVICE_NAME, "grpc.health.v1.Health", reflection.SERVICE_NAME), server
            )
        bind = f"{cfg.host}:{cfg.port}"
        if cfg.tls:
            port = server.add_secure_port(bind, _server_credentials(cfg))
        else:
            port = server.add_insecure_port(bind)
        if not port:
            raise OSError(f"could not bind {bind}")
        await server.start()
        self._server = server
        self.port = port
        return port

    async def begin_shutdown(self) -> None:
        """Health reports NOT_SERVING (load balancers drain) before the RPCs wind down."""
        if self._health is not None:
            await self._health.enter_graceful_shutdown()

    async def stop(self, grace: float) -> None:
        """Stop the listener, cancelling RPCs still open after ``grace`` seconds."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)

    def _method_handlers(self) -> grpc.GenericRpcHandler[Any, Any]:
        """``VoiceVirtualAgent`` with raw-bytes requests (decoded here, see the module doc)."""

        async def process_caller_input(
            request_iterator: AsyncIterator[bytes], context: _Context
        ) -> AsyncIterator[vva.VoiceVAResponse]:
            # gRPC needs an async generator function here to stream responses.
            metrics = self._core.metrics
            metrics.stream_opened("grpc")
            try:
                async with contextlib.aclosing(self.process(request_iterator, context)) as it:
                    async for response in it:
                        yield response
            finally:
                metrics.stream_closed("grpc")

        return grpc.method_handlers_generic_handler(
            SERVICE_NAME,
            {
                "ProcessCallerInput": grpc.stream_stream_rpc_method_handler(
                    process_caller_input,
                    request_deserializer=None,
                    response_serializer=vva.VoiceVAResponse.SerializeToString,
                ),
                "ListVirtualAgents": grpc.unary_unary_rpc_method_handler(
                    self.list_virtual_agents,
                    request_deserializer=None,
                    response_serializer=common.ListVAResponse.SerializeToString,
                ),
            },
        )

    # ------------------------------------------------------------------ RPCs

    async def process(
        self, request_iterator: AsyncIterator[bytes], context: _Context
    ) -> AsyncGenerator[vva.VoiceVAResponse, None]:
        """One ``ProcessCallerInput`` RPC = one turn of the call core."""
        core = self._core
        try:
            core._check_accepting()
        except CallRejected as rejected:
            await context.abort(STATUS_CODES[rejected.kind], rejected.detail)
        iterator = aiter(request_iterator)
        try:
            data = await anext(iterator)
        except StopAsyncIteration:
            return
        metadata = {k.lower(): v for k, v in (context.invocation_metadata() or ())}
        tracking = str(metadata.get("trackingid", ""))
        try:
            handle = await core.open_turn(
                decode_voice_va_request(data),
                transport="grpc",
                tracking_id=tracking,
                verified_org=verified_org(),
            )
        except CallRejected as rejected:
            await context.abort(STATUS_CODES[rejected.kind], rejected.detail)
            return
        reader = asyncio.get_running_loop().create_task(_read(handle, iterator))
        bad: CallRejected | None = None
        try:
            async with contextlib.aclosing(handle.responses()) as responses:
                async for response in responses:
                    try:
                        message = voice_va_response(response)
                    except Exception:  # the core validates at the call site; never UNKNOWN
                        handle.turn.log.exception("a reply could not be encoded")
                        bad = CallRejected("internal", "the reply could not be encoded")
                        break
                    yield message
        finally:
            if not reader.done():
                reader.cancel()
        # Webex may send the next turn to another process (a shared store): it must find
        # this turn's record there, so the RPC completes once the record is stored.
        await handle.saved()
        if bad is None and reader.done() and not reader.cancelled():
            bad = reader.result()
        if bad is not None:
            await context.abort(STATUS_CODES[bad.kind], bad.detail)

    async def list_virtual_agents(self, request: bytes, context: _Context) -> common.ListVAResponse:
        """Unary ``ListVirtualAgents``."""
        try:
            org = decode_list_va_request(request)
            agents = await self._core.offered_agents(org, verified_org=verified_org())
        except CallRejected as rejected:
            await context.abort(STATUS_CODES[rejected.kind], rejected.detail)
            raise  # pragma: no cover - abort raises
        return list_va_response(agents)


async def _read(handle: TurnHandle, iterator: AsyncIterator[bytes]) -> CallRejected | None:
    """Feed the RPC's remaining requests to the turn, then report the half-close.

    An undecodable request ends the caller's input (like a half-close: the reply that was due
    still goes out) and is returned, for the RPC to end with its status.
    """
    feed_input = handle.feed_input
    feed_audio = handle.feed_audio
    decoder = CallerInputDecoder()
    decode = decoder.decode_frame
    taking = True  # until the turn takes no more input (for good: its FINAL is out)
    try:
        async for data in iterator:
            # Per 20 ms caller frame: only the input is decoded (the RPC is one turn; a frame
            # like the template's is just its audio, see CallerInputDecoder, and goes to
            # feed_audio), and drain() is awaited only when it would wait.
            try:
                if taking:
                    item = decode(data)
                else:
                    decoder.check(data)
            except CallRejected as rejected:
                handle.turn.log.info("undecodable request; ending the caller's input")
                handle.caller_done()
                return rejected
            if taking:
                if isinstance(item, bytes):
                    taking = feed_audio(item, decoder.model)
                else:
                    taking = feed_input(item)
            if not taking:
                if handle.closed:
                    return None
                continue  # after the FINAL: an RPC carries one turn, nothing more is due
            if handle.backlogged:
                await handle.drain()
        handle.caller_done()
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # transport errors when the client goes away
        handle.turn.log.debug("request stream ended: %s", type(exc).__name__)
        handle.caller_gone()
    return None


class _Health:
    def __init__(self, servicer: Any) -> None:
        self._servicer = servicer

    async def set_all(self, status: int) -> None:
        for name in ("", SERVICE_NAME):
            await self._servicer.set(name, status)

    async def enter_graceful_shutdown(self) -> None:
        await self._servicer.enter_graceful_shutdown()


def _add_health(server: aio.Server) -> _Health:
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    servicer = health.aio.HealthServicer()  # type: ignore[attr-defined]
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    serving = health_pb2.HealthCheckResponse.SERVING
    # HealthServicer.set is a coroutine in the aio flavour; seed statuses synchronously.
    for name in ("", SERVICE_NAME):
        servicer._server_status[name] = serving
    return _Health(servicer)


def _server_credentials(cfg: MediaServerConfig) -> grpc.ServerCredentials:
    assert cfg.tls_cert_file is not None
    assert cfg.tls_key_file is not None
    cert = cfg.tls_cert_file.read_bytes()
    key = cfg.tls_key_file.read_bytes()
    ca = cfg.tls_client_ca_file.read_bytes() if cfg.tls_client_ca_file else None
    return grpc.ssl_server_credentials(
        [(key, cert)], root_certificates=ca, require_client_auth=cfg.tls_require_client_cert
    )
