"""Relay BYOVA calls to an external voice-AI backend over WebSocket.

``server.use_proxy(WebSocketProxyConnector("wss://bot.example/ws"))`` opens one WebSocket per
conversation and speaks the versioned JSON protocol of ``docs/proxy-protocol.md`` (or another
dialect through an adapter). ``websockets`` (the ``media`` extra) is imported only when the
connector is used.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._flow import BackpressurePolicy, QueueStats, ReconnectPolicy, SendQueue
from ._protocol import PROTOCOL_VERSION
from .adapters import JsonAdapter, ProxyAdapter, TwilioMediaStreamsAdapter

__all__ = [
    "PROTOCOL_VERSION",
    "BackpressurePolicy",
    "JsonAdapter",
    "ProxyAdapter",
    "ProxyFallback",
    "QueueStats",
    "ReconnectPolicy",
    "SendQueue",
    "TwilioMediaStreamsAdapter",
    "WebSocketProxyConnector",
]

_LAZY = {"WebSocketProxyConnector": ".connector", "ProxyFallback": ".connector"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
