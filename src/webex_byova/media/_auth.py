"""Token check for every RPC: a gRPC aio interceptor around :class:`~webex_byova.jws.JWSVerifier`.

Any failure answers ``UNAUTHENTICATED`` with a reason (never an OK stream), also when the
verifier fails unexpectedly and when the unauthenticated request is not even decodable. The
rejection is built with the same cardinality as the real method, so it works for unary and
streaming RPCs alike. ``grpc.health.v1`` is exempt by default (load balancers send no token).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import Any

import grpc
from grpc import aio

from .._logging import get_logger
from ..jws import JWSVerificationError, JWSVerifier

__all__ = ["HEALTH_PREFIX", "TokenAuthInterceptor", "token_from_metadata"]

HEALTH_PREFIX = "/grpc.health.v1.Health/"
_log = get_logger("webex_byova.media.auth")


def token_from_metadata(metadata: Sequence[tuple[str, Any]] | None) -> str | None:
    """The ``authorization`` value (case-insensitive key), or None when absent or blank."""
    return _metadata_value(metadata, "authorization").strip() or None


def _metadata_value(metadata: Sequence[tuple[str, Any]] | None, name: str) -> str:
    for key, value in metadata or ():
        if key.lower() == name:
            return value.decode(errors="replace") if isinstance(value, bytes) else str(value)
    return ""


#: How long a rejected streaming RPC keeps reading (and discarding) before it answers.
DRAIN_SECONDS = 0.05


async def _drain(requests: AsyncIterable[Any]) -> None:
    async for _ in requests:
        pass


def _rejecting(
    handler: grpc.RpcMethodHandler[Any, Any], details: str
) -> grpc.RpcMethodHandler[Any, Any]:
    async def abort(request: Any, context: aio.ServicerContext[Any, Any]) -> None:
        if hasattr(request, "__aiter__"):  # grpc's receiver is not a registered AsyncIterable
            # A client that streams without pacing still has messages in flight when we
            # answer; closing the stream under them makes the client report INTERNAL instead
            # of our status. Read briefly (bounded in time) before aborting.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_drain(request), DRAIN_SECONDS)
        await context.abort(grpc.StatusCode.UNAUTHENTICATED, details)

    # No (de)serializers: the rejection never reads a request nor writes a response, and an
    # unauthenticated caller's undecodable request must still get UNAUTHENTICATED (decoding
    # it first answered UNKNOWN with the parser's error).
    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class TokenAuthInterceptor(aio.ServerInterceptor):  # type: ignore[type-arg]
    """Verify the ``authorization`` metadata (raw or ``Bearer``) of every RPC."""

    def __init__(self, verifier: JWSVerifier, *, exempt_health: bool = True) -> None:
        self._verifier = verifier
        self._exempt = (HEALTH_PREFIX,) if exempt_health else ()

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method = handler_call_details.method
        if method.startswith(self._exempt):
            return await continuation(handler_call_details)
        token = token_from_metadata(handler_call_details.invocation_metadata)
        if token is None:
            details = "missing token in authorization metadata"
        else:
            try:
                await self._verifier.averify(token)
                return await continuation(handler_call_details)
            except JWSVerificationError as exc:
                details = f"token rejected: {exc.reason}"
            except Exception as exc:  # key fetch failures etc.: still never an OK stream
                _log.warning("token verification failed unexpectedly: %s", type(exc).__name__)
                details = "token verification failed"
        tracking = _metadata_value(handler_call_details.invocation_metadata, "trackingid")
        _log.info("%s rejected: %s", method, details, extra={"trackingid": tracking})
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: gRPC answers UNIMPLEMENTED
        return _rejecting(handler, details)
