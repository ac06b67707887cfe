"""DataSourceKeeper decisions without I/O (KeeperSchedule)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from webex_byova.data_sources import OrgClient
from webex_byova.errors import NotFoundError, ServerError
from webex_byova.keeper import DataSourceKeeper, KeeperSchedule
from webex_byova.models import DataSource

ORG = "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"
NOW = 1_800_000_000.0


class _NoTokens:
    """A token source that is never asked (the schedule does no I/O)."""


def _client() -> OrgClient:
    from webex_byova._http import HttpClient

    return OrgClient(ORG, _NoTokens(), HttpClient())


def _ds(expires: float) -> DataSource:
    when = datetime.fromtimestamp(expires, tz=UTC).isoformat()
    return DataSource.model_validate({"id": "ds-1", "orgId": ORG, "tokenExpiryTime": when})


def _schedule(**kw: float) -> KeeperSchedule:
    args = {"lead_time": 600.0, "min_interval": 30.0, "retry_initial": 10.0, "retry_max": 80.0}
    args.update(kw)
    return KeeperSchedule(rng=lambda: 0.0, **args)


def test_known_expiry_schedules_lead_time_before() -> None:
    s = _schedule()
    state = s.add(_client(), _ds(NOW + 3600), None, NOW)
    assert state.status == "scheduled"
    assert state.next_run_at == NOW + 3600 - 600
    assert s.take_due(NOW) == []
    due = s.take_due(NOW + 3000)
    assert [d[0] for d in due] == ["ds-1"]
    assert due[0][3] is False
    assert s.states()["ds-1"].status == "renewing"
    assert s.take_due(NOW + 3000) == []  # in flight: not handed out twice
    after = s.on_renewed("ds-1", due[0][1], _ds(NOW + 3000 + 3600), NOW + 3000)
    assert after.renewals == 1
    assert after.next_run_at == NOW + 3000 + 3000
    assert after.last_renewed_at == NOW + 3000


def test_id_only_is_looked_up_first() -> None:
    s = _schedule()
    state = s.add(_client(), "ds-1", None, NOW)
    assert state.status == "pending"
    assert state.next_run_at == NOW
    (item,) = s.take_due(NOW)
    assert item[3] is True
    looked = s.on_lookup("ds-1", item[1], _ds(NOW + 3600), NOW)
    assert looked.status == "scheduled"
    assert looked.next_run_at == NOW + 3000
    # already inside the lead time: renew at once
    s.add(_client(), "ds-1", None, NOW)
    (item,) = s.take_due(NOW)
    assert s.on_lookup("ds-1", item[1], _ds(NOW + 60), NOW).next_run_at == NOW


def test_lifetime_shorter_than_lead_time_renews_at_half_life() -> None:
    s = _schedule(lead_time=3600.0)
    state = s.add(_client(), _ds(NOW + 600), None, NOW)
    assert state.next_run_at == NOW  # registered inside the lead time: renew at once
    (item,) = s.take_due(NOW)
    assert s.on_renewed("ds-1", item[1], _ds(NOW + 600), NOW).next_run_at == NOW + 300
    (item,) = s.take_due(NOW + 300)
    renewed = s.on_renewed("ds-1", item[1], _ds(NOW + 320), NOW + 300)
    assert renewed.next_run_at == NOW + 330  # never sooner than min_interval


def test_failures_back_off_then_expire() -> None:
    s = _schedule()
    s.add(_client(), _ds(NOW + 700), None, NOW)
    t = NOW + 100
    delays = []
    for _ in range(5):
        (item,) = s.take_due(t)
        state = s.on_failure("ds-1", item[1], ServerError("boom token=abcdefgh123"), t)
        delays.append(state.next_run_at - t)
        t = state.next_run_at
    assert delays == [10.0, 20.0, 40.0, 80.0, 80.0]
    assert state.consecutive_failures == 5
    assert "abcdefgh123" not in (state.last_error or "")  # redacted
    assert state.status == "retrying"
    (item,) = s.take_due(NOW + 800)
    assert s.on_failure("ds-1", item[1], ServerError("x"), NOW + 800).status == "expired"
    (item,) = s.take_due(NOW + 2000)
    ok = s.on_renewed("ds-1", item[1], _ds(NOW + 9000), NOW + 2000)
    assert ok.status == "scheduled"
    assert ok.consecutive_failures == 0
    assert ok.last_error is None


def test_not_found_forgets_the_source() -> None:
    s = _schedule()
    s.add(_client(), _ds(NOW + 100), None, NOW)
    (item,) = s.take_due(NOW)
    assert s.on_failure("ds-1", item[1], NotFoundError("gone"), NOW).status == "gone"
    assert s.states() == {}
    assert s.next_wake() is None


def test_stale_outcome_after_reregistration_is_ignored() -> None:
    s = _schedule()
    s.add(_client(), _ds(NOW + 100), None, NOW)
    (item,) = s.take_due(NOW)
    s.add(_client(), _ds(NOW + 5000), None, NOW)  # re-registered meanwhile
    assert s.on_renewed("ds-1", item[1], _ds(NOW + 50), NOW).status == "stopped"
    assert s.states()["ds-1"].expires_at == NOW + 5000
    assert s.remove("ds-1").status == "stopped"
    assert s.remove("ds-1") is None


def test_keeper_validates_arguments() -> None:
    from webex_byova.errors import ValidationError

    with pytest.raises(ValidationError):
        DataSourceKeeper(token_lifetime_minutes=0)
    with pytest.raises(ValueError):
        DataSourceKeeper(lead_time=-1)
    keeper = DataSourceKeeper(clock=lambda: NOW)
    with pytest.raises(ValidationError):
        keeper.register(_client(), "ds-1", token_lifetime_minutes=1441)
    state = keeper.register(_client(), _ds(NOW + 7200))
    assert keeper.state("ds-1") == state
    assert state.expires_at_datetime is not None
    assert keeper.unregister("ds-1").status == "stopped"
    assert not keeper.running
