"""Exact behaviour of the token-store helpers, pinned by the mutation run (issue 17): storage
keys, error messages, what ``check``/``list_orgs``/``rotate`` count, the encrypting wrapper's
key validation and pass-throughs, and ``from_url``'s URL shapes."""

from __future__ import annotations

import base64
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken

import webex_byova.storage
from webex_byova._flow import Portal
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
from webex_byova.storage.encrypted import TokenDecryptionError, _canonical
from webex_byova.storage.redis import RedisTokenStorage
from webex_byova.storage.sqlite import _sqlite_problem, default_sqlite_path
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
        (
            b"{",
            "the stored value is not valid JSON "
            "(Expecting property name enclosed in double quotes)",
        ),
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


async def test_a_long_problem_is_cut_at_200_characters() -> None:
    store = InMemoryTokenStorage()
    await store.set_value(
        "integration", b'{"access_token": "a", "expires_at": "' + b"9x" * 200 + b'"}'
    )
    with pytest.raises(TokenStorageError) as info:
        await store.get_integration_token()
    head = "token store memory entry 'integration': "
    problem = "the stored value is not a token (token field 'expires_at' must be a number, got '"
    assert str(info.value) == head + (problem + "9x" * 200)[:200]


# --------------------------------------------------------------------------- encryption details


def test_canonical_base64() -> None:
    key = generate_key().encode()
    assert _canonical(key) is True
    assert _canonical(key + b"=") is False  # decodes the same, but is not what was encoded
    assert _canonical(b"abc") is False  # incorrect padding: the decoder raises


def test_a_pasted_pair_of_keys_is_refused_with_the_reason_chained() -> None:
    with pytest.raises(ValueError) as info:
        EncryptedTokenStorage(InMemoryTokenStorage(), generate_key() + generate_key())
    assert str(info.value) == (
        "encryption key must be 32 url-safe base64-encoded bytes "
        "(create one with webex_byova.storage.generate_key())"
    )
    assert str(info.value.__cause__) == "not canonical url-safe base64"


async def test_an_encrypted_value_that_is_not_a_token_names_its_entry() -> None:
    key = generate_key()
    inner = InMemoryTokenStorage()
    await inner.set_value(f"org:{ORG}", Fernet(key).encrypt(b"{}"))
    store = EncryptedTokenStorage(inner, key)
    with pytest.raises(TokenStorageError) as info:
        await store.get_org_token(ORG)
    assert type(info.value) is TokenStorageError
    assert info.value.key == f"org:{ORG}"
    assert str(info.value) == (
        f"token store memory (encrypted) entry 'org:{ORG}': the stored value is not a token "
        "(token data lacks access_token)"
    )


# --------------------------------------------------------------------------- SQLite details


def _wal(path: Path) -> Path:
    return path.with_name(path.name + "-wal")


def _worker_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("webex-byova-sqlite_")]


def test_sqlite_settings_are_validated(tmp_path: Path) -> None:
    with pytest.raises(ValueError) as info:
        SQLiteTokenStorage(tmp_path / "t.db", synchronous="OFF")  # type: ignore[arg-type]
    assert str(info.value) == "synchronous must be 'FULL' or 'NORMAL'"
    store = SQLiteTokenStorage(tmp_path / "t.db", synchronous="NORMAL")
    assert repr(store) == f"SQLiteTokenStorage(path={str(tmp_path / 't.db')!r})"


@pytest.mark.parametrize(
    ("options", "synchronous", "busy_ms"),
    [({}, 2, 10_000), ({"synchronous": "NORMAL", "busy_timeout": 2.5}, 1, 2_500)],
)
async def test_sqlite_connection_pragmas(
    tmp_path: Path, options: dict[str, object], synchronous: int, busy_ms: int
) -> None:
    path = tmp_path / "t.db"
    store = SQLiteTokenStorage(path, **options)  # type: ignore[arg-type]
    try:
        pragmas = await store._run(
            lambda conn: (
                conn.execute("PRAGMA synchronous").fetchone()[0],
                conn.execute("PRAGMA busy_timeout").fetchone()[0],
                threading.current_thread().name,
            )
        )
        assert pragmas[:2] == (synchronous, busy_ms)
        assert pragmas[2].startswith("webex-byova-sqlite_")
    finally:
        await store.aclose()
    other = sqlite3.connect(path)
    try:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # kept in the file
    finally:
        other.close()


@pytest.mark.parametrize("wrapped", [False, True])
def test_sqlite_close_ends_the_worker_and_checkpoints_sync(tmp_path: Path, wrapped: bool) -> None:
    path = tmp_path / "t.db"
    inner = SQLiteTokenStorage(path)
    store: SQLiteTokenStorage | EncryptedTokenStorage = inner
    if wrapped:
        store = EncryptedTokenStorage(inner, generate_key())
    before = set(_worker_threads())
    portal = Portal("test-sqlite-close")
    try:
        portal.call(lambda: store.set_integration_token(TOKEN))
        workers = set(_worker_threads()) - before
        assert len(workers) == 1
        assert _wal(path).exists()  # WAL mode: the last connection's close checkpoints it
        store.close()
        assert not _wal(path).exists()
        assert not any(t.is_alive() for t in workers)
        assert portal.call(store.get_integration_token) == TOKEN  # reopened on demand
        store.close()
        assert not _wal(path).exists()
        store.close()  # nothing open: no-op
    finally:
        portal.close()


async def test_sqlite_aclose_ends_the_worker_and_checkpoints(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteTokenStorage(path)
    await store.set_integration_token(TOKEN)
    assert _wal(path).exists()
    await store.aclose()
    assert not _wal(path).exists()
    assert await store.get_integration_token() == TOKEN  # reopened on demand
    await store.aclose()
    assert not _wal(path).exists()


async def test_a_foreign_tokens_table_is_named_with_its_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE tokens (id INTEGER PRIMARY KEY, name TEXT)")
    conn.commit()
    conn.close()
    store = SQLiteTokenStorage(path)
    with pytest.raises(TokenStorageError) as info:
        await store.get_integration_token()
    assert str(info.value) == (
        f"token store {path}: not a webex_byova token database: its 'tokens' table has columns "
        "id, name (missing key, value, updated_at)"
    )
    await store.aclose()


async def test_file_problems_are_named_exactly(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    store = SQLiteTokenStorage(blocker / "t.db")
    with pytest.raises(TokenStorageError) as info:
        await store.get_integration_token()
    assert str(info.value) == (
        f"token store {blocker / 't.db'}: cannot open the file (FileExistsError: File exists)"
    )
    await store.aclose()
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all\n" * 100)
    store = SQLiteTokenStorage(junk)
    with pytest.raises(TokenStorageError) as info:
        await store.get_integration_token()
    assert str(info.value) == (
        f"token store {junk}: not a SQLite database (file is not a database)"
    )
    await store.aclose()


async def test_a_table_dropped_under_an_open_store(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteTokenStorage(path)
    await store.set_integration_token(TOKEN)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("ALTER TABLE tokens DROP COLUMN value")
    with pytest.raises(TokenStorageError) as info:
        await store.get_integration_token()
    assert str(info.value) == (
        f"token store {path}: not a webex_byova token database (no such column: value)"
    )
    other.execute("DROP TABLE tokens")
    other.close()
    with pytest.raises(TokenStorageError) as info:
        await store.list_orgs()
    assert str(info.value) == (
        f"token store {path}: not a webex_byova token database (no such table: tokens)"
    )
    await store.aclose()


@pytest.mark.parametrize(
    ("error", "problem"),
    [
        (
            sqlite3.DatabaseError("file is not a database"),
            "not a SQLite database (file is not a database)",
        ),
        (
            sqlite3.DatabaseError("database disk image is malformed"),
            "the database file is damaged or truncated (database disk image is malformed)",
        ),
        (
            sqlite3.DatabaseError("index is corrupt"),
            "the database file is damaged or truncated (index is corrupt)",
        ),
        (
            sqlite3.OperationalError("no such table: tokens"),
            "not a webex_byova token database (no such table: tokens)",
        ),
        (
            sqlite3.OperationalError("no such column: value"),
            "not a webex_byova token database (no such column: value)",
        ),
        (
            sqlite3.OperationalError("database is locked"),
            "SQLite error (OperationalError: database is locked)",
        ),
        (
            PermissionError(13, "Permission denied"),
            "cannot open the file (PermissionError: Permission denied)",
        ),
        (OSError("no errno"), "cannot open the file (OSError: no errno)"),
    ],
)
def test_sqlite_problem_texts(error: sqlite3.Error | OSError, problem: str) -> None:
    assert _sqlite_problem(error) == problem


async def test_a_lock_held_past_the_busy_timeout_is_an_error(tmp_path: Path) -> None:
    """Another connection holds the file's write lock longer than ``busy_timeout``: the open
    fails (after the busy handler's wait) instead of retrying until that lock is gone."""
    path = tmp_path / "t.db"
    held, released = threading.Event(), threading.Event()

    def _hold() -> None:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("CREATE TABLE held (a)")
        holder.execute("BEGIN EXCLUSIVE")
        held.set()
        released.wait(10.0)  # bounded: a store retrying past its deadline gets the file then
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=_hold)
    thread.start()
    assert held.wait(10.0)
    store = SQLiteTokenStorage(path, busy_timeout=0.2)
    try:
        with pytest.raises(TokenStorageError) as info:
            await store.get_integration_token()
        assert str(info.value) == (
            f"token store {path}: SQLite error (OperationalError: database is locked)"
        )
    finally:
        released.set()
        thread.join()
    assert await store.get_integration_token() is None  # the lock is gone: it opens
    await store.aclose()


async def test_opening_retries_while_another_connection_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    """While another connection holds the write lock of a file still in rollback mode, SQLite
    refuses the switch to WAL at once (the busy handler is not used for it): the store retries
    until that lock is gone, within ``busy_timeout``, instead of failing."""
    import asyncio

    path = tmp_path / "t.db"
    held, release = threading.Event(), threading.Event()

    def _hold() -> None:
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("CREATE TABLE held (a)")
        holder.execute("BEGIN IMMEDIATE")
        held.set()
        release.wait(10.0)
        holder.execute("COMMIT")
        holder.close()

    thread = threading.Thread(target=_hold)
    thread.start()
    assert held.wait(10.0)
    store = SQLiteTokenStorage(path)  # busy_timeout 10 s
    try:
        opening = asyncio.ensure_future(store.get_integration_token())
        await asyncio.sleep(0.5)  # its first attempts are refused meanwhile
        assert not opening.done()  # it cannot open while the lock is held, nor give up
        release.set()
        assert await opening is None
    finally:
        release.set()
        thread.join()
        await store.aclose()


async def test_integrity_problems_are_cut_at_200_characters(tmp_path: Path) -> None:
    path = tmp_path / "t.db"
    store = SQLiteTokenStorage(path)
    await store.set_integration_token(TOKEN)
    await store.aclose()
    index = "ix_" + "n" * 300
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(f"CREATE INDEX {index} ON tokens(updated_at)")
    conn.execute("PRAGMA writable_schema=ON")  # the index now claims another column
    conn.execute(
        f"UPDATE sqlite_master SET sql = 'CREATE INDEX {index} ON tokens(value)' "
        f"WHERE name = '{index}'"
    )
    conn.close()
    store = SQLiteTokenStorage(path)
    assert (await store.integrity_check()).startswith("row 1 missing from index ix_nnn")
    with pytest.raises(TokenStorageError) as info:
        await store.check()
    result = f"row 1 missing from index {index}"
    assert str(info.value) == f"token store {path}: integrity check failed ({result[:200]})"
    await store.aclose()


def test_default_sqlite_path_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_sqlite_path() == tmp_path / "webex-byova" / "tokens.db"


# --------------------------------------------------------------------------- Redis details


def test_redis_store_from_the_package_namespace() -> None:
    assert webex_byova.storage.RedisTokenStorage is RedisTokenStorage
    with pytest.raises(AttributeError) as info:
        _ = webex_byova.storage.NoSuchStore  # type: ignore[attr-defined]
    assert str(info.value) == "module 'webex_byova.storage' has no attribute 'NoSuchStore'"


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://user:secret@cache.example:6390/2?x=1#f", "redis://user:***@cache.example:6390/2"),
        ("redis://:secret@cache.example/0", "redis://:***@cache.example/0"),
        ("redis://cache.example:6379/0?x=1#f", "redis://cache.example:6379/0"),
    ],
)
def test_redis_location_and_repr_mask_the_password(url: str, shown: str) -> None:
    store = RedisTokenStorage(url, prefix="p:")
    assert store.location == f"{shown} prefix 'p:'"
    assert repr(store) == f"RedisTokenStorage(url={shown!r}, prefix='p:')"


def test_redis_defaults() -> None:
    store = RedisTokenStorage()
    assert store.location == "redis://127.0.0.1:6379/0 prefix 'webex_byova:'"


@pytest.mark.parametrize(
    ("kwargs", "size", "timeout"),
    [
        ({}, 32, 30),
        ({"max_connections": 8}, 8, 30),
        ({"client_options": {"max_connections": 4, "timeout": 5}}, 4, 5),
    ],
)
async def test_redis_pool_per_loop(kwargs: dict[str, object], size: int, timeout: int) -> None:
    from redis.asyncio import BlockingConnectionPool

    store = RedisTokenStorage("redis://127.0.0.1:1/3", **kwargs)  # type: ignore[arg-type]
    pool = store._client().connection_pool  # no connection is opened before a command
    assert type(pool) is BlockingConnectionPool
    assert (pool.max_connections, pool.timeout) == (size, timeout)
    assert (pool.connection_kwargs["port"], pool.connection_kwargs["db"]) == (1, 3)
    await store.aclose()


async def test_redis_errors_are_named_exactly(redis_url: str, tmp_path: Path) -> None:
    import redis.asyncio as redis_asyncio

    prefix = f"err:{tmp_path.name}:"
    where = f"token store {redis_url} prefix {prefix!r}"
    wrong = "a key holds a value of another Redis type (not a webex_byova token store?)"
    raw = redis_asyncio.from_url(redis_url)
    store = RedisTokenStorage(redis_url, prefix=prefix)
    try:
        await raw.rpush(f"{prefix}t:integration", "a")
        with pytest.raises(TokenStorageError) as info:
            await store.get_integration_token()
        assert str(info.value) == f"{where} entry 'integration': {wrong}"
        await raw.set(f"{prefix}keys", "not a set")
        with pytest.raises(TokenStorageError) as info:
            await store.set_org_token(ORG, TOKEN)
        assert str(info.value) == f"{where} entry 'org:{ORG}': {wrong}"
        with pytest.raises(TokenStorageError) as info:
            await store.delete_org_token(ORG)
        assert str(info.value) == f"{where} entry 'org:{ORG}': {wrong}"
        with pytest.raises(TokenStorageError) as info:
            await store.list_orgs()
        assert str(info.value) == f"{where}: {wrong}"
    finally:
        await store.aclose()
        await raw.aclose()
    down = RedisTokenStorage("redis://127.0.0.1:1/0")
    with pytest.raises(TokenStorageError) as info:
        await down.get_integration_token()
    assert str(info.value) == (
        "token store redis://127.0.0.1:1/0 prefix 'webex_byova:' entry 'integration': "
        "Redis error (ConnectionError: Error 111 connecting to 127.0.0.1:1. "
        "Connect call failed ('127.0.0.1', 1).)"
    )
    await down.aclose()


async def test_redis_writes_are_transactions(redis_url: str, tmp_path: Path) -> None:
    import redis.asyncio as redis_asyncio

    raw = redis_asyncio.from_url(redis_url)
    store = RedisTokenStorage(redis_url, prefix=f"tx:{tmp_path.name}:")

    async def _transactions() -> tuple[int, int]:
        stats = await raw.info("commandstats")
        return tuple(  # type: ignore[return-value]
            int(stats.get(f"cmdstat_{name}", {}).get("calls", 0)) for name in ("multi", "exec")
        )

    try:
        for write in (
            lambda: store.set_org_token(ORG, TOKEN),
            lambda: store.delete_org_token(ORG),
            store.clear,
        ):
            before = await _transactions()
            await write()
            after = await _transactions()
            assert (after[0] - before[0], after[1] - before[1]) == (1, 1)
    finally:
        await store.aclose()
        await raw.aclose()


async def test_redis_with_decoded_responses(redis_url: str, tmp_path: Path) -> None:
    store = RedisTokenStorage(
        redis_url, prefix=f"dec:{tmp_path.name}:", client_options={"decode_responses": True}
    )
    try:
        await store.set_org_token(ORG, TOKEN)
        assert await store.get_value(f"org:{ORG}") == TOKEN.to_json().encode()
        assert await store.get_org_token(ORG) == TOKEN
        assert await store.list_orgs() == [ORG]
    finally:
        await store.clear()
        await store.aclose()


async def test_redis_clients_of_every_loop_are_closed(redis_url: str, tmp_path: Path) -> None:
    """One client per loop: ``close()`` closes the other loops' clients, ``aclose()`` every
    client; the server's client list shows it."""
    import asyncio

    import redis.asyncio as redis_asyncio

    name = f"loops-{tmp_path.name}"[:60].replace(" ", "-")
    raw = redis_asyncio.from_url(redis_url)
    store = RedisTokenStorage(
        redis_url, prefix=f"loops:{tmp_path.name}:", client_options={"client_name": name}
    )
    portal = Portal("test-redis-loops")

    async def _settled(expected: int) -> int:
        count = -1
        for _ in range(200):  # the server notices a closed socket on its next turn
            count = sum(1 for c in await raw.client_list() if c.get("name") == name)
            if count == expected:
                break
            await asyncio.sleep(0.01)
        return count

    try:
        await store.set_integration_token(TOKEN)
        assert portal.call(store.get_integration_token) == TOKEN
        assert await _settled(2) == 2
        store.close()  # inside a running loop: only the other loop's client
        assert await _settled(1) == 1
        assert await store.get_integration_token() == TOKEN
        assert await _settled(1) == 1
        assert portal.call(store.get_integration_token) == TOKEN
        assert await _settled(2) == 2
        await store.aclose()
        assert await _settled(0) == 0
        assert portal.call(store.get_integration_token) == TOKEN  # reconnects on demand
        assert await _settled(1) == 1
        store.close()
        assert await _settled(0) == 0
    finally:
        await store.aclose()
        portal.close()
        await raw.aclose()


# --------------------------------------------------------------------------- from_url: Redis


@pytest.mark.parametrize(
    ("url", "base", "prefix"),
    [
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0", "webex_byova:"),
        ("REDIS://h/0", "redis://h/0", "webex_byova:"),
        (
            "rediss://h:6380/1?prefix=app:&ssl_cert_reqs=none",
            "rediss://h:6380/1?ssl_cert_reqs=none",
            "app:",
        ),
        (
            "redis://h/0?prefix=&socket_timeout=5&health_check_interval=",
            "redis://h/0?socket_timeout=5&health_check_interval=",
            "",
        ),
        ("unix:///run/redis.sock?db=2&prefix=u:", "unix:/run/redis.sock?db=2", "u:"),
    ],
)
def test_from_url_redis(url: str, base: str, prefix: str) -> None:
    store = from_url(url)
    assert type(store) is RedisTokenStorage
    assert (store.url, store.prefix) == (base, prefix)
