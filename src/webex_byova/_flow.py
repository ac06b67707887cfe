"""Write a flow once, run it sync or async.

Multi-step operations (refresh a token and store it, fetch a key set, GET then PUT a data
source) are written once as *flows*: generators that ``yield`` effect objects and receive
their results. Two small drivers execute the effects:

* :func:`run_async` awaits ``HttpClient.arequest`` and async callables on the caller's loop;
* :func:`run_sync` uses ``HttpClient.request`` (a real ``httpx.Client``) and runs async
  callables (the :class:`~webex_byova.storage.TokenStorage` protocol is async) on a private
  background event loop (:class:`Portal`), so sync methods work even when called from inside a
  running event loop — no ``asyncio.run`` anywhere.

Exceptions raised by an effect are thrown back into the flow at its ``yield``, so flows handle
errors (e.g. refresh once on 401) in one place.

:class:`Locked` runs a sub-flow while holding a named lock (single-flight token refresh): an
``asyncio.Lock`` per key and per loop under :func:`run_async`, a ``threading.Lock`` per key under
:func:`run_sync`, optionally nested with a store-provided cross-process lock. The driver owns
acquire/release, so a cancelled task or a failing effect never leaves a lock held. A store lock
expires after its TTL (so a crashed holder frees it); while the sub-flow runs the driver renews
it every TTL/3 (:class:`~webex_byova.storage.LockLease`), so a refresh slowed by retries past
the TTL still excludes other processes.

Example::

    def refresh_flow(...) -> Flow[Token]:
        stored = yield Call(lambda: storage.get_integration_token())
        response = yield Http(spec)
        ...
        return token
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator
from concurrent.futures import Future
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, TypeVar

from ._http import HttpClient, RequestSpec

__all__ = [
    "Call",
    "Flow",
    "Http",
    "Locked",
    "Portal",
    "Sleep",
    "default_portal",
    "run_async",
    "run_sync",
]

T = TypeVar("T")

_log = logging.getLogger("webex_byova.flow")


@dataclass(frozen=True)
class Http:
    """Effect: send ``spec`` through the :class:`HttpClient`; result is a ``Response``."""

    spec: RequestSpec


@dataclass(frozen=True)
class Call:
    """Effect: await ``fn()``; result is its return value."""

    fn: Callable[[], Awaitable[Any]]


@dataclass(frozen=True)
class Sleep:
    """Effect: wait ``seconds`` (``time.sleep`` or ``asyncio.sleep``)."""

    seconds: float


@dataclass(frozen=True)
class Locked:
    """Effect: run the sub-flow ``flow`` while holding the lock named ``key``; result is its value.

    ``key`` names a process-local lock (``asyncio.Lock`` per loop in :func:`run_async`,
    ``threading.Lock`` in :func:`run_sync`). ``store_lock``, when given, is entered inside it
    (on the caller's loop, or on the portal loop for sync callers) to exclude other processes
    sharing a token store; when it yields an object with ``ttl`` and ``aextend()`` (a
    :class:`~webex_byova.storage.LockLease`) the driver renews it every ``ttl / 3`` until the
    sub-flow ends. Locks are not re-entrant: a sub-flow must not lock ``key`` again.
    """

    key: str
    flow: Generator[Any, Any, Any]
    store_lock: Callable[[], AbstractAsyncContextManager[Any]] | None = None


Effect = Http | Call | Sleep | Locked
Flow = Generator[Effect, Any, T]

_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()
_async_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _thread_lock(key: str) -> threading.Lock:
    with _thread_locks_guard:
        lock = _thread_locks.get(key)
        if lock is None:
            lock = _thread_locks[key] = threading.Lock()
        return lock


def _async_lock(key: str) -> asyncio.Lock:
    loop = asyncio.get_running_loop()
    locks = _async_locks.get(loop)
    if locks is None:
        locks = _async_locks[loop] = {}
    lock = locks.get(key)
    if lock is None:
        lock = locks[key] = asyncio.Lock()
    return lock


class Portal:
    """A private event loop on a daemon thread, for running async callables from sync code."""

    def __init__(self, name: str = "webex-byova-portal") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def _run() -> None:
                    asyncio.set_event_loop(loop)
                    ready.set()
                    loop.run_forever()

                thread = threading.Thread(target=_run, name=self._name, daemon=True)
                thread.start()
                ready.wait()
                self._loop, self._thread = loop, thread
            return self._loop

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The portal's loop (started on first use)."""
        return self._ensure()

    def call(self, fn: Callable[[], Awaitable[T]], timeout: float | None = None) -> T:
        """Run ``fn()`` on the portal loop and block until it finishes."""
        loop = self._ensure()
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("Portal.call() cannot be used from the portal's own loop")

        async def _wrapped() -> T:
            return await fn()

        coro: Coroutine[Any, Any, T] = _wrapped()
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, loop)
        try:
            return future.result(timeout)
        except BaseException:
            # Interrupted (KeyboardInterrupt, timeout): cancel the task rather than let it
            # finish unobserved, e.g. acquire a lock nobody will release.
            future.cancel()
            raise

    def close(self) -> None:
        """Stop the loop and join the thread."""
        with self._lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        if not loop.is_running():
            loop.close()


_default_portal = Portal()


def default_portal() -> Portal:
    """The process-wide portal used when none is given."""
    return _default_portal


def run_sync(flow: Flow[T], http: HttpClient, portal: Portal | None = None) -> T:
    """Drive ``flow`` with blocking I/O."""
    portal = portal or _default_portal
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send, error = None, None
        try:
            if isinstance(effect, Http):
                send = http.request(effect.spec)
            elif isinstance(effect, Call):
                send = portal.call(effect.fn)
            elif isinstance(effect, Sleep):
                time.sleep(effect.seconds)
            elif isinstance(effect, Locked):
                send = _run_locked_sync(effect, http, portal)
            else:  # pragma: no cover - programming error
                raise TypeError(f"unknown effect {effect!r}")
        except Exception as exc:
            error = exc


def _run_locked_sync(effect: Locked, http: HttpClient, portal: Portal) -> Any:
    with _thread_lock(effect.key):
        if effect.store_lock is None:
            return run_sync(effect.flow, http, portal)
        hold = _StoreHold(effect.store_lock)
        try:
            portal.call(hold.enter)
            result = run_sync(effect.flow, http, portal)
        except BaseException:
            exc_type, exc, tb = sys.exc_info()
            portal.call(lambda: hold.exit(exc_type, exc, tb))
            raise
        portal.call(lambda: hold.exit(None, None, None))
        return result


class _StoreHold:
    """A store lock held by a driver, renewed in the background until :meth:`exit`.

    ``enter`` and ``exit`` run on one loop (the caller's, or the portal's for sync callers),
    which also runs the renewal task, so renewal goes on while a sync caller blocks on HTTP.
    ``exit`` is safe to call whether or not ``enter`` completed.
    """

    def __init__(self, factory: Callable[[], AbstractAsyncContextManager[Any]]) -> None:
        self._factory = factory
        self._manager: AbstractAsyncContextManager[Any] | None = None
        self._renewal: asyncio.Task[None] | None = None

    async def enter(self) -> None:
        manager = self._factory()
        lease = await manager.__aenter__()  # the store releases it if cancelled in here
        self._manager = manager
        ttl = getattr(lease, "ttl", None)
        if callable(getattr(lease, "aextend", None)) and isinstance(ttl, int | float) and ttl > 0:
            self._renewal = asyncio.get_running_loop().create_task(_renew(lease, ttl / 3))

    async def exit(self, *exc_info: Any) -> None:
        renewal, self._renewal = self._renewal, None
        manager, self._manager = self._manager, None
        if renewal is not None:
            # Not awaited: a renewal still in flight after the release is an owner-checked
            # no-op, and waiting for it must not delay (or, if cancelled, skip) the release.
            renewal.cancel()
        if manager is not None:
            await manager.__aexit__(*exc_info)


async def _renew(lease: Any, interval: float) -> None:
    """Extend ``lease`` every ``interval`` seconds until cancelled or the lock is lost."""
    while True:
        await asyncio.sleep(interval)
        try:
            held = await lease.aextend()
        except Exception as exc:  # transient store error: try again next time
            _log.warning("renewing store lock %r failed: %s", getattr(lease, "key", "?"), exc)
            continue
        if not held:
            _log.warning(
                "store lock %r expired before it could be renewed; another process may now "
                "refresh concurrently",
                getattr(lease, "key", "?"),
            )
            return


async def run_async(flow: Flow[T], http: HttpClient) -> T:
    """Drive ``flow`` on the running event loop."""
    send: Any = None
    error: BaseException | None = None
    while True:
        try:
            effect = flow.throw(error) if error is not None else flow.send(send)
        except StopIteration as stop:
            return stop.value  # type: ignore[no-any-return]
        send, error = None, None
        try:
            if isinstance(effect, Http):
                send = await http.arequest(effect.spec)
            elif isinstance(effect, Call):
                send = await effect.fn()
            elif isinstance(effect, Sleep):
                await asyncio.sleep(effect.seconds)
            elif isinstance(effect, Locked):
                async with _async_lock(effect.key):
                    if effect.store_lock is None:
                        send = await run_async(effect.flow, http)
                    else:
                        hold = _StoreHold(effect.store_lock)
                        await hold.enter()
                        try:
                            send = await run_async(effect.flow, http)
                        except BaseException:
                            await hold.exit(*sys.exc_info())
                            raise
                        await hold.exit(None, None, None)
            else:  # pragma: no cover - programming error
                raise TypeError(f"unknown effect {effect!r}")
        except Exception as exc:
            error = exc
