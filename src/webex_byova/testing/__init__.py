"""Testing tools: a local Webex emulator (and, with the ``media`` extra, a Webex-side caller).

Names are imported lazily so ``import webex_byova.testing`` stays cheap and optional extras
are only needed for the names that use them. To add a name, add one line to ``_LAZY``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .._optional import MissingExtraError

if TYPE_CHECKING:
    from ._caller import WebexCaller
    from ._emulator import (
        Delivery,
        EmulatorClock,
        EmulatorError,
        RequestRecord,
        WebexEmulator,
    )
    from ._ws_caller import WebexWsCaller, WsTurnResult, WsUpgradeRefused

__all__ = [
    "Delivery",
    "EmulatorClock",
    "EmulatorError",
    "RequestRecord",
    "WebexCaller",
    "WebexEmulator",
    "WebexWsCaller",
    "WsTurnResult",
    "WsUpgradeRefused",
]

# public name -> (module relative to this package, attribute)
_LAZY: dict[str, tuple[str, str]] = {
    "WebexEmulator": ("._emulator", "WebexEmulator"),
    "EmulatorClock": ("._emulator", "EmulatorClock"),
    "EmulatorError": ("._emulator", "EmulatorError"),
    "RequestRecord": ("._emulator", "RequestRecord"),
    "Delivery": ("._emulator", "Delivery"),
    "WebexCaller": ("._caller", "WebexCaller"),
    "WebexWsCaller": ("._ws_caller", "WebexWsCaller"),
    "WsTurnResult": ("._ws_caller", "WsTurnResult"),
    "WsUpgradeRefused": ("._ws_caller", "WsUpgradeRefused"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name, __name__)
    except ImportError as exc:
        missing = (exc.name or "").split(".")[0]
        if missing in {"grpc", "google", "grpc_health", "websockets"}:
            raise MissingExtraError(exc.name or missing, "media") from exc
        raise
    value = getattr(module, attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
