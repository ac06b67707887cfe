"""Encrypted token stores refuse any altered ciphertext, and a near-miss key decrypts nothing.

Fernet authenticates what it decrypts, but its base64 decoder ignores characters after the
padding, so a value with bytes appended used to decrypt as if untouched. The store now
refuses every value that is not exactly what it wrote (changed, truncated or extended), for
the Integration token and per-org tokens, in each bundled backend that keeps raw bytes.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from webex_byova.storage import (
    EncryptedTokenStorage,
    InMemoryTokenStorage,
    KeyValueTokenStorage,
    SQLiteTokenStorage,
    generate_key,
)
from webex_byova.storage.encrypted import TokenDecryptionError
from webex_byova.tokens import OAuthToken

from .conftest import B64URL, near_misses

ORG = "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"


def _token() -> OAuthToken:
    now = time.time()
    return OAuthToken(
        access_token="access-" + "a" * 30,
        expires_at=now + 3600,
        refresh_token="refresh-" + "r" * 30,
        refresh_token_expires_at=now + 86400,
    )


@pytest.fixture(params=["memory", "sqlite"])
async def inner(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[KeyValueTokenStorage]:
    store: KeyValueTokenStorage = (
        InMemoryTokenStorage()
        if request.param == "memory"
        else SQLiteTokenStorage(tmp_path / "tokens.db")
    )
    yield store
    await store.aclose()


async def test_any_altered_ciphertext_is_refused(inner: KeyValueTokenStorage) -> None:
    store = EncryptedTokenStorage(inner, generate_key())
    token = _token()
    await store.set_integration_token(token)
    await store.set_org_token(ORG, token)
    for key in await inner.list_keys():
        genuine = await inner.get_value(key)
        assert genuine is not None
        for name, bad in near_misses(genuine.decode(), B64URL + "=", last_step=32).items():
            await inner.set_value(key, bad.encode())
            read = store.get_integration_token if key == "integration" else store.get_org_token
            with pytest.raises(TokenDecryptionError):
                await (read() if key == "integration" else read(ORG))  # type: ignore[call-arg]
            assert name
        await inner.set_value(key, genuine)
    assert await store.get_integration_token() == token
    assert await store.get_org_token(ORG) == token


async def test_near_miss_key_decrypts_nothing(inner: KeyValueTokenStorage) -> None:
    key = generate_key()
    await EncryptedTokenStorage(inner, key).set_integration_token(_token())
    usable = 0
    body = key.removesuffix("=")  # the padding is not part of the key
    misses = {n: m + "=" for n, m in near_misses(body, B64URL, last_step=32).items()}
    for name, bad_key in {**near_misses(key, B64URL), **misses}.items():
        try:
            store = EncryptedTokenStorage(inner, bad_key)
        except ValueError:
            continue  # not a key at all: wrong length, or junk after the padding
        usable += 1
        with pytest.raises(TokenDecryptionError):
            await store.get_integration_token()
        assert name
    assert usable >= 2  # the changed-character misses are real (other) keys


@pytest.mark.parametrize("junk", ["A", "=", "\n", " ", ","])
def test_keys_pasted_together_are_refused(junk: str) -> None:
    """Two keys run together would silently mean only the first (Fernet ignores the rest)."""
    key = generate_key()
    with pytest.raises(ValueError, match="32 url-safe base64-encoded bytes"):
        EncryptedTokenStorage(InMemoryTokenStorage(), key + junk + key)
    if junk.strip():
        with pytest.raises(ValueError, match="32 url-safe base64-encoded bytes"):
            EncryptedTokenStorage(InMemoryTokenStorage(), key + junk)


async def test_whitespace_around_a_key_is_not_part_of_it() -> None:
    """A key read from a secret file keeps its newline; that still names the same key."""
    key = generate_key()
    inner = InMemoryTokenStorage()
    await EncryptedTokenStorage(inner, key).set_integration_token(_token())
    for spelled in (key + "\n", f"  {key} ", (key + "\r\n").encode()):
        assert await EncryptedTokenStorage(inner, spelled).get_integration_token() is not None
