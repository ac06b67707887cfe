"""No token, secret or refresh token reaches a log record, a repr, a str() or an error message.

Every administration flow runs against the emulator with all loggers at DEBUG; afterwards
every secret value that crossed the wire (harvested from the emulator's request log and the
token store) is searched for in the captured log text, and in the reprs/messages produced.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import urllib.request

import pytest

from webex_byova.data_sources import BYOVA_SCHEMA_ID
from webex_byova.errors import ReauthorizationRequiredError, WebexBYOVAError
from webex_byova.keeper import DataSourceKeeper
from webex_byova.testing import WebexEmulator

from .conftest import DS_URL, WEBHOOK_SECRET, make_sdk

SECRET_FORM_FIELDS = ("client_secret", "refresh_token", "code", "code_verifier")


def _authorized_body(emu: WebexEmulator) -> bytes:
    return json.dumps(
        {
            "id": "hook",
            "resource": "serviceApp",
            "event": "authorized",
            "orgId": emu.developer_org.hydra_id,
            "data": {
                "id": emu.service_app.application_id,
                "authorizerOrgId": emu.org.hydra_id,
                "authorizationDate": "2026-01-01T00:00:00.000Z",
            },
        }
    ).encode()


def _harvest(emu: WebexEmulator) -> set[str]:
    found = {
        emu.integration.client_secret,
        emu.service_app.client_secret,
        WEBHOOK_SECRET,
    }
    for record in emu.requests:
        for name, value in record.headers.items():
            if name.lower() == "authorization" and value.lower().startswith("bearer "):
                found.add(value[7:])
        for name in SECRET_FORM_FIELDS:
            field = (record.form or {}).get(name)
            if field:
                found.add(field)
        if isinstance(record.json, dict):
            for name in ("clientSecret", "secret"):
                if record.json.get(name):
                    found.add(record.json[name])
    found.update(ds.jws_token for ds in emu.data_sources)
    return {s for s in found if s and len(s) >= 8}


async def test_no_secret_in_logs_reprs_or_errors(
    emu: WebexEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, httpx/httpcore included
    texts: list[str] = []
    sdk = make_sdk(emu, webhook_secret=WEBHOOK_SECRET)
    async with sdk:
        # Browser-less authorization (code + PKCE verifier on the wire).
        async def browse(url: str) -> None:  # urllib: the test's browser logs nothing
            def follow() -> None:
                with urllib.request.urlopen(url, timeout=10) as page:
                    page.read()

            await asyncio.to_thread(follow)

        tasks: list[asyncio.Task[None]] = []
        token = await sdk.integration.aauthorize(
            open_browser=False,
            on_url=lambda url: tasks.append(asyncio.get_running_loop().create_task(browse(url))),
        )
        await tasks[0]
        texts += [repr(token), str(token), repr(sdk), repr(sdk.integration)]
        texts += [repr(sdk.integration.credentials), repr(sdk.service_app.credentials)]
        texts.append(repr(await sdk.integration.arefresh()))
        hooks = await sdk.webhooks.aensure_service_app_webhooks(
            "https://receiver.example.com/hook", secret=WEBHOOK_SECRET
        )
        texts += [repr(h) for h in hooks] + [str(h) for h in hooks]
        await emu.aauthorize_service_app(emu.org.org_id)
        body = _authorized_body(emu)
        signature = hmac.new(WEBHOOK_SECRET.encode(), body, hashlib.sha1).hexdigest()
        result = await sdk.ahandle_service_app_webhook(
            None, raw_body=body, headers={"X-Spark-Signature": signature}
        )
        texts.append(repr(result))
        texts.append(repr(await sdk.service_app.arefresh_org_token(emu.org.org_id)))
        client = await sdk.aget_client_for_org(emu.org.org_id)
        ds = await client.data_sources.acreate(
            schema_id=BYOVA_SCHEMA_ID, url=DS_URL, audience="A", subject="S"
        )
        emu.expire_tokens()  # the next calls hit 401 and refresh through the chain
        ds = await client.data_sources.aextend(ds.id, token_lifetime_minutes=60)
        texts += [repr(ds), str(ds), repr([d async for d in client.data_sources.alist()])]
        assert ds.jws_token is not None
        texts.append(repr(await sdk.averify_jws_token(ds.jws_token)))
        keeper = DataSourceKeeper(lead_time=10**9)  # due at once
        keeper.register(client, ds)
        await keeper.arun_once()
        texts.append(repr(keeper.states()))
        # Failures: a dead refresh token, a bad org token, a broken JWS.
        stored = await sdk.storage.get_integration_token()
        assert stored is not None
        assert stored.refresh_token is not None
        emu.revoke_refresh_token(stored.refresh_token)
        emu.expire_tokens()
        errors: list[BaseException] = []
        with pytest.raises(ReauthorizationRequiredError) as dead:
            await sdk.integration.arefresh()
        errors.append(dead.value)
        with pytest.raises(ValueError) as bad_jws:
            await sdk.averify_jws_token(ds.jws_token[:-6] + "AAAAAA")
        errors.append(bad_jws.value)
        with pytest.raises(WebexBYOVAError) as bad_hook:
            await sdk.ahandle_service_app_webhook(
                None, raw_body=body, headers={"X-Spark-Signature": "0" * 40}
            )
        errors.append(bad_hook.value)
        texts += [f"{e!s} {e!r} {getattr(e, 'body', '')!r}" for e in errors]
    secrets = _harvest(emu)
    assert len(secrets) >= 10  # client secrets, webhook secret, codes, tokens, JWS
    logged = caplog.text + "\n".join(str(r.args) for r in caplog.records)
    assert "DEBUG" in caplog.text  # the capture really ran at DEBUG
    leaks = {
        s[:6] + "...: " + next((ln for ln in logged.splitlines() if s in ln), "")[:160]
        for s in secrets
        if s in logged
    }
    assert not leaks, f"secrets in log records: {leaks}"
    shown = "\n".join(texts)
    leaks = {s[:6] + "..." for s in secrets if s in shown}
    assert not leaks, f"secrets in repr/str/error text: {leaks}"
