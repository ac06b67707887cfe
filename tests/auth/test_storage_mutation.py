"""Exact behaviour of the token-store helpers, pinned by the mutation run (issue 17): storage
keys, error messages, what ``check``/``list_orgs``/``rotate`` count, the encrypting wrapper's
key validation and pass-throughs, and ``from_url``'s URL shapes."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

from webex_byova._ids import to_hydra
from webex_byova.errors import TokenStorageError
from webex_byova.storage import (
    EncryptedTokenStorage,
    InMemoryTokenStorage,
    SQLiteTokenStorage,
    from_url,
    generate_key,
)
from webex_byova.storage.base import is_token_key, org_key, store_lock
from webex_byova.storage.encrypted import TokenDecryptionError
from webex_byova.storage.sqlite import default_sqlite_path
from webex_byova.tokens import OAuthToken

ORG = "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"
OTHER = "1e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"
TOKEN = OAuthToken("access-" + "a" * 30, 2_000_000_000.0, refresh_token="r" * 30)


def test_keys() -> None:
    assert org_key(ORG.upper()) == f"org:{ORG}"
    assert org_key(to_hydra("ORGANIZATION", ORG)) == f"org:{ORG}"
    assert is_token_key("integration") is True
    assert is_token_key(f"org:{ORG}") is True
    assert is_token_key("org") is False
    assert is_token_key(f"webhook:{ORG}") is False
    assert is_token_key("integrationx") is False


def test_store_lock_factory() -> None:
    assert store_lock(InMemoryTokenStorage(), "k", 5.0) is None
    assert store_lock(type("NotCallable", (), {"lock": 3})(), "k", 5.0) is None
    calls: list[tuple[str, float]] = []

    class WithLock:
        def lock(self, key: str, ttl: float) -> str:
            calls.append((key, ttl))
            return "entered"

    factory = store_lock(WithLock(), "refresh:x", 7.5)
    assert factory is not None
    assert calls == []
    assert factory() == "entered"
    assert calls == [("refresh:x", 7.5)]


def test_storage_error_names_the_store_and_entry() -> None:
    store = InMemoryTokenStorage()
    error = store.storage_error("broken", key="integration")
    assert type(error) is TokenStorageError
    assert str(error) == "token store memory entry 'integration': broken"
    assert (error.store, error.key) == ("memory", "integration")
    bare = store.storage_error("down")
    assert str(bare) == "token store memory: down"
    assert bare.key is None
    typed = store.storage_error("x", cls=TokenDecryptionError)
    assert type(typed) is TokenDecryptionError


async def test_memory_store_basics() -> None:
    store = InMemoryTokenStorage()
    assert store.location == "memory"
    value = bytearray(b"abc")
    await store.set_value("b", value)  # type: ignore[arg-type]
    value[0] = ord("z")
    assert await store.get_value("b") == b"abc"
    await store.set_value("a:1", b"1")
    await store.set_value("a:0", b"0")
    assert await store.list_keys() == ["a:0", "a:1", "b"]
    assert await store.list_keys("a:") == ["a:0", "a:1"]
    assert repr(store) == "InMemoryTokenStorage(keys=3)"
    await store.delete_value("a:1")
    await store.delete_value("missing")
    assert await store.list_keys() == ["a:0", "b"]
    await store.clear_values()
    assert await store.list_keys() == []


async def test_check_and_list_orgs_count_only_tokens() -> None:
    store = InMemoryTokenStorage()
    assert await store.check() == 0
    await store.set_integration_token(TOKEN)
    await store.set_org_token(OTHER, TOKEN)
    await store.set_org_token(to_hydra("ORGANIZATION", ORG), TOKEN)
    await store.set_webhook_state(ORG, b"log")
    await store.set_value("unrelated", b"junk")
    assert await store.check() == 3
    assert await store.list_orgs() == [ORG, OTHER]
    assert await store.get_webhook_state(ORG.upper()) == b"log"
    assert await store.get_value(f"webhook:{ORG}") == b"log"
    assert await store.get_webhook_state(OTHER) is None
    await store.delete_org_token(ORG)
    assert await store.list_orgs() == [OTHER]
    await store.clear()
    assert await store.check() == 0


async def test_check_stops_at_a_bad_entry() -> None:
    store = InMemoryTokenStorage()
    await store.set_value(f"org:{ORG}", b"{}")
    with pytest.raises(TokenStorageError) as info:
        await store.check()
    assert str(info.value) == (
        f"token store memory entry 'org:{ORG}': the stored value is not a token "
        "(token data lacks access_token)"
    )


@pytest.mark.parametrize(
    ("stored", "problem"),
    [
        (b"\xff", "the stored value is not UTF-8 text"),
        (b"{", "the stored value is not valid JSON (Expecting property name enclosed in "),
        (b"[]", "the stored value is not a token (token data must be a JSON object)"),
        (b"[" * 100_000, "the stored value is not valid JSON ("),
    ],
)
async def test_read_problems_are_named(stored: bytes, problem: str) -> None:
    store = InMemoryTokenStorage()
    await store.set_value("integration", stored)
    with pytest.raises(TokenStorageError) as info:
        await store.get_integration_token()
    message = str(info.value)
    assert message.startswith(f"token store memory entry 'integration': {problem}")
    assert len(message) <= len("token store memory entry 'integration': ") + 200


# --------------------------------------------------------------------------- encryption


def test_encryption_key_validation() -> None:
    with pytest.raises(TypeError, match="^EncryptedTokenStorage wraps a KeyValueTokenStorage"):
        EncryptedTokenStorage(object(), generate_key())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="^at least one encryption key is required$"):
        EncryptedTokenStorage(InMemoryTokenStorage(), [])
    bad = "encryption key must be 32 url-safe base64-encoded bytes"
    for key in ("short", generate_key() + generate_key(), generate_key()[:-1] + "!", b"\xff"):
        with pytest.raises(ValueError) as info:
            EncryptedTokenStorage(InMemoryTokenStorage(), key)
        assert str(info.value).startswith(bad)
    padded = EncryptedTokenStorage(InMemoryTokenStorage(), f"  {generate_key()}\n")
    assert padded.location == "memory (encrypted)"
    as_bytes = EncryptedTokenStorage(InMemoryTokenStorage(), generate_key().encode())
    assert repr(as_bytes) == "EncryptedTokenStorage(InMemoryTokenStorage(keys=0))"


async def test_rotation_rewrites_tokens_only() -> None:
    inner = InMemoryTokenStorage()
    old, new = generate_key(), generate_key()
    await EncryptedTokenStorage(inner, old).set_integration_token(TOKEN)
    store = EncryptedTokenStorage(inner, [new, old])
    await store.set_org_token(ORG, TOKEN)
    await store.set_webhook_state(ORG, b"plain log")
    assert await store.rotate() == 2
    assert await inner.get_value(f"webhook:{ORG}") == b"plain log"
    only_new = EncryptedTokenStorage(inner, new)
    assert await only_new.get_integration_token() == TOKEN
    assert await only_new.get_org_token(ORG) == TOKEN
    stranger = EncryptedTokenStorage(inner, generate_key())
    with pytest.raises(TokenDecryptionError) as info:
        await stranger.rotate()
    assert str(info.value) == (
        "token store memory (encrypted) entry 'integration': a stored token could not be "
        "decrypted: wrong WEBEX_TOKEN_STORE_KEY or tampered data"
    )
    with pytest.raises(TokenDecryptionError) as info:
        await stranger.get_org_token(ORG)
    assert info.value.key == f"org:{ORG}"
    assert str(info.value) == (
        f"token store memory (encrypted) entry 'org:{ORG}': a stored token could not be "
        "decrypted: wrong WEBEX_TOKEN_STORE_KEY or tampered data"
    )


async def test_wrapper_passes_through(tmp_path: Path) -> None:
    inner = InMemoryTokenStorage()
    store = EncryptedTokenStorage(inner, generate_key())
    await store.set_value("k:1", b"v")
    assert await store.get_value("k:1") == b"v"
    assert await store.list_keys("k:") == ["k:1"]
    await store.delete_value("k:1")
    assert await inner.list_keys() == []
    await store.set_value("k:2", b"v")
    await store.clear_values()
    assert await inner.list_keys() == []
    async with store.lock("x", 1.0) as lease:
        assert lease is None
    store.close()
    sqlite = EncryptedTokenStorage(SQLiteTokenStorage(tmp_path / "t.db"), generate_key())
    async with sqlite.lock("x", 5.0) as lease:
        assert lease is not None
        assert (lease.key, lease.ttl) == ("x", 5.0)
    await sqlite.set_integration_token(TOKEN)
    sqlite.close()
    reopened = EncryptedTokenStorage(SQLiteTokenStorage(tmp_path / "t.db"), generate_key())
    assert await reopened.inner.get_value("integration") is not None
    await reopened.aclose()


# --------------------------------------------------------------------------- from_url


def test_from_url_shapes(tmp_path: Path) -> None:
    assert isinstance(from_url(" memory "), InMemoryTokenStorage)
    assert isinstance(from_url("MEMORY://"), InMemoryTokenStorage)
    default = from_url("sqlite://")
    assert isinstance(default, SQLiteTokenStorage)
    assert default.path == default_sqlite_path()
    assert from_url("sqlite:///").path == default_sqlite_path()  # type: ignore[attr-defined]
    absolute = tmp_path / "a.db"
    assert from_url(f"sqlite:///{absolute}").path == absolute  # type: ignore[attr-defined]
    assert from_url("SQLITE:///rel.db").path == Path("rel.db")  # type: ignore[attr-defined]
    wrapped = from_url("memory", encryption_key=generate_key())
    assert isinstance(wrapped, EncryptedTokenStorage)
    assert isinstance(wrapped.inner, InMemoryTokenStorage)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:rel.db", "malformed sqlite URL 'sqlite:rel.db'; use sqlite:///path/to/tokens.db"),
        ("sqlite://x.db", "malformed sqlite URL 'sqlite://x.db'; use sqlite:///path/to/tokens.db"),
        (
            "ftp://x",
            "unknown token store URL 'ftp://x'; expected memory, sqlite:///path or "
            "redis://host:port/db",
        ),
        (
            "memoryx",
            "unknown token store URL 'memoryx'; expected memory, sqlite:///path or "
            "redis://host:port/db",
        ),
    ],
)
def test_from_url_refuses(url: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        from_url(url)
    assert str(info.value) == message


def _key_that_decrypts_to_noise(key: str, ciphertext: bytes) -> str:
    """A key with ``key``'s MAC half and another AES half under which ``ciphertext`` passes
    Fernet's checks (its noise ends in valid padding: about one AES half in 256)."""
    signing = base64.urlsafe_b64decode(key)[:16]
    for _ in range(20_000):
        other = base64.urlsafe_b64encode(signing + os.urandom(16)).decode()
        try:
            Fernet(other).decrypt(ciphertext)
        except InvalidToken:
            continue
        return other
    raise AssertionError("no such key found")  # (255/256) ** 20000: never in practice


async def test_key_with_the_right_mac_half_decrypts_nothing() -> None:
    """Found by the near-miss key test failing about once in a hundred runs: a key differing
    only in its second (AES) half passes Fernet's MAC check, and its noise was reported as
    "not UTF-8 text" (a corrupt entry) instead of a wrong key; rotate() re-encrypted it."""
    inner = InMemoryTokenStorage()
    key = generate_key()
    await EncryptedTokenStorage(inner, key).set_integration_token(TOKEN)
    stored = await inner.get_value("integration")
    assert stored is not None
    store = EncryptedTokenStorage(inner, _key_that_decrypts_to_noise(key, stored))
    message = (
        "token store memory (encrypted) entry 'integration': a stored token could not be "
        "decrypted: wrong WEBEX_TOKEN_STORE_KEY or tampered data"
    )
    with pytest.raises(TokenDecryptionError) as info:
        await store.get_integration_token()
    assert str(info.value) == message
    with pytest.raises(TokenDecryptionError) as info:
        await store.check()
    assert str(info.value) == message
    with pytest.raises(TokenDecryptionError) as info:
        await store.rotate()
    assert str(info.value) == message
    assert await inner.get_value("integration") == stored  # nothing rewritten
    assert await EncryptedTokenStorage(inner, key).get_integration_token() == TOKEN
