"""Exact outcomes of the data-source keeper: every decision of KeeperSchedule, the keeper's
arguments and both shells (against the emulator, its clock injected).

Written for the mutation run of ``keeper.py`` (``scripts/mutation.py keeper``): each test pins
whole states (``DataSourceState`` is a frozen dataclass), boundaries (due exactly at ``now``,
expired exactly at ``expires_at``) and the requests sent, so a changed comparison, default or
argument fails here.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from webex_byova.client import BYOVA
from webex_byova.data_sources import BYOVA_SCHEMA_ID, OrgClient
from webex_byova.errors import NotFoundError, ServerError, ValidationError
from webex_byova.keeper import DataSourceKeeper, DataSourceState, KeeperSchedule
from webex_byova.models import DataSource
from webex_byova.testing import WebexEmulator

from .conftest import DS_URL, org_data_source
from .test_keeper_schedule import ORG
from .test_keeper_schedule import _client as offline_client

#: A mutant that makes the keeper hang fails in seconds instead of the run's 60 s per test
#: (each test takes milliseconds).
pytestmark = pytest.mark.timeout(15)


NOW = 1_800_000_000.0


def _ds(expires: float | None, ds_id: str = "ds-1", org: str | None = ORG) -> DataSource:
    data: dict[str, Any] = {"id": ds_id}
    if org is not None:
        data["orgId"] = org
    if expires is not None:
        data["tokenExpiryTime"] = datetime.fromtimestamp(expires, tz=UTC).isoformat()
    return DataSource.model_validate(data)


def _schedule(rng: float = 0.0, **kw: float) -> KeeperSchedule:
    args = {"lead_time": 600.0, "min_interval": 30.0, "retry_initial": 10.0, "retry_max": 80.0}
    args.update(kw)
    return KeeperSchedule(rng=lambda: rng, **args)


def _state(**kw: Any) -> DataSourceState:
    return DataSourceState(data_source_id="ds-1", org_id=ORG, **kw)


# ------------------------------------------------------------------------------ KeeperSchedule


def test_schedule_keeps_its_arguments() -> None:
    s = KeeperSchedule(lead_time=1.0, min_interval=2.0, retry_initial=3.0, retry_max=4.0)
    assert (s.lead_time, s.min_interval, s.retry_initial, s.retry_max) == (1.0, 2.0, 3.0, 4.0)
    assert s.states() == {}
    assert s.next_wake() is None
    assert s.take_due(NOW) == []


def test_add_by_id_is_pending_and_due_now_for_a_lookup() -> None:
    s = _schedule()
    client = offline_client()
    assert s.add(client, "ds-1", 30, NOW) == _state(status="pending", next_run_at=NOW)
    assert s.next_wake() == NOW
    assert s.take_due(NOW - 0.001) == []
    assert s.take_due(NOW) == [("ds-1", 0, client, True, 30)]
    assert s.states() == {"ds-1": _state(status="pending", next_run_at=NOW)}  # not "renewing"
    assert s.next_wake() is None  # in flight
    assert s.take_due(NOW + 1) == []


def test_add_without_an_expiry_is_looked_up_too() -> None:
    s = _schedule()
    state = s.add(offline_client(), _ds(None), None, NOW)
    assert state == _state(status="pending", next_run_at=NOW)
    assert s.take_due(NOW)[0][3] is True


def test_add_with_an_expiry_schedules_lead_time_before_it() -> None:
    s = _schedule()
    client = offline_client()
    state = s.add(client, _ds(NOW + 3600), None, NOW)
    assert state == _state(status="scheduled", expires_at=NOW + 3600, next_run_at=NOW + 3000)
    assert s.next_wake() == NOW + 3000
    assert s.take_due(NOW + 2999.999) == []
    assert s.take_due(NOW + 3000) == [("ds-1", 0, client, False, None)]
    assert s.states()["ds-1"] == _state(
        status="renewing", expires_at=NOW + 3600, next_run_at=NOW + 3000
    )


def test_add_exactly_at_the_lead_time_or_inside_it_is_due_now() -> None:
    s = _schedule()
    assert s.add(offline_client(), _ds(NOW + 600), None, NOW).next_run_at == NOW
    assert s.add(offline_client(), _ds(NOW + 601), None, NOW).next_run_at == NOW + 1
    assert s.add(offline_client(), _ds(NOW + 10), None, NOW).next_run_at == NOW


def test_re_adding_bumps_the_generation() -> None:
    s = _schedule()
    client = offline_client()
    for generation in range(3):
        s.add(client, "ds-1", None, NOW)
        assert s.take_due(NOW) == [("ds-1", generation, client, True, None)]
    assert list(s.states()) == ["ds-1"]


def test_remove_returns_the_stopped_state() -> None:
    s = _schedule()
    s.add(offline_client(), _ds(NOW + 3600), None, NOW)
    assert s.remove("ds-1") == _state(status="stopped", expires_at=NOW + 3600, next_run_at=None)
    assert s.remove("ds-1") is None
    assert s.states() == {}


def test_next_wake_is_the_earliest_idle_entry() -> None:
    s = _schedule()
    s.add(offline_client(), _ds(NOW + 5000, "a"), None, NOW)
    s.add(offline_client(), _ds(NOW + 4000, "b"), None, NOW)
    s.add(offline_client(), _ds(NOW + 6000, "c"), None, NOW)
    assert s.next_wake() == NOW + 3400
    assert [d[0] for d in s.take_due(NOW + 3400)] == ["b"]
    assert s.next_wake() == NOW + 4400
    assert [d[0] for d in s.take_due(NOW + 9000)] == ["a", "c"]
    assert s.next_wake() is None


def test_lookup_schedules_or_renews_at_once() -> None:
    s = _schedule()
    s.add(offline_client(), "ds-1", None, NOW)
    (item,) = s.take_due(NOW)
    assert s.on_lookup("ds-1", item[1], _ds(NOW + 3600), NOW + 5) == _state(
        status="scheduled", expires_at=NOW + 3600, next_run_at=NOW + 3000
    )
    assert s.take_due(NOW + 3000)[0][3] is False  # looked up: renewals from now on
    for expires, due in ((NOW + 600, NOW), (NOW + 601, NOW + 1), (None, NOW)):
        s.add(offline_client(), "ds-1", None, NOW)
        (item,) = s.take_due(NOW)
        state = s.on_lookup("ds-1", item[1], _ds(expires), NOW)
        assert state == _state(status="scheduled", expires_at=expires, next_run_at=due)
        assert s.next_wake() == due


def test_stale_outcomes_report_stopped_and_change_nothing() -> None:
    s = _schedule()
    s.add(offline_client(), "ds-1", None, NOW)
    (item,) = s.take_due(NOW)
    current = s.add(offline_client(), _ds(NOW + 5000), None, NOW)
    for call in (s.on_lookup, s.on_renewed):
        assert call("ds-1", item[1], _ds(NOW + 50), NOW) == _state(status="stopped")
        assert call("ds-x", 0, _ds(NOW + 50, "ds-x", org=None), NOW) == DataSourceState(
            "ds-x", "", status="stopped"
        )
    assert s.on_failure("ds-1", item[1], ServerError("x"), NOW) == DataSourceState(
        "ds-1", "", status="stopped"
    )
    assert s.on_failure("ds-x", 0, ServerError("x"), NOW) == DataSourceState(
        "ds-x", "", status="stopped"
    )
    s.release("ds-1", item[1])
    s.release("ds-x", 0)
    assert s.states() == {"ds-1": current}


def test_renewal_counts_and_reschedules() -> None:
    s = _schedule()
    s.add(offline_client(), _ds(NOW + 600), None, NOW)
    (item,) = s.take_due(NOW)
    assert s.on_renewed("ds-1", item[1], _ds(NOW + 7200), NOW + 1) == _state(
        status="scheduled",
        expires_at=NOW + 7200,
        next_run_at=NOW + 6600,
        last_renewed_at=NOW + 1,
        renewals=1,
    )
    (item,) = s.take_due(NOW + 6600)
    assert s.on_renewed("ds-1", item[1], _ds(None), NOW + 6600) == _state(
        status="scheduled",
        expires_at=None,
        next_run_at=NOW + 6630,  # no expiry: renew after min_interval
        last_renewed_at=NOW + 6600,
        renewals=2,
    )


def test_renewal_inside_the_lead_time_waits_half_the_remaining_life() -> None:
    s = _schedule(lead_time=3600.0)
    s.add(offline_client(), _ds(NOW), None, NOW)
    (item,) = s.take_due(NOW)
    assert s.on_renewed("ds-1", item[1], _ds(NOW + 3600), NOW).next_run_at == NOW + 1800
    (item,) = s.take_due(NOW + 1800)
    assert s.on_renewed("ds-1", item[1], _ds(NOW + 1860), NOW + 1800).next_run_at == NOW + 1830
    (item,) = s.take_due(NOW + 1830)
    assert s.on_renewed("ds-1", item[1], _ds(NOW + 1890), NOW + 1830).next_run_at == NOW + 1860


def test_release_gives_back_a_claim_unchanged() -> None:
    s = _schedule()
    client = offline_client()
    s.add(client, _ds(NOW + 100), None, NOW)
    (item,) = s.take_due(NOW)
    s.release("ds-1", item[1])
    assert s.states()["ds-1"] == _state(status="scheduled", expires_at=NOW + 100, next_run_at=NOW)
    s.release("ds-1", item[1])  # not in flight: nothing to give back
    assert s.take_due(NOW) == [("ds-1", 0, client, False, None)]
    s.add(client, "ds-2", None, NOW)
    (lookup,) = s.take_due(NOW)
    s.release("ds-2", lookup[1])
    assert s.states()["ds-2"] == DataSourceState("ds-2", ORG, status="pending", next_run_at=NOW)
    s.release("ds-1", item[1])
    assert s.states()["ds-1"].status == "scheduled"
    assert s.next_wake() == NOW


def test_retry_delay_doubles_caps_and_jitters_downward() -> None:
    s = _schedule()
    assert [s.retry_delay(n) for n in (0, 1, 2, 3, 4, 5, 10)] == [
        10.0,
        10.0,
        20.0,
        40.0,
        80.0,
        80.0,
        80.0,
    ]
    jittered = _schedule(rng=0.5)
    assert jittered.retry_delay(2) == 19.0
    assert type(jittered.retry_delay(2)) is float
    assert _schedule(rng=0.999).retry_delay(1) == pytest.approx(9.001)


def test_failures_back_off_retrying_then_expired_with_the_redacted_error() -> None:
    s = _schedule()
    s.add(offline_client(), _ds(NOW + 700), None, NOW)
    (item,) = s.take_due(NOW + 100)
    error = ServerError("boom token=abcdefgh123")
    state = s.on_failure("ds-1", item[1], error, NOW + 100)
    assert state == _state(
        status="retrying",
        expires_at=NOW + 700,
        next_run_at=NOW + 110,
        consecutive_failures=1,
        last_error="ServerError: boom token=abcd***",
    )
    assert s.states()["ds-1"] == state
    (item,) = s.take_due(NOW + 700)
    expired = s.on_failure("ds-1", item[1], ValueError("v"), NOW + 700)  # exactly at expiry
    assert expired == _state(
        status="expired",
        expires_at=NOW + 700,
        next_run_at=NOW + 720,
        consecutive_failures=2,
        last_error="ValueError: v",
    )
    (item,) = s.take_due(NOW + 720)
    assert s.on_renewed("ds-1", item[1], _ds(NOW + 9000), NOW + 720) == _state(
        status="scheduled",
        expires_at=NOW + 9000,
        next_run_at=NOW + 8400,
        last_renewed_at=NOW + 720,
        renewals=1,
    )


def test_a_failure_before_any_expiry_is_known_is_retrying() -> None:
    s = _schedule()
    s.add(offline_client(), "ds-1", None, NOW)
    (item,) = s.take_due(NOW)
    assert s.on_failure("ds-1", item[1], OSError("down"), NOW + 1e9) == _state(
        status="retrying", next_run_at=NOW + 1e9 + 10, consecutive_failures=1,
        last_error="OSError: down",
    )  # fmt: skip


def test_not_found_forgets_the_source_with_its_last_state() -> None:
    s = _schedule()
    s.add(offline_client(), _ds(NOW + 100), None, NOW)
    (item,) = s.take_due(NOW)
    assert s.on_failure("ds-1", item[1], NotFoundError("gone"), NOW + 1) == _state(
        status="gone", expires_at=NOW + 100, next_run_at=None, last_error="NotFoundError: gone"
    )
    assert s.states() == {}
    assert s.on_failure("ds-1", item[1], NotFoundError("gone"), NOW) == DataSourceState(
        "ds-1", "", status="stopped"
    )


def test_state_expiry_as_datetime() -> None:
    assert _state().expires_at_datetime is None
    assert _state(expires_at=NOW).expires_at_datetime == datetime.fromtimestamp(NOW, tz=UTC)
    assert _state().status == "pending"
    assert (_state().renewals, _state().consecutive_failures, _state().last_error) == (0, 0, None)


# ------------------------------------------------------------------------- keeper arguments


def test_keeper_arguments_are_converted_and_bounded() -> None:
    keeper = DataSourceKeeper()
    s = keeper.schedule
    assert (s.lead_time, s.min_interval, s.retry_initial, s.retry_max) == (
        3600.0,
        30.0,
        30.0,
        900.0,
    )
    assert keeper._max_idle == 300.0
    assert keeper.token_lifetime_minutes is None
    keeper = DataSourceKeeper(
        lead_time=timedelta(minutes=2),
        min_interval=0,
        retry_initial=timedelta(0),
        retry_max=0,
        max_idle=0,
        token_lifetime_minutes=60,
    )
    s = keeper.schedule
    assert (s.lead_time, s.min_interval, s.retry_initial, s.retry_max) == (120.0, 0.001, 0.001, 0)
    assert keeper._max_idle == 0.001
    assert keeper.token_lifetime_minutes == 60
    for name in ("lead_time", "min_interval", "retry_initial", "retry_max", "max_idle"):
        with pytest.raises(ValueError) as caught:
            DataSourceKeeper(**{name: -1})
        assert str(caught.value) == f"{name} must be >= 0 seconds, got -1"
        with pytest.raises(ValueError, match=f"{name} must be >= 0 seconds, got nan"):
            DataSourceKeeper(**{name: float("nan")})
        with pytest.raises(ValueError, match=rf"{name} must be >= 0 seconds, got datetime"):
            DataSourceKeeper(**{name: timedelta(seconds=-1)})
    assert DataSourceKeeper(lead_time=0).schedule.lead_time == 0.0


def test_register_and_unregister_report_every_change() -> None:
    changes: list[DataSourceState] = []
    keeper = DataSourceKeeper(clock=lambda: NOW, on_change=changes.append, token_lifetime_minutes=5)
    client = offline_client()
    state = keeper.register(client, "ds-1")
    assert state == _state(status="pending", next_run_at=NOW)
    keeper.register(client, "ds-2", token_lifetime_minutes=9)
    assert [d[4] for d in keeper.schedule.take_due(NOW)] == [5, 9]
    assert keeper.state("ds-1") == state
    assert keeper.unregister("ds-1") == _state(status="stopped")
    assert keeper.unregister("ds-1") is None
    assert changes == [
        state,
        DataSourceState("ds-2", ORG, status="pending", next_run_at=NOW),
        _state(status="stopped"),
    ]
    with pytest.raises(KeyError):
        keeper.state("ds-1")
    assert list(keeper.states()) == ["ds-2"]
    with pytest.raises(ValidationError):
        keeper.register(client, "ds-3", token_lifetime_minutes=0)
    assert list(keeper.states()) == ["ds-2"]


def test_a_failing_on_change_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    def broken(state: DataSourceState) -> None:
        raise RuntimeError("callback bug")

    keeper = DataSourceKeeper(clock=lambda: NOW, on_change=broken)
    with caplog.at_level(logging.ERROR, logger="webex_byova.keeper"):
        keeper.register(offline_client(), "ds-1")
        assert keeper.unregister("ds-1") is not None
    assert [r.getMessage() for r in caplog.records] == [
        "DataSourceKeeper on_change callback failed"
    ] * 2


def test_wait_time_is_bounded_by_max_idle_and_never_negative() -> None:
    now = [NOW]
    keeper = DataSourceKeeper(clock=lambda: now[0], max_idle=100, lead_time=600)
    assert keeper._wait_time() == 100.0
    keeper.register(offline_client(), _ds(NOW + 650))
    assert keeper._wait_time() == 50.0
    now[0] = NOW + 60
    assert keeper._wait_time() == 0.0
    keeper.unregister("ds-1")
    keeper.register(offline_client(), _ds(NOW + 60 + 600 + 500))
    assert keeper._wait_time() == 100.0


# ------------------------------------------------------------------------------ the shells


def _org_client(sdk: BYOVA, emu: WebexEmulator) -> OrgClient:
    emu.authorize_service_app(emu.org.org_id)
    sdk.service_app.fetch_org_token(emu.org.org_id)
    return sdk.get_client_for_org(emu.org.org_id)


def _create(client: OrgClient, minutes: int = 60) -> DataSource:
    return client.data_sources.create(
        schema_id=BYOVA_SCHEMA_ID,
        url=DS_URL,
        audience="A",
        subject="S",
        token_lifetime_minutes=minutes,
    )


def test_run_once_looks_up_then_renews_with_the_lifetime(sdk: BYOVA, emu: WebexEmulator) -> None:
    client = _org_client(sdk, emu)
    ds = _create(client, 60)
    changes: list[DataSourceState] = []
    now = [emu.clock.now()]
    keeper = DataSourceKeeper(
        lead_time=600, clock=lambda: now[0], on_change=changes.append, token_lifetime_minutes=30
    )
    keeper.register(client, ds.id)
    emu.clear_requests()
    expires = ds.expires_at.timestamp()  # type: ignore[union-attr]
    assert keeper.run_once() == expires - 600
    assert [(r.method, r.path) for r in emu.requests] == [("GET", f"/v1/dataSources/{ds.id}")]
    assert changes[-1] == DataSourceState(
        ds.id, emu.org.org_id, "scheduled", expires_at=expires, next_run_at=expires - 600
    )
    assert keeper.run_once() == expires - 600  # nothing due: no request
    assert len(emu.requests) == 1
    emu.clock.advance(expires - 600 - now[0])
    now[0] = renewed_at = expires - 600
    next_run = keeper.run_once()
    assert emu.data_sources[0].token_lifetime_minutes == 30
    state = keeper.state(ds.id)
    assert state.expires_at == pytest.approx(renewed_at + 30 * 60, abs=1)
    assert state == DataSourceState(
        ds.id,
        emu.org.org_id,
        "scheduled",
        expires_at=state.expires_at,
        next_run_at=state.expires_at - 600,  # type: ignore[operator]
        last_renewed_at=renewed_at,
        renewals=1,
    )
    assert next_run == state.next_run_at
    assert changes[-1] == state
    assert [r.method for r in emu.requests] == ["GET", "GET", "PUT"]


async def test_arun_once_fails_retries_and_logs(
    asdk: BYOVA, emu: WebexEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    client, ds = await org_data_source(asdk, emu)
    changes: list[DataSourceState] = []
    clock = [emu.clock.now()]
    keeper = DataSourceKeeper(
        lead_time=600, retry_initial=10, clock=lambda: clock[0], rng=lambda: 0.0,
        on_change=changes.append,
    )  # fmt: skip
    keeper.register(client, ds.id)
    emu.fail_next("/dataSources", status=400, times=1)
    now = clock[0]
    with caplog.at_level(logging.WARNING, logger="webex_byova.keeper"):
        assert await keeper.arun_once() == now + 10
    state = keeper.state(ds.id)
    assert (state.status, state.consecutive_failures, state.next_run_at) == (
        "retrying",
        1,
        now + 10,
    )
    assert changes[-1] == state
    (record,) = [r for r in caplog.records if r.name == "webex_byova.keeper"]
    assert record.getMessage() == (
        f"data source {ds.id}: lookup failed (1 in a row), next try at {now + 10}: "
        f"{state.last_error}"
    )
    assert state.last_error is not None
    assert state.last_error.startswith("ValidationError: ")
    emu.clock.advance(10)
    clock[0] += 10
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="webex_byova.keeper"):
        await keeper.arun_once()  # looked up: inside the lead time, due again at once
        await keeper.arun_once()  # renewed
    state = keeper.state(ds.id)
    assert (state.status, state.renewals, state.consecutive_failures) == ("scheduled", 1, 0)
    assert [r.getMessage() for r in caplog.records if r.name == "webex_byova.keeper"] == [
        f"data source {ds.id} renewed; expires at {state.expires_at_datetime}"
    ]
    emu.fail_next("/dataSources", status=400, times=1, method="PUT")
    emu.clock.advance(state.next_run_at - clock[0])  # type: ignore[operator]
    clock[0] = state.next_run_at  # type: ignore[assignment]
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="webex_byova.keeper"):
        await keeper.arun_once()
    assert "renewal failed (1 in a row)" in caplog.records[0].getMessage()


def test_thread_shell_starts_stops_and_refuses_a_second_shell(
    sdk: BYOVA, emu: WebexEmulator
) -> None:
    client = _org_client(sdk, emu)
    ds = _create(client, 5)
    renewed = threading.Event()
    keeper = DataSourceKeeper(
        lead_time=600,
        clock=emu.clock.now,
        on_change=lambda s: renewed.set() if s.renewals else None,
    )
    assert not keeper.running
    keeper.register(client, ds)  # inside the lead time: renewed at once
    thread = keeper.start_thread()
    assert keeper.start_thread() is thread
    assert keeper.running
    assert thread.name == "webex-byova-keeper"
    assert thread.daemon
    assert renewed.wait(10)
    keeper.stop()
    assert not thread.is_alive()
    assert not keeper.running
    keeper.stop()  # stopping twice is harmless
    with keeper:
        assert keeper.running
    assert not keeper.running


async def test_task_shell_starts_stops_and_refuses_a_second_shell(
    asdk: BYOVA, emu: WebexEmulator
) -> None:
    client, ds = await org_data_source(asdk, emu)
    renewed = asyncio.Event()
    keeper = DataSourceKeeper(
        lead_time=600,
        clock=emu.clock.now,
        on_change=lambda s: renewed.set() if s.renewals else None,
    )
    task = keeper.start()
    assert keeper.start() is task
    assert task.get_name() == "webex-byova-keeper"
    assert keeper.running
    with pytest.raises(RuntimeError) as caught:
        keeper.start_thread()
    assert str(caught.value) == "the keeper already runs as an asyncio task"
    keeper.register(client, ds)  # wakes the idle task
    await asyncio.wait_for(renewed.wait(), 10)
    await keeper.astop()
    assert task.done()
    assert not keeper.running
    assert keeper._loop is None
    assert keeper._async_wake is None
    await keeper.astop()
    thread = keeper.start_thread()
    try:
        with pytest.raises(RuntimeError) as caught:
            keeper.start()
        assert str(caught.value) == "the keeper already runs in a thread"
    finally:
        keeper.stop()
    assert not thread.is_alive()
    async with keeper:
        assert keeper.running
    assert not keeper.running


async def test_a_task_cancelled_by_someone_else_counts_as_stopped(
    asdk: BYOVA, emu: WebexEmulator
) -> None:
    keeper = DataSourceKeeper(clock=emu.clock.now)
    task = keeper.start()
    await asyncio.sleep(0)
    task.cancel()
    await keeper.astop()  # does not raise: the keeper task, not this one, was cancelled
    assert task.cancelled()
    assert not keeper.running


class _Interrupt(BaseException):
    """Stands for KeyboardInterrupt/SystemExit: not an ``Exception``, so no attempt failure."""


def test_an_interrupted_run_once_gives_back_every_claim(sdk: BYOVA, emu: WebexEmulator) -> None:
    client = _org_client(sdk, emu)
    first, second = _create(client), _create(client)
    now = [emu.clock.now()]
    calls = [0]

    def clock() -> float:
        calls[0] += 1
        if calls[0] == 4:  # inside the first lookup's flow (after register x2, take_due)
            raise _Interrupt
        return now[0]

    keeper = DataSourceKeeper(lead_time=600, clock=clock)
    keeper.register(client, first.id)
    keeper.register(client, second.id)
    with pytest.raises(_Interrupt):
        keeper.run_once()
    due = keeper.schedule.take_due(now[0])
    assert sorted(d[0] for d in due) == sorted([first.id, second.id])  # both claimable again
    assert {s.status for s in keeper.states().values()} == {"pending"}


async def test_arun_once_renews_with_the_requested_lifetime(
    asdk: BYOVA, emu: WebexEmulator
) -> None:
    client, ds = await org_data_source(asdk, emu)
    keeper = DataSourceKeeper(lead_time=600, clock=emu.clock.now, token_lifetime_minutes=42)
    keeper.register(client, ds)  # inside the lead time: renewed at once
    await keeper.arun_once()
    assert emu.data_sources[0].token_lifetime_minutes == 42
    assert keeper.state(ds.id).renewals == 1


async def test_task_shell_sleeps_only_when_nothing_is_due_and_cancels_its_waits(
    asdk: BYOVA, emu: WebexEmulator
) -> None:
    client, ds = await org_data_source(asdk, emu)
    now = [emu.clock.now()]
    sleeps: list[Any] = []
    cancelled: list[bool] = []
    renewed = asyncio.Event()

    async def sleep(delay: float) -> None:
        sleeps.append(delay)
        if len(sleeps) == 1:  # the retry wait passes; the next one lasts until the stop
            now[0] += delay
            emu.clock.advance(delay)
            return
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    keeper = DataSourceKeeper(
        lead_time=600,
        retry_initial=0.5,
        clock=lambda: now[0],
        sleep=sleep,
        rng=lambda: 0.0,
        on_change=lambda s: renewed.set() if s.renewals else None,
    )
    keeper.register(client, ds.id)  # looked up, then (inside the lead time) renewed at once
    emu.fail_next("/dataSources", status=400, times=1)  # the first lookup fails
    async with keeper:
        await asyncio.wait_for(renewed.wait(), 10)
        for _ in range(20):
            if len(sleeps) == 2:
                break
            await asyncio.sleep(0.01)
        state = keeper.state(ds.id)
        assert sleeps == [0.5, state.next_run_at - now[0]]  # type: ignore[operator]
        assert sleeps[1] == pytest.approx(150, abs=2)  # half the remaining 5 minutes
    assert cancelled == [True]


async def test_astop_cancelled_itself_raises_cancelled(asdk: BYOVA, emu: WebexEmulator) -> None:
    async def never(_: float) -> None:
        await asyncio.Event().wait()

    keeper = DataSourceKeeper(clock=emu.clock.now, sleep=never)
    keeper.start()
    await asyncio.sleep(0)
    stopping = asyncio.get_running_loop().create_task(keeper.astop())
    await asyncio.sleep(0)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert stopping.cancelled()


def test_thread_shell_retries_sleeps_and_renews(sdk: BYOVA, emu: WebexEmulator) -> None:
    client = _org_client(sdk, emu)
    ds = _create(client, 5)
    now = [emu.clock.now()]
    sleeps: list[float] = []
    slept = threading.Event()

    def thread_sleep(delay: float) -> None:
        if len(sleeps) < 2:
            sleeps.append(delay)
            now[0] += delay
            emu.clock.advance(delay)
        else:
            slept.set()
            threading.Event().wait(0.001)

    keeper = DataSourceKeeper(
        lead_time=600, retry_initial=0.5, clock=lambda: now[0], thread_sleep=thread_sleep,
        rng=lambda: 0.0,
    )  # fmt: skip
    keeper.register(client, ds.id)
    emu.fail_next("/dataSources", status=400, times=1)  # the lookup fails once
    with keeper:
        assert slept.wait(10)
    assert sleeps[0] == 0.5  # the retry: a short wait is still slept
    assert sleeps[1] == pytest.approx(150, abs=2)  # looked up, renewed at once, then half-life
    state = keeper.state(ds.id)
    assert (state.renewals, state.consecutive_failures) == (2, 0)  # the second after 150 s


def test_thread_shell_logs_a_failed_iteration_and_goes_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = [0]
    going = threading.Event()

    def clock() -> float:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("clock broke")
        if calls[0] >= 4:
            going.set()
        return NOW

    keeper = DataSourceKeeper(clock=clock, max_idle=0.001)
    with caplog.at_level(logging.ERROR, logger="webex_byova.keeper"), keeper:
        assert going.wait(10)  # idle waits of max_idle: the loop goes on without sleep hooks
    assert [r.getMessage() for r in caplog.records] == ["DataSourceKeeper iteration failed"]


def test_stop_waits_for_the_thread_only_up_to_its_timeout() -> None:
    release = threading.Event()
    asleep = threading.Event()

    def thread_sleep(delay: float) -> None:
        asleep.set()
        release.wait(10)

    keeper = DataSourceKeeper(clock=lambda: NOW, thread_sleep=thread_sleep)
    thread = keeper.start_thread()
    assert asleep.wait(10)
    stopper = threading.Thread(target=keeper.stop, args=(0.01,))
    stopper.start()
    stopper.join(5)
    try:
        assert not stopper.is_alive()  # returned although the keeper thread still sleeps
        assert thread.is_alive()
    finally:
        release.set()
        thread.join(10)
        stopper.join(10)
