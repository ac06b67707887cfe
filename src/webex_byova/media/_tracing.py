"""OpenTelemetry spans of the media server: one per conversation, one per turn.

Only ``opentelemetry-api`` is used (the ``otel`` extra), so an application plugs in its own SDK
and exporter (``trace.set_tracer_provider(...)``) or passes a provider. Without the API
installed every helper here is a no-op; with the API but no provider (none passed, none set
globally: OpenTelemetry's default proxy or its no-op provider), a conversation makes no span
objects at all, so tracing costs nothing when it is off. A provider set globally later is
used from the next conversation on.

Attributes are safe by construction: identifiers Webex assigns (conversation id, tracking id,
virtual agent id), the transport, turn numbers and kinds, outcomes, and numbers. Caller text,
transcripts, prompts, tokens and exception messages are never recorded (an error records the
exception *type* only); :meth:`TurnSpan.event` accepts numeric and boolean values only.

Span names: ``byova.conversation`` (from SESSION_START to the end of the call in this
process) and ``byova.turn`` (one RPC / one caller turn), a child of its conversation.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any, Final

try:
    from opentelemetry import trace as _trace
except ImportError:  # the otel extra is not installed: every span is a no-op
    _trace = None  # type: ignore[assignment]

__all__ = ["TRACER_NAME", "ConversationSpan", "MediaTracer", "TurnSpan", "tracing_available"]

TRACER_NAME: Final = "webex_byova.media"
_NS: Final = "webex_byova."


def tracing_available() -> bool:
    """Whether ``opentelemetry-api`` is importable."""
    return _trace is not None


class TurnSpan:
    """The span of one turn; use as a context manager or call :meth:`end`."""

    def __init__(self, span: Any) -> None:
        self._span = span
        self._ended = False

    def event(self, name: str, **attributes: int | float | bool) -> None:
        """Mark a moment of the turn (``end_of_input``, ``first_reply_byte`` …)."""
        if self._span is None or self._ended:
            return
        for key, value in attributes.items():
            if not isinstance(value, int | float | bool):
                raise TypeError(f"span event attribute {key!r} must be a number or a bool")
        self._span.add_event(name, {_NS + k: v for k, v in attributes.items()})

    def end(self, outcome: str = "completed", error: BaseException | None = None) -> None:
        """End the turn with its outcome (idempotent)."""
        if self._span is None or self._ended:
            return
        self._ended = True
        _finish(self._span, outcome, error)

    def __enter__(self) -> TurnSpan:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.end("error" if exc is not None else "completed", exc)


class ConversationSpan:
    """The span of one conversation in this process; turn spans are its children."""

    def __init__(self, tracer: Any, span: Any, base: dict[str, Any]) -> None:
        self._tracer = tracer
        self._span = span
        self._base = base
        self._ended = False

    def turn(self, index: int, kind: str, *, tracking_id: str = "") -> TurnSpan:
        """Start the span of turn ``index`` (1-based RPC number) of ``kind`` (audio, dtmf …)."""
        if self._span is None or _trace is None:
            return TurnSpan(None)
        attributes: dict[str, Any] = {
            **self._base,
            _NS + "turn": index,
            _NS + "turn.kind": kind,
        }
        if tracking_id:
            attributes[_NS + "tracking_id"] = tracking_id
        context = _trace.set_span_in_context(self._span)
        span = self._tracer.start_span(
            "byova.turn", context=context, kind=_trace.SpanKind.SERVER, attributes=attributes
        )
        return TurnSpan(span)

    def end(self, outcome: str = "completed", error: BaseException | None = None) -> None:
        """End the conversation with its outcome (idempotent)."""
        if self._span is None or self._ended:
            return
        self._ended = True
        _finish(self._span, outcome, error)


def _finish(span: Any, outcome: str, error: BaseException | None) -> None:
    assert _trace is not None
    span.set_attribute(_NS + "outcome", outcome)
    if error is not None:
        span.set_attribute("error.type", type(error).__qualname__)
        span.set_status(_trace.Status(_trace.StatusCode.ERROR, type(error).__qualname__))
    span.end()


class MediaTracer:
    """Starts conversation spans on ``tracer_provider`` (default: the global provider)."""

    def __init__(self, tracer_provider: Any = None) -> None:
        self._given = tracer_provider is not None
        if _trace is None:
            self._tracer: Any = None
        else:
            from .._version import __version__

            self._tracer = _trace.get_tracer(
                TRACER_NAME, __version__, tracer_provider=tracer_provider
            )

    def _recording(self) -> bool:
        """Whether spans go anywhere: a provider was given, or an application set one."""
        assert _trace is not None
        if self._given:
            return True
        provider = _trace.get_tracer_provider()
        return not isinstance(provider, _trace.ProxyTracerProvider | _trace.NoOpTracerProvider)

    def conversation(
        self,
        conversation_id: str,
        *,
        virtual_agent_id: str = "",
        transport: str = "grpc",
        tracking_id: str = "",
    ) -> ConversationSpan:
        """Start the span of a conversation (at its SESSION_START in this process)."""
        base: dict[str, Any] = {
            _NS + "conversation_id": conversation_id,
            _NS + "transport": transport,
        }
        if virtual_agent_id:
            base[_NS + "virtual_agent_id"] = virtual_agent_id
        if self._tracer is None or _trace is None or not self._recording():
            return ConversationSpan(None, None, base)
        attributes = dict(base)
        if tracking_id:
            attributes[_NS + "tracking_id"] = tracking_id
        span = self._tracer.start_span(
            "byova.conversation",
            context=_trace.set_span_in_context(_trace.INVALID_SPAN),
            kind=_trace.SpanKind.SERVER,
            attributes=attributes,
        )
        return ConversationSpan(self._tracer, span, base)
