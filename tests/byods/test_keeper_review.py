"""DataSourceKeeper review findings: input validation and cancellation mid-renewal."""

from __future__ import annotations

import asyncio

import pytest

from webex_byova.client import BYOVA
from webex_byova.errors import ValidationError
from webex_byova.keeper import DataSourceKeeper
from webex_byova.testing import WebexEmulator

from .conftest import org_data_source
from .test_keeper_schedule import _client as offline_client


@pytest.mark.parametrize("minutes", [0, -5, 1441])
def test_register_rejects_a_lifetime_outside_1_to_1440(minutes: int) -> None:
    keeper = DataSourceKeeper()
    with pytest.raises(ValidationError):
        keeper.register(offline_client(), "ds-1", token_lifetime_minutes=minutes)
    with pytest.raises(ValidationError):
        DataSourceKeeper(token_lifetime_minutes=minutes)
    assert keeper.states() == {}


async def test_cancelled_task_mid_renewal_does_not_strand_the_source(
    asdk: BYOVA, emu: WebexEmulator
) -> None:
    client, ds = await org_data_source(asdk, emu)
    keeper = DataSourceKeeper(lead_time=600, clock=emu.clock.now)  # due at once
    keeper.register(client, ds)
    emu.add_latency(f"/v1/dataSources/{ds.id}", 1.0, method="GET", times=1)
    task = keeper.start()
    while keeper.state(ds.id).status != "renewing":  # the GET of the renewal is in flight
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await keeper.astop()
    # The interrupted renewal must be retried by the next run, not skipped as "in flight".
    await keeper.arun_once()
    state = keeper.state(ds.id)
    assert state.renewals == 1, state
    assert state.status == "scheduled"
