"""In-process token store (the default of :class:`~webex_byova.client.BYOVA`)."""

from __future__ import annotations

import threading

from .base import KeyValueTokenStorage

__all__ = ["InMemoryTokenStorage"]


class InMemoryTokenStorage(KeyValueTokenStorage):
    """Tokens in a dict: fast, per process, lost on restart.

    Safe to use from several threads and event loops at once (a ``threading.Lock`` guards the
    dict; no method awaits while holding it).
    """

    def __init__(self) -> None:
        self._data: dict[str, bytes] = {}
        self._guard = threading.Lock()

    @property
    def location(self) -> str:
        """``memory`` (this process)."""
        return "memory"

    async def get_value(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""
        with self._guard:
            return self._data.get(key)

    async def set_value(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        with self._guard:
            self._data[key] = bytes(value)

    async def delete_value(self, key: str) -> None:
        """Remove ``key``."""
        with self._guard:
            self._data.pop(key, None)

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        with self._guard:
            return sorted(k for k in self._data if k.startswith(prefix))

    async def clear_values(self) -> None:
        """Remove every key."""
        with self._guard:
            self._data.clear()

    def __repr__(self) -> str:
        return f"InMemoryTokenStorage(keys={len(self._data)})"
