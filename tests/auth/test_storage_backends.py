"""Backend specifics: encryption at rest, from_url, the redis extra guard, SQLite durability."""

from __future__ import annotations

import asyncio
import os
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from webex_byova._optional import MissingExtraError
from webex_byova.storage import (
    EncryptedTokenStorage,
    InMemoryTokenStorage,
    SQLiteTokenStorage,
    TokenDecryptionError,
    from_url,
    generate_key,
)
from webex_byova.storage.redis import RedisTokenStorage
from webex_byova.tokens import OAuthToken

from .conftest import unique_org

ACCESS = "ACCESS-PLAINTEXT-MARKER-0123456789abcdef"
REFRESH = "REFRESH-PLAINTEXT-MARKER-0123456789abcdef"


def _secret_token() -> OAuthToken:
    return OAuthToken(ACCESS, time.time() + 3600, REFRESH, time.time() + 7200)


async def test_encrypted_memory_holds_no_plaintext() -> None:
    inner = InMemoryTokenStorage()
    store = EncryptedTokenStorage(inner, generate_key())
    token = _secret_token()
    await store.set_integration_token(token)
    raw = await inner.get_value("integration")
    assert raw is not None
    assert ACCESS.encode() not in raw
    assert REFRESH.encode() not in raw
    assert await store.get_integration_token() == token


async def test_encrypted_sqlite_file_holds_no_plaintext(tmp_path: Path) -> None:
    path = tmp_path / "enc.db"
    store = EncryptedTokenStorage(SQLiteTokenStorage(path), generate_key())
    org = unique_org()
    await store.set_integration_token(_secret_token())
    await store.set_org_token(org, _secret_token())
    await store.aclose()
    blob = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("enc.db"))
    assert ACCESS.encode() not in blob
    assert REFRESH.encode() not in blob
    assert org.encode() in blob  # keys stay readable so orgs can be listed
    # Control: the plain backend does store plaintext bytes (so the check above can fail).
    plain = SQLiteTokenStorage(tmp_path / "plain.db")
    await plain.set_integration_token(_secret_token())
    await plain.aclose()
    plain_blob = b"".join(
        p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("plain.db")
    )
    assert ACCESS.encode() in plain_blob


async def test_encrypted_redis_holds_no_plaintext(redis_url: str, tmp_path: Path) -> None:
    prefix = f"enc:{tmp_path.name}:"
    store = EncryptedTokenStorage(RedisTokenStorage(redis_url, prefix=prefix), generate_key())
    await store.set_integration_token(_secret_token())
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        raw = await client.get(f"{prefix}t:integration")
    finally:
        await client.aclose()
        await store.aclose()
    assert raw is not None
    assert ACCESS.encode() not in raw
    assert REFRESH.encode() not in raw


async def test_wrong_key_is_a_typed_error_and_rotation_works() -> None:
    inner = InMemoryTokenStorage()
    old_key, new_key = generate_key(), generate_key()
    await EncryptedTokenStorage(inner, old_key).set_integration_token(_secret_token())
    with pytest.raises(TokenDecryptionError, match="WEBEX_TOKEN_STORE_KEY"):
        await EncryptedTokenStorage(inner, new_key).get_integration_token()
    rotating = EncryptedTokenStorage(inner, [new_key, old_key])
    assert (await rotating.get_integration_token()) is not None
    assert await rotating.rotate() == 1
    got = await EncryptedTokenStorage(inner, new_key).get_integration_token()
    assert got is not None
    assert got.access_token == ACCESS
    with pytest.raises(ValueError, match="32 url-safe base64"):
        EncryptedTokenStorage(inner, "not-a-key")


async def test_from_url(tmp_path: Path, redis_url: str) -> None:
    assert isinstance(from_url("memory"), InMemoryTokenStorage)
    rel = from_url("sqlite:///tokens.db")
    assert isinstance(rel, SQLiteTokenStorage)
    assert rel.path == Path("tokens.db")
    absolute = from_url(f"sqlite:///{tmp_path}/a.db")
    assert isinstance(absolute, SQLiteTokenStorage)
    assert absolute.path == tmp_path / "a.db"
    default = from_url("sqlite://")
    assert isinstance(default, SQLiteTokenStorage)
    assert default.path.name == "tokens.db"
    red = from_url(f"{redis_url}?prefix=myapp:")
    assert isinstance(red, RedisTokenStorage)
    assert red.prefix == "myapp:"
    enc = from_url("memory", encryption_key=generate_key())
    assert isinstance(enc, EncryptedTokenStorage)
    for bad in ("postgres://x", "sqlite:relative.db", "nope"):
        with pytest.raises(ValueError, match="sqlite"):
            from_url(bad)


def test_missing_redis_extra_names_the_extra() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["redis"] = None  # as if the extra were not installed
        from webex_byova._optional import MissingExtraError
        from webex_byova.storage import from_url
        import webex_byova.storage as storage
        for attempt in (lambda: from_url("redis://127.0.0.1:1/0"),
                        lambda: storage.RedisTokenStorage):
            try:
                attempt()
            except MissingExtraError as exc:
                assert exc.extra == "redis", exc.extra
                print("MISSING", exc)
            else:
                raise SystemExit("no MissingExtraError")
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("MISSING") == 2
    assert "[redis]" in out.stdout
    assert issubclass(MissingExtraError, ImportError)


async def test_sqlite_file_is_private(tmp_path: Path) -> None:
    store = SQLiteTokenStorage(tmp_path / "sub" / "dir" / "t.db")
    await store.set_integration_token(_secret_token())
    await store.aclose()
    mode = stat.S_IMODE((tmp_path / "sub" / "dir" / "t.db").stat().st_mode)
    assert mode & 0o077 == 0
    reopened = SQLiteTokenStorage(tmp_path / "sub" / "dir" / "t.db")
    assert await reopened.integrity_check() == "ok"
    await reopened.aclose()


WRITER = textwrap.dedent(
    """
    import asyncio, sys, time
    from webex_byova.storage import SQLiteTokenStorage
    from webex_byova.tokens import OAuthToken

    async def main() -> None:
        store = SQLiteTokenStorage(sys.argv[1])
        i = 0
        while True:
            i += 1
            token = OAuthToken("a%08d" % i + "x" * 4000, time.time() + 60, "r%08d" % i + "y" * 4000)
            await store.set_org_token(sys.argv[2], token)
            await store.set_integration_token(token)
            print(i, flush=True)

    asyncio.run(main())
    """
)


async def test_sqlite_survives_kill_9_mid_write(tmp_path: Path) -> None:
    path = tmp_path / "killed.db"
    org = unique_org()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", WRITER, str(path), org, stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    acknowledged = 0
    while acknowledged < 200:  # let it write for a while, then kill it without warning
        line = await proc.stdout.readline()
        assert line, "writer died early"
        acknowledged = int(line)
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    store = SQLiteTokenStorage(path)
    try:
        assert await store.integrity_check() == "ok"
        org_token = await store.get_org_token(org)
        integration = await store.get_integration_token()
        assert org_token is not None
        assert integration is not None
        # Every acknowledged write is durable; the killed one is either fully there or absent.
        org_n, integ_n = int(org_token.access_token[1:9]), int(integration.access_token[1:9])
        assert org_n >= acknowledged
        assert integ_n >= acknowledged
        assert org_token.refresh_token == f"r{org_n:08d}" + "y" * 4000
        assert integ_n in (org_n, org_n - 1)
        # And the file is still writable.
        await store.set_integration_token(_secret_token())
        assert (await store.get_integration_token()) is not None
    finally:
        await store.aclose()
