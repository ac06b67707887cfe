"""Conversation records in Redis, so any worker or replica can serve any turn of a call.

Needs the ``redis`` extra. :class:`RedisConversationStore` implements
:class:`~webex_byova.media.store.ConversationStore`. Each record is a Redis hash ``{v, d}``
(``v`` a version counter, ``d`` the record's JSON) under ``prefix + conversation_id``,
written by one Lua compare-and-set that also sets its TTL (the server's idle timeout), so an
abandoned call's record expires by itself.

Optimistic concurrency: the store remembers the version it last read or wrote for each
conversation. :meth:`~RedisConversationStore.put` succeeds only if Redis still holds that
version (or, for a conversation this store never saw, no record at all); otherwise the write is
refused, logged and raised as :class:`ConversationConflictError` — two processes writing one
conversation at once is detected, never silently lost. A process that gets a turn for a
conversation it does not hold calls :meth:`~RedisConversationStore.get` first, which loads the
record and its version.

One store instance belongs to one event loop (its connection pool does).
"""

from __future__ import annotations

import asyncio
import json
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, Final

from .._logging import get_logger
from .._optional import require
from ._bounds import printable
from ._model import ConversationRecord
from .config import DEFAULT_STORE_KEY_PREFIX, MediaServerConfig, parse_conversation_store

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

    from .store import ConversationStore

__all__ = ["ConversationConflictError", "RedisConversationStore", "conversation_store_for"]

_log = get_logger("webex_byova.media.store")

#: Versions remembered per store; the oldest are forgotten beyond this (their next put is
#: then a create, which a stored record refuses: a conflict, never a lost write).
MAX_TRACKED: Final = 100_000

# KEYS[1] record key; ARGV[1] expected version ('' = the record must not exist);
# ARGV[2] record JSON; ARGV[3] TTL in ms. Returns {1, new version} or {0, found version|''}.
_COMPARE_AND_SET = """
local found = redis.call('HGET', KEYS[1], 'v')
if ARGV[1] == '' then
    if found then return {0, found} end
elseif found ~= ARGV[1] then
    return {0, found or ''}
end
local version = (tonumber(found) or 0) + 1
redis.call('HSET', KEYS[1], 'v', version, 'd', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return {1, version}
"""


class ConversationConflictError(RuntimeError):
    """A conversation record changed in the store since this process last read it.

    Attributes:
        conversation_id: The conversation.
        expected: Version this process held (None: it never saw the record).
        found: Version in the store (None: the record is gone, ended or expired).
    """

    def __init__(self, conversation_id: str, expected: int | None, found: int | None) -> None:
        self.conversation_id = conversation_id
        self.expected = expected
        self.found = found
        held = "none" if expected is None else f"version {expected}"
        now = "no record" if found is None else f"version {found}"
        super().__init__(
            f"conversation {conversation_id!r} was written elsewhere: held {held}, store has {now}"
        )


class RedisConversationStore:
    """:class:`ConversationStore` on Redis with versioned compare-and-set writes and a TTL.

    Args:
        url: ``redis://[user:password@]host:port/db``, ``rediss://`` (TLS) or ``unix://``.
        prefix: Namespace of every key.
        ttl_s: Seconds a record lives after its last write (use the idle timeout).
        max_connections: Connection pool size.
        client: An existing ``redis.asyncio.Redis`` (then ``url`` is only for display and
            :meth:`aclose` leaves the client open).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = DEFAULT_STORE_KEY_PREFIX,
        ttl_s: float = 900.0,
        max_connections: int = 64,
        client: Redis | None = None,
    ) -> None:
        if ttl_s <= 0:
            raise ValueError("ttl_s must be positive")
        if not prefix:
            raise ValueError("prefix must not be empty")
        self.url = url
        self.prefix = prefix
        self.ttl_ms = max(1, round(ttl_s * 1000))
        self._max_connections = max_connections
        self._client: Redis | None = client
        self._pool: Any = None  # the connection pool this store made (closed by aclose)
        self._owns_client = client is None
        self._script: AsyncScript | None = None
        self._versions: OrderedDict[str, int] = OrderedDict()
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    def _redis(self) -> Redis:
        if self._client is None:
            redis_asyncio = require("redis.asyncio", "redis")
            # A blocking pool: under load (more concurrent turns than connections) a command
            # waits for a free connection instead of failing with "Too many connections".
            pool = redis_asyncio.BlockingConnectionPool.from_url(
                self.url, max_connections=self._max_connections, timeout=10, socket_timeout=10
            )
            self._client = redis_asyncio.Redis(connection_pool=pool)
            self._pool = pool
        return self._client

    def _cas(self) -> AsyncScript:
        if self._script is None:
            self._script = self._redis().register_script(_COMPARE_AND_SET)
        return self._script

    def _key(self, conversation_id: str) -> str:
        return self.prefix + conversation_id

    def _remember(self, conversation_id: str, version: int) -> None:
        self._versions[conversation_id] = version
        self._versions.move_to_end(conversation_id)
        while len(self._versions) > MAX_TRACKED:
            self._versions.popitem(last=False)

    @asynccontextmanager
    async def _serial(self, conversation_id: str) -> AsyncIterator[None]:
        """One write at a time per conversation in this store (the server spawns its writes
        as tasks, and a second put must build on the first one's version)."""
        lock, users = self._locks.get(conversation_id, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[conversation_id] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[conversation_id]
            if users == 1:
                del self._locks[conversation_id]
            else:
                self._locks[conversation_id] = (lock, users - 1)

    def version(self, conversation_id: str) -> int | None:
        """The version this store last read or wrote for the conversation, if any."""
        return self._versions.get(conversation_id)

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        """Load the record (and remember its version), or None if absent or expired.

        Waits for this store's pending writes of the conversation (a read after a write of
        this process sees it).
        """
        async with self._serial(conversation_id):
            version, data = await self._redis().hmget(self._key(conversation_id), ["v", "d"])
        if data is None or version is None:
            self._versions.pop(conversation_id, None)
            return None
        self._remember(conversation_id, int(version))
        return ConversationRecord.from_dict(json.loads(data))

    async def put(self, record: ConversationRecord) -> None:
        """Write ``record`` if the store still holds the version this process knows.

        Writes of one conversation through this store run one at a time, each serialising the
        record when its turn comes (so the freshest state is written).

        Raises:
            ConversationConflictError: Another process wrote (or ended) it meanwhile.
            TypeError: ``user_state`` is not JSON-serialisable.
        """
        cid = record.conversation_id
        async with self._serial(cid):
            await self._put(cid, record)

    async def _put(self, cid: str, record: ConversationRecord) -> None:
        try:
            payload = json.dumps(record.to_dict(), separators=(",", ":"))
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"conversation {cid!r}: session.state must be JSON-serialisable for the "
                f"Redis store ({exc})"
            ) from None
        expected = self._versions.get(cid)
        args: list[Any] = ["" if expected is None else str(expected), payload, self.ttl_ms]
        written, version = await self._cas()(keys=[self._key(cid)], args=args)
        if int(written) == 1:
            self._remember(cid, int(version))
            return
        found = int(version) if version not in (b"", "", None) else None
        _log.warning(
            "[%s] conversation record conflict: held %s, store has %s; write refused",
            printable(cid),
            expected,
            found,
            extra={"conversation_id": printable(cid), "event": "store_conflict"},
        )
        raise ConversationConflictError(cid, expected, found)

    async def delete(self, conversation_id: str) -> None:
        """Forget the record (no error if absent); waits for this store's pending writes."""
        async with self._serial(conversation_id):
            self._versions.pop(conversation_id, None)
            await self._redis().delete(self._key(conversation_id))

    async def ttl_s(self, conversation_id: str) -> float | None:
        """Seconds until the record expires (None if absent)."""
        ms = await self._redis().pttl(self._key(conversation_id))
        return ms / 1000 if ms >= 0 else None

    async def aclose(self) -> None:
        """Close the connection pool (unless the client was given)."""
        client, self._client, self._script = self._client, None, None
        pool, self._pool = self._pool, None
        if client is not None and self._owns_client:
            await client.aclose()
        if pool is not None:
            await pool.disconnect()

    def __repr__(self) -> str:
        spec = parse_conversation_store(self.url)
        return f"RedisConversationStore({spec!r}, ttl_ms={self.ttl_ms})"


def conversation_store_for(config: MediaServerConfig) -> ConversationStore:
    """The store ``config.conversation_store`` names (memory by default).

    Records live twice the idle timeout after their last write: the process holding a
    conversation sees its record when its own idle sweep ends the call (an absent record
    then means another process ended it), and an abandoned call's record still expires.
    """
    from .store import InMemoryConversationStore

    spec = parse_conversation_store(config.conversation_store or "memory")
    if spec.kind == "memory":
        return InMemoryConversationStore()
    return RedisConversationStore(spec.url, prefix=spec.key_prefix, ttl_s=2 * config.idle_timeout_s)
