"""The BYOVA facade: wiring, webhook handling (sync receiver too), JWS, env, lifecycle."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from webex_byova.client import BYOVA
from webex_byova.config import BYOVAConfig
from webex_byova.errors import AuthenticationError, OrgNotRegisteredError, ValidationError
from webex_byova.integration import IntegrationTokenManager
from webex_byova.jws import JWSVerificationError, JWSVerifier
from webex_byova.models import ServiceAppAuthorizedResult, ServiceAppDeauthorizedResult
from webex_byova.service_app import ServiceAppTokenManager
from webex_byova.storage import InMemoryTokenStorage
from webex_byova.testing import WebexEmulator
from webex_byova.webhooks import WebhookManager, WebhookSignatureError

from .conftest import DS_URL, WEBHOOK_SECRET, make_sdk, seed_integration


def _sign(body: bytes, secret: str = WEBHOOK_SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha1).hexdigest()


def _event_body(emu: WebexEmulator, event: str, date: str = "2026-01-01T00:00:00.000Z") -> bytes:
    return json.dumps(
        {
            "id": "hook",
            "resource": "serviceApp",
            "event": event,
            "orgId": emu.developer_org.hydra_id,
            "data": {
                "id": emu.service_app.application_id,
                "authorizerOrgId": emu.org.hydra_id,
                "authorizationDate": date,
            },
        }
    ).encode()


def test_wiring_and_properties(emu: WebexEmulator) -> None:
    storage = InMemoryTokenStorage()
    sdk = make_sdk(emu, token_storage=storage)
    assert isinstance(sdk.config, BYOVAConfig)
    assert sdk.config.base_url == emu.base_url
    assert isinstance(sdk.integration, IntegrationTokenManager)
    assert isinstance(sdk.service_app, ServiceAppTokenManager)
    assert isinstance(sdk.webhooks, WebhookManager)
    assert isinstance(sdk.jws, JWSVerifier)
    assert sdk.storage is storage
    assert emu.service_app.client_secret not in repr(sdk)
    sdk.close()


@pytest.fixture
def sync_receiver(sdk: BYOVA) -> Iterator[tuple[str, list[object]]]:
    """A stdlib HTTP receiver thread calling the *sync* handler."""
    outcomes: list[object] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            try:
                result = sdk.handle_service_app_webhook(
                    None, raw_body=raw, headers=dict(self.headers.items())
                )
                outcomes.append(result)
                status = 200
            except (AuthenticationError, ValidationError) as exc:
                outcomes.append(exc)
                status = 401 if isinstance(exc, AuthenticationError) else 202
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook", outcomes
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_sync_handler_through_real_receiver(
    sdk: BYOVA, emu: WebexEmulator, sync_receiver: tuple[str, list[object]]
) -> None:
    url, outcomes = sync_receiver
    sdk.webhooks.ensure_service_app_webhooks(url, secret=WEBHOOK_SECRET)
    (delivery,) = emu.authorize_service_app(emu.org.org_id)
    assert delivery.status_code == 200
    (result,) = outcomes
    assert isinstance(result, ServiceAppAuthorizedResult)
    assert result.org_id == emu.org.org_id
    assert result.token_expires_at is not None
    assert not result.duplicate
    client = sdk.get_client_for_org(emu.org.org_id)
    assert client.data_sources.create(
        schema_id="5397013b-7920-4ffc-807c-e8a3e0a18f43", url=DS_URL, audience="A", subject="S"
    ).id
    (gone,) = emu.deauthorize_service_app(emu.org.org_id)
    assert gone.status_code == 200
    assert isinstance(outcomes[-1], ServiceAppDeauthorizedResult)
    assert outcomes[-1].tokens_removed is True
    with pytest.raises(OrgNotRegisteredError):
        sdk.get_client_for_org(emu.org.org_id)


def test_sync_handler_direct_calls(sdk: BYOVA, emu: WebexEmulator) -> None:
    emu.authorize_service_app(emu.org.org_id)
    body = _event_body(emu, "authorized")
    headers = {"X-Spark-Signature": _sign(body)}
    first = sdk.handle_service_app_webhook(None, raw_body=body, headers=headers)
    again = sdk.handle_service_app_webhook(json.loads(body), raw_body=body, headers=headers)
    assert first.duplicate is False
    assert again.duplicate is True
    assert emu.count("POST", "/applications") == 1
    with pytest.raises(WebhookSignatureError):
        sdk.handle_service_app_webhook(None, raw_body=body, headers={"X-Spark-Signature": "0"})
    with pytest.raises(WebhookSignatureError):
        sdk.handle_service_app_webhook(None, raw_body=body, headers={})
    with pytest.raises(ValidationError):
        sdk.handle_service_app_webhook(json.loads(body))  # secret set: raw bytes required
    de = _event_body(emu, "deauthorized")
    removed = sdk.handle_service_app_webhook(
        None, raw_body=de, headers={"X-Spark-Signature": _sign(de)}
    )
    assert isinstance(removed, ServiceAppDeauthorizedResult)
    assert removed.tokens_removed is True
    assert not sdk.service_app.has_org(emu.org.org_id)


async def test_async_handler_without_secret(emu: WebexEmulator) -> None:
    async with make_sdk(emu) as sdk:
        seed_integration(sdk, emu)
        emu.authorize_service_app(emu.org.org_id)
        payload = json.loads(_event_body(emu, "authorized"))
        result = await sdk.ahandle_service_app_webhook(payload)
        assert isinstance(result, ServiceAppAuthorizedResult)
        assert await sdk.service_app.ahas_org(emu.org.org_id)
        # deauthorized twice (e.g. redelivered after a restart): idempotent
        de = json.loads(_event_body(emu, "deauthorized"))
        first = await sdk.ahandle_service_app_webhook(de)
        second = await sdk.ahandle_service_app_webhook(
            {**de, "data": {**de["data"], "authorizationDate": "x"}}
        )
        assert first.tokens_removed is True
        assert isinstance(second, ServiceAppDeauthorizedResult)
        assert second.tokens_removed is False
        with pytest.raises(ValidationError):
            await sdk.ahandle_service_app_webhook({**payload, "resource": "messages"})
        with pytest.raises(ValidationError, match="another Service App"):
            await sdk.ahandle_service_app_webhook(
                {**payload, "data": {**payload["data"], "id": emu.integration.application_id}}
            )


async def test_handler_in_running_loop_sync(sdk: BYOVA, emu: WebexEmulator) -> None:
    emu.authorize_service_app(emu.org.org_id)
    body = _event_body(emu, "authorized")
    result = sdk.handle_service_app_webhook(
        None, raw_body=body, headers={"x-spark-signature": _sign(body)}
    )
    assert result.org_id == emu.org.org_id
    assert sdk.get_client_for_org(emu.org.org_id).org_id == emu.org.org_id


async def test_verify_jws_token(asdk: BYOVA, emu: WebexEmulator) -> None:
    token = emu.mint_data_source_token(url=DS_URL)
    claims = await asdk.averify_jws_token(token)
    assert claims["com.cisco.datasource.url"] == DS_URL
    assert asdk.verify_jws_token("Bearer " + token)["sub"] == "callAudioData"
    forged = emu.mint_data_source_token(url=DS_URL, issuer="https://evil.example.com/idb")
    with pytest.raises(ValueError) as info:
        await asdk.averify_jws_token(forged)
    assert isinstance(info.value, JWSVerificationError)
    with pytest.raises(ValueError):
        asdk.verify_jws_token("not.a.token")


def test_from_env(emu: WebexEmulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBEX_INTEGRATION_CLIENT_ID", "WEBEX_SA_CLIENT_SECRET", "WEBEX_WEBHOOK_SECRET"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WEBEX_INTEGRATION_CLIENT_SECRET", "x")
    monkeypatch.setenv("WEBEX_SA_CLIENT_ID", "y")
    with pytest.raises(ValueError) as info:
        BYOVA.from_env()
    assert "WEBEX_INTEGRATION_CLIENT_ID" in str(info.value)
    assert "WEBEX_SA_CLIENT_SECRET" in str(info.value)
    monkeypatch.setenv("WEBEX_INTEGRATION_CLIENT_ID", emu.integration.client_id)
    monkeypatch.setenv("WEBEX_INTEGRATION_CLIENT_SECRET", emu.integration.client_secret)
    monkeypatch.setenv("WEBEX_SA_CLIENT_ID", emu.service_app.client_id)
    monkeypatch.setenv("WEBEX_SA_CLIENT_SECRET", emu.service_app.client_secret)
    monkeypatch.setenv("WEBEX_WEBHOOK_SECRET", WEBHOOK_SECRET)
    with BYOVA.from_env(config=emu.config()) as sdk:
        assert sdk.config.base_url == emu.base_url
        assert "webhook_secret=set" in repr(sdk)
        body = _event_body(emu, "authorized")
        with pytest.raises(WebhookSignatureError):
            sdk.handle_service_app_webhook(None, raw_body=body, headers={})


async def test_close_releases_clients(emu: WebexEmulator) -> None:
    sdk = make_sdk(emu)
    seed_integration(sdk, emu)
    [h async for h in sdk.webhooks.alist()]
    await sdk.aclose()
    with pytest.raises(RuntimeError):
        [h async for h in sdk.webhooks.alist()]
