"""Refresh edges of the Integration and Service App token managers, pinned by the mutation run
(issue 17): a refresh token rotated by a lock-less peer, a token endpoint that omits
``refresh_token``, what the hot cache holds while locks are handed over, an org revoked while
its refresh waits for the store lock, and that one org's (or one store's) stuck refresh does
not hold up another.

Against the in-process Webex emulator; user-written stores (the protocol only) record the
calls and hold their locks until the test lets them go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from webex_byova._flow import Portal, run_async, run_sync
from webex_byova._http import HttpClient
from webex_byova.errors import (
    OrgNotRegisteredError,
    ReauthorizationRequiredError,
    ServerError,
    WebexBYOVAError,
)
from webex_byova.integration import IntegrationTokenManager
from webex_byova.service_app import ServiceAppTokenManager
from webex_byova.storage import InMemoryTokenStorage
from webex_byova.testing import WebexEmulator
from webex_byova.tokens import OAuthToken

from .conftest import AuthRig
from .test_token_managers_mutation import (
    TOKEN_PATH,
    LockingStore,
    PlainStore,
    _event,
    _managers,
    _seed,
)

#: A token endpoint answer without ``refresh_token`` (Webex does not always send one).
NO_REFRESH_TOKEN = {"access_token": "renewed-access-token", "expires_in": 1_209_600}


class ScriptedReads(PlainStore):
    """Shares ``tokens`` with another store; its Integration-token reads return ``script``
    first (what it saw while a peer without a lock rotated the token), then the shared data."""

    def __init__(self, tokens: dict[str, OAuthToken], script: list[OAuthToken]) -> None:
        super().__init__()
        self.tokens = tokens
        self._script = list(script)

    async def get_integration_token(self) -> OAuthToken | None:
        if not self._script:
            return await super().get_integration_token()
        self._note("get_integration_token")
        return self._script.pop(0)


class GatedStore(LockingStore):
    """A store with a cross-process lock the test controls: ``gate(key)`` withholds the lock
    of ``key`` until the returned event is set; ``hold_release(key)`` keeps its holder in the
    release until ``released`` is set (``releasing`` tells when it got there)."""

    def __init__(self) -> None:
        super().__init__()
        self._gates: dict[str, asyncio.Event] = {}
        self._waiting: dict[str, asyncio.Event] = {}
        self._held: set[str] = set()
        self.releasing = asyncio.Event()
        self.released = asyncio.Event()

    def gate(self, key: str) -> asyncio.Event:
        self._waiting[key] = asyncio.Event()
        gate = self._gates[key] = asyncio.Event()
        return gate

    async def waiting(self, key: str, task: asyncio.Task[object]) -> None:
        """Until ``task`` waits for the gated lock of ``key`` (fails if it ends instead)."""
        arrived = asyncio.ensure_future(self._waiting[key].wait())
        await asyncio.wait({arrived, task}, return_when=asyncio.FIRST_COMPLETED)
        if not arrived.done():
            arrived.cancel()
            pytest.fail(f"ended without waiting for the store lock {key!r}: {task!r}")

    def hold_release(self, key: str) -> None:
        self._held.add(key)

    @asynccontextmanager
    async def lock(self, key: str, ttl: float = 30.0) -> AsyncIterator[None]:
        self.locks.append((key, ttl))
        gate = self._gates.get(key)
        if gate is not None:
            self._waiting[key].set()
            await gate.wait()
        try:
            yield None
        finally:
            if key in self._held:
                self.releasing.set()
                await self.released.wait()


def _due(token: OAuthToken, now: float) -> OAuthToken:
    """``token`` as stored long ago: its access token expires in 10 s (due for refresh)."""
    return OAuthToken(
        access_token=token.access_token,
        expires_at=now + 10,
        refresh_token=token.refresh_token,
        refresh_token_expires_at=token.refresh_token_expires_at,
        obtained_at=now - 100,
    )


def _sent_refresh_tokens(emu: WebexEmulator) -> list[str]:
    return [
        r.form["refresh_token"]
        for r in emu.requests
        if r.path == TOKEN_PATH and r.form is not None and "refresh_token" in r.form
    ]


# ----------------------------------------------------------------------------- rotation by a peer


async def test_a_peer_rotated_token_that_is_due_is_refreshed_with_its_refresh_token(
    rig: AuthRig,
) -> None:
    """The peer's rotated token is picked up; being due itself, it is refreshed with its own
    (live) refresh token, once."""
    emu = rig.emu
    store = PlainStore()
    old = _seed(emu)
    store.tokens["integration"] = old
    one, _ = _managers(emu, rig.http, store)
    rotated = await one.arefresh()
    store.tokens["integration"] = due = _due(rotated, emu.clock.now())
    two, _ = _managers(emu, rig.http, ScriptedReads(store.tokens, [old, old]))
    emu.clear_requests()
    renewed = await two.arefresh()
    assert _sent_refresh_tokens(emu) == [old.refresh_token, due.refresh_token]
    assert renewed.access_token not in (old.access_token, due.access_token)
    assert store.tokens["integration"] == renewed
    assert await two.aget_access_token() == renewed.access_token


async def test_a_rotation_is_followed_once(rig: AuthRig) -> None:
    """When the peer's rotated refresh token is dead as well, a further rotation found then
    is not chased: re-authorization is needed."""
    emu = rig.emu
    old, dead, newest = _seed(emu), _seed(emu), _seed(emu)
    assert emu.revoke_refresh_token(old.refresh_token)
    assert emu.revoke_refresh_token(dead.refresh_token)
    store = PlainStore()
    store.tokens["integration"] = newest
    due_dead = _due(dead, emu.clock.now())
    integration, _ = _managers(emu, rig.http, ScriptedReads(store.tokens, [old, old, due_dead]))
    emu.clear_requests()
    with pytest.raises(ReauthorizationRequiredError) as info:
        await integration.arefresh()
    assert str(info.value).startswith("Integration: the refresh token is expired or revoked")
    assert isinstance(info.value.__cause__, WebexBYOVAError)
    assert info.value.status_code == 400
    assert _sent_refresh_tokens(emu) == [old.refresh_token, dead.refresh_token]
    assert store.tokens["integration"] == newest


# ----------------------------------------------------------------------------- no refresh_token


async def test_an_integration_refresh_without_refresh_token_keeps_the_old_one(
    rig: AuthRig,
) -> None:
    await rig.seed_integration()
    before = await rig.storage.get_integration_token()
    rig.emu.fail_next(TOKEN_PATH, status=200, body=NO_REFRESH_TOKEN)
    token = await rig.integration.arefresh()
    assert token.access_token == "renewed-access-token"
    assert (token.refresh_token, token.refresh_token_expires_at) == (
        before.refresh_token,
        before.refresh_token_expires_at,
    )
    assert await rig.storage.get_integration_token() == token


async def test_an_org_refresh_without_refresh_token_keeps_the_old_one(rig: AuthRig) -> None:
    emu = rig.emu
    await rig.seed_integration()
    org = emu.org.org_id
    emu.authorize_service_app(org)
    fetched = await rig.service_app.afetch_org_token(org)
    assert fetched.refresh_token_expires_at is not None
    emu.fail_next(TOKEN_PATH, status=200, body=NO_REFRESH_TOKEN)
    token = await rig.service_app.arefresh_org_token(org)
    assert token.access_token == "renewed-access-token"
    assert (token.refresh_token, token.refresh_token_expires_at) == (
        fetched.refresh_token,
        fetched.refresh_token_expires_at,
    )
    assert await rig.storage.get_org_token(org) == token


@pytest.mark.parametrize("refresh_in", [None, 5000])
async def test_a_redeemed_refresh_token_is_kept_when_webex_sends_none(
    rig: AuthRig, refresh_in: int | None
) -> None:
    emu = rig.emu
    org = emu.org.org_id
    emu.authorize_service_app(org)
    pair = emu.issue_service_app_token(org)
    body: dict[str, object] = dict(NO_REFRESH_TOKEN)
    if refresh_in is not None:
        body["refresh_token_expires_in"] = refresh_in
    emu.fail_next(TOKEN_PATH, status=200, body=body)
    now = emu.clock.now()
    token = await rig.service_app.aregister_org_from_refresh_token(org, pair["refresh_token"])
    assert token.access_token == "renewed-access-token"
    assert token.refresh_token == pair["refresh_token"]
    if refresh_in is None:
        assert token.refresh_token_expires_at is None
    else:
        assert token.refresh_token_expires_at == pytest.approx(now + refresh_in, abs=5)
    assert await rig.storage.get_org_token(org) == token


async def test_a_failed_redeem_is_not_a_reauthorization(rig: AuthRig) -> None:
    emu = rig.emu
    org = emu.org.org_id
    emu.authorize_service_app(org)
    pair = emu.issue_service_app_token(org)
    emu.clear_requests()
    emu.fail_next(TOKEN_PATH, status=502)
    with pytest.raises(ServerError) as info:
        await rig.service_app.aregister_org_from_refresh_token(org, pair["refresh_token"])
    assert info.value.status_code == 502
    assert emu.count("POST", TOKEN_PATH) == 1
    assert await rig.storage.get_org_token(org) is None


# ----------------------------------------------------------------------------- defaults, portal


def test_the_access_token_is_read_on_the_managers_portal(emu: WebexEmulator) -> None:
    http = HttpClient(emu.config())
    portal = Portal("test-access-token-portal")
    try:
        store = PlainStore()
        store.tokens["integration"] = token = _seed(emu)
        integration, _ = _managers(emu, http, store, portal)
        assert integration.get_access_token() == token.access_token
        assert store.calls == [("get_integration_token", portal.loop)]
    finally:
        portal.close()
        http.close()


async def test_the_token_flows_refresh_only_when_due_by_default(rig: AuthRig) -> None:
    await rig.seed_integration()
    stored = await rig.storage.get_integration_token()
    rig.emu.clear_requests()
    assert await run_async(rig.integration.token_flow(), rig.http) == stored
    assert run_sync(rig.integration.token_flow(), rig.http) == stored
    assert await run_async(rig.integration.access_token_flow(), rig.http) == stored.access_token
    assert rig.emu.requests == []


# ----------------------------------------------------------------------------- hot cache


async def test_an_authorized_event_keeps_the_fetched_token_in_memory(rig: AuthRig) -> None:
    emu = rig.emu
    store = PlainStore()
    store.tokens["integration"] = _seed(emu)
    _, service_app = _managers(emu, rig.http, store)
    org = emu.org.org_id
    emu.authorize_service_app(org)
    result = await run_async(
        service_app.handle_event_flow(_event("authorized", org, "k1", None)), rig.http
    )
    store.calls.clear()
    token = await service_app.aget_org_token_info(org)
    assert store.names() == []
    assert token == store.tokens[org]
    assert token.expires_at_datetime == result.token_expires_at  # type: ignore[union-attr]


async def test_a_caller_during_the_store_lock_release_gets_the_new_token_from_memory(
    rig: AuthRig,
) -> None:
    """While the refresher still releases the store lock, the token it stored is already in
    memory: a caller arriving then reads no store."""
    emu = rig.emu
    store = GatedStore()
    store.tokens["integration"] = token = _seed(emu)
    integration, service_app = _managers(emu, rig.http, store)
    emu.clock.advance(token.expires_at - emu.clock.now() - 10)
    store.hold_release("integration")
    refresher = asyncio.create_task(integration.aget_access_token())
    await store.releasing.wait()
    store.calls.clear()
    renewed = store.tokens["integration"]
    assert renewed.access_token != token.access_token
    assert await integration.aget_access_token() == renewed.access_token
    assert store.names() == []
    store.released.set()
    assert await refresher == renewed.access_token

    org = emu.org.org_id
    emu.authorize_service_app(org)
    fetched = await service_app.afetch_org_token(org)
    emu.clock.advance(fetched.expires_at - emu.clock.now() - 10)
    store.releasing.clear()
    store.released.clear()
    store.hold_release(f"org:{org}")
    refresher = asyncio.create_task(service_app.aget_org_token(org))
    await store.releasing.wait()
    store.calls.clear()
    renewed = store.tokens[org]
    assert renewed.access_token != fetched.access_token
    assert await service_app.aget_org_token(org) == renewed.access_token
    assert store.names() == []
    store.released.set()
    assert await refresher == renewed.access_token


# ----------------------------------------------------------------------------- locks


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_org_revoked_while_its_refresh_waits_for_the_store_lock(
    rig: AuthRig, mode: str
) -> None:
    emu = rig.emu
    store = GatedStore()
    store.tokens["integration"] = _seed(emu)
    _, service_app = _managers(emu, rig.http, store)
    org = emu.org.org_id
    emu.authorize_service_app(org)
    await service_app.afetch_org_token(org)
    gate = store.gate(f"org:{org}")
    refresh = asyncio.create_task(service_app.aget_org_token(org, force_refresh=True))
    await store.waiting(f"org:{org}", refresh)
    if mode == "sync":
        service_app.revoke_org(org)
    else:
        await service_app.arevoke_org(org)
    emu.clear_requests()
    gate.set()
    with pytest.raises(OrgNotRegisteredError) as info:
        await refresh
    assert info.value.org_id == org
    assert emu.requests == []
    with pytest.raises(OrgNotRegisteredError):
        await service_app.aget_org_token(org)


@pytest.mark.parametrize("stuck_on", ["refresh", "fetch"])
async def test_one_orgs_stuck_store_lock_does_not_hold_up_another_org(
    rig: AuthRig, stuck_on: str
) -> None:
    """Org a's refresh (or fetch) holds its locks while it waits for the store; org b is
    fetched, refreshed and registered meanwhile (with shared locks this would deadlock: a's
    store lock is granted only once b is done)."""
    emu = rig.emu
    store = GatedStore()
    store.tokens["integration"] = _seed(emu)
    _, service_app = _managers(emu, rig.http, store)
    a, b = emu.org.org_id, emu.create_org().org_id
    emu.authorize_service_app(a)
    emu.authorize_service_app(b)
    before = await service_app.afetch_org_token(a)
    gate = store.gate(f"org:{a}")
    if stuck_on == "refresh":
        stuck = asyncio.create_task(service_app.aget_org_token_info(a, force_refresh=True))
    else:
        stuck = asyncio.create_task(service_app.afetch_org_token(a))
    await store.waiting(f"org:{a}", stuck)

    async def other_org() -> list[OAuthToken]:
        fetched = await service_app.afetch_org_token(b)
        refreshed = await service_app.aget_org_token_info(b, force_refresh=True)
        pair = emu.issue_service_app_token(b)
        registered = await service_app.aregister_org_from_refresh_token(b, pair["refresh_token"])
        return [fetched, refreshed, registered]

    meanwhile = asyncio.create_task(other_org())
    meanwhile.add_done_callback(lambda _: gate.set())
    tokens, after = await asyncio.gather(meanwhile, stuck)
    assert len({t.access_token for t in tokens}) == 3
    assert store.tokens[b] == tokens[-1]
    assert after.access_token != before.access_token
    assert store.tokens[a] == after


async def test_a_refresh_stuck_on_one_stores_lock_does_not_hold_up_another_store(
    rig: AuthRig,
) -> None:
    """Managers over different stores do not share locks, even for the same org."""
    emu = rig.emu
    gated, other = GatedStore(), LockingStore()
    gated.tokens["integration"] = other.tokens["integration"] = _seed(emu)
    _, first = _managers(emu, rig.http, gated)
    _, second = _managers(emu, rig.http, other)
    org = emu.org.org_id
    emu.authorize_service_app(org)
    await first.afetch_org_token(org)
    gate = gated.gate(f"org:{org}")
    stuck = asyncio.create_task(first.aget_org_token_info(org, force_refresh=True))
    await gated.waiting(f"org:{org}", stuck)
    meanwhile = asyncio.create_task(second.afetch_org_token(org))
    meanwhile.add_done_callback(lambda _: gate.set())
    fetched, refreshed = await asyncio.gather(meanwhile, stuck)
    assert other.tokens[org] == fetched
    assert gated.tokens[org] == refreshed
    assert other.locks == [(f"org:{org}", 30.0)]


async def test_one_stores_stuck_integration_refresh_does_not_hold_up_another_store(
    rig: AuthRig,
) -> None:
    emu = rig.emu
    gated, other = GatedStore(), LockingStore()
    gated.tokens["integration"] = _seed(emu)
    other.tokens["integration"] = _seed(emu)
    first, _ = _managers(emu, rig.http, gated)
    second, _ = _managers(emu, rig.http, other)
    gate = gated.gate("integration")
    stuck = asyncio.create_task(first.arefresh())
    await gated.waiting("integration", stuck)
    meanwhile = asyncio.create_task(second.arefresh())
    meanwhile.add_done_callback(lambda _: gate.set())
    renewed_other, renewed_first = await asyncio.gather(meanwhile, stuck)
    assert other.tokens["integration"] == renewed_other
    assert gated.tokens["integration"] == renewed_first
    assert other.locks == [("integration", 30.0)]


# ----------------------------------------------------------------------------- stores


async def test_managers_keep_their_own_stores(rig: AuthRig) -> None:
    """Without a store the Integration manager keeps tokens in memory of its own; a Service
    App manager given a store of its own keeps the org tokens there, not in the
    Integration's."""
    emu = rig.emu
    integration = IntegrationTokenManager(
        rig.integration.credentials, rig.http, clock=emu.clock.now
    )
    assert isinstance(integration.storage, InMemoryTokenStorage)
    assert integration.storage is not rig.storage
    await integration.aset_token(_seed(emu))
    assert await integration.ahas_token() is True
    assert await rig.integration.ahas_token() is False
    own = PlainStore()
    service_app = ServiceAppTokenManager(rig.service_app.credentials, integration, rig.http, own)
    assert service_app.storage is own
    org = emu.org.org_id
    emu.authorize_service_app(org)
    token = await service_app.afetch_org_token(org)
    assert own.tokens[org] == token
    assert await integration.storage.get_org_token(org) is None
