"""Pluggable conversation stores: where conversation records live between RPCs."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from ._model import ConversationRecord

__all__ = ["ConversationStore", "InMemoryConversationStore"]


@runtime_checkable
class ConversationStore(Protocol):
    """Keeps :class:`ConversationRecord` data (plain, serialisable) by conversation id.

    The server keeps live session objects in memory and writes the record here when a
    conversation starts and after every RPC, so a store backed by Redis or a database lets a
    restarted or different server process pick a conversation up again.
    """

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """Return the record, or None."""
        ...

    async def put(self, record: ConversationRecord) -> None:
        """Create or replace the record."""
        ...

    async def delete(self, conversation_id: str) -> None:
        """Forget the record (no error if absent)."""
        ...


class InMemoryConversationStore:
    """Default store: records kept as plain dicts in this process."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, Any]] = {}

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """Return a copy of the stored record, or None."""
        data = self._data.get(conversation_id)
        return ConversationRecord.from_dict(data) if data is not None else None

    async def put(self, record: ConversationRecord) -> None:
        """Store a plain-data snapshot of ``record``."""
        self.put_now(record)

    async def delete(self, conversation_id: str) -> None:
        """Forget the record."""
        self.delete_now(conversation_id)

    def put_now(self, record: ConversationRecord) -> None:
        """:meth:`put` without awaiting (nothing here waits): the server writes this way."""
        self._data[record.conversation_id] = record.to_dict()

    def delete_now(self, conversation_id: str) -> None:
        """:meth:`delete` without awaiting."""
        self._data.pop(conversation_id, None)

    def __len__(self) -> int:
        return len(self._data)
