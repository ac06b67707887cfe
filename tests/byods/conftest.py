"""Fixtures for the BYODS area: a running emulator and a BYOVA facade wired to it."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator

import pytest

from webex_byova.client import BYOVA
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.data_sources import BYOVA_SCHEMA_ID, DataSource, OrgClient
from webex_byova.testing import WebexEmulator
from webex_byova.tokens import OAuthToken

WEBHOOK_SECRET = "byods-test-webhook-secret"
DS_URL = "https://dap.example.com/byova"


@pytest.fixture
def emu() -> Iterator[WebexEmulator]:
    with WebexEmulator() as emulator:
        yield emulator


def make_sdk(emu: WebexEmulator, **kwargs: object) -> BYOVA:
    """A facade pointing at ``emu`` (integration redirect on a free loopback port)."""
    return BYOVA(
        IntegrationCredentials(
            client_id=emu.integration.client_id,
            client_secret=emu.integration.client_secret,
            redirect_uri="http://127.0.0.1:0/callback",
        ),
        ServiceAppCredentials(
            client_id=emu.service_app.client_id,
            client_secret=emu.service_app.client_secret,
            application_id=emu.service_app.application_id,
        ),
        config=emu.config(),
        **kwargs,  # type: ignore[arg-type]
    )


def seed_integration(sdk: BYOVA, emu: WebexEmulator) -> None:
    """Store an integration token minted by the emulator (skips the browser flow)."""
    data = emu.issue_integration_token()
    now = time.time()
    sdk.integration.set_token(
        OAuthToken(
            access_token=data["access_token"],
            expires_at=now + data["expires_in"],
            refresh_token=data["refresh_token"],
            refresh_token_expires_at=now + data["refresh_token_expires_in"],
        )
    )


@pytest.fixture
def sdk(emu: WebexEmulator) -> Iterator[BYOVA]:
    """Sync-test facade with a stored integration token and a webhook secret."""
    client = make_sdk(emu, webhook_secret=WEBHOOK_SECRET)
    seed_integration(client, emu)
    with client:
        yield client


@pytest.fixture
async def asdk(emu: WebexEmulator) -> AsyncIterator[BYOVA]:
    """Async-test facade with a stored integration token and a webhook secret."""
    client = make_sdk(emu, webhook_secret=WEBHOOK_SECRET)
    await client.integration.aset_token(_token(emu))
    async with client:
        yield client


def _token(emu: WebexEmulator) -> OAuthToken:
    data = emu.issue_integration_token()
    now = time.time()
    return OAuthToken(
        access_token=data["access_token"],
        expires_at=now + data["expires_in"],
        refresh_token=data["refresh_token"],
        refresh_token_expires_at=now + data["refresh_token_expires_in"],
    )


async def org_data_source(
    asdk: BYOVA, emu: WebexEmulator, *, token_lifetime_minutes: int = 5
) -> tuple[OrgClient, DataSource]:
    """The emulated org's client (its serviceApp authorized, its token fetched) and a BYOVA
    data source registered in it."""
    await emu.aauthorize_service_app(emu.org.org_id)
    await asdk.service_app.afetch_org_token(emu.org.org_id)
    client = await asdk.aget_client_for_org(emu.org.org_id)
    ds = await client.data_sources.acreate(
        schema_id=BYOVA_SCHEMA_ID,
        url=DS_URL,
        audience="A",
        subject="S",
        token_lifetime_minutes=token_lifetime_minutes,
    )
    return client, ds
