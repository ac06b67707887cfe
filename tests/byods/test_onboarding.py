"""End-to-end onboarding against the emulator with a real uvicorn webhook receiver.

Integration authorized in the (emulated) browser flow -> serviceApp webhooks registered with a
secret -> the emulator authorizes the app for an org and POSTs the signed webhook to the
example receiver -> org tokens stored -> data source created -> the keeper renews it before
it expires (emulator clock) -> a deauthorized webhook removes the tokens.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json

import httpx
import pytest

from webex_byova.client import BYOVA
from webex_byova.data_sources import BYOVA_SCHEMA_ID
from webex_byova.errors import OrgNotRegisteredError
from webex_byova.keeper import DataSourceKeeper, DataSourceState
from webex_byova.testing import WebexEmulator

from .conftest import DS_URL, WEBHOOK_SECRET, make_sdk
from .receiver import load_example, serve


async def _visit(url: str) -> None:
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as client:
        await client.get(url)


async def test_onboarding_end_to_end(emu: WebexEmulator) -> None:
    example = load_example()
    async with make_sdk(emu, webhook_secret=WEBHOOK_SECRET) as sdk:
        # 1. authorize the integration (the emulator consents and redirects to our listener)
        tasks: list[asyncio.Task[None]] = []
        await sdk.integration.aauthorize(
            open_browser=False,
            timeout=20,
            on_url=lambda u: tasks.append(asyncio.create_task(_visit(u))),
        )
        await asyncio.gather(*tasks)
        assert await sdk.integration.ahas_token()

        async with serve(example.create_app(sdk)) as base:
            target = base + example.WEBHOOK_PATH
            # 2. webhooks with a secret, idempotently
            hooks = await sdk.webhooks.aensure_service_app_webhooks(target, secret=WEBHOOK_SECRET)
            assert [h.event for h in hooks] == ["authorized", "deauthorized"]
            writes = emu.count("POST", "/webhooks") + emu.count("PUT", "/webhooks")
            again = await sdk.webhooks.aensure_service_app_webhooks(target, secret=WEBHOOK_SECRET)
            assert [h.id for h in again] == [h.id for h in hooks]
            assert emu.count("POST", "/webhooks") + emu.count("PUT", "/webhooks") == writes

            # 3. the admin authorizes the app; the signed webhook reaches the receiver
            org = emu.org.org_id
            (delivery,) = await emu.aauthorize_service_app(org)
            assert delivery.status_code == 200, delivery
            assert delivery.signature is not None
            assert json.loads(delivery.body)["event"] == "authorized"
            assert await sdk.service_app.ahas_org(org)
            fetches = emu.count("POST", "/applications")
            assert fetches == 1

            # redelivery: answered, not repeated
            async with httpx.AsyncClient() as http:
                resp = await http.post(
                    target,
                    content=delivery.body,
                    headers={"X-Spark-Signature": delivery.signature},
                )
            assert resp.status_code == 200
            assert resp.json()["duplicate"] is True
            assert resp.json()["org_id"] == org
            assert emu.count("POST", "/applications") == fetches

            # 4. the org client creates a data source
            client = await sdk.aget_client_for_org(org)
            ds = await client.data_sources.acreate(
                schema_id=BYOVA_SCHEMA_ID,
                url=DS_URL,
                audience="BYOVAGateway",
                subject="callAudioData",
                token_lifetime_minutes=60,
            )
            first_expiry = ds.expires_at
            assert first_expiry is not None

            # 5. the keeper renews it before expiry, driven by the emulator clock
            renewals: list[tuple[float, DataSourceState]] = []
            done = asyncio.Event()
            expiries = {ds.id: first_expiry.timestamp()}

            def on_change(state: DataSourceState) -> None:
                if state.status == "scheduled" and state.renewals > len(renewals):
                    renewals.append((expiries[state.data_source_id], state))
                    expiries[state.data_source_id] = state.expires_at or 0.0
                    if len(renewals) >= 3:
                        done.set()

            async def emulated_sleep(seconds: float) -> None:
                emu.clock.advance(seconds)
                await asyncio.sleep(0)

            keeper = DataSourceKeeper(
                lead_time=600, clock=emu.clock.now, sleep=emulated_sleep, on_change=on_change
            )
            keeper.register(client, ds)
            async with keeper:
                await asyncio.wait_for(done.wait(), 30)
            assert not keeper.running
            for previous_expiry, state in renewals:
                assert state.last_renewed_at is not None
                assert state.last_renewed_at < previous_expiry  # renewed before expiry
                assert previous_expiry - state.last_renewed_at == pytest.approx(600, abs=2)
                assert state.expires_at is not None
                assert state.expires_at > previous_expiry
            (record,) = emu.data_sources
            assert record.token_expiry == pytest.approx(renewals[-1][1].expires_at)
            assert record.token_expiry > first_expiry.timestamp() + 3 * 3000 - 5

            # 6. deauthorization removes the tokens
            (gone,) = await emu.adeauthorize_service_app(org)
            assert gone.status_code == 200
            assert json.loads(gone.body)["event"] == "deauthorized"
            assert not await sdk.service_app.ahas_org(org)
            with pytest.raises(OrgNotRegisteredError):
                await sdk.aget_client_for_org(org)


def _sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


async def test_receiver_negative_cases(asdk: BYOVA, emu: WebexEmulator) -> None:
    example = load_example()
    async with serve(example.create_app(asdk)) as base:
        target = base + example.WEBHOOK_PATH
        await asdk.webhooks.aensure_service_app_webhooks(target, secret=WEBHOOK_SECRET)
        # capture a genuine signed delivery body, then replay variations of it
        (delivery,) = await emu.aauthorize_service_app(emu.org.org_id)
        assert delivery.status_code == 200
        payload = json.loads(delivery.body)
        async with httpx.AsyncClient() as http:
            forged = await http.post(
                target, content=delivery.body, headers={"X-Spark-Signature": "0" * 40}
            )
            missing = await http.post(target, content=delivery.body)
            tampered_body = delivery.body.replace(b"authorized", b"deauthorized", 1)
            tampered = await http.post(
                target, content=tampered_body, headers={"X-Spark-Signature": delivery.signature}
            )
            unknown = json.dumps({**payload, "event": "created"}).encode()
            unknown_resp = await http.post(
                target, content=unknown, headers={"X-Spark-Signature": _sign(unknown)}
            )
            foreign = json.dumps(
                {**payload, "data": {**payload["data"], "id": emu.integration.application_id}}
            ).encode()
            foreign_resp = await http.post(
                target, content=foreign, headers={"X-Spark-Signature": _sign(foreign)}
            )
        assert (forged.status_code, missing.status_code, tampered.status_code) == (401, 401, 401)
        assert unknown_resp.status_code == 202
        assert "unsupported serviceApp event" in unknown_resp.json()["ignored"]
        assert foreign_resp.status_code == 202
        assert "another Service App" in foreign_resp.json()["ignored"]
        assert emu.count("POST", "/applications") == 1  # only the genuine delivery fetched
