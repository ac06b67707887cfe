"""DataSourceKeeper against the emulator: thread shell, retries with backoff, deleted sources."""

from __future__ import annotations

import asyncio
import threading

import pytest

from webex_byova.client import BYOVA
from webex_byova.data_sources import BYOVA_SCHEMA_ID, OrgClient
from webex_byova.keeper import DataSourceKeeper, DataSourceState
from webex_byova.testing import WebexEmulator

from .conftest import DS_URL, org_data_source


def _client(sdk: BYOVA, emu: WebexEmulator) -> OrgClient:
    emu.authorize_service_app(emu.org.org_id)
    sdk.service_app.fetch_org_token(emu.org.org_id)
    return sdk.get_client_for_org(emu.org.org_id)


def test_thread_shell_renews_before_expiry(sdk: BYOVA, emu: WebexEmulator) -> None:
    client = _client(sdk, emu)
    ds = client.data_sources.create(
        schema_id=BYOVA_SCHEMA_ID, url=DS_URL, audience="A", subject="S", token_lifetime_minutes=30
    )
    renewed = threading.Event()
    seen: list[DataSourceState] = []

    def on_change(state: DataSourceState) -> None:
        seen.append(state)
        if state.renewals >= 2:
            renewed.set()

    keeper = DataSourceKeeper(
        lead_time=300, clock=emu.clock.now, thread_sleep=emu.clock.advance, on_change=on_change
    )
    keeper.register(client, ds.id)  # by id: looked up first
    with keeper:
        assert renewed.wait(30)
    assert not keeper.running
    assert seen[0].status == "pending"
    assert any(s.status == "scheduled" and s.renewals == 0 for s in seen)  # after the lookup
    assert emu.count("GET", f"/dataSources/{ds.id}") >= 3  # lookup + one GET per extend
    final = [s for s in seen if s.renewals >= 2][0]
    assert final.last_renewed_at is not None
    assert final.expires_at is not None
    assert final.expires_at - final.last_renewed_at == pytest.approx(30 * 60, abs=1)


async def test_failures_retry_with_backoff_then_recover(asdk: BYOVA, emu: WebexEmulator) -> None:
    client, ds = await org_data_source(asdk, emu, token_lifetime_minutes=60)
    keeper = DataSourceKeeper(
        lead_time=600, retry_initial=10, retry_max=40, clock=emu.clock.now, rng=lambda: 0.0
    )
    keeper.register(client, ds)
    emu.clock.advance(3000)  # now due
    emu.fail_next("/dataSources", status=400, times=3)  # not retried by the HTTP layer
    states = []
    for _ in range(3):
        await keeper.arun_once()
        state = keeper.state(ds.id)
        states.append(state)
        emu.clock.advance(state.next_run_at - emu.clock.now())
    assert [s.status for s in states] == ["retrying"] * 3
    assert [s.consecutive_failures for s in states] == [1, 2, 3]
    assert "HTTP 400" in (states[0].last_error or "") or "failed" in (states[0].last_error or "")
    gaps = [b.next_run_at - a.next_run_at for a, b in zip(states, states[1:], strict=False)]
    assert gaps == [pytest.approx(20.0, abs=1), pytest.approx(40.0, abs=1)]
    await keeper.arun_once()
    ok = keeper.state(ds.id)
    assert ok.status == "scheduled"
    assert ok.renewals == 1
    assert ok.consecutive_failures == 0


async def test_deleted_source_is_dropped(asdk: BYOVA, emu: WebexEmulator) -> None:
    client, ds = await org_data_source(asdk, emu)
    changes: list[DataSourceState] = []
    keeper = DataSourceKeeper(lead_time=600, clock=emu.clock.now, on_change=changes.append)
    keeper.register(client, ds)
    await client.data_sources.adelete(ds.id)
    await keeper.arun_once()
    assert changes[-1].status == "gone"
    assert keeper.states() == {}


async def test_task_wakes_on_registration(asdk: BYOVA, emu: WebexEmulator) -> None:
    client, ds = await org_data_source(asdk, emu)
    renewed = asyncio.Event()

    async def never(_: float) -> None:  # only a registration can wake the idle keeper
        await asyncio.Event().wait()

    keeper = DataSourceKeeper(
        lead_time=600,
        clock=emu.clock.now,
        sleep=never,
        on_change=lambda s: renewed.set() if s.renewals else None,
    )
    async with keeper:
        await asyncio.sleep(0)
        keeper.register(client, ds)  # inside the lead time: renewed at once
        await asyncio.wait_for(renewed.wait(), 30)
    assert keeper.state(ds.id).renewals == 1
