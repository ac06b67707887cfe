"""A token store holding something that is not a token store gives one typed error.

Real files (not SQLite, truncated, a foreign ``tokens`` table, junk rows), a real redis-server
holding junk, and the CLI over them: ``TokenStorageError`` naming the store and the problem,
one line from ``byova auth status`` (exit 1), a failed ``token store`` row in ``byova doctor``.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from redis import asyncio as redis_asyncio
from typer.testing import CliRunner

import webex_byova
from webex_byova import TokenStorageError
from webex_byova.cli import app
from webex_byova.errors import TokenStorageError as ErrorsTokenStorageError
from webex_byova.storage import (
    EncryptedTokenStorage,
    InMemoryTokenStorage,
    SQLiteTokenStorage,
    TokenDecryptionError,
    generate_key,
)
from webex_byova.storage import TokenStorageError as StorageTokenStorageError
from webex_byova.storage.redis import RedisTokenStorage
from webex_byova.tokens import OAuthToken

ORG = "8f3a1c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b"


def _token() -> OAuthToken:
    return OAuthToken(access_token="at-" + "x" * 40, expires_at=4_000_000_000.0)


async def _real_store(path: Path, orgs: int = 1) -> None:
    store = SQLiteTokenStorage(path)
    await store.set_integration_token(_token())
    for i in range(orgs):
        await store.set_org_token(f"{i:08d}-1111-2222-3333-444444444444", _token())
    await store.aclose()


def _not_a_database(path: Path) -> None:
    path.write_bytes(b"these are not the tokens you are looking for\n" * 200)


async def _truncated(path: Path) -> None:
    await _real_store(path, orgs=300)
    size = path.stat().st_size
    with path.open("r+b") as fh:
        fh.truncate(size // 2)


def _foreign_table(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE tokens (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO tokens (name) VALUES ('someone else''s data')")
    conn.close()


async def _row(path: Path, value: bytes) -> None:
    await _real_store(path)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("UPDATE tokens SET value = ? WHERE key = 'integration'", (value,))
    conn.close()


SQLITE_CASES: dict[str, tuple[str, bytes | None]] = {
    # name -> (expected words in the message, row value for the junk-row cases)
    "not a database": ("not a SQLite database", None),
    "truncated": ("damaged or truncated", None),
    "foreign tokens table": ("not a webex_byova token database", None),
    "row not UTF-8": ("not UTF-8", b"\xff\xfe\x00junk"),
    "row not JSON": ("not valid JSON", b"{not json"),
    "row deeply nested JSON": ("not valid JSON", b"[" * 100_000 + b"]" * 100_000),
    "row JSON but not a token": ("not a token", b'{"hello": "world"}'),
    "row a JSON list": ("not a token", b"[1, 2, 3]"),
    "row with a text expiry": ("not a token", b'{"access_token": "a", "expires_at": "soon"}'),
}


async def _prepare(case: str, path: Path) -> str:
    words, value = SQLITE_CASES[case]
    if case == "not a database":
        _not_a_database(path)
    elif case == "truncated":
        await _truncated(path)
    elif case == "foreign tokens table":
        _foreign_table(path)
    else:
        assert value is not None
        await _row(path, value)
    return words


def test_one_public_error_type() -> None:
    assert TokenStorageError is ErrorsTokenStorageError is StorageTokenStorageError
    assert issubclass(TokenStorageError, webex_byova.WebexBYOVAError)
    assert issubclass(TokenDecryptionError, TokenStorageError)
    assert "TokenStorageError" in webex_byova.__all__


@pytest.mark.parametrize("case", list(SQLITE_CASES))
async def test_corrupt_sqlite_file_raises_a_typed_error_naming_it(
    case: str, tmp_path: Path
) -> None:
    path = tmp_path / "tokens.db"
    words = await _prepare(case, path)
    store = SQLiteTokenStorage(path)
    try:
        with pytest.raises(TokenStorageError) as info:
            await store.get_integration_token()
        assert str(path) in str(info.value)
        assert words in str(info.value)
        assert info.value.store == str(path)
        assert "Traceback" not in str(info.value)
        with pytest.raises(TokenStorageError):
            await store.check()
    finally:
        await store.aclose()


def test_corrupt_sqlite_file_sync_path(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    _not_a_database(path)
    store = SQLiteTokenStorage(path)
    from webex_byova._flow import default_portal

    with pytest.raises(TokenStorageError, match="not a SQLite database"):
        default_portal().call(store.get_integration_token)
    store.close()


async def test_a_directory_in_place_of_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    path.mkdir()
    store = SQLiteTokenStorage(path)
    with pytest.raises(TokenStorageError, match="tokens.db"):
        await store.list_orgs()
    await store.aclose()


async def test_a_sound_store_checks_ok(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    await _real_store(path, orgs=3)
    store = SQLiteTokenStorage(path)
    assert await store.check() == 4
    await store.aclose()


async def test_junk_in_memory_and_encrypted_stores() -> None:
    memory = InMemoryTokenStorage()
    await memory.set_value(f"org:{ORG}", b"\x00\x01")
    with pytest.raises(TokenStorageError, match="token store memory entry 'org:"):
        await memory.get_org_token(ORG)
    encrypted = EncryptedTokenStorage(memory, generate_key())
    with pytest.raises(TokenDecryptionError, match=r"memory \(encrypted\)"):
        await encrypted.get_org_token(ORG)
    with pytest.raises(TokenDecryptionError):
        await encrypted.rotate()


REDIS_JUNK: dict[str, Callable[[redis_asyncio.Redis, str], object]] = {
    "bytes": lambda r, k: r.set(k, b"\xff\x00 junk"),
    "not JSON": lambda r, k: r.set(k, b"{{{"),
    "JSON but not a token": lambda r, k: r.set(k, json.dumps({"a": 1})),
    "a Redis list": lambda r, k: r.rpush(k, "a", "b"),
    "a Redis hash": lambda r, k: r.hset(k, "field", "value"),
}


@pytest.mark.parametrize("case", list(REDIS_JUNK))
async def test_junk_in_redis_is_a_typed_error(case: str, redis_url: str, tmp_path: Path) -> None:
    prefix = f"junk:{tmp_path.name}:"
    raw = redis_asyncio.from_url(redis_url)
    try:
        await REDIS_JUNK[case](raw, f"{prefix}t:org:{ORG}")  # type: ignore[misc]
        await raw.sadd(f"{prefix}keys", f"org:{ORG}")
        store = RedisTokenStorage(redis_url, prefix=prefix)
        with pytest.raises(TokenStorageError) as info:
            await store.get_org_token(ORG)
        assert "127.0.0.1" in str(info.value)
        assert prefix in str(info.value)
        assert info.value.key == f"org:{ORG}"
        with pytest.raises(TokenStorageError):
            await store.check()
        await store.aclose()
    finally:
        await raw.aclose()


async def test_unreachable_redis_is_a_typed_error() -> None:
    store = RedisTokenStorage("redis://127.0.0.1:1/0", client_options={"socket_connect_timeout": 2})
    with pytest.raises(TokenStorageError, match="Redis error"):
        await store.get_integration_token()
    await store.aclose()


# --------------------------------------------------------------------------- the CLI


def _env(store_url: str) -> dict[str, str]:
    return {
        "WEBEX_INTEGRATION_CLIENT_ID": "cid",
        "WEBEX_INTEGRATION_CLIENT_SECRET": "secret",
        "WEBEX_SA_CLIENT_ID": "sacid",
        "WEBEX_SA_CLIENT_SECRET": "sasecret",
        "WEBEX_BASE_URL": "http://127.0.0.1:9/v1",
        "WEBEX_TOKEN_STORE": store_url,
    }


@pytest.mark.parametrize("case", ["not a database", "foreign tokens table", "row not JSON"])
async def test_cli_auth_status_prints_one_line_and_doctor_fails(case: str, tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    words = await _prepare(case, path)
    env = _env(f"sqlite:///{path}")
    runner = CliRunner()
    status = runner.invoke(app, ["auth", "status"], env=env)
    assert status.exit_code == 1
    assert "Traceback" not in status.output
    lines = [line for line in status.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, status.stderr
    assert "TokenStorageError" in lines[0]
    assert str(path) in lines[0]
    assert words in lines[0]
    doctor = runner.invoke(app, ["doctor", "--json"], env=env)
    assert doctor.exit_code == 1
    rows = {r["check"]: r for r in json.loads(doctor.stdout)}
    assert rows["token store"]["status"] == "fail"
    assert str(path) in rows["token store"]["detail"]
    assert "integration token" not in rows  # nothing read from an unusable store


async def test_cli_doctor_reports_a_sound_store(tmp_path: Path) -> None:
    path = tmp_path / "tokens.db"
    await _real_store(path, orgs=2)
    doctor = CliRunner().invoke(app, ["doctor", "--json"], env=_env(f"sqlite:///{path}"))
    rows = {r["check"]: r for r in json.loads(doctor.stdout)}
    assert rows["token store"] == {
        "check": "token store",
        "status": "ok",
        "detail": f"{path} (3 tokens)",
    }


@pytest.mark.parametrize(
    ("media_env", "check", "status", "words"),
    [
        ({}, "media token checks", "warn", "WEBEX_MEDIA_EXPECTED_URL is unset"),
        (
            {"WEBEX_MEDIA_EXPECTED_URL": "https://va.example.com/byova"},
            "media token checks",
            "ok",
            "https://va.example.com/byova",
        ),
        ({"WEBEX_MEDIA_VERIFY_TOKENS": "false"}, "media token checks", "warn", "off"),
        ({"WEBEX_MEDIA_PORT": "not-a-port"}, "media config", "fail", "WEBEX_MEDIA_PORT"),
    ],
)
async def test_cli_doctor_reports_media_token_checks(
    media_env: dict[str, str], check: str, status: str, words: str, tmp_path: Path
) -> None:
    await _real_store(tmp_path / "tokens.db")
    env = {**_env(f"sqlite:///{tmp_path / 'tokens.db'}"), **media_env}
    doctor = CliRunner().invoke(app, ["doctor", "--json"], env=env)
    rows = {r["check"]: r for r in json.loads(doctor.stdout)}
    assert rows[check]["status"] == status
    assert words in rows[check]["detail"]
