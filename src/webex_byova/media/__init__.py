"""BYOVA media: the gRPC media server, audio codecs, VAD and the generated proto stubs.

Public names are imported lazily so ``import webex_byova.media.audio`` does not pull in gRPC.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._optional import MissingExtraError

if TYPE_CHECKING:
    from .._logsetup import configure_logging
    from ._connector import MediaConnector
    from ._metrics import MediaMetrics, MetricsServer, start_metrics_server
    from ._model import ConversationRecord, InputSettings
    from ._redis_store import ConversationConflictError, RedisConversationStore
    from ._responses import TextSpec
    from ._tracing import MediaTracer
    from .config import MediaServerConfig
    from .events import (
        EVENT_NAMES,
        AudioInput,
        BargeIn,
        CustomEvent,
        DtmfInput,
        ErrorEvent,
        MediaEvent,
        NoInput,
        SessionEnd,
        SessionStart,
        StartOfDtmf,
        StartOfInput,
        TurnEnded,
        TurnStarted,
        Utterance,
    )
    from .proxy import ProxyFallback, WebSocketProxyConnector
    from .server import BYOVAMediaServer, VirtualAgent
    from .session import HandlerTimeoutError, Session, SessionEndedError, Turn, TurnFinishedError
    from .store import ConversationStore, InMemoryConversationStore
    from .vad import (
        EndPointer,
        EnergyVAD,
        FrameClassifier,
        FrameTrace,
        SileroVAD,
        SpeechDetector,
        SpeechEnded,
        SpeechResumed,
        SpeechStarted,
        WebRtcVAD,
    )

__all__ = [
    "EVENT_NAMES",
    "AudioInput",
    "BYOVAMediaServer",
    "BargeIn",
    "ConversationConflictError",
    "ConversationRecord",
    "ConversationStore",
    "CustomEvent",
    "DtmfInput",
    "EndPointer",
    "EnergyVAD",
    "ErrorEvent",
    "FrameClassifier",
    "FrameTrace",
    "HandlerTimeoutError",
    "InMemoryConversationStore",
    "InputSettings",
    "MediaConnector",
    "MediaEvent",
    "MediaMetrics",
    "MediaServerConfig",
    "MediaTracer",
    "MetricsServer",
    "NoInput",
    "ProxyFallback",
    "RedisConversationStore",
    "Session",
    "SessionEnd",
    "SessionEndedError",
    "SessionStart",
    "SileroVAD",
    "SpeechDetector",
    "SpeechEnded",
    "SpeechResumed",
    "SpeechStarted",
    "StartOfDtmf",
    "StartOfInput",
    "TextSpec",
    "Turn",
    "TurnEnded",
    "TurnFinishedError",
    "TurnStarted",
    "Utterance",
    "VirtualAgent",
    "WebRtcVAD",
    "WebSocketProxyConnector",
    "configure_logging",
    "start_metrics_server",
]

# public name -> module (relative to this package)
_LAZY: dict[str, str] = {
    "BYOVAMediaServer": ".server",
    "VirtualAgent": ".server",
    "MediaServerConfig": ".config",
    "Session": ".session",
    "HandlerTimeoutError": ".session",
    "SessionEndedError": ".session",
    "Turn": ".session",
    "TurnFinishedError": ".session",
    "ConversationStore": ".store",
    "InMemoryConversationStore": ".store",
    "RedisConversationStore": "._redis_store",
    "ConversationConflictError": "._redis_store",
    "MediaMetrics": "._metrics",
    "MetricsServer": "._metrics",
    "start_metrics_server": "._metrics",
    "MediaTracer": "._tracing",
    "configure_logging": ".._logsetup",
    "ConversationRecord": "._model",
    "InputSettings": "._model",
    "TextSpec": "._responses",
    "MediaConnector": "._connector",
    "WebSocketProxyConnector": ".proxy",
    "ProxyFallback": ".proxy",
    "EVENT_NAMES": ".events",
    "AudioInput": ".events",
    "BargeIn": ".events",
    "CustomEvent": ".events",
    "DtmfInput": ".events",
    "ErrorEvent": ".events",
    "MediaEvent": ".events",
    "NoInput": ".events",
    "SessionEnd": ".events",
    "SessionStart": ".events",
    "StartOfDtmf": ".events",
    "StartOfInput": ".events",
    "TurnEnded": ".events",
    "TurnStarted": ".events",
    "Utterance": ".events",
    "EndPointer": ".vad",
    "EnergyVAD": ".vad",
    "FrameClassifier": ".vad",
    "FrameTrace": ".vad",
    "SileroVAD": ".vad",
    "SpeechDetector": ".vad",
    "SpeechEnded": ".vad",
    "SpeechResumed": ".vad",
    "SpeechStarted": ".vad",
    "WebRtcVAD": ".vad",
}


#: top-level modules that only the ``media`` extra provides
_MEDIA_EXTRA_MODULES = frozenset(
    {"grpc", "grpc_health", "grpc_reflection", "google", "websockets", "prometheus_client"}
)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    try:
        imported = importlib.import_module(module, __name__)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in _MEDIA_EXTRA_MODULES:
            raise MissingExtraError(exc.name or missing, "media") from exc
        raise
    value = getattr(imported, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
