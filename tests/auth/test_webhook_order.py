"""serviceApp events are applied in order per org, and redeliveries are recognised after a
restart: the event log lives in the token store (every backend, plain and encrypted).

The deliveries are the emulator's real signed webhook POSTs, captured by a loopback receiver
and then handed to the SDK in the order a late or replayed delivery would arrive.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from webex_byova import BYOVA, TokenStorageError
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.models import ServiceAppAuthorizedResult, ServiceAppDeauthorizedResult
from webex_byova.storage import KeyValueTokenStorage
from webex_byova.testing import EmulatorClock, WebexEmulator
from webex_byova.tokens import OAuthToken
from webex_byova.webhooks import OrgEventLog, event_position, parse_service_app_event

from .conftest import StoreFactory

SECRET = "order-test-webhook-secret"


class Capture:
    """A loopback webhook receiver that only records what it is sent (answers 200)."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[bytes, dict[str, str]]] = []
        capture = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server naming
                length = int(self.headers.get("Content-Length", "0"))
                capture.deliveries.append((self.rfile.read(length), dict(self.headers.items())))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/hook"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=10)


@pytest.fixture
def emu() -> Iterator[WebexEmulator]:
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emulator:
        yield emulator


@pytest.fixture
def capture() -> Iterator[Capture]:
    receiver = Capture()
    yield receiver
    receiver.close()


def _sdk(emu: WebexEmulator, store: KeyValueTokenStorage) -> BYOVA:
    sdk = BYOVA(
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
        token_storage=store,
        webhook_secret=SECRET,
    )
    return sdk


async def _seed(sdk: BYOVA, emu: WebexEmulator) -> None:
    data = emu.issue_integration_token()
    now = time.time()
    await sdk.integration.aset_token(
        OAuthToken(
            access_token=data["access_token"],
            expires_at=now + data["expires_in"],
            refresh_token=data["refresh_token"],
            refresh_token_expires_at=now + data["refresh_token_expires_in"],
        )
    )


async def _history(emu: WebexEmulator, sdk: BYOVA, capture: Capture) -> list[Any]:
    """authorize (A1), deauthorize, authorize again (A2): three real signed deliveries."""
    await sdk.webhooks.aensure_service_app_webhooks(capture.url, secret=SECRET)
    org = emu.org.org_id
    await emu.aauthorize_service_app(org)
    emu.clock.advance(3600)
    await emu.adeauthorize_service_app(org)
    emu.clock.advance(3600)
    await emu.aauthorize_service_app(org)
    assert [json.loads(body)["event"] for body, _ in capture.deliveries] == [
        "authorized",
        "deauthorized",
        "authorized",
    ]
    return capture.deliveries


async def _handle(sdk: BYOVA, delivery: tuple[bytes, dict[str, str]]) -> Any:
    body, headers = delivery
    return await sdk.ahandle_service_app_webhook(None, raw_body=body, headers=headers)


async def test_a_late_deauthorization_does_not_delete_a_newer_authorization(
    emu: WebexEmulator, capture: Capture, store_factory: StoreFactory
) -> None:
    org = emu.org.org_id
    sdk = _sdk(emu, store_factory.new())
    await _seed(sdk, emu)
    first, deauth, second = await _history(emu, sdk, capture)

    assert not (await _handle(sdk, first)).stale
    fresh = await _handle(sdk, second)  # the re-authorization overtakes the deauthorization
    assert isinstance(fresh, ServiceAppAuthorizedResult)
    assert fresh.token_expires_at is not None
    late = await _handle(sdk, deauth)
    assert isinstance(late, ServiceAppDeauthorizedResult)
    assert late.stale is True
    assert late.duplicate is False
    assert late.tokens_removed is False
    assert await sdk.service_app.ahas_org(org)
    fetches = emu.count("POST", "/applications")
    await sdk.aclose()

    # restart: a new process on the same store; replays are recognised
    restarted = _sdk(emu, store_factory.new())
    replay_deauth = await _handle(restarted, deauth)
    assert replay_deauth.stale is True
    replay_auth = await _handle(restarted, second)
    assert replay_auth.duplicate is True
    assert emu.count("POST", "/applications") == fetches  # nothing fetched again
    assert await restarted.service_app.ahas_org(org)

    # the real, current deauthorization still applies
    capture.deliveries.clear()
    await emu.adeauthorize_service_app(org)
    (current,) = capture.deliveries
    gone = await _handle(restarted, current)
    assert isinstance(gone, ServiceAppDeauthorizedResult)
    assert gone.tokens_removed is True
    assert not gone.stale
    assert not await restarted.service_app.ahas_org(org)
    # ... and the older authorization replayed after it does not bring the tokens back
    assert (await _handle(restarted, second)).duplicate is True
    assert (await _handle(restarted, first)).duplicate is True
    assert not await restarted.service_app.ahas_org(org)
    await restarted.aclose()


def test_sync_path_orders_events_too(emu: WebexEmulator, capture: Capture, tmp_path: Any) -> None:
    from webex_byova.storage import SQLiteTokenStorage

    path = tmp_path / "tokens.db"
    org = emu.org.org_id
    with _sdk(emu, SQLiteTokenStorage(path)) as sdk:
        sdk.integration.portal.call(lambda: _seed(sdk, emu))
        sdk.webhooks.ensure_service_app_webhooks(capture.url, secret=SECRET)
        emu.authorize_service_app(org)
        emu.clock.advance(3600)
        emu.deauthorize_service_app(org)
        emu.clock.advance(3600)
        emu.authorize_service_app(org)
        first, deauth, second = capture.deliveries
        for body, headers in (first, second):
            sdk.handle_service_app_webhook(None, raw_body=body, headers=headers)
        late = sdk.handle_service_app_webhook(None, raw_body=deauth[0], headers=deauth[1])
        assert late.stale is True
        assert sdk.service_app.has_org(org)
    with _sdk(emu, SQLiteTokenStorage(path)) as restarted:
        again = restarted.handle_service_app_webhook(None, raw_body=deauth[0], headers=deauth[1])
        assert again.stale is True
        assert restarted.service_app.has_org(org)


async def test_a_junk_event_log_is_a_typed_error(
    emu: WebexEmulator, capture: Capture, store_factory: StoreFactory
) -> None:
    store = store_factory.new()
    sdk = _sdk(emu, store)
    await _seed(sdk, emu)
    first, _, _ = await _history(emu, sdk, capture)
    await store.set_webhook_state(emu.org.org_id, b"\xff junk")
    with pytest.raises(TokenStorageError, match="webhook event log"):
        await _handle(sdk, first)
    await sdk.aclose()


# --------------------------------------------------------------------------- sans-IO order


def _event(event: str, **data: str) -> Any:
    return parse_service_app_event(
        {
            "resource": "serviceApp",
            "event": event,
            "created": "2020-01-01T00:00:00Z",  # the webhook's creation time: never used
            "data": {"authorizerOrgId": "8f3a1c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b", **data},
        }
    )


T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _at(minutes: int) -> str:
    return (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")


@pytest.mark.parametrize(
    ("applied", "incoming", "expected"),
    [
        ([("authorized", 0)], ("deauthorized", 0), "apply"),  # ends that authorization
        ([("authorized", 0), ("authorized", 10)], ("deauthorized", 0), "stale"),
        ([("authorized", 0), ("deauthorized", 0)], ("authorized", 0), "duplicate"),
        ([("authorized", 0), ("deauthorized", 0)], ("authorized", 10), "apply"),
        ([("authorized", 10)], ("authorized", 0), "stale"),
        ([("authorized", 0)], ("authorized", 0), "duplicate"),
        ([], ("deauthorized", 0), "apply"),
    ],
)
def test_event_log_dispositions(
    applied: list[tuple[str, int]], incoming: tuple[str, int], expected: str
) -> None:
    log = OrgEventLog()
    for name, minutes in applied:
        log = OrgEventLog.from_json(
            log.after(_event(name, authorizationDate=_at(minutes))).to_json()
        )
    assert log.disposition(_event(incoming[0], authorizationDate=_at(incoming[1]))) == expected


def test_event_position_sources() -> None:
    assert event_position(_event("authorized")) is None  # only the envelope created
    deauth = _event("deauthorized", authorizationDate=_at(0), deauthorizationDate=_at(5))
    assert event_position(deauth) == (T0 + timedelta(minutes=5), 1)
    assert event_position(_event("authorized", authorizationDate="not a date")) is None
    assert event_position(_event("authorized", created=_at(3))) == (T0 + timedelta(minutes=3), 0)
    naive = _event("authorized", authorizationDate="2026-01-01T00:00:00")
    assert event_position(naive) == (T0, 0)


@pytest.mark.parametrize(
    "junk", [b"", b"{}", b"[]", b'{"v": 1}', b'{"v": 1, "last_rank": 0, "seen": [1]}', b"\xff"]
)
def test_event_log_from_junk_raises_value_error(junk: bytes) -> None:
    with pytest.raises(ValueError):
        OrgEventLog.from_json(junk)


def test_seen_keys_are_bounded() -> None:
    log = OrgEventLog()
    for minutes in range(200):
        log = log.after(_event("authorized", authorizationDate=_at(minutes)))
    assert len(log.seen) == 64
    assert len(log.to_json()) < 8192


class DictStore:
    """A user's own TokenStorage (not a bundled backend): no webhook event log support."""

    def __init__(self) -> None:
        self.tokens: dict[str, OAuthToken] = {}

    async def get_integration_token(self) -> OAuthToken | None:
        return self.tokens.get("integration")

    async def set_integration_token(self, token: OAuthToken) -> None:
        self.tokens["integration"] = token

    async def delete_integration_token(self) -> None:
        self.tokens.pop("integration", None)

    async def get_org_token(self, org_id: str) -> OAuthToken | None:
        return self.tokens.get(org_id)

    async def set_org_token(self, org_id: str, token: OAuthToken) -> None:
        self.tokens[org_id] = token

    async def delete_org_token(self, org_id: str) -> None:
        self.tokens.pop(org_id, None)

    async def list_orgs(self) -> list[str]:
        return sorted(k for k in self.tokens if k != "integration")

    async def clear(self) -> None:
        self.tokens.clear()


async def test_a_custom_store_keeps_the_log_per_process(
    emu: WebexEmulator, capture: Capture
) -> None:
    sdk = _sdk(emu, DictStore())  # type: ignore[arg-type]
    await _seed(sdk, emu)
    first, deauth, second = await _history(emu, sdk, capture)
    for delivery in (first, second):
        assert not (await _handle(sdk, delivery)).stale
    assert (await _handle(sdk, deauth)).stale is True
    assert await sdk.service_app.ahas_org(emu.org.org_id)
    await sdk.aclose()


@pytest.mark.parametrize("store_factory", ["sqlite", "redis"], indirect=True)
async def test_replicas_racing_on_one_org_end_authorized(
    emu: WebexEmulator, capture: Capture, store_factory: StoreFactory
) -> None:
    """Two replicas sharing a store get the late deauthorization and the re-authorization at
    the same moment: whichever takes the org lock first, the org ends up authorized."""
    import asyncio

    one, two = _sdk(emu, store_factory.new()), _sdk(emu, store_factory.new())
    await _seed(one, emu)
    first, deauth, second = await _history(emu, one, capture)
    await _handle(one, first)
    results = await asyncio.gather(_handle(one, deauth), _handle(two, second))
    assert isinstance(results[1], ServiceAppAuthorizedResult)
    assert not results[1].stale
    assert await one.service_app.ahas_org(emu.org.org_id)
    assert await two.service_app.ahas_org(emu.org.org_id)
    await one.aclose()
    await two.aclose()
