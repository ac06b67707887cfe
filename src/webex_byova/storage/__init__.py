"""Token storage: the :class:`TokenStorage` protocol and its backends.

* :class:`InMemoryTokenStorage`: default, per process;
* :class:`SQLiteTokenStorage`: durable file (WAL, atomic writes), the CLI's default;
* :class:`RedisTokenStorage`: shared by replicas, cross-process refresh lock (``redis`` extra);
* :class:`EncryptedTokenStorage`: Fernet encryption around any of them.

:func:`from_url` builds one from ``memory``, ``sqlite:///relative.db``,
``sqlite:////absolute/path.db`` or ``redis://host:port/db``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from ..errors import TokenStorageError
from .base import (
    INTEGRATION_KEY,
    ORG_PREFIX,
    WEBHOOK_PREFIX,
    KeyValueTokenStorage,
    LockingTokenStorage,
    LockLease,
    TokenStorage,
    WebhookStateStorage,
    org_key,
)
from .encrypted import EncryptedTokenStorage, TokenDecryptionError, generate_key
from .memory import InMemoryTokenStorage
from .sqlite import SQLiteTokenStorage, default_sqlite_path

if TYPE_CHECKING:
    from .redis import RedisTokenStorage

__all__ = [
    "INTEGRATION_KEY",
    "ORG_PREFIX",
    "WEBHOOK_PREFIX",
    "EncryptedTokenStorage",
    "InMemoryTokenStorage",
    "KeyValueTokenStorage",
    "LockLease",
    "LockingTokenStorage",
    "RedisTokenStorage",
    "SQLiteTokenStorage",
    "TokenDecryptionError",
    "TokenStorage",
    "TokenStorageError",
    "WebhookStateStorage",
    "default_sqlite_path",
    "from_url",
    "generate_key",
    "org_key",
]


def __getattr__(name: str) -> Any:
    if name == "RedisTokenStorage":  # needs the optional ``redis`` extra
        from .redis import RedisTokenStorage

        return RedisTokenStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def from_url(
    url: str, *, encryption_key: str | bytes | Sequence[str | bytes] | None = None
) -> KeyValueTokenStorage:
    """Build a token store from a URL.

    * ``memory`` (or ``memory://``): :class:`InMemoryTokenStorage`;
    * ``sqlite://`` (default file under the user data dir), ``sqlite:///tokens.db``
      (relative) or ``sqlite:////var/lib/app/tokens.db`` (absolute), SQLAlchemy style;
    * ``redis://host:port/db`` / ``rediss://...``, optional ``?prefix=myapp:``.

    With ``encryption_key`` the store is wrapped in :class:`EncryptedTokenStorage`.

    Raises:
        ValueError: For an unknown scheme or a malformed URL.
        webex_byova._optional.MissingExtraError: For ``redis://`` without the ``redis`` extra.
    """
    text = url.strip()
    scheme = text.split(":", 1)[0].lower() if ":" in text else text.lower()
    store: KeyValueTokenStorage
    if scheme == "memory":
        store = InMemoryTokenStorage()
    elif scheme == "sqlite":
        if not text.lower().startswith("sqlite://"):
            raise ValueError(f"malformed sqlite URL {url!r}; use sqlite:///path/to/tokens.db")
        rest = text[len("sqlite://") :]
        if rest in ("", "/"):
            path = default_sqlite_path()
        elif not rest.startswith("/"):
            raise ValueError(f"malformed sqlite URL {url!r}; use sqlite:///path/to/tokens.db")
        else:
            path = Path(rest[1:]).expanduser()
        store = SQLiteTokenStorage(path)
    elif scheme in ("redis", "rediss", "unix"):
        from .redis import RedisTokenStorage

        parts = urlsplit(text)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        prefix = query.pop("prefix", "webex_byova:")
        rest_query = "&".join(f"{k}={v}" for k, v in query.items())
        base = urlunsplit((parts.scheme, parts.netloc, parts.path, rest_query, ""))
        store = RedisTokenStorage(base, prefix=prefix)
    else:
        raise ValueError(
            f"unknown token store URL {url!r}; expected memory, sqlite:///path or "
            "redis://host:port/db"
        )
    if encryption_key is not None:
        store = EncryptedTokenStorage(store, encryption_key)
    return store
