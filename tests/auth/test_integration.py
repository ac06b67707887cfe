"""IntegrationTokenManager against the Webex emulator (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from webex_byova.errors import AuthenticationError, ReauthorizationRequiredError, ServerError
from webex_byova.storage import SQLiteTokenStorage, from_url
from webex_byova.storage.redis import RedisTokenStorage
from webex_byova.testing import WebexEmulator

from .conftest import AuthRig

TOKEN_PATH = "/v1/access_token"
FIFTEEN_DAYS = 15 * 86400


async def _follow(url: str) -> httpx.Response:
    """What a browser does: open the authorize URL and follow the redirect to our listener."""
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as client:
        return await client.get(url)


def _browser(tasks: list[asyncio.Task[httpx.Response]]) -> Callable[[str], None]:
    def on_url(url: str) -> None:
        tasks.append(asyncio.get_running_loop().create_task(_follow(url)))

    return on_url


# ----------------------------------------------------------------------------- authorize


async def test_browserless_authorize_stores_tokens(rig: AuthRig) -> None:
    tasks: list[asyncio.Task[httpx.Response]] = []
    token = await rig.integration.aauthorize(open_browser=False, on_url=_browser(tasks))
    page = await tasks[0]
    assert page.status_code == 200
    assert b"Authorization complete" in page.content
    assert await rig.storage.get_integration_token() == token
    # The authorize request carried state and an S256 PKCE challenge; port 0 was substituted.
    authorize = next(r for r in rig.emu.requests if r.path == "/v1/authorize")
    assert authorize.query["code_challenge_method"] == "S256"
    assert len(authorize.query["state"]) >= 32
    redirect = urlsplit(authorize.query["redirect_uri"])
    assert redirect.hostname == "127.0.0.1"
    assert redirect.port not in (None, 0)
    exchange = next(r for r in rig.emu.requests if r.path == TOKEN_PATH)
    assert exchange.form is not None
    assert exchange.form["grant_type"] == "authorization_code"
    assert exchange.form["code_verifier"]
    assert exchange.form["redirect_uri"] == redirect.geturl()
    assert await rig.integration.aget_access_token() == token.access_token
    assert rig.emu.count("POST", TOKEN_PATH) == 1  # the code exchange only


async def test_sync_authorize_with_thread_listener(rig: AuthRig) -> None:
    pages: list[httpx.Response] = []

    def on_url(url: str) -> None:
        threading.Thread(
            target=lambda: pages.append(httpx.get(url, follow_redirects=True, timeout=10))
        ).start()

    # Called from inside a running loop on purpose: the sync path must not need it.
    token = rig.integration.authorize(open_browser=False, on_url=on_url, timeout=30)
    assert rig.integration.get_stored_token() == token
    assert rig.integration.get_access_token() == token.access_token


async def test_listener_ignores_other_paths_then_accepts_the_redirect(rig: AuthRig) -> None:
    tasks: list[asyncio.Task[httpx.Response]] = []

    async def stray_then_real(url: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            redirect = (await client.get(url)).headers["location"]
            parts = urlsplit(redirect)
            favicon = await client.get(
                urlunsplit((parts.scheme, parts.netloc, "/favicon.ico", "", ""))
            )
            assert favicon.status_code == 404
            return await client.get(redirect)

    def on_url(url: str) -> None:
        tasks.append(asyncio.get_running_loop().create_task(stray_then_real(url)))

    await rig.integration.aauthorize(open_browser=False, on_url=on_url)
    assert (await tasks[0]).status_code == 200


async def test_state_mismatch_is_rejected(rig: AuthRig) -> None:
    tasks: list[asyncio.Task[httpx.Response]] = []

    async def forged(url: str) -> httpx.Response:
        async with httpx.AsyncClient(timeout=10) as client:
            redirect = (await client.get(url)).headers["location"]
            parts = urlsplit(redirect)
            query = parse_qs(parts.query)
            bad = f"code={query['code'][0]}&state=forged-state"
            return await client.get(urlunsplit((parts.scheme, parts.netloc, parts.path, bad, "")))

    def on_url(url: str) -> None:
        tasks.append(asyncio.get_running_loop().create_task(forged(url)))

    with pytest.raises(AuthenticationError, match="state_mismatch"):
        await rig.integration.aauthorize(open_browser=False, on_url=on_url)
    assert (await tasks[0]).status_code == 400
    assert await rig.storage.get_integration_token() is None
    assert rig.emu.count("POST", TOKEN_PATH) == 0


async def test_access_denied_is_a_clear_error(rig: AuthRig) -> None:
    rig.emu.deny_next_authorize()
    tasks: list[asyncio.Task[httpx.Response]] = []
    with pytest.raises(AuthenticationError, match="access_denied"):
        await rig.integration.aauthorize(open_browser=False, on_url=_browser(tasks))
    assert (await tasks[0]).status_code == 400


async def test_authorize_times_out_without_redirect(rig: AuthRig) -> None:
    with pytest.raises(AuthenticationError, match="timed out"):
        await rig.integration.aauthorize(open_browser=False, timeout=0.1)


async def test_manual_code_exchange_and_callback(rig: AuthRig) -> None:
    async with httpx.AsyncClient(timeout=10) as client:
        url = rig.integration.authorization_url(redirect_uri="http://127.0.0.1:9/cb")
        location = (await client.get(url)).headers["location"]
        token = await rig.integration.ahandle_callback(location)
        assert await rig.storage.get_integration_token() == token
        # exchange_code with the state of a pending request (PKCE verifier looked up).
        request = rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/cb")
        location = (await client.get(request.url)).headers["location"]
        code = parse_qs(urlsplit(location).query)["code"][0]
        second = await rig.integration.aexchange_code(code, state=request.state)
        assert await rig.storage.get_integration_token() == second
        # A replayed code is rejected with a typed error.
        with pytest.raises(AuthenticationError, match="code exchange failed"):
            await rig.integration.aexchange_code(
                code, code_verifier=request.code_verifier, redirect_uri="http://127.0.0.1:9/cb"
            )
        with pytest.raises(AuthenticationError, match="state_mismatch"):
            await rig.integration.aexchange_code(code, state="unknown")


# ----------------------------------------------------------------------------- refresh


async def test_no_token_requires_authorization(rig: AuthRig) -> None:
    with pytest.raises(ReauthorizationRequiredError, match="authorize"):
        await rig.integration.aget_access_token()


async def test_valid_token_is_served_without_requests(rig: AuthRig) -> None:
    await rig.seed_integration()
    rig.emu.clear_requests()
    first = await rig.integration.aget_access_token()
    assert await rig.integration.aget_access_token() == first
    assert rig.emu.requests == []


async def test_thousand_concurrent_callers_cause_one_refresh(rig: AuthRig) -> None:
    await rig.seed_integration()
    old = await rig.storage.get_integration_token()
    rig.emu.clock.advance(FIFTEEN_DAYS)  # expired on both sides
    rig.emu.clear_requests()
    tokens = await asyncio.gather(*(rig.integration.aget_access_token() for _ in range(1000)))
    assert rig.emu.count("POST", TOKEN_PATH) == 1
    assert len(set(tokens)) == 1
    assert tokens[0] != old.access_token
    stored = await rig.storage.get_integration_token()
    assert stored.access_token == tokens[0]
    assert stored.refresh_token != old.refresh_token


async def test_sync_callers_from_threads_cause_one_refresh(rig: AuthRig) -> None:
    await rig.seed_integration()
    rig.emu.clock.advance(FIFTEEN_DAYS)
    rig.emu.clear_requests()
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(rig.integration.get_access_token()))
        for _ in range(32)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 32
    assert len(set(results)) == 1
    assert rig.emu.count("POST", TOKEN_PATH) == 1


async def test_refresh_ahead_of_expiry(rig: AuthRig) -> None:
    await rig.seed_integration()
    token = await rig.storage.get_integration_token()
    # 100 s before expiry: inside the 300 s margin, the token is refreshed although still valid.
    rig.emu.clock.advance(token.expires_at - rig.emu.clock.now() - 100)
    rig.emu.clear_requests()
    assert await rig.integration.aget_access_token() != token.access_token
    assert rig.emu.count("POST", TOKEN_PATH) == 1


async def test_forced_refresh_is_single_flight(rig: AuthRig) -> None:
    await rig.seed_integration()
    rig.emu.clear_requests()
    refreshed = await asyncio.gather(*(rig.integration.arefresh() for _ in range(50)))
    assert len({t.access_token for t in refreshed}) == 1
    assert rig.emu.count("POST", TOKEN_PATH) == 1


@pytest.mark.parametrize("failure", ["revoked", "401"])
async def test_dead_refresh_token_requires_reauthorization(rig: AuthRig, failure: str) -> None:
    await rig.seed_integration()
    token = await rig.storage.get_integration_token()
    if failure == "revoked":
        assert rig.emu.revoke_refresh_token(token.refresh_token)
    else:
        rig.emu.fail_next(TOKEN_PATH, status=401, times=2)
    rig.emu.clock.advance(FIFTEEN_DAYS)
    with pytest.raises(ReauthorizationRequiredError, match="re-authorization is needed") as info:
        await rig.integration.aget_access_token()
    assert isinstance(info.value, AuthenticationError)
    with pytest.raises(ReauthorizationRequiredError):
        rig.integration.get_access_token()  # sync, inside a running loop


async def test_other_refresh_failures_are_not_reauthorization(rig: AuthRig) -> None:
    await rig.seed_integration()
    rig.emu.clock.advance(FIFTEEN_DAYS)
    rig.emu.fail_next(TOKEN_PATH, status=500)
    with pytest.raises(ServerError):
        await rig.integration.aget_access_token()
    assert await rig.integration.aget_access_token()  # the next attempt refreshes fine


async def test_sync_methods_inside_running_loop(rig: AuthRig) -> None:
    await rig.seed_integration()
    assert rig.integration.has_token()
    first = rig.integration.get_access_token()
    refreshed = rig.integration.refresh()
    assert refreshed.access_token != first
    assert rig.integration.get_token().access_token == refreshed.access_token
    rig.integration.clear_token()
    assert not await rig.integration.ahas_token()


# ----------------------------------------------------------------------------- rotation


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_two_replicas_sharing_a_store_refresh_once(
    backend: str,
    emu: WebexEmulator,
    new_rig: Callable[..., AuthRig],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    """Two store objects over one file/Redis (two replicas): the store lock makes one refresh
    and the rotated refresh token is never used stale."""
    if backend == "sqlite":
        stores = [SQLiteTokenStorage(tmp_path / "shared.db") for _ in range(2)]
    else:
        url = request.getfixturevalue("redis_url")
        stores = [RedisTokenStorage(url, prefix=f"replicas:{tmp_path.name}:") for _ in range(2)]
    a, b = new_rig(stores[0]), new_rig(stores[1])
    try:
        await a.seed_integration()
        for _round in range(3):
            emu.clock.advance(FIFTEEN_DAYS)
            emu.clear_requests()
            tokens = await asyncio.gather(
                *(rig.integration.aget_access_token() for rig in (a, b) for _ in range(100))
            )
            assert len(set(tokens)) == 1
            assert emu.count("POST", TOKEN_PATH) == 1
    finally:
        for store in stores:
            await store.aclose()


CRASHING_REFRESHER = textwrap.dedent(
    """
    import os, signal, sys
    from webex_byova._http import HttpClient
    from webex_byova.config import BYOVAConfig
    from webex_byova.credentials import IntegrationCredentials
    from webex_byova.integration import IntegrationTokenManager
    from webex_byova.storage import from_url

    base = os.environ["EMU_BASE"]
    config = BYOVAConfig(base_url=base, authorize_url=base + "/authorize",
                         token_url=base + "/access_token")
    creds = IntegrationCredentials(os.environ["EMU_ID"], os.environ["EMU_SECRET"])
    manager = IntegrationTokenManager(creds, HttpClient(config), from_url(os.environ["STORE"]))
    token = manager.refresh()
    print(token.access_token, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # crash: no cleanup, no close
    """
)


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_rotated_token_survives_a_crash_and_restart(
    backend: str,
    emu: WebexEmulator,
    new_rig: Callable[..., AuthRig],
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/tokens.db"
    else:
        url = f"{request.getfixturevalue('redis_url')}?prefix=crash:{tmp_path.name}:"
    seed_store = from_url(url)
    await new_rig(seed_store).seed_integration()
    old = await seed_store.get_integration_token()
    await seed_store.aclose()
    env = dict(
        os.environ,
        EMU_BASE=emu.base_url,
        EMU_ID=emu.integration.client_id,
        EMU_SECRET=emu.integration.client_secret,
        STORE=url,
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASHING_REFRESHER, env=env, stdout=subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == -9, "the refresher should have been killed"
    printed = out.decode().strip()
    # "Restart": a new process-like stack over the same store, no browser login needed.
    store = from_url(url)
    try:
        rig = new_rig(store)
        assert await rig.integration.aget_access_token() == printed
        stored = await store.get_integration_token()
        assert stored.refresh_token != old.refresh_token  # the rotated one was persisted
        emu.clear_requests()
        again = await rig.integration.arefresh()  # the rotated refresh token still works
        assert again.access_token != printed
        assert emu.count("POST", TOKEN_PATH) == 1
    finally:
        await store.aclose()
