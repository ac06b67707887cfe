"""One facade used from several event loops (e.g. two ``asyncio.run`` calls in a script)."""

from __future__ import annotations

import asyncio

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
