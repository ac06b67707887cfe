"""Encrypting wrapper: Fernet (AES-128-CBC + HMAC-SHA256) around any bundled backend.

Values are encrypted before they reach the inner store; keys (``integration``,
``org:<uuid>``) stay readable so orgs can be listed. Webhook event logs (times and hashes,
no secrets) are stored unencrypted. Several keys may be given for rotation: the first
encrypts, all of them decrypt (``MultiFernet``). A stored value that is not exactly what Fernet
wrote (any byte changed, cut or appended) is refused with :class:`TokenDecryptionError`.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from ..errors import TokenStorageError
from ..tokens import OAuthToken
from .base import KeyValueTokenStorage, LockLease, is_token_key

__all__ = ["EncryptedTokenStorage", "TokenDecryptionError", "generate_key"]


class TokenDecryptionError(TokenStorageError):
    """A stored value could not be decrypted (wrong key, or the data was tampered with)."""


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 text) for ``WEBEX_TOKEN_STORE_KEY``."""
    return Fernet.generate_key().decode("ascii")


def _canonical(data: bytes) -> bool:
    """Whether ``data`` is exactly the url-safe base64 of what it decodes to."""
    try:
        return base64.urlsafe_b64encode(base64.urlsafe_b64decode(data)) == data
    except (binascii.Error, ValueError, TypeError):
        return False


def _fernet(key: str | bytes | Sequence[str | bytes]) -> MultiFernet:
    keys: list[str | bytes] = [key] if isinstance(key, str | bytes) else list(key)
    if not keys:
        raise ValueError("at least one encryption key is required")
    fernets: list[Fernet] = []
    for item in keys:
        try:
            raw = (item.encode("ascii") if isinstance(item, str) else item).strip()
            if not _canonical(raw):  # e.g. two keys pasted together: only the first would count
                raise ValueError("not canonical url-safe base64")
            fernets.append(Fernet(raw))
        except (ValueError, TypeError) as exc:
            raise ValueError(
                "encryption key must be 32 url-safe base64-encoded bytes "
                "(create one with webex_byova.storage.generate_key())"
            ) from exc
    return MultiFernet(fernets)


class EncryptedTokenStorage(KeyValueTokenStorage):
    """Encrypts every stored token with Fernet before handing it to ``inner``.

    Args:
        inner: Any bundled backend (memory, SQLite, Redis).
        key: A Fernet key, or several (first encrypts, all decrypt) for key rotation.
    """

    def __init__(
        self, inner: KeyValueTokenStorage, key: str | bytes | Sequence[str | bytes]
    ) -> None:
        if not isinstance(inner, KeyValueTokenStorage):
            raise TypeError("EncryptedTokenStorage wraps a KeyValueTokenStorage backend")
        self.inner = inner
        self._fernet = _fernet(key)

    def _encode(self, token: OAuthToken) -> bytes:
        return self._fernet.encrypt(token.to_json().encode())

    def _decode(self, data: bytes) -> OAuthToken:
        try:
            if not _canonical(data):  # Fernet's decoder ignores bytes after the padding
                raise InvalidToken
            plain = self._fernet.decrypt(data)
        except InvalidToken as exc:
            raise self._undecryptable() from exc
        try:
            return OAuthToken.from_json(plain)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            # Fernet checks the MAC with the key's first half only: a key whose second half
            # differs "decrypts" to noise when that noise happens to end in valid padding
            raise self._undecryptable() from exc

    def _read_token(self, key: str, data: bytes | None) -> OAuthToken | None:
        try:
            return super()._read_token(key, data)
        except TokenDecryptionError as exc:
            if exc.key is not None:
                raise
            raise self._undecryptable(key) from exc.__cause__  # name the entry, as others do

    def _undecryptable(self, key: str | None = None) -> TokenDecryptionError:
        error = self.storage_error(
            "a stored token could not be decrypted: wrong WEBEX_TOKEN_STORE_KEY or tampered data",
            key=key,
            cls=TokenDecryptionError,
        )
        assert isinstance(error, TokenDecryptionError)
        return error

    @property
    def location(self) -> str:
        """The inner store's location."""
        return f"{self.inner.location} (encrypted)"

    async def rotate(self) -> int:
        """Re-encrypt every token with the first key; returns how many were rewritten (the
        webhook event logs hold no secrets and are stored as they are)."""
        keys = [key for key in await self.inner.list_keys() if is_token_key(key)]
        for key in keys:
            data = await self.inner.get_value(key)
            if data is not None:
                self._read_token(key, data)  # a wrong key must not re-encrypt noise
                try:
                    rotated = self._fernet.rotate(data)
                except InvalidToken:
                    raise self._undecryptable(key) from None
                await self.inner.set_value(key, rotated)
        return len(keys)

    async def get_value(self, key: str) -> bytes | None:
        """Ciphertext under ``key`` (decryption happens when tokens are read)."""
        return await self.inner.get_value(key)

    async def set_value(self, key: str, value: bytes) -> None:
        """Store ciphertext ``value`` under ``key``."""
        await self.inner.set_value(key, value)

    async def delete_value(self, key: str) -> None:
        """Remove ``key``."""
        await self.inner.delete_value(key)

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``."""
        return await self.inner.list_keys(prefix)

    async def clear_values(self) -> None:
        """Remove every key."""
        await self.inner.clear_values()

    @asynccontextmanager
    async def lock(self, key: str, ttl: float = 30.0) -> AsyncIterator[LockLease | None]:
        """The inner store's lock and its lease, or nothing when it has none (process locks
        still apply)."""
        inner_lock = getattr(self.inner, "lock", None)
        if inner_lock is None:
            yield None
            return
        async with inner_lock(key, ttl) as lease:
            yield lease

    async def aclose(self) -> None:
        """Close the inner store."""
        await self.inner.aclose()

    def close(self) -> None:
        """Blocking close of the inner store, when it supports one."""
        closer = getattr(self.inner, "close", None)
        if closer is not None:
            closer()

    def __repr__(self) -> str:
        return f"EncryptedTokenStorage({self.inner!r})"
