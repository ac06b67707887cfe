"""One contract, every backend (memory, SQLite, Redis, and each wrapped in encryption)."""

from __future__ import annotations

import asyncio
import time

import pytest

from webex_byova._flow import default_portal
from webex_byova._ids import to_hydra
from webex_byova.storage import KeyValueTokenStorage, LockingTokenStorage, TokenStorage
from webex_byova.tokens import OAuthToken

from .conftest import StoreFactory, unique_org

NOW = time.time()
LOCKING = ["sqlite", "redis", "encrypted-sqlite", "encrypted-redis"]


def _token(tag: str, *, refresh: str | None = "r") -> OAuthToken:
    now = NOW
    return OAuthToken(
        access_token=f"access-{tag}-" + "x" * 40,
        expires_at=now + 3600,
        refresh_token=None if refresh is None else f"refresh-{tag}-" + "y" * 40,
        refresh_token_expires_at=now + 7200,
        scope="spark:applications_token",
        obtained_at=now,
    )


async def test_empty_store(store: KeyValueTokenStorage) -> None:
    assert isinstance(store, TokenStorage)
    assert await store.get_integration_token() is None
    assert await store.get_org_token(unique_org()) is None
    assert await store.list_orgs() == []


async def test_integration_token_round_trip(store: KeyValueTokenStorage) -> None:
    token = _token("a")
    await store.set_integration_token(token)
    assert await store.get_integration_token() == token
    replacement = _token("b", refresh=None)
    await store.set_integration_token(replacement)
    assert await store.get_integration_token() == replacement
    await store.delete_integration_token()
    assert await store.get_integration_token() is None
    await store.delete_integration_token()  # absent: no error


async def test_org_tokens_keyed_by_uuid(store: KeyValueTokenStorage) -> None:
    org = unique_org()
    hydra = to_hydra("ORGANIZATION", org)
    await store.set_org_token(hydra, _token("org"))
    assert await store.get_org_token(org.upper()) == _token("org")
    assert await store.list_orgs() == [org]
    other = unique_org()
    await store.set_org_token(other, _token("other"))
    assert await store.list_orgs() == sorted([org, other])
    await store.delete_org_token(hydra)
    assert await store.get_org_token(org) is None
    assert await store.list_orgs() == [other]
    # Integration token is not an org.
    await store.set_integration_token(_token("i"))
    assert await store.list_orgs() == [other]


async def test_clear_removes_everything(store: KeyValueTokenStorage) -> None:
    await store.set_integration_token(_token("i"))
    for _ in range(3):
        await store.set_org_token(unique_org(), _token("o"))
    await store.clear()
    assert await store.get_integration_token() is None
    assert await store.list_orgs() == []


async def test_bad_org_id_is_rejected(store: KeyValueTokenStorage) -> None:
    with pytest.raises(ValueError, match="not an organization id"):
        await store.set_org_token("not-an-org", _token("x"))


async def test_concurrent_writes_stay_consistent(store: KeyValueTokenStorage) -> None:
    orgs = [unique_org() for _ in range(20)]
    await asyncio.gather(*(store.set_org_token(o, _token(o)) for o in orgs))
    assert await store.list_orgs() == sorted(orgs)
    for org in orgs:
        got = await store.get_org_token(org)
        assert got is not None
        assert got.access_token.startswith(f"access-{org}-")


async def test_data_survives_reopen(store_factory: StoreFactory) -> None:
    first = store_factory.new("shared")
    org = unique_org()
    await first.set_integration_token(_token("persist"))
    await first.set_org_token(org, _token("org"))
    await first.aclose()
    second = store_factory.new("shared")
    assert await second.get_integration_token() == _token("persist")
    assert await second.list_orgs() == [org]


async def test_usable_from_two_loops(store: KeyValueTokenStorage) -> None:
    """Async code on this loop and sync code on the portal loop share one store."""
    org = unique_org()
    await store.set_org_token(org, _token("loop1"))
    got = default_portal().call(lambda: store.get_org_token(org))
    assert got is not None
    assert got.access_token.startswith("access-loop1-")
    default_portal().call(lambda: store.set_org_token(org, _token("loop2")))
    again = await store.get_org_token(org)
    assert again is not None
    assert again.access_token.startswith("access-loop2-")


@pytest.mark.parametrize("store_factory", LOCKING, indirect=True)
async def test_lock_excludes_other_holders(store_factory: StoreFactory) -> None:
    """Two store objects over the same data (two replicas): the lock serializes them."""
    a, b = store_factory.new("locked"), store_factory.new("locked")
    assert isinstance(a, LockingTokenStorage)
    inside: list[str] = []
    order: list[str] = []

    async def hold(store: KeyValueTokenStorage, name: str) -> None:
        async with store.lock("integration", ttl=10):  # type: ignore[attr-defined]
            inside.append(name)
            assert len(inside) == 1, "two holders inside the lock"
            order.append(name)
            await asyncio.sleep(0.05)
            inside.remove(name)

    await asyncio.gather(hold(a, "a"), hold(b, "b"), hold(a, "a2"), hold(b, "b2"))
    assert sorted(order) == ["a", "a2", "b", "b2"]


@pytest.mark.parametrize("store_factory", LOCKING, indirect=True)
async def test_expired_lock_is_taken_over(store_factory: StoreFactory) -> None:
    a, b = store_factory.new("ttl"), store_factory.new("ttl")
    crashed = a.lock("k", ttl=0.05)  # type: ignore[attr-defined]
    await crashed.__aenter__()  # a holder that "crashed": it never releases in time
    async with b.lock("k", ttl=5):  # type: ignore[attr-defined]
        taken = True
    assert taken
    await crashed.__aexit__(None, None, None)  # late release must not break anything
    async with a.lock("k", ttl=5):  # type: ignore[attr-defined]
        pass
