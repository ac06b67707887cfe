"""Auth-area fixtures: a real redis-server, the Webex emulator, managers wired to it, and a
parametrized factory for every token store backend."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from webex_byova._http import HttpClient
from webex_byova._oauth import parse_token_response
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.integration import IntegrationTokenManager
from webex_byova.service_app import ServiceAppTokenManager
from webex_byova.storage import (
    EncryptedTokenStorage,
    InMemoryTokenStorage,
    KeyValueTokenStorage,
    SQLiteTokenStorage,
    generate_key,
)
from webex_byova.storage.redis import RedisTokenStorage
from webex_byova.testing import WebexEmulator


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A private redis-server on a free loopback port (no persistence), for the session."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail(
            "redis-server is not on PATH; the Redis token store tests need a real server. "
            "Install the Debian package: apt-get install redis-server (dev.py does it in CI)."
        )
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(200):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        break
            except OSError:
                pass
            if proc.poll() is not None:
                pytest.fail(f"redis-server exited with status {proc.returncode}")
            time.sleep(0.025)
        else:
            pytest.fail("redis-server did not answer PING")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


BACKENDS = ["memory", "sqlite", "redis", "encrypted-memory", "encrypted-sqlite", "encrypted-redis"]


@dataclass
class StoreFactory:
    """Builds stores of one backend; ``new()`` with the same ``name`` reopens the same data."""

    backend: str
    tmp_path: Path
    redis_url: str | None
    key: str
    created: list[KeyValueTokenStorage]
    _shared_memory: dict[str, InMemoryTokenStorage]

    def new(self, name: str = "default") -> KeyValueTokenStorage:
        kind = self.backend.removeprefix("encrypted-")
        inner: KeyValueTokenStorage
        if kind == "memory":
            inner = self._shared_memory.setdefault(name, InMemoryTokenStorage())
        elif kind == "sqlite":
            inner = SQLiteTokenStorage(self.tmp_path / f"{name}.db")
        else:
            assert self.redis_url is not None
            inner = RedisTokenStorage(self.redis_url, prefix=f"test:{self.tmp_path.name}:{name}:")
        store: KeyValueTokenStorage = inner
        if self.backend.startswith("encrypted-"):
            store = EncryptedTokenStorage(inner, self.key)
        self.created.append(store)
        return store


@pytest.fixture(params=BACKENDS)
async def store_factory(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[StoreFactory]:
    """A factory for one backend (parametrized over every backend, plain and encrypted)."""
    backend: str = request.param
    url = request.getfixturevalue("redis_url") if "redis" in backend else None
    factory = StoreFactory(backend, tmp_path, url, generate_key(), [], {})
    yield factory
    for store in factory.created:
        await store.aclose()
        closer = getattr(store, "close", None)
        if closer is not None:
            closer()


@pytest.fixture
async def store(store_factory: StoreFactory) -> KeyValueTokenStorage:
    """One store of the parametrized backend."""
    return store_factory.new()


# ----------------------------------------------------------------------------- emulator


@pytest.fixture
def emu() -> Iterator[WebexEmulator]:
    """A running emulator that rotates refresh tokens on every refresh."""
    with WebexEmulator(rotate_refresh_tokens=True) as emulator:
        yield emulator


@dataclass
class AuthRig:
    """Managers wired to the emulator."""

    emu: WebexEmulator
    http: HttpClient
    integration: IntegrationTokenManager
    service_app: ServiceAppTokenManager
    storage: Any

    def seed_integration(self) -> Awaitable[None]:
        """Store an Integration token minted by the emulator (as if authorized)."""
        token = parse_token_response(self.emu.issue_integration_token(), now=self.emu.clock.now())
        return self.storage.set_integration_token(token)


def make_rig(emu: WebexEmulator, storage: Any, *, lock_ttl: float = 30.0, **config: Any) -> AuthRig:
    """Managers for ``emu`` over ``storage`` (clock = emulator clock, store lock ``lock_ttl``)."""
    http = HttpClient(emu.config(**config))
    creds = IntegrationCredentials(
        emu.integration.client_id,
        emu.integration.client_secret,
        redirect_uri="http://127.0.0.1:0/callback",
    )
    integration = IntegrationTokenManager(
        creds, http, storage, clock=emu.clock.now, lock_ttl=lock_ttl
    )
    sa_creds = ServiceAppCredentials(
        emu.service_app.client_id,
        emu.service_app.client_secret,
        application_id=emu.service_app.application_id,
    )
    service_app = ServiceAppTokenManager(sa_creds, integration, http, storage, lock_ttl=lock_ttl)
    return AuthRig(emu, http, integration, service_app, storage)


@pytest.fixture
async def rig(emu: WebexEmulator) -> AsyncIterator[AuthRig]:
    """Managers over an in-memory store."""
    built = make_rig(emu, InMemoryTokenStorage())
    yield built
    await built.http.aclose()


@pytest.fixture
async def new_rig(emu: WebexEmulator) -> AsyncIterator[Callable[..., AuthRig]]:
    """Build extra rigs (e.g. two replicas over one store); closed after the test."""
    rigs: list[AuthRig] = []

    def _make(storage: Any, **options: Any) -> AuthRig:
        built = make_rig(emu, storage, **options)
        rigs.append(built)
        return built

    yield _make
    for built in rigs:
        await built.http.aclose()


def unique_org() -> str:
    """A random org UUID (for storage tests)."""
    return str(uuid.uuid4())
