"""SQLite token store: one file, WAL journal, atomic writes, survives restarts and ``kill -9``.

All database work runs on one private worker thread per store (``sqlite3`` from the standard
library), so the store is loop-agnostic: any event loop awaits the worker's futures. Each write
is a single autocommitted statement, so a crash leaves either the old or the new value.
``synchronous=FULL`` (default) also survives power loss; ``NORMAL`` is enough for process
crashes and is faster.

The store also offers a cross-process :meth:`SQLiteTokenStorage.lock` (a row in a ``locks``
table with an expiry) so several processes sharing the file refresh a token only once.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal, TypeVar

from .base import KeyValueTokenStorage, LockLease

__all__ = ["SQLiteTokenStorage", "default_sqlite_path"]

T = TypeVar("T")

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS tokens ("
    " key TEXT PRIMARY KEY, value BLOB NOT NULL, updated_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS locks ("
    " key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires_at REAL NOT NULL)",
)
#: The columns each table must have; a file whose table lacks one belongs to something else.
_COLUMNS = {"tokens": ("key", "value", "updated_at"), "locks": ("key", "owner", "expires_at")}


def _sqlite_problem(exc: sqlite3.Error | OSError) -> str:
    """A short description of a SQLite/OS failure for a :class:`TokenStorageError`."""
    text = str(exc)
    if isinstance(exc, OSError):
        return f"cannot open the file ({type(exc).__name__}: {exc.strerror or text})"
    if "file is not a database" in text:
        return "not a SQLite database (file is not a database)"
    if "malformed" in text or "corrupt" in text:
        return f"the database file is damaged or truncated ({text})"
    if "no such column" in text or "no such table" in text:
        return f"not a webex_byova token database ({text})"
    return f"SQLite error ({type(exc).__name__}: {text})"


def default_sqlite_path() -> Path:
    """``tokens.db`` under the user data directory (the CLI's default store)."""
    import platformdirs

    return Path(platformdirs.user_data_dir("webex-byova", appauthor=False)) / "tokens.db"


class SQLiteTokenStorage(KeyValueTokenStorage):
    """Durable tokens in a SQLite file (created with mode 0600).

    Args:
        path: Database file; parent directories are created.
        synchronous: SQLite ``synchronous`` pragma (``"FULL"`` or ``"NORMAL"``).
        busy_timeout: Seconds to wait for another process's write lock.
        lock_poll_interval: Seconds between attempts to take a held :meth:`lock`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["FULL", "NORMAL"] = "FULL",
        busy_timeout: float = 10.0,
        lock_poll_interval: float = 0.02,
    ) -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError("synchronous must be 'FULL' or 'NORMAL'")
        self.path = Path(path).expanduser()
        self._synchronous = synchronous
        self._busy_timeout_ms = int(busy_timeout * 1000)
        self._poll = lock_poll_interval
        self._conn: sqlite3.Connection | None = None  # only touched on the worker thread
        self._executor: ThreadPoolExecutor | None = None
        self._guard = threading.Lock()

    # -- worker thread plumbing
    def _connect(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():
                fd = os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600)
                os.close(fd)
            deadline = time.monotonic() + self._busy_timeout_ms / 1000
            while True:
                conn = sqlite3.connect(
                    self.path, timeout=self._busy_timeout_ms / 1000, isolation_level=None
                )
                try:
                    self._setup(conn)
                    break
                except sqlite3.OperationalError as exc:
                    conn.close()
                    # Switching a new file to WAL while another process opens it fails with
                    # "database is locked" without waiting on the busy handler: retry.
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
                except BaseException:
                    conn.close()
                    raise
            self._conn = conn
        return self._conn

    def _setup(self, conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout={self._busy_timeout_ms}")
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if str(mode).lower() != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={self._synchronous}")
        for statement in _SCHEMA:
            conn.execute(statement)
        for table, needed in _COLUMNS.items():
            have = {str(row[1]) for row in conn.execute(f"PRAGMA table_info({table})")}
            missing = [c for c in needed if c not in have]
            if missing:
                raise self.storage_error(
                    f"not a webex_byova token database: its {table!r} table has columns "
                    f"{', '.join(sorted(have)) or 'none'} (missing {', '.join(missing)})"
                )

    async def _run(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self._guard:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(1, thread_name_prefix="webex-byova-sqlite")
            executor = self._executor
        future = executor.submit(self._call, fn)
        return await asyncio.wrap_future(future)

    def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the worker; SQLite/OS failures become a TokenStorageError naming
        the file."""
        try:
            return fn(self._connect())
        except (sqlite3.Error, OSError) as exc:
            raise self.storage_error(_sqlite_problem(exc)) from None

    @property
    def location(self) -> str:
        """The database file."""
        return str(self.path)

    # -- byte level
    async def get_value(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or ``None``."""

        def _get(conn: sqlite3.Connection) -> bytes | None:
            row = conn.execute("SELECT value FROM tokens WHERE key = ?", (key,)).fetchone()
            return None if row is None else bytes(row[0])

        return await self._run(_get)

    async def set_value(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key`` in one atomic statement."""

        def _set(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO tokens (key, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (key, sqlite3.Binary(value), time.time()),
            )

        await self._run(_set)

    async def delete_value(self, key: str) -> None:
        """Remove ``key``."""
        await self._run(lambda conn: conn.execute("DELETE FROM tokens WHERE key = ?", (key,)))

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Keys starting with ``prefix``, sorted."""

        def _keys(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT key FROM tokens WHERE substr(key, 1, ?) = ? ORDER BY key",
                (len(prefix), prefix),
            ).fetchall()
            return [str(r[0]) for r in rows]

        return await self._run(_keys)

    async def clear_values(self) -> None:
        """Remove every key."""
        await self._run(lambda conn: conn.execute("DELETE FROM tokens"))

    async def integrity_check(self) -> str:
        """``PRAGMA integrity_check`` result (``"ok"`` when the file is sound)."""
        return await self._run(
            lambda conn: str(conn.execute("PRAGMA integrity_check").fetchone()[0])
        )

    async def check(self) -> int:
        """:meth:`integrity_check`, then read every token (see the base class).

        Raises:
            TokenStorageError: The file is not a sound token database, or an entry is junk.
        """
        result = await self.integrity_check()
        if result != "ok":
            raise self.storage_error(f"integrity check failed ({result[:200]})")
        return await super().check()

    # -- cross-process lock
    @asynccontextmanager
    async def lock(self, key: str, ttl: float = 30.0) -> AsyncIterator[LockLease]:
        """Hold the lock ``key`` across processes sharing the file.

        The row expires ``ttl`` seconds after it was taken or last renewed
        (:meth:`LockLease.aextend`), so a holder that dies is taken over. A task cancelled
        while acquiring leaves no row behind.
        """
        owner = secrets.token_hex(8)

        def _try(conn: sqlite3.Connection) -> bool:
            now = time.time()
            conn.execute("BEGIN IMMEDIATE")
            try:
                row = conn.execute("SELECT expires_at FROM locks WHERE key = ?", (key,)).fetchone()
                if row is not None and float(row[0]) > now:
                    conn.execute("ROLLBACK")
                    return False
                conn.execute(
                    "INSERT OR REPLACE INTO locks (key, owner, expires_at) VALUES (?, ?, ?)",
                    (key, owner, now + ttl),
                )
                conn.execute("COMMIT")
                return True
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        def _extend(conn: sqlite3.Connection) -> bool:
            cursor = conn.execute(
                "UPDATE locks SET expires_at = ? WHERE key = ? AND owner = ?",
                (time.time() + ttl, key, owner),
            )
            return cursor.rowcount == 1

        async def _release() -> None:
            # Shielded: the worker runs statements in order, so this DELETE also undoes an
            # INSERT whose caller was cancelled while it was running.
            await asyncio.shield(
                self._run(
                    lambda conn: conn.execute(
                        "DELETE FROM locks WHERE key = ? AND owner = ?", (key, owner)
                    )
                )
            )

        try:
            while True:
                if await self._run(_try):
                    break
                await asyncio.sleep(self._poll)
        except BaseException:
            await _release()
            raise
        try:
            yield LockLease(key, ttl, lambda: self._run(_extend))
        finally:
            await _release()

    # -- lifecycle
    def _close_on_worker(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _detach(self) -> ThreadPoolExecutor | None:
        with self._guard:
            executor, self._executor = self._executor, None
        return executor

    async def aclose(self) -> None:
        """Close the connection and stop the worker thread (reopened on next use)."""
        executor = self._detach()
        if executor is not None:
            await asyncio.wrap_future(executor.submit(self._close_on_worker))
            executor.shutdown(wait=False)

    def close(self) -> None:
        """Blocking :meth:`aclose` (safe inside a running loop)."""
        executor = self._detach()
        if executor is not None:
            executor.submit(self._close_on_worker).result()
            executor.shutdown(wait=True)

    def __repr__(self) -> str:
        return f"SQLiteTokenStorage(path={str(self.path)!r})"
