"""Keep data-source tokens alive: :class:`DataSourceKeeper`.

A data source's JWS expires ``tokenLifetimeMinutes`` after it was minted; after that Webex
stops calling the data source. The keeper renews every registered data source ``lead_time``
before its ``tokenExpiryTime`` (falling back to the JWS ``exp``) with
``DataSourcesResource.extend`` (GET, then PUT with a fresh nonce), retries failures with
exponential backoff, and reports a :class:`DataSourceState` per data source.

The decisions (when is a source due, what happens after a success or a failure) live in the
I/O-free :class:`KeeperSchedule`; one renewal is a flow (written once). Two thin shells drive
them:

* **asyncio**: :meth:`DataSourceKeeper.start` (a task on the running loop) or
  ``async with keeper:``; waits use the injectable ``sleep`` coroutine function;
* **thread**: :meth:`DataSourceKeeper.start_thread` or ``with keeper:``; uses the blocking
  HTTP client, so it never touches an event loop.

``clock`` (epoch seconds) and ``sleep`` are injectable so tests can drive time.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Literal

from ._flow import Flow, run_async, run_sync
from ._logging import get_logger, redact
from .data_sources import OrgClient, _check_lifetime
from .errors import NotFoundError
from .models import DataSource

__all__ = ["DataSourceKeeper", "DataSourceState", "KeeperSchedule", "KeeperStatus"]

log = get_logger("webex_byova.keeper")

KeeperStatus = Literal["pending", "scheduled", "renewing", "retrying", "expired", "gone", "stopped"]


@dataclass(frozen=True)
class DataSourceState:
    """What the keeper knows about one data source (a snapshot).

    Attributes:
        data_source_id: The data source.
        org_id: Its org (UUID).
        status: ``pending`` (not looked up yet), ``scheduled`` (healthy, waiting),
            ``renewing`` (request in flight), ``retrying`` (last attempt failed, still valid),
            ``expired`` (attempts failing and the token already expired), ``gone`` (404: it
            was deleted; no longer tracked) or ``stopped`` (unregistered).
        expires_at: Current token expiry (epoch seconds), if known.
        next_run_at: When the keeper acts next (epoch seconds).
        last_renewed_at: When the last renewal succeeded (epoch seconds).
        renewals: Successful renewals so far.
        consecutive_failures: Failed attempts since the last success.
        last_error: Redacted text of the last failure.
    """

    data_source_id: str
    org_id: str
    status: KeeperStatus = "pending"
    expires_at: float | None = None
    next_run_at: float | None = None
    last_renewed_at: float | None = None
    renewals: int = 0
    consecutive_failures: int = 0
    last_error: str | None = None

    @property
    def expires_at_datetime(self) -> datetime | None:
        """:attr:`expires_at` as an aware UTC datetime."""
        if self.expires_at is None:
            return None
        return datetime.fromtimestamp(self.expires_at, tz=UTC)


def _seconds(value: float | timedelta, name: str) -> float:
    seconds = value.total_seconds() if isinstance(value, timedelta) else float(value)
    if seconds < 0 or seconds != seconds:
        raise ValueError(f"{name} must be >= 0 seconds, got {value!r}")
    return seconds


def _expiry(ds: DataSource) -> float | None:
    when = ds.expires_at
    return when.timestamp() if when is not None else None


@dataclass
class _Entry:
    client: OrgClient
    state: DataSourceState
    lifetime: int | None
    needs_lookup: bool
    in_flight: bool = False
    generation: int = 0


class KeeperSchedule:
    """I/O-free scheduling decisions of the keeper (thread-safe).

    Args:
        lead_time: Renew this long before expiry.
        min_interval: Never schedule a renewal sooner than this after the previous one (a
            lifetime shorter than ``lead_time`` renews at half the remaining lifetime instead).
        retry_initial: First retry delay after a failure; doubles per failure.
        retry_max: Upper bound of a retry delay.
        rng: ``() -> [0, 1)`` used for jitter (10% downward).
    """

    def __init__(
        self,
        *,
        lead_time: float,
        min_interval: float,
        retry_initial: float,
        retry_max: float,
        rng: Callable[[], float] = random.random,
    ) -> None:
        self.lead_time = lead_time
        self.min_interval = min_interval
        self.retry_initial = retry_initial
        self.retry_max = retry_max
        self._rng = rng
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    # -- registration
    def add(
        self, client: OrgClient, data_source: str | DataSource, lifetime: int | None, now: float
    ) -> DataSourceState:
        """Track a data source; a known expiry schedules it, otherwise it is looked up now."""
        ds_id = data_source.id if isinstance(data_source, DataSource) else data_source
        with self._lock:
            previous = self._entries.get(ds_id)
            entry = _Entry(
                client=client,
                state=DataSourceState(data_source_id=ds_id, org_id=client.org_id),
                lifetime=lifetime,
                needs_lookup=True,
                generation=(previous.generation + 1) if previous else 0,
            )
            entry.state = replace(entry.state, next_run_at=now)
            if isinstance(data_source, DataSource) and _expiry(data_source) is not None:
                entry.needs_lookup = False
                self._schedule_from(entry, data_source, now, renewed=False)
            self._entries[ds_id] = entry
            return entry.state

    def remove(self, data_source_id: str) -> DataSourceState | None:
        """Stop tracking a data source; return its final state."""
        with self._lock:
            entry = self._entries.pop(data_source_id, None)
            if entry is None:
                return None
            return replace(entry.state, status="stopped", next_run_at=None)

    # -- queries
    def states(self) -> dict[str, DataSourceState]:
        """Snapshot of every tracked data source."""
        with self._lock:
            return {k: e.state for k, e in self._entries.items()}

    def next_wake(self) -> float | None:
        """Earliest ``next_run_at`` of an idle entry (``None`` when nothing is tracked)."""
        with self._lock:
            times = [
                e.state.next_run_at
                for e in self._entries.values()
                if not e.in_flight and e.state.next_run_at is not None
            ]
        return min(times) if times else None

    def take_due(self, now: float) -> list[tuple[str, int, OrgClient, bool, int | None]]:
        """Claim the entries due at ``now``: ``(id, generation, client, lookup, lifetime)``."""
        due = []
        with self._lock:
            for ds_id, e in self._entries.items():
                at = e.state.next_run_at
                if e.in_flight or at is None or at > now:
                    continue
                e.in_flight = True
                if not e.needs_lookup:
                    e.state = replace(e.state, status="renewing")
                due.append((ds_id, e.generation, e.client, e.needs_lookup, e.lifetime))
        return due

    # -- outcomes
    def _schedule_from(self, entry: _Entry, ds: DataSource, now: float, *, renewed: bool) -> None:
        expires = _expiry(ds)
        if expires is None:  # nothing to go by: renew soon to obtain a token with an expiry
            next_run = now + self.min_interval
        else:
            next_run = expires - self.lead_time
            if next_run <= now:
                # Already inside the lead time. Right after a renewal that means the lifetime
                # is shorter than the lead time: renew at half-life instead of in a loop.
                next_run = now + max(self.min_interval, (expires - now) / 2) if renewed else now
        entry.state = replace(
            entry.state,
            status="scheduled",
            expires_at=expires,
            next_run_at=next_run,
            last_renewed_at=now if renewed else entry.state.last_renewed_at,
            renewals=entry.state.renewals + (1 if renewed else 0),
            consecutive_failures=0,
            last_error=None,
        )

    def _current(self, ds_id: str, generation: int) -> _Entry | None:
        entry = self._entries.get(ds_id)
        if entry is None or entry.generation != generation:
            return None
        return entry

    def on_lookup(self, ds_id: str, generation: int, ds: DataSource, now: float) -> DataSourceState:
        """A lookup succeeded: renew now when due or unknown, else schedule."""
        with self._lock:
            entry = self._current(ds_id, generation)
            if entry is None:
                return DataSourceState(ds_id, ds.org_id or "", status="stopped")
            entry.in_flight = False
            entry.needs_lookup = False
            self._schedule_from(entry, ds, now, renewed=False)
            expires = entry.state.expires_at
            if expires is None or expires - self.lead_time <= now:
                entry.state = replace(entry.state, next_run_at=now)
            return entry.state

    def on_renewed(
        self, ds_id: str, generation: int, ds: DataSource, now: float
    ) -> DataSourceState:
        """A renewal succeeded: schedule the next one."""
        with self._lock:
            entry = self._current(ds_id, generation)
            if entry is None:
                return DataSourceState(ds_id, ds.org_id or "", status="stopped")
            entry.in_flight = False
            self._schedule_from(entry, ds, now, renewed=True)
            return entry.state

    def release(self, ds_id: str, generation: int) -> None:
        """Give back a claim whose attempt never finished (cancelled): it stays due."""
        with self._lock:
            entry = self._current(ds_id, generation)
            if entry is None or not entry.in_flight:
                return
            entry.in_flight = False
            if entry.state.status == "renewing":
                entry.state = replace(entry.state, status="scheduled")

    def retry_delay(self, failures: int) -> float:
        """Backoff before the ``failures``-th retry (exponential, capped, 10% jitter)."""
        base = min(self.retry_max, self.retry_initial * 2.0 ** max(0, failures - 1))
        return float(base * (1.0 - 0.1 * self._rng()))

    def on_failure(
        self, ds_id: str, generation: int, error: BaseException, now: float
    ) -> DataSourceState:
        """An attempt failed: back off (or forget the source when Webex says it is gone)."""
        with self._lock:
            entry = self._current(ds_id, generation)
            if entry is None:
                return DataSourceState(ds_id, "", status="stopped")
            entry.in_flight = False
            text = redact(f"{type(error).__name__}: {error}")
            if isinstance(error, NotFoundError):
                del self._entries[ds_id]
                entry.state = replace(entry.state, status="gone", next_run_at=None, last_error=text)
                return entry.state
            failures = entry.state.consecutive_failures + 1
            expires = entry.state.expires_at
            expired = expires is not None and now >= expires
            entry.state = replace(
                entry.state,
                status="expired" if expired else "retrying",
                next_run_at=now + self.retry_delay(failures),
                consecutive_failures=failures,
                last_error=text,
            )
            return entry.state


class DataSourceKeeper:
    """Renews registered data sources before their tokens expire.

    Example::

        keeper = DataSourceKeeper(lead_time=timedelta(hours=1))
        keeper.register(org_client, data_source)
        async with keeper:          # or: with keeper:  (background thread)
            ...

    Args:
        lead_time: Renew this long before ``tokenExpiryTime`` (seconds or ``timedelta``).
        token_lifetime_minutes: Lifetime requested on renewal (default: keep each source's).
        retry_initial: First retry delay after a failure (doubles per failure).
        retry_max: Largest retry delay.
        min_interval: Smallest gap between two renewals of one source.
        max_idle: Longest single wait (new registrations also wake the keeper at once).
        clock: ``() -> epoch seconds``.
        sleep: Async sleep used by the asyncio shell.
        thread_sleep: Blocking sleep used by the thread shell (default: an interruptible
            wait on the keeper's stop/wake event).
        on_change: Called with every new :class:`DataSourceState` (from the keeper's task or
            thread; keep it quick and exception-free).
        rng: Jitter source.
    """

    def __init__(
        self,
        *,
        lead_time: float | timedelta = 3600.0,
        token_lifetime_minutes: int | None = None,
        retry_initial: float | timedelta = 30.0,
        retry_max: float | timedelta = 900.0,
        min_interval: float | timedelta = 30.0,
        max_idle: float | timedelta = 300.0,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        thread_sleep: Callable[[float], None] | None = None,
        on_change: Callable[[DataSourceState], None] | None = None,
        rng: Callable[[], float] = random.random,
    ) -> None:
        if token_lifetime_minutes is not None:
            _check_lifetime(token_lifetime_minutes)
        self.schedule = KeeperSchedule(
            lead_time=_seconds(lead_time, "lead_time"),
            min_interval=max(_seconds(min_interval, "min_interval"), 0.001),
            retry_initial=max(_seconds(retry_initial, "retry_initial"), 0.001),
            retry_max=_seconds(retry_max, "retry_max"),
            rng=rng,
        )
        self.token_lifetime_minutes = token_lifetime_minutes
        self._max_idle = max(_seconds(max_idle, "max_idle"), 0.001)
        self._clock = clock
        self._sleep = sleep
        self._thread_sleep = thread_sleep
        self._on_change = on_change
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._async_wake: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._thread_wake = threading.Event()
        self._stopping = threading.Event()

    # -- registration and reporting
    def register(
        self,
        client: OrgClient,
        data_source: str | DataSource,
        *,
        token_lifetime_minutes: int | None = None,
    ) -> DataSourceState:
        """Keep ``data_source`` (an id or a :class:`DataSource`) alive with ``client``.

        Passing the :class:`DataSource` returned by ``create``/``extend`` schedules it from its
        expiry without a request; an id is looked up first.
        """
        lifetime = (
            token_lifetime_minutes
            if token_lifetime_minutes is not None
            else self.token_lifetime_minutes
        )
        if lifetime is not None:
            _check_lifetime(lifetime)
        state = self.schedule.add(client, data_source, lifetime, self._clock())
        self._notify(state)
        self._wake()
        return state

    def unregister(self, data_source_id: str) -> DataSourceState | None:
        """Stop renewing a data source."""
        state = self.schedule.remove(data_source_id)
        if state is not None:
            self._notify(state)
        return state

    def states(self) -> dict[str, DataSourceState]:
        """A snapshot of every tracked data source's state."""
        return self.schedule.states()

    def state(self, data_source_id: str) -> DataSourceState:
        """The state of one tracked data source (``KeyError`` when not tracked)."""
        return self.schedule.states()[data_source_id]

    def _notify(self, state: DataSourceState) -> None:
        if self._on_change is not None:
            try:
                self._on_change(state)
            except Exception:
                log.exception("DataSourceKeeper on_change callback failed")

    def _wake(self) -> None:
        self._thread_wake.set()
        loop, event = self._loop, self._async_wake
        if loop is not None and event is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(event.set)

    # -- one attempt, written once
    def _attempt_flow(
        self, ds_id: str, generation: int, client: OrgClient, lookup: bool, lifetime: int | None
    ) -> Flow[DataSourceState]:
        resource = client.data_sources
        try:
            if lookup:
                ds = yield from resource.get_flow(ds_id)
                return self.schedule.on_lookup(ds_id, generation, ds, self._clock())
            ds = yield from resource.extend_flow(ds_id, token_lifetime_minutes=lifetime)
        except Exception as exc:
            state = self.schedule.on_failure(ds_id, generation, exc, self._clock())
            log.warning(
                "data source %s: %s failed (%d in a row), next try at %s: %s",
                ds_id,
                "lookup" if lookup else "renewal",
                state.consecutive_failures,
                state.next_run_at,
                state.last_error,
            )
            return state
        state = self.schedule.on_renewed(ds_id, generation, ds, self._clock())
        log.info("data source %s renewed; expires at %s", ds_id, state.expires_at_datetime)
        return state

    def _wait_time(self) -> float:
        wake = self.schedule.next_wake()
        if wake is None:
            return self._max_idle
        return min(max(0.0, wake - self._clock()), self._max_idle)

    # -- asyncio shell
    async def arun_once(self) -> float | None:
        """Handle everything due now; return the next wake-up time (epoch seconds)."""
        due = self.schedule.take_due(self._clock())
        for index, (ds_id, gen, client, lookup, lifetime) in enumerate(due):
            flow = self._attempt_flow(ds_id, gen, client, lookup, lifetime)
            try:
                state = await run_async(flow, client._http)
            except BaseException:  # cancelled: release this claim and the ones not reached
                for claimed in due[index:]:
                    self.schedule.release(claimed[0], claimed[1])
                raise
            self._notify(state)
        return self.schedule.next_wake()

    async def _arun(self) -> None:
        assert self._async_wake is not None
        wake = self._async_wake
        while not self._stopping.is_set():
            await self.arun_once()
            if self._stopping.is_set():
                break
            delay = self._wait_time()
            if delay <= 0:
                continue
            wake.clear()
            sleeper = asyncio.ensure_future(self._sleep(delay))
            waiter = asyncio.ensure_future(wake.wait())
            try:
                await asyncio.wait({sleeper, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for fut in (sleeper, waiter):
                    if not fut.done():
                        fut.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await fut

    def start(self) -> asyncio.Task[None]:
        """Run the keeper as a task on the running event loop (returns the task)."""
        if self._task is not None and not self._task.done():
            return self._task
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError("the keeper already runs in a thread")
        self._stopping.clear()
        self._loop = asyncio.get_running_loop()
        self._async_wake = asyncio.Event()
        self._task = self._loop.create_task(self._arun(), name="webex-byova-keeper")
        return self._task

    async def astop(self) -> None:
        """Stop the asyncio task (waits for an in-flight renewal to finish)."""
        self._stopping.set()
        self._wake()
        task, self._task = self._task, None
        if task is not None:
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves
                # else the keeper task had been cancelled by someone else: it is stopped
        self._loop = None
        self._async_wake = None

    async def __aenter__(self) -> DataSourceKeeper:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.astop()

    # -- thread shell
    def run_once(self) -> float | None:
        """Blocking :meth:`arun_once`."""
        due = self.schedule.take_due(self._clock())
        for index, (ds_id, gen, client, lookup, lifetime) in enumerate(due):
            flow = self._attempt_flow(ds_id, gen, client, lookup, lifetime)
            try:
                state = run_sync(flow, client._http, client._portal)
            except BaseException:  # e.g. KeyboardInterrupt: do not strand the claims
                for claimed in due[index:]:
                    self.schedule.release(claimed[0], claimed[1])
                raise
            self._notify(state)
        return self.schedule.next_wake()

    def _thread_main(self) -> None:
        while not self._stopping.is_set():
            try:
                self.run_once()
            except Exception:  # never let the thread die silently
                log.exception("DataSourceKeeper iteration failed")
            if self._stopping.is_set():
                break
            delay = self._wait_time()
            if delay <= 0:
                continue
            if self._thread_sleep is not None:
                self._thread_sleep(delay)
            else:
                self._thread_wake.wait(delay)
            self._thread_wake.clear()

    def start_thread(self) -> threading.Thread:
        """Run the keeper in a daemon thread with blocking I/O (returns the thread)."""
        if self._thread is not None and self._thread.is_alive():
            return self._thread
        if self._task is not None and not self._task.done():
            raise RuntimeError("the keeper already runs as an asyncio task")
        self._stopping.clear()
        self._thread_wake.clear()
        self._thread = threading.Thread(
            target=self._thread_main, name="webex-byova-keeper", daemon=True
        )
        self._thread.start()
        return self._thread

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread (waits up to ``timeout`` for an in-flight renewal)."""
        self._stopping.set()
        self._wake()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def __enter__(self) -> DataSourceKeeper:
        self.start_thread()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the task or thread is running."""
        task_alive = self._task is not None and not self._task.done()
        thread_alive = self._thread is not None and self._thread.is_alive()
        return task_alive or thread_alive
