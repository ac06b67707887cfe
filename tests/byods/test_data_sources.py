"""OrgClient data sources and schemas against the emulator, async and sync."""

from __future__ import annotations

import asyncio

import pytest

from webex_byova.client import BYOVA
from webex_byova.data_sources import BYOVA_SCHEMA_ID
from webex_byova.errors import (
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OrgNotRegisteredError,
    ValidationError,
)
from webex_byova.testing import WebexEmulator

from .conftest import DS_URL


async def _org_client(asdk: BYOVA, emu: WebexEmulator):
    await emu.aauthorize_service_app(emu.org.org_id)
    await asdk.service_app.afetch_org_token(emu.org.org_id)
    return await asdk.aget_client_for_org(emu.org.org_id)


async def test_async_crud_roundtrip(asdk: BYOVA, emu: WebexEmulator) -> None:
    client = await _org_client(asdk, emu)
    ds = await client.data_sources.acreate(
        schema_id=BYOVA_SCHEMA_ID,
        url=DS_URL,
        audience="BYOVAGateway",
        subject="callAudioData",
        token_lifetime_minutes=60,
    )
    assert ds.id
    assert ds.status == "active"
    assert ds.jws_token
    assert ds.token_expiry_time
    assert ds.expires_at is not None
    assert ds.org_id == emu.org.org_id
    got = await client.data_sources.aget(ds.id)
    assert got.id == ds.id
    assert got.url == DS_URL
    listed = [d.id async for d in client.data_sources.alist()]
    assert listed == [ds.id]
    updated = await client.data_sources.aupdate(
        ds.id,
        schema_id=BYOVA_SCHEMA_ID,
        url=DS_URL,
        audience="Other",
        subject="callAudioData",
        token_lifetime_minutes=30,
        status="disabled",
        error_message="maintenance",
    )
    assert updated.audience == "Other"
    assert updated.status == "disabled"
    assert updated.nonce != ds.nonce  # fresh nonce on every PUT
    body = [r for r in emu.requests if r.method == "PUT"][-1].json
    assert set(body) >= {"schemaId", "url", "audience", "subject", "nonce", "tokenLifetimeMinutes"}
    await client.data_sources.adelete(ds.id)
    with pytest.raises(NotFoundError):
        await client.data_sources.aget(ds.id)
    schemas = [s async for s in client.schemas.alist()]
    assert BYOVA_SCHEMA_ID in {s.id for s in schemas}
    schema = await client.schemas.aget(BYOVA_SCHEMA_ID)
    assert schema.protocol == "gRPC"


async def test_extend_gets_then_puts_full_object(asdk: BYOVA, emu: WebexEmulator) -> None:
    client = await _org_client(asdk, emu)
    ds = await client.data_sources.acreate(
        schema_id=BYOVA_SCHEMA_ID, url=DS_URL, audience="A", subject="S", token_lifetime_minutes=60
    )
    emu.clock.advance(1800)
    emu.clear_requests()
    extended = await client.data_sources.aextend(ds.id, token_lifetime_minutes=120)
    assert [(r.method, r.path.split("/")[2]) for r in emu.requests] == [
        ("GET", "dataSources"),
        ("PUT", "dataSources"),
    ]
    put = emu.requests[-1].json
    assert put["nonce"] != ds.nonce
    assert put["tokenLifetimeMinutes"] == 120
    assert (put["url"], put["audience"], put["subject"], put["schemaId"]) == (
        DS_URL,
        "A",
        "S",
        BYOVA_SCHEMA_ID,
    )
    assert extended.expires_at > ds.expires_at
    assert extended.jws_token != ds.jws_token
    # default: keep the current lifetime
    again = await client.data_sources.aextend(ds.id)
    assert emu.requests[-1].json["tokenLifetimeMinutes"] == 120
    assert again.nonce != extended.nonce


async def test_register_or_update_never_duplicates(asdk: BYOVA, emu: WebexEmulator) -> None:
    client = await _org_client(asdk, emu)
    first = await client.data_sources.aregister_or_update(
        DS_URL, audience="A", subject="S", token_lifetime_minutes=60
    )
    second = await client.data_sources.aregister_or_update(
        DS_URL, audience="B", subject="S", token_lifetime_minutes=90
    )
    assert second.id == first.id
    assert second.audience == "B"
    assert second.token_lifetime_minutes == 90
    assert second.status == "active"
    # the URL is matched exactly: ":443" is another data source
    other = await client.data_sources.aregister_or_update(
        "https://dap.example.com:443/byova", audience="A", subject="S"
    )
    assert other.id != first.id
    assert len(emu.data_sources) == 2
    await client.data_sources.acreate(
        schema_id=BYOVA_SCHEMA_ID, url=DS_URL, audience="A", subject="S"
    )
    with pytest.raises(ConflictError):
        await client.data_sources.aregister_or_update(DS_URL, audience="A", subject="S")


@pytest.mark.parametrize("lifetime", [0, 1441, -5, True, "60", 60.0])
async def test_lifetime_validated_before_any_request(
    asdk: BYOVA, emu: WebexEmulator, lifetime: object
) -> None:
    client = await _org_client(asdk, emu)
    emu.clear_requests()
    with pytest.raises(ValidationError):
        await client.data_sources.acreate(
            schema_id=BYOVA_SCHEMA_ID,
            url=DS_URL,
            audience="A",
            subject="S",
            token_lifetime_minutes=lifetime,  # type: ignore[arg-type]
        )
    with pytest.raises(ValidationError):
        await client.data_sources.aextend("some-id", token_lifetime_minutes=lifetime)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        await client.data_sources.aregister_or_update(
            DS_URL,
            audience="A",
            subject="S",
            token_lifetime_minutes=lifetime,  # type: ignore[arg-type]
        )
    assert emu.requests == []


async def test_other_input_validation(asdk: BYOVA, emu: WebexEmulator) -> None:
    client = await _org_client(asdk, emu)
    emu.clear_requests()
    with pytest.raises(ValidationError):
        await client.data_sources.acreate(
            schema_id=BYOVA_SCHEMA_ID, url="not a url", audience="A", subject="S"
        )
    with pytest.raises(ValidationError):
        await client.data_sources.aupdate(
            "id",
            schema_id=BYOVA_SCHEMA_ID,
            url=DS_URL,
            audience="A",
            subject="S",
            token_lifetime_minutes=5,
            status="disabled",
        )
    with pytest.raises(ValidationError):
        await client.data_sources.aget("../webhooks")
    assert emu.requests == []


async def test_401_forces_one_refresh_and_one_retry(asdk: BYOVA, emu: WebexEmulator) -> None:
    client = await _org_client(asdk, emu)
    before = emu.count("POST", "/applications")
    emu.expire_tokens("service_app")  # the SDK still believes its token is valid
    schemas = [s async for s in client.schemas.alist()]
    assert schemas
    assert emu.count("GET", "/dataSources/schemas") == 2  # 401, then the retry
    refreshes = emu.count("POST", "/access_token") + emu.count("POST", "/applications") - before
    assert refreshes == 1
    # a second 401 is not retried again
    emu.fail_next("/dataSources", status=401, times=2)
    with pytest.raises(AuthenticationError):
        await client.data_sources.aget("x")


async def test_unregistered_org(asdk: BYOVA, emu: WebexEmulator) -> None:
    org = emu.create_org()
    with pytest.raises(OrgNotRegisteredError):
        await asdk.aget_client_for_org(org.org_id)
    with pytest.raises(ValidationError):
        await asdk.aget_client_for_org("not-an-org")


async def test_pagination_follows_link(asdk: BYOVA, emu: WebexEmulator) -> None:
    client = await _org_client(asdk, emu)
    for i in range(3):
        await client.data_sources.acreate(
            schema_id=BYOVA_SCHEMA_ID, url=f"{DS_URL}/{i}", audience="A", subject="S"
        )
    # the emulator pages when asked for a small ``max``; drive it through the raw spec
    from webex_byova._authed import iterate_async

    spec = asdk._http.build("GET", "dataSources", params={"max": 2})
    items = [i async for i in iterate_async(spec, client._token_flow, asdk._http)]
    assert len(items) == 3
    assert emu.count("GET", "/dataSources") >= 2


def test_sync_methods(sdk: BYOVA, emu: WebexEmulator) -> None:
    emu.authorize_service_app(emu.org.org_id)
    with pytest.raises(OrgNotRegisteredError):
        sdk.get_client_for_org(emu.org.org_id)
    sdk.service_app.fetch_org_token(emu.org.org_id)
    client = sdk.get_client_for_org(emu.org.hydra_id)  # Hydra form accepted
    assert client.org_id == emu.org.org_id
    ds = client.data_sources.create(
        schema_id=BYOVA_SCHEMA_ID, url=DS_URL, audience="A", subject="S", token_lifetime_minutes=60
    )
    assert client.data_sources.get(ds.id).id == ds.id
    assert [d.id for d in client.data_sources.list()] == [ds.id]
    up = client.data_sources.update(
        ds.id,
        schema_id=BYOVA_SCHEMA_ID,
        url=DS_URL,
        audience="B",
        subject="S",
        token_lifetime_minutes=60,
    )
    assert up.audience == "B"
    ext = client.data_sources.extend(ds.id, token_lifetime_minutes=10)
    assert ext.token_lifetime_minutes == 10
    same = client.data_sources.register_or_update(DS_URL, audience="C", subject="S")
    assert same.id == ds.id
    assert BYOVA_SCHEMA_ID in {s.id for s in client.schemas.list()}
    assert client.schemas.get(BYOVA_SCHEMA_ID).id == BYOVA_SCHEMA_ID
    client.data_sources.delete(ds.id)
    assert list(client.data_sources.list()) == []


async def test_sync_methods_inside_running_loop(sdk: BYOVA, emu: WebexEmulator) -> None:
    asyncio.get_running_loop()
    emu.authorize_service_app(emu.org.org_id)
    sdk.service_app.fetch_org_token(emu.org.org_id)
    client = sdk.get_client_for_org(emu.org.org_id)
    ds = client.data_sources.create(
        schema_id=BYOVA_SCHEMA_ID, url=DS_URL, audience="A", subject="S"
    )
    assert client.data_sources.extend(ds.id).nonce != ds.nonce
    assert [d.id for d in client.data_sources.list()] == [ds.id]
