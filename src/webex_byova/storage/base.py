"""The :class:`TokenStorage` protocol and the key/value base class of the bundled backends.

Token stores are async (every method is a coroutine) and **loop-agnostic**: the SDK calls them
from the user's event loop in async code and from a private portal loop in sync code, so a
backend must not bind connections to one loop.

Keys: the Integration token lives under ``integration``; a Service App token for an org
under ``org:<uuid>`` (org ids are normalised to their bare lower-case UUID, so the UUID and
the Hydra form of one org address the same entry); the org's ``serviceApp`` webhook event log
(no secrets: times and hashes, so it survives a restart) under ``webhook:<uuid>``.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .._ids import org_uuid
from ..errors import TokenStorageError
from ..tokens import OAuthToken

__all__ = [
    "INTEGRATION_KEY",
    "ORG_PREFIX",
    "WEBHOOK_PREFIX",
    "KeyValueTokenStorage",
    "LockLease",
    "LockingTokenStorage",
    "TokenStorage",
    "WebhookStateStorage",
    "is_token_key",
    "org_key",
    "store_lock",
]

INTEGRATION_KEY = "integration"
ORG_PREFIX = "org:"
WEBHOOK_PREFIX = "webhook:"


def org_key(org_id: str) -> str:
    """Storage key of an org (UUID or Hydra id accepted)."""
    return f"{ORG_PREFIX}{org_uuid(org_id)}"


def is_token_key(key: str) -> bool:
    """Whether ``key`` holds a token (the Integration's or an org's)."""
    return key == INTEGRATION_KEY or key.startswith(ORG_PREFIX)


def store_lock(
    storage: object, key: str, ttl: float
) -> Callable[[], AbstractAsyncContextManager[Any]] | None:
    """A factory entering ``storage.lock(key, ttl)``, or ``None`` when the store has no lock."""
    lock = getattr(storage, "lock", None)
    if lock is None or not callable(lock):
        return None
    return lambda: lock(key, ttl)


@dataclass(frozen=True, eq=False)
class LockLease:
    """What a bundled store's ``lock()`` yields: the held lock, renewable while it is held.

    The lock expires ``ttl`` seconds after it was taken or last renewed, so a holder that dies
    frees it; a live holder whose work may outlast ``ttl`` calls :meth:`aextend` periodically
    (the flow drivers do so every ``ttl / 3`` during a refresh).
    """

    key: str
    ttl: float
    _extend: Callable[[], Awaitable[bool]]

    async def aextend(self) -> bool:
        """Push the expiry to ``ttl`` seconds from now; ``False`` if the lock was lost (it
        expired and another holder took it). Call it on the loop that took the lock."""
        return await self._extend()


@runtime_checkable
class TokenStorage(Protocol):
    """Async persistence of the Integration token and per-org Service App tokens."""

    async def get_integration_token(self) -> OAuthToken | None:
        """The stored Integration token, or ``None``."""
        ...

    async def set_integration_token(self, token: OAuthToken) -> None:
        """Store (replace) the Integration token atomically."""
        ...

    async def delete_integration_token(self) -> None:
        """Remove the Integration token (no error if absent)."""
        ...

    async def get_org_token(self, org_id: str) -> OAuthToken | None:
        """The stored Service App token of ``org_id`` (UUID or Hydra), or ``None``."""
        ...

    async def set_org_token(self, org_id: str, token: OAuthToken) -> None:
        """Store (replace) the Service App token of ``org_id`` atomically."""
        ...

    async def delete_org_token(self, org_id: str) -> None:
        """Remove the token of ``org_id`` (no error if absent)."""
        ...

    async def list_orgs(self) -> list[str]:
        """UUIDs of the orgs that have a stored token, sorted."""
        ...

    async def clear(self) -> None:
        """Remove every stored token."""
        ...


@runtime_checkable
class LockingTokenStorage(TokenStorage, Protocol):
    """A store that can also exclude other processes during a refresh."""

    # pragma: no mutate block - a mutated method would leave mutmut's helper attributes in
    # this runtime-checkable protocol, and then no store is an instance of it
    def lock(self, key: str, ttl: float = 30.0) -> AbstractAsyncContextManager[LockLease | None]:
        """Hold the store-wide lock ``key``; it expires ``ttl`` seconds after it was taken
        unless renewed through the yielded :class:`LockLease` (``None``: not renewable).

        Entering must be cancellation-safe: a task cancelled while acquiring leaves no lock.
        """
        ...


@runtime_checkable
class WebhookStateStorage(Protocol):
    """A store that also keeps each org's ``serviceApp`` webhook event log (opaque bytes), so
    redeliveries and out-of-order events are recognised after a restart. Stores without it
    get a per-process log."""

    async def get_webhook_state(self, org_id: str) -> bytes | None:
        """The org's event log, or ``None``."""
        ...

    async def set_webhook_state(self, org_id: str, state: bytes) -> None:
        """Replace the org's event log atomically."""
        ...


class KeyValueTokenStorage(abc.ABC):
    """Base of the bundled backends: tokens as JSON bytes under string keys.

    Subclasses implement five byte-level coroutines; :class:`EncryptedTokenStorage` wraps any
    subclass and encrypts the values. A value that is not a token, or a store that cannot be
    read, raises :class:`~webex_byova.errors.TokenStorageError` naming :attr:`location`.
    """

    @property
    def location(self) -> str:
        """Where the data lives (a file path, a Redis URL and prefix), for messages."""
        return type(self).__name__

    def storage_error(
        self, problem: str, *, key: str | None = None, cls: type[TokenStorageError] | None = None
    ) -> TokenStorageError:
        """A :class:`~webex_byova.errors.TokenStorageError` naming this store (and ``key``)."""
        entry = f" entry {key!r}" if key is not None else ""
        return (cls or TokenStorageError)(
            f"token store {self.location}{entry}: {problem}", store=self.location, key=key
        )

    # -- byte level (implemented by backends)
    @abc.abstractmethod
    async def get_value(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""

    @abc.abstractmethod
    async def set_value(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` atomically (all or nothing)."""

    @abc.abstractmethod
    async def delete_value(self, key: str) -> None:
        """Remove ``key`` (no error if absent)."""

    @abc.abstractmethod
    async def list_keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""

    @abc.abstractmethod
    async def clear_values(self) -> None:
        """Remove every key."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release connections (the store stays usable: it reconnects on demand)."""

    # -- encoding (overridden by the encrypting wrapper)
    def _encode(self, token: OAuthToken) -> bytes:
        return token.to_json().encode()

    def _decode(self, data: bytes) -> OAuthToken:
        return OAuthToken.from_json(data)

    def _read_token(self, key: str, data: bytes | None) -> OAuthToken | None:
        if data is None:
            return None
        try:
            return self._decode(data)
        except TokenStorageError:
            raise
        except UnicodeDecodeError:
            raise self.storage_error("the stored value is not UTF-8 text", key=key) from None
        except (ValueError, TypeError, RecursionError) as exc:
            problem = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
            if isinstance(exc, json.JSONDecodeError | RecursionError):
                problem = f"the stored value is not valid JSON ({problem})"
            else:
                problem = f"the stored value is not a token ({problem})"
            raise self.storage_error(problem[:200], key=key) from None

    async def check(self) -> int:
        """Read and decode every stored token; return how many there are.

        Raises:
            TokenStorageError: The first problem found (the store or an entry is unusable).
        """
        keys = await self.list_keys()
        count = 0
        for key in keys:
            if is_token_key(key):
                count += self._read_token(key, await self.get_value(key)) is not None
        return count

    async def get_webhook_state(self, org_id: str) -> bytes | None:
        """The org's ``serviceApp`` event log (see :class:`WebhookStateStorage`)."""
        return await self.get_value(f"{WEBHOOK_PREFIX}{org_uuid(org_id)}")

    async def set_webhook_state(self, org_id: str, state: bytes) -> None:
        """Replace the org's ``serviceApp`` event log."""
        await self.set_value(f"{WEBHOOK_PREFIX}{org_uuid(org_id)}", state)

    # -- TokenStorage
    async def get_integration_token(self) -> OAuthToken | None:
        """The stored Integration token, or ``None``."""
        return self._read_token(INTEGRATION_KEY, await self.get_value(INTEGRATION_KEY))

    async def set_integration_token(self, token: OAuthToken) -> None:
        """Store (replace) the Integration token atomically."""
        await self.set_value(INTEGRATION_KEY, self._encode(token))

    async def delete_integration_token(self) -> None:
        """Remove the Integration token."""
        await self.delete_value(INTEGRATION_KEY)

    async def get_org_token(self, org_id: str) -> OAuthToken | None:
        """The stored Service App token of ``org_id``, or ``None``."""
        key = org_key(org_id)
        return self._read_token(key, await self.get_value(key))

    async def set_org_token(self, org_id: str, token: OAuthToken) -> None:
        """Store (replace) the Service App token of ``org_id`` atomically."""
        await self.set_value(org_key(org_id), self._encode(token))

    async def delete_org_token(self, org_id: str) -> None:
        """Remove the token of ``org_id``."""
        await self.delete_value(org_key(org_id))

    async def list_orgs(self) -> list[str]:
        """UUIDs of the orgs that have a stored token, sorted."""
        return sorted(k[len(ORG_PREFIX) :] for k in await self.list_keys(ORG_PREFIX))

    async def clear(self) -> None:
        """Remove every stored token."""
        await self.clear_values()
