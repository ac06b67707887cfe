"""Facade lifecycle: several event loops (e.g. two ``asyncio.run`` calls), close() releases all."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

from webex_byova.client import BYOVA
from webex_byova.testing import WebexEmulator

from .conftest import make_sdk, seed_integration


def test_async_calls_from_two_event_loops_then_sync_close(emu: WebexEmulator) -> None:
    sdk = make_sdk(emu)
    seed_integration(sdk, emu)
    emu.authorize_service_app(emu.org.org_id)
    sdk.service_app.fetch_org_token(emu.org.org_id)

    async def schema_ids() -> list[str]:
        client = await sdk.aget_client_for_org(emu.org.org_id)
        return [s.id async for s in client.schemas.alist()]

    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        expected = first.run_until_complete(schema_ids())
        assert expected
        # The connection pooled by the first loop must not be reused by the second one.
        assert second.run_until_complete(asyncio.wait_for(schema_ids(), 10)) == expected
        sdk.close()  # closes the async clients of both (idle) loops, from sync code
    finally:
        first.close()
        second.close()


def _sqlite_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("webex-byova-sqlite")]


def test_sync_close_releases_the_store_from_env(
    emu: WebexEmulator, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("WEBEX_INTEGRATION_CLIENT_ID", emu.integration.client_id)
    monkeypatch.setenv("WEBEX_INTEGRATION_CLIENT_SECRET", emu.integration.client_secret)
    monkeypatch.setenv("WEBEX_SA_CLIENT_ID", emu.service_app.client_id)
    monkeypatch.setenv("WEBEX_SA_CLIENT_SECRET", emu.service_app.client_secret)
    monkeypatch.setenv("WEBEX_TOKEN_STORE", f"sqlite:///{tmp_path}/tokens.db")
    before = set(_sqlite_threads())
    with BYOVA.from_env(config=emu.config()) as sdk:
        seed_integration(sdk, emu)  # opens the SQLite worker thread
        assert sdk.integration.has_token()
        assert set(_sqlite_threads()) - before
    # Leaving the (sync) context closed the store it created: no worker thread left behind.
    assert not set(_sqlite_threads()) - before
