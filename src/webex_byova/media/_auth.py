"""Token check for every RPC: a gRPC aio interceptor around :class:`~webex_byova.jws.JWSVerifier`.

Any failure answers ``UNAUTHENTICATED`` with a reason (never an OK stream), also when the
verifier fails unexpectedly and when the unauthenticated request is not even decodable. The
rejection is built with the same cardinality as the real method, so it works for unary and
streaming RPCs alike. ``grpc.health.v1`` is exempt by default (load balancers send no token),
and so is server reflection (it serves only the public proto schema; stock clients such as
``grpcurl`` send no token).

The claims of the verified token reach the RPC through :data:`verified_claims` (a context
variable the interceptor sets in the RPC's own task): the front end takes the org from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio

from .._ids import org_uuid
from .._logging import get_logger
from ..jws import CLAIM_ORG, JWSVerificationError, JWSVerifier
from ._bounds import printable

if TYPE_CHECKING:
    from ._metrics import MediaMetrics

__all__ = [
    "HEALTH_PREFIX",
    "REFLECTION_PREFIXES",
    "TokenAuthInterceptor",
    "token_from_metadata",
    "verified_claims",
    "verified_org",
]

HEALTH_PREFIX = "/grpc.health.v1.Health/"
REFLECTION_PREFIXES = (
    "/grpc.reflection.v1alpha.ServerReflection/",
    "/grpc.reflection.v1.ServerReflection/",
)
_log = get_logger("webex_byova.media.auth")

#: The claims of the current RPC's verified token (``None``: tokens are not verified).
verified_claims: contextvars.ContextVar[Mapping[str, Any] | None] = contextvars.ContextVar(
    "webex_byova_verified_claims", default=None
)


def verified_org() -> str | None:
    """The org (bare UUID) of the current RPC's verified token.

    ``None`` when tokens are not verified; ``""`` for a verified token without a usable
    ``com.cisco.org.uuid`` claim (it then matches no org: fail closed).
    """
    claims = verified_claims.get()
    if claims is None:
        return None
    org = claims.get(CLAIM_ORG)
    try:
        return org_uuid(org) if isinstance(org, str) else ""
    except ValueError:
        return ""


def _with_claims(
    handler: grpc.RpcMethodHandler[Any, Any], claims: Mapping[str, Any]
) -> grpc.RpcMethodHandler[Any, Any]:
    """``handler`` with ``claims`` bound to :data:`verified_claims` inside the RPC's task."""
    kwargs = {
        "request_deserializer": handler.request_deserializer,
        "response_serializer": handler.response_serializer,
    }
    # grpc's typing knows the sync behaviours only; the aio server calls these coroutines.
    behaviour: Any
    if handler.response_streaming:
        inner_stream: Any = (
            handler.stream_stream if handler.request_streaming else handler.unary_stream
        )

        async def streaming(request: Any, context: Any) -> Any:
            verified_claims.set(claims)  # this RPC's task only
            async for response in inner_stream(request, context):
                yield response

        behaviour = streaming
        if handler.request_streaming:
            return grpc.stream_stream_rpc_method_handler(behaviour, **kwargs)
        return grpc.unary_stream_rpc_method_handler(behaviour, **kwargs)
    inner_unary: Any = handler.stream_unary if handler.request_streaming else handler.unary_unary

    async def unary(request: Any, context: Any) -> Any:
        verified_claims.set(claims)
        return await inner_unary(request, context)

    behaviour = unary
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(behaviour, **kwargs)
    return grpc.unary_unary_rpc_method_handler(behaviour, **kwargs)


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

    def __init__(
        self,
        verifier: JWSVerifier,
        *,
        exempt_health: bool = True,
        metrics: MediaMetrics | None = None,
    ) -> None:
        self._verifier = verifier
        self._exempt = (*REFLECTION_PREFIXES, *((HEALTH_PREFIX,) if exempt_health else ()))
        self._metrics = metrics

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
            reason = "missing_token"
        else:
            try:
                claims = await self._verifier.averify(token)
                handler = await continuation(handler_call_details)
                return handler if handler is None else _with_claims(handler, claims)
            except JWSVerificationError as exc:
                details = f"token rejected: {exc.reason}"
                reason = exc.reason
            except Exception as exc:  # key fetch failures etc.: still never an OK stream
                _log.warning("token verification failed unexpectedly: %s", type(exc).__name__)
                details = "token verification failed"
                reason = "verifier_error"
        if self._metrics is not None:
            self._metrics.auth_refused("grpc", reason)
        tracking = _metadata_value(handler_call_details.invocation_metadata, "trackingid")
        _log.info(
            "%s rejected: %s",
            printable(method, 200),
            details,
            extra={
                "trackingid": printable(tracking, 200),
                "event": "auth_refused",
                "reason": reason.partition(":")[0],
                "transport": "grpc",
            },
        )
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler  # unknown method: gRPC answers UNIMPLEMENTED
        return _rejecting(handler, details)
