"""ServiceAppTokenManager against the Webex emulator: fetch, refresh chain, single flight."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from webex_byova._http import HttpClient
from webex_byova._ids import application_id, to_hydra
from webex_byova.config import BYOVAConfig
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.errors import (
    AuthenticationError,
    OrgNotRegisteredError,
    ReauthorizationRequiredError,
)
from webex_byova.integration import IntegrationTokenManager
from webex_byova.service_app import ServiceAppTokenManager
from webex_byova.storage import InMemoryTokenStorage
from webex_byova.testing import WebexEmulator

from .conftest import AuthRig

TOKEN_PATH = "/v1/access_token"
APPS_PATH = "/v1/applications/"
FIFTEEN_DAYS = 15 * 86400


@pytest.fixture
async def org_rig(rig: AuthRig) -> AuthRig:
    """Integration authorized, Service App authorized in ``emu.org``, its token fetched."""
    await rig.seed_integration()
    rig.emu.authorize_service_app(rig.emu.org.org_id)
    await rig.service_app.afetch_org_token(rig.emu.org.org_id)
    rig.emu.clear_requests()
    return rig


async def test_fetch_uses_integration_bearer_and_hydra_target(rig: AuthRig) -> None:
    await rig.seed_integration()
    emu = rig.emu
    emu.authorize_service_app(emu.org.org_id)
    integration_token = await rig.integration.aget_access_token()
    token = await rig.service_app.afetch_org_token(emu.org.hydra_id)
    request = next(r for r in emu.requests if r.path.startswith(APPS_PATH))
    assert request.path == f"{APPS_PATH}{emu.service_app.application_id}/token"
    assert request.headers.get("Authorization", request.headers.get("authorization")) == (
        f"Bearer {integration_token}"
    )
    assert request.json == {
        "clientId": emu.service_app.client_id,
        "clientSecret": emu.service_app.client_secret,
        "targetOrgId": emu.org.hydra_id,
    }
    # Stored under the UUID, found by either form.
    assert await rig.storage.list_orgs() == [emu.org.org_id]
    assert await rig.service_app.aget_org_token(emu.org.org_id) == token.access_token
    assert await rig.service_app.aget_org_token(emu.org.hydra_id) == token.access_token
    assert await rig.service_app.ahas_org(emu.org.hydra_id)


async def test_unregistered_org_raises(rig: AuthRig) -> None:
    with pytest.raises(OrgNotRegisteredError) as info:
        await rig.service_app.aget_org_token(rig.emu.org.hydra_id)
    assert info.value.org_id == rig.emu.org.org_id
    with pytest.raises(ValueError, match="not an organization id"):
        await rig.service_app.aget_org_token("garbage")


async def test_fetch_for_unauthorized_org_is_a_clear_auth_error(rig: AuthRig) -> None:
    await rig.seed_integration()
    other = rig.emu.create_org()
    with pytest.raises(AuthenticationError, match="not authorized in org") as info:
        await rig.service_app.afetch_org_token(other.org_id)
    assert info.value.status_code == 403
    assert not await rig.service_app.ahas_org(other.org_id)


async def test_thousand_concurrent_org_callers_cause_one_refresh(org_rig: AuthRig) -> None:
    emu, org = org_rig.emu, org_rig.emu.org.org_id
    old = await org_rig.storage.get_org_token(org)
    emu.clock.advance(FIFTEEN_DAYS)
    integration_before = await org_rig.storage.get_integration_token()
    emu.clear_requests()
    tokens = await asyncio.gather(*(org_rig.service_app.aget_org_token(org) for _ in range(1000)))
    assert len(set(tokens)) == 1
    assert tokens[0] != old.access_token
    assert emu.count("POST", TOKEN_PATH) == 1  # one Service App refresh
    assert emu.count("POST", APPS_PATH) == 0
    refresh = next(r for r in emu.requests if r.path == TOKEN_PATH)
    assert refresh.form["client_id"] == emu.service_app.client_id  # the SA's own credentials
    assert refresh.form["refresh_token"] == old.refresh_token
    # The integration token was not touched.
    assert await org_rig.storage.get_integration_token() == integration_before


async def test_dead_sa_refresh_token_falls_back_to_integration_fetch(org_rig: AuthRig) -> None:
    emu, org = org_rig.emu, org_rig.emu.org.org_id
    old = await org_rig.storage.get_org_token(org)
    assert emu.revoke_refresh_token(old.refresh_token)
    emu.clock.advance(FIFTEEN_DAYS)  # the integration token expired as well
    emu.clear_requests()
    tokens = await asyncio.gather(*(org_rig.service_app.aget_org_token(org) for _ in range(100)))
    assert len(set(tokens)) == 1
    paths = [(r.method, r.path, (r.form or {}).get("client_id")) for r in emu.requests]
    assert paths == [
        ("POST", TOKEN_PATH, emu.service_app.client_id),  # 1. SA refresh: invalid_grant
        ("POST", TOKEN_PATH, emu.integration.client_id),  # 3. integration refresh
        ("POST", f"{APPS_PATH}{emu.service_app.application_id}/token", None),  # 2. fetch
    ]


async def test_integration_bearer_rejected_is_refreshed_once(org_rig: AuthRig) -> None:
    emu, org = org_rig.emu, org_rig.emu.org.org_id
    integ = await org_rig.storage.get_integration_token()
    emu.revoke_access_token(integ.access_token)  # valid by the clock, rejected by Webex
    emu.clear_requests()
    await org_rig.service_app.afetch_org_token(org)
    assert [r.status for r in emu.requests if r.path.startswith(APPS_PATH)] == [401, 200]
    assert emu.count("POST", TOKEN_PATH) == 1


async def test_whole_chain_dead_requires_reauthorization(org_rig: AuthRig) -> None:
    emu, org = org_rig.emu, org_rig.emu.org.org_id
    emu.revoke_refresh_token((await org_rig.storage.get_org_token(org)).refresh_token)
    emu.revoke_refresh_token((await org_rig.storage.get_integration_token()).refresh_token)
    emu.clock.advance(FIFTEEN_DAYS)
    with pytest.raises(ReauthorizationRequiredError, match="Integration"):
        await org_rig.service_app.aget_org_token(org)


async def test_forced_refresh_and_sync_methods_inside_loop(org_rig: AuthRig) -> None:
    sa, org = org_rig.service_app, org_rig.emu.org.hydra_id
    first = sa.get_org_token(org)
    refreshed = sa.refresh_org_token(org)
    assert refreshed.access_token != first
    assert sa.get_org_token_info(org) == refreshed
    assert sa.has_org(org)
    assert sa.list_orgs() == [org_rig.emu.org.org_id]
    fetched = sa.fetch_org_token(org)
    assert sa.get_org_token(org) == fetched.access_token
    sa.revoke_org(org)
    assert not sa.has_org(org)
    with pytest.raises(OrgNotRegisteredError):
        sa.get_org_token(org)


async def test_sync_threads_on_one_org_refresh_once(org_rig: AuthRig) -> None:
    org_rig.emu.clock.advance(FIFTEEN_DAYS)
    results: list[str] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(org_rig.service_app.get_org_token(org_rig.emu.org.org_id))
        )
        for _ in range(24)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1
    assert len(results) == 24
    assert org_rig.emu.count("POST", TOKEN_PATH) == 1


async def test_revoke_and_many_orgs(org_rig: AuthRig) -> None:
    emu, sa = org_rig.emu, org_rig.service_app
    others = [emu.create_org() for _ in range(3)]
    for org in others:
        emu.authorize_service_app(org.org_id)
    await asyncio.gather(*(sa.afetch_org_token(o.hydra_id) for o in others))
    assert await sa.alist_orgs() == sorted([emu.org.org_id, *(o.org_id for o in others)])
    await sa.arevoke_org(others[0].hydra_id)
    assert not await sa.ahas_org(others[0].org_id)
    assert len(await sa.alist_orgs()) == 3


async def test_sandbox_register_from_refresh_token(rig: AuthRig) -> None:
    emu = rig.emu
    emu.authorize_service_app(emu.org.org_id)
    pair = emu.issue_service_app_token(emu.org.org_id)  # as copied from the developer portal
    token = await rig.service_app.aregister_org_from_refresh_token(
        emu.org.hydra_id, pair["refresh_token"]
    )
    assert await rig.service_app.aget_org_token(emu.org.org_id) == token.access_token
    # No Integration token was needed.
    assert await rig.storage.get_integration_token() is None
    assert emu.revoke_refresh_token(token.refresh_token)
    with pytest.raises(ReauthorizationRequiredError):
        await rig.service_app.aregister_org_from_refresh_token(emu.org.org_id, token.refresh_token)


async def test_uuid_target_format(emu: WebexEmulator, new_rig: Callable[..., AuthRig]) -> None:
    rig = new_rig(InMemoryTokenStorage())
    await rig.seed_integration()
    emu.authorize_service_app(emu.org.org_id)
    sa = ServiceAppTokenManager(
        rig.service_app.credentials, rig.integration, rig.http, target_org_format="uuid"
    )
    await sa.afetch_org_token(emu.org.hydra_id)
    request = next(r for r in emu.requests if r.path.startswith(APPS_PATH))
    assert request.json["targetOrgId"] == emu.org.org_id


def test_application_id_derivation() -> None:
    http = HttpClient(BYOVAConfig(region="eu"))
    integ = IntegrationTokenManager(IntegrationCredentials("i", "secret-i"), http)
    derived = ServiceAppTokenManager(ServiceAppCredentials("Cabc123", "secret"), integ, http)
    assert derived.application_id == application_id("Cabc123", region="eu")
    assert derived.application_id == to_hydra("APPLICATION", "Cabc123", region="eu")
    explicit = ServiceAppTokenManager(
        ServiceAppCredentials("Cabc123", "secret", application_id="APPID"), integ, http
    )
    assert explicit.application_id == "APPID"
    assert derived.storage is integ.storage  # shares the Integration's store by default
    http.close()
