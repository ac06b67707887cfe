"""BYOVA media: the gRPC media server, audio codecs, VAD and the generated proto stubs.

Public names are imported lazily so ``import webex_byova.media.audio`` does not pull in gRPC.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__: list[str] = []

_LAZY: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
