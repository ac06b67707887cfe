"""Redis token store for several replicas sharing tokens, with a cross-process refresh lock.

Needs the ``redis`` extra (``pip install 'webex-byova-sdk[redis]'``); importing this module
without it raises :class:`~webex_byova._optional.MissingExtraError`.

``redis.asyncio`` connections belong to the event loop that opened them, and the SDK calls a
store from the user's loop and from its private portal loop, so the store keeps one client
per running loop.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import weakref
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, TypeVar

from .._optional import require
from .base import KeyValueTokenStorage, LockLease

if TYPE_CHECKING:
    from redis.asyncio import Redis

_redis_asyncio = require("redis.asyncio", "redis")
_RedisError: type[Exception] = require("redis.exceptions", "redis").RedisError

__all__ = ["RedisTokenStorage"]

T = TypeVar("T")

_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""

_EXTEND = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""


class RedisTokenStorage(KeyValueTokenStorage):
    """Tokens in Redis under ``prefix`` (writes are atomic ``MULTI`` transactions).

    Args:
        url: ``redis://host:port/db`` (or ``rediss://`` for TLS).
        prefix: Namespace for every key, so several apps can share one database.
        lock_poll_interval: Seconds between attempts to take a held :meth:`lock`.
        max_connections: Connections per event loop; further callers wait for a free one
            (a blocking pool) instead of failing under a burst.
        client_options: Extra keyword arguments for the connection pool (``from_url``).
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "webex_byova:",
        lock_poll_interval: float = 0.02,
        max_connections: int = 32,
        client_options: dict[str, Any] | None = None,
    ) -> None:
        self.url = url
        self.prefix = prefix
        self._poll = lock_poll_interval
        self._options = dict(client_options or {})
        self._options.setdefault("max_connections", max_connections)
        self._options.setdefault("timeout", 30)
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Redis] = (
            weakref.WeakKeyDictionary()
        )
        self._guard = threading.Lock()

    # -- per-loop clients
    def _client(self) -> Redis:
        loop = asyncio.get_running_loop()
        with self._guard:
            client = self._clients.get(loop)
            if client is None:
                pool = _redis_asyncio.BlockingConnectionPool.from_url(self.url, **self._options)
                client = _redis_asyncio.Redis.from_pool(pool)
                self._clients[loop] = client
            return client

    def _key(self, key: str) -> str:
        return f"{self.prefix}t:{key}"

    @property
    def location(self) -> str:
        """The Redis URL (password masked) and key prefix."""
        return f"{_safe_url(self.url)} prefix {self.prefix!r}"

    async def _guarded(self, op: Awaitable[T], key: str | None = None) -> T:
        """Await a Redis command; Redis failures become a TokenStorageError naming the store
        (a value of another Redis type, an unreachable server, ...)."""
        try:
            return await op
        except _RedisError as exc:
            text = str(exc)
            problem = (
                "a key holds a value of another Redis type (not a webex_byova token store?)"
                if "WRONGTYPE" in text
                else f"Redis error ({type(exc).__name__}: {text[:200]})"
            )
            raise self.storage_error(problem, key=key) from None

    @property
    def _index(self) -> str:
        return f"{self.prefix}keys"

    # -- byte level
    async def get_value(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""
        value = await self._guarded(self._client().get(self._key(key)), key)
        if value is None:
            return None
        return value.encode() if isinstance(value, str) else bytes(value)

    async def set_value(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` (``MULTI``: value and key index together)."""
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.set(self._key(key), value)
            pipe.sadd(self._index, key)
            await self._guarded(pipe.execute(), key)

    async def delete_value(self, key: str) -> None:
        """Remove ``key``."""
        async with self._client().pipeline(transaction=True) as pipe:
            pipe.delete(self._key(key))
            pipe.srem(self._index, key)
            await self._guarded(pipe.execute(), key)

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""
        members = await self._guarded(self._client().smembers(self._index))
        keys = (m.decode() if isinstance(m, bytes) else str(m) for m in members)
        return sorted(k for k in keys if k.startswith(prefix))

    async def clear_values(self) -> None:
        """Remove every key of this prefix."""
        keys = await self.list_keys()
        async with self._client().pipeline(transaction=True) as pipe:
            for key in keys:
                pipe.delete(self._key(key))
            pipe.delete(self._index)
            await self._guarded(pipe.execute())

    # -- cross-process lock
    @asynccontextmanager
    async def lock(self, key: str, ttl: float = 30.0) -> AsyncIterator[LockLease]:
        """Hold ``key`` across every process using this Redis (``SET NX PX`` + owner check).

        The key expires ``ttl`` seconds after it was taken or last renewed
        (:meth:`LockLease.aextend`, an owner-checked ``PEXPIRE``), so a holder that dies
        releases it. A task cancelled while acquiring leaves no lock behind.
        """
        client = self._client()
        name = f"{self.prefix}lock:{key}"
        owner = secrets.token_hex(16)
        ttl_ms = max(1, int(ttl * 1000))

        async def _extend() -> bool:
            return bool(await client.eval(_EXTEND, 1, name, owner, ttl_ms))

        async def _release() -> None:
            # Shielded, so a second cancellation cannot skip it; owner-checked, so it is a
            # no-op when a cancelled SET never took the lock.
            await asyncio.shield(client.eval(_RELEASE, 1, name, owner))

        try:
            while True:
                if await self._guarded(client.set(name, owner, nx=True, px=ttl_ms), key):
                    break
                await asyncio.sleep(self._poll)
        except BaseException:
            await _release()
            raise
        try:
            yield LockLease(key, ttl, _extend)
        finally:
            await _release()

    # -- lifecycle
    async def aclose(self) -> None:
        """Close the clients of every loop that is still running (reconnects on next use)."""
        with self._guard:
            clients = list(self._clients.items())
            self._clients.clear()
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, client in clients:
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                await asyncio.wrap_future(future)

    def close(self) -> None:
        """Blocking close for clients living on other threads' loops (e.g. the sync portal).

        Clients opened on the calling thread's running loop need ``await aclose()``.
        """
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        with self._guard:
            clients = [(lp, c) for lp, c in self._clients.items() if lp is not current]
            for loop, _ in clients:
                del self._clients[loop]
        for loop, client in clients:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result()

    def __repr__(self) -> str:
        return f"RedisTokenStorage(url={_safe_url(self.url)!r}, prefix={self.prefix!r})"


def _safe_url(url: str) -> str:
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = f"{parts.username or ''}:***@{parts.hostname}"
        if parts.port:
            netloc += f":{parts.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
