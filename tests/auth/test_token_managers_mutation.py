"""Exact behaviour of the Integration and Service App token managers, pinned by the mutation
run (issue 17): which loop the sync methods use, what the hot cache saves, the ``serviceApp``
event outcomes and their log, argument pass-through of the public wrappers, error texts.

Against the in-process Webex emulator (fast: no sleeps, no subprocesses); a minimal
user-written :class:`~webex_byova.storage.TokenStorage` records where and how often the
managers touch the store.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import webbrowser
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from webex_byova._flow import Portal, run_async
from webex_byova._ids import to_hydra
from webex_byova._oauth import parse_token_response
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.errors import (
    AuthenticationError,
    OrgNotRegisteredError,
    ReauthorizationRequiredError,
    TokenStorageError,
    WebexBYOVAError,
)
from webex_byova.integration import IntegrationTokenManager
from webex_byova.models import (
    ServiceAppAuthorizedResult,
    ServiceAppDeauthorizedResult,
    ServiceAppEvent,
)
from webex_byova.service_app import ServiceAppTokenManager
from webex_byova.storage import InMemoryTokenStorage
from webex_byova.testing import WebexEmulator
from webex_byova.tokens import OAuthToken
from webex_byova.webhooks import OrgEventLog

from .conftest import AuthRig

TOKEN_PATH = "/v1/access_token"
APPS_PATH = "/v1/applications/"
FIFTEEN_DAYS = 15 * 86400


class PlainStore:
    """A user-written token store (the protocol only): records each call and its loop."""

    def __init__(self) -> None:
        self.tokens: dict[str, OAuthToken] = {}
        self.calls: list[tuple[str, asyncio.AbstractEventLoop]] = []

    def _note(self, name: str) -> None:
        self.calls.append((name, asyncio.get_running_loop()))

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    async def get_integration_token(self) -> OAuthToken | None:
        self._note("get_integration_token")
        return self.tokens.get("integration")

    async def set_integration_token(self, token: OAuthToken) -> None:
        self._note("set_integration_token")
        self.tokens["integration"] = token

    async def delete_integration_token(self) -> None:
        self._note("delete_integration_token")
        self.tokens.pop("integration", None)

    async def get_org_token(self, org_id: str) -> OAuthToken | None:
        self._note("get_org_token")
        return self.tokens.get(org_id)

    async def set_org_token(self, org_id: str, token: OAuthToken) -> None:
        self._note("set_org_token")
        self.tokens[org_id] = token

    async def delete_org_token(self, org_id: str) -> None:
        self._note("delete_org_token")
        self.tokens.pop(org_id, None)

    async def list_orgs(self) -> list[str]:
        self._note("list_orgs")
        return sorted(k for k in self.tokens if k != "integration")

    async def clear(self) -> None:
        self.tokens.clear()


class StateStore(PlainStore):
    """A user-written store that also keeps the webhook event logs."""

    def __init__(self) -> None:
        super().__init__()
        self.states: dict[str, bytes] = {}

    async def get_webhook_state(self, org_id: str) -> bytes | None:
        return self.states.get(org_id)

    async def set_webhook_state(self, org_id: str, state: bytes) -> None:
        self.states[org_id] = state


class LockingStore(PlainStore):
    """A user-written store with a cross-process lock: records each lock taken."""

    def __init__(self) -> None:
        super().__init__()
        self.locks: list[tuple[str, float]] = []

    @asynccontextmanager
    async def lock(self, key: str, ttl: float = 30.0) -> AsyncIterator[None]:
        self.locks.append((key, ttl))
        yield None


class StaleReads(PlainStore):
    """Shares ``tokens`` with another store; its first two reads (the manager's unlocked one
    and the one under the store lock) return ``stale``: what it saw before a peer without a
    lock rotated the token. Later reads see the shared data."""

    def __init__(self, tokens: dict[str, OAuthToken], stale: OAuthToken) -> None:
        super().__init__()
        self.tokens = tokens
        self._stale = [stale, stale]

    async def get_integration_token(self) -> OAuthToken | None:
        if not self._stale:
            return await super().get_integration_token()
        self._note("get_integration_token")
        return self._stale.pop()


def _managers(
    emu: WebexEmulator, http: object, storage: object, portal: Portal | None = None
) -> tuple[IntegrationTokenManager, ServiceAppTokenManager]:
    creds = IntegrationCredentials(
        emu.integration.client_id,
        emu.integration.client_secret,
        redirect_uri="http://127.0.0.1:0/callback",
    )
    integration = IntegrationTokenManager(
        creds,
        http,  # type: ignore[arg-type]
        storage,  # type: ignore[arg-type]
        clock=emu.clock.now,
        portal=portal,
    )
    sa_creds = ServiceAppCredentials(
        emu.service_app.client_id,
        emu.service_app.client_secret,
        application_id=emu.service_app.application_id,
    )
    service_app = ServiceAppTokenManager(sa_creds, integration, http)  # type: ignore[arg-type]
    return integration, service_app


def _seed(emu: WebexEmulator) -> OAuthToken:
    return parse_token_response(emu.issue_integration_token(), now=emu.clock.now())


# ----------------------------------------------------------------------------- sync methods


async def test_sync_methods_run_the_store_on_the_managers_portal(rig: AuthRig) -> None:
    emu = rig.emu
    store = PlainStore()
    store.tokens["integration"] = _seed(emu)
    portal = Portal("test-managers-portal")
    try:
        integration, service_app = _managers(emu, rig.http, store, portal)
        assert integration.portal is portal
        assert service_app.storage is store
        assert service_app.integration is integration
        org = emu.org.org_id
        emu.authorize_service_app(org)
        emu.clear_requests()
        first = integration.get_token()
        assert integration.get_access_token() == first.access_token
        assert emu.requests == []  # valid: served as stored
        refreshed = integration.refresh()
        assert refreshed.access_token != first.access_token
        assert integration.get_token(force_refresh=True).access_token != refreshed.access_token
        assert emu.count("POST", TOKEN_PATH) == 2
        fetched = service_app.fetch_org_token(org)
        assert service_app.get_org_token_info(org) == fetched
        again = service_app.refresh_org_token(org)
        assert again.access_token != fetched.access_token
        forced = service_app.get_org_token_info(org, force_refresh=True)
        assert forced.access_token != again.access_token
        assert service_app.get_org_token(org) == forced.access_token
        forced = service_app.get_org_token_info(org)
        assert service_app.get_org_token(org, force_refresh=True) != forced.access_token
        forced = service_app.get_org_token_info(org)
        assert service_app.has_org(org) is True
        assert service_app.list_orgs() == [org]
        service_app.revoke_org(org)
        assert service_app.has_org(org) is False
        pair = emu.issue_service_app_token(org)
        assert service_app.register_org_from_refresh_token(org, pair["refresh_token"])
        integration.clear_token()
        assert integration.has_token() is False
        redirect = "http://127.0.0.1:9/cb"
        async with httpx.AsyncClient(timeout=10) as client:
            request = integration.create_authorization_request(redirect_uri=redirect)
            location = (await client.get(request.url)).headers["location"]
            assert integration.handle_callback(location) == integration.get_stored_token()
            request = integration.create_authorization_request(redirect_uri=redirect)
            location = (await client.get(request.url)).headers["location"]
        code = parse_qs(urlsplit(location).query)["code"][0]
        assert integration.exchange_code(code, state=request.state) == store.tokens["integration"]
        assert {loop for _, loop in store.calls} == {portal.loop}
    finally:
        portal.close()


async def test_async_methods_pass_their_arguments(rig: AuthRig) -> None:
    emu = rig.emu
    await rig.seed_integration()
    org = emu.org.org_id
    emu.authorize_service_app(org)
    sa = rig.service_app
    fetched = await sa.afetch_org_token(org)
    assert await sa.aget_org_token_info(org) == fetched
    emu.clear_requests()
    forced = await sa.aget_org_token_info(emu.org.hydra_id, force_refresh=True)
    assert forced.access_token != fetched.access_token
    assert await sa.aget_org_token(org, force_refresh=True) != forced.access_token
    refreshed = await sa.arefresh_org_token(emu.org.hydra_id)
    assert emu.count("POST", TOKEN_PATH) == 3
    assert await sa.aget_org_token(org) == refreshed.access_token
    emu.clear_requests()
    token = await rig.integration.aget_token()
    assert emu.requests == []  # not due: served as stored
    assert (await rig.integration.aget_token(force_refresh=True)).access_token != (
        token.access_token
    )
    assert await sa.alist_orgs() == [org]
    await rig.integration.aclear_token()
    with pytest.raises(ReauthorizationRequiredError):
        await rig.integration.aget_token()


def test_clearing_a_token_forgets_it_sync(emu: WebexEmulator) -> None:
    from webex_byova._http import HttpClient

    http = HttpClient(emu.config())
    try:
        integration, _ = _managers(emu, http, InMemoryTokenStorage())
        integration.set_token(_seed(emu))
        assert integration.get_access_token()
        integration.clear_token()
        with pytest.raises(ReauthorizationRequiredError) as info:
            integration.get_access_token()
        assert str(info.value).startswith(
            "no Integration token is stored; run authorize() (or `byova auth login`) first"
        )
    finally:
        http.close()


# ----------------------------------------------------------------------------- hot cache


async def test_a_fresh_token_is_served_without_store_reads(rig: AuthRig) -> None:
    emu = rig.emu
    store = PlainStore()
    store.tokens["integration"] = _seed(emu)
    integration, service_app = _managers(emu, rig.http, store)
    await integration.aget_access_token()
    await integration.aget_access_token()
    assert store.names() == ["get_integration_token"]
    org = emu.org.org_id
    emu.authorize_service_app(org)
    sa_token = emu.issue_service_app_token(org)
    store.calls.clear()
    registered = await service_app.aregister_org_from_refresh_token(
        emu.org.hydra_id, sa_token["refresh_token"]
    )
    assert store.names() == ["set_org_token"]
    assert await service_app.aget_org_token(org) == registered.access_token
    assert store.names() == ["set_org_token"]  # served hot
    await service_app.arevoke_org(org)
    assert store.names() == ["set_org_token", "delete_org_token"]
    with pytest.raises(OrgNotRegisteredError):
        await service_app.aget_org_token(org)
    service_app.revoke_org(org)  # not stored, not hot: no error
    await service_app.arevoke_org(org)


def test_register_from_refresh_token_sync(emu: WebexEmulator) -> None:
    from webex_byova._http import HttpClient

    http = HttpClient(emu.config())
    try:
        store = PlainStore()
        _, service_app = _managers(emu, http, store)
        org = emu.org.org_id
        emu.authorize_service_app(org)
        pair = emu.issue_service_app_token(org)
        token = service_app.register_org_from_refresh_token(org, pair["refresh_token"])
        assert store.tokens[org] == token
        assert service_app.get_org_token(org) == token.access_token
        assert store.names() == ["set_org_token"]
        with pytest.raises(ValueError) as info:
            service_app.register_org_from_refresh_token(org, "")
        assert str(info.value) == "refresh_token must be a non-empty string"
    finally:
        http.close()


# ----------------------------------------------------------------------------- authorization


async def test_authorization_url_passes_redirect_and_scopes(rig: AuthRig) -> None:
    url = rig.integration.authorization_url(
        redirect_uri="http://127.0.0.1:9/elsewhere", scopes=["spark:kms", "spark:people_read"]
    )
    query = parse_qs(urlsplit(url).query)
    assert query["redirect_uri"] == ["http://127.0.0.1:9/elsewhere"]
    assert query["scope"] == ["spark:kms spark:people_read"]


async def test_sync_exchange_with_explicit_verifier_and_redirect(rig: AuthRig) -> None:
    redirect = "http://127.0.0.1:9/cb"
    first = rig.integration.create_authorization_request(redirect_uri=redirect)
    rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/other")
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(first.url)).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    # No state: the newest pending request is taken, but the explicit values win.
    token = rig.integration.exchange_code(
        code, code_verifier=first.code_verifier, redirect_uri=redirect
    )
    assert await rig.storage.get_integration_token() == token
    first = rig.integration.create_authorization_request(redirect_uri=redirect, state="s-1")
    assert first.state == "s-1"
    rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/other")
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(first.url)).headers["location"]
    assert parse_qs(urlsplit(location).query)["state"] == ["s-1"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    token = await rig.integration.aexchange_code(
        code, code_verifier=first.code_verifier, redirect_uri=redirect
    )
    assert await rig.storage.get_integration_token() == token


# ----------------------------------------------------------------------------- serviceApp events


def _event(kind: str, org: str, key: str, when: str | None) -> ServiceAppEvent:
    data = {} if when is None else {"authorizationDate": when}
    if kind == "deauthorized" and when is not None:
        data = {"deauthorizationDate": when}
    return ServiceAppEvent(
        event=kind,  # type: ignore[arg-type]
        org_id=org,
        org_hydra_id=to_hydra("ORGANIZATION", org),
        org_id_source="orgId",
        idempotency_key=key,
        raw={"data": data},
    )


@pytest.mark.parametrize("store_kind", ["memory", "plain", "state"])
async def test_service_app_events_in_order(
    rig: AuthRig, store_kind: str, caplog: pytest.LogCaptureFixture
) -> None:
    emu = rig.emu
    store = {"memory": InMemoryTokenStorage, "plain": PlainStore, "state": StateStore}[store_kind]()
    await store.set_integration_token(_seed(emu))
    _, sa = _managers(emu, rig.http, store)
    org = emu.org.org_id
    hydra = emu.org.hydra_id
    emu.authorize_service_app(org)

    async def handle(event: ServiceAppEvent) -> object:
        return await run_async(sa.handle_event_flow(event), rig.http)

    t1, t2, t3 = "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", "2026-03-01T00:00:00Z"
    first = await handle(_event("authorized", org, "k1", t2))
    stored = await store.get_org_token(org)
    assert stored is not None
    assert first == ServiceAppAuthorizedResult(
        org_id=org,
        org_hydra_id=hydra,
        idempotency_key="k1",
        token_expires_at=stored.expires_at_datetime,
    )
    log = OrgEventLog(datetime(2026, 2, 1, tzinfo=UTC), 0, "authorized", ("k1",))
    if store_kind != "plain":
        assert await store.get_webhook_state(org) == log.to_json()  # type: ignore[union-attr]
    emu.clear_requests()
    caplog.set_level(logging.INFO, logger="webex_byova.auth")
    caplog.clear()
    assert await handle(_event("authorized", org, "k1", t2)) == ServiceAppAuthorizedResult(
        org_id=org, org_hydra_id=hydra, idempotency_key="k1", duplicate=True
    )
    assert emu.requests == []
    assert [r.getMessage() for r in caplog.records] == [
        f"serviceApp authorized for org {org} ignored: already handled (redelivery) "
        "(last applied: authorized at 2026-02-01T00:00:00+00:00)"
    ]
    caplog.clear()
    assert await handle(_event("deauthorized", org, "k0", t1)) == ServiceAppDeauthorizedResult(
        org_id=org, org_hydra_id=hydra, idempotency_key="k0", stale=True
    )
    assert [r.getMessage() for r in caplog.records] == [
        f"serviceApp deauthorized for org {org} ignored: older event "
        "(last applied: authorized at 2026-02-01T00:00:00+00:00)"
    ]
    assert await store.get_org_token(org) == stored
    assert await handle(_event("deauthorized", org, "k3", t3)) == ServiceAppDeauthorizedResult(
        org_id=org, org_hydra_id=hydra, idempotency_key="k3", tokens_removed=True
    )
    assert await store.get_org_token(org) is None
    with pytest.raises(OrgNotRegisteredError):
        await sa.aget_org_token(org)  # not served from the hot cache
    assert await handle(_event("deauthorized", org, "k4", None)) == ServiceAppDeauthorizedResult(
        org_id=org, org_hydra_id=hydra, idempotency_key="k4", tokens_removed=False
    )
    caplog.clear()
    assert await handle(_event("authorized", org, "k4", None)) == ServiceAppAuthorizedResult(
        org_id=org, org_hydra_id=hydra, idempotency_key="k4", duplicate=True
    )
    assert (
        caplog.records[0]
        .getMessage()
        .endswith("(last applied: deauthorized at 2026-03-01T00:00:00+00:00)")
    )


async def test_a_stale_event_without_history_time(
    rig: AuthRig, caplog: pytest.LogCaptureFixture
) -> None:
    emu = rig.emu
    await rig.seed_integration()
    org = emu.org.org_id
    emu.authorize_service_app(org)
    sa = rig.service_app
    await run_async(sa.handle_event_flow(_event("authorized", org, "a", None)), rig.http)
    caplog.set_level(logging.INFO, logger="webex_byova.auth")
    caplog.clear()
    result = await run_async(sa.handle_event_flow(_event("authorized", org, "a", None)), rig.http)
    assert result.duplicate is True
    assert [r.getMessage() for r in caplog.records] == [
        f"serviceApp authorized for org {org} ignored: already handled (redelivery) "
        "(last applied: authorized at unknown time)"
    ]


@pytest.mark.parametrize("junk", [b"\xff", b"[", b'{"v": 2}', b"[" * 100_000])
async def test_an_unreadable_event_log_is_a_storage_error(rig: AuthRig, junk: bytes) -> None:
    emu = rig.emu
    org = emu.org.org_id
    memory = InMemoryTokenStorage()
    await memory.set_webhook_state(org, junk)
    custom = StateStore()
    custom.states[org] = junk
    for store, where in ((memory, "memory entry"), (custom, "StateStore:")):
        _, sa = _managers(emu, rig.http, store)
        with pytest.raises(TokenStorageError) as info:
            await run_async(sa.handle_event_flow(_event("authorized", org, "k", None)), rig.http)
        assert info.value.key == f"webhook:{org}"
        message = str(info.value)
        assert message.startswith(f"token store {where}")
        assert message.endswith("the webhook event log is not readable")


# ----------------------------------------------------------------------------- constructor


def test_constructor_defaults_and_checks(emu: WebexEmulator) -> None:
    from webex_byova._http import HttpClient

    http = HttpClient(emu.config())
    try:
        integration, sa = _managers(emu, http, InMemoryTokenStorage())
        assert sa.storage is integration.storage
        with pytest.raises(ValueError) as info:
            ServiceAppTokenManager(
                sa.credentials,
                integration,
                http,
                target_org_format="base64",  # type: ignore[arg-type]
            )
        assert str(info.value) == "target_org_format must be 'hydra' or 'uuid'"
        assert repr(integration) == (
            f"IntegrationTokenManager(client_id={emu.integration.client_id!r}, "
            "storage=InMemoryTokenStorage(keys=0))"
        )
        assert repr(sa) == (
            f"ServiceAppTokenManager(client_id={emu.service_app.client_id!r}, "
            f"application_id={emu.service_app.application_id!r})"
        )
    finally:
        http.close()


async def test_fetch_for_an_unauthorized_org_names_it(rig: AuthRig) -> None:
    await rig.seed_integration()
    org = rig.emu.org.org_id
    rig.emu.clear_requests()
    with pytest.raises(AuthenticationError) as info:
        await rig.service_app.afetch_org_token(org)
    error, cause = info.value, info.value.__cause__
    assert isinstance(cause, WebexBYOVAError)
    assert error.message == (
        f"the Service App is not authorized in org {org}, or the Integration "
        f"lacks spark:applications_token: {cause.message}"
    )
    assert (error.status_code, error.body, error.tracking_id) == (
        403,
        cause.body,
        cause.tracking_id,
    )
    assert (error.descriptions, error.method, error.url) == (
        cause.descriptions,
        cause.method,
        cause.url,
    )
    assert error.tracking_id
    assert error.method == "POST"
    assert rig.emu.count("POST", APPS_PATH) == 1  # a 403 is not retried
    assert rig.emu.count("POST", TOKEN_PATH) == 0


# ----------------------------------------------------------------------------- listener pieces


def test_listener_response_bytes_and_bind_host() -> None:
    from webex_byova.integration import _bind_host, _http_response

    assert _bind_host("localhost") == "127.0.0.1"
    assert _bind_host("127.0.0.2") == "127.0.0.2"
    for status, reason in ((200, "OK"), (400, "Bad Request"), (404, "Not Found"), (500, "OK")):
        assert _http_response(status, b"body!") == (
            f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
            "Content-Length: 5\r\nConnection: close\r\n\r\nbody!"
        ).encode("latin-1")


async def test_only_the_last_16_authorization_requests_stay_pending(rig: AuthRig) -> None:
    requests = [
        rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/cb")
        for _ in range(17)
    ]
    async with httpx.AsyncClient(timeout=10) as client:
        oldest = (await client.get(requests[0].url)).headers["location"]
        kept = (await client.get(requests[1].url)).headers["location"]
    message = (
        "authorization failed (state_mismatch): the state does not belong to a pending "
        "authorization request of this manager"
    )
    code = parse_qs(urlsplit(oldest).query)["code"][0]
    with pytest.raises(AuthenticationError) as info:
        await rig.integration.aexchange_code(code, state=requests[0].state)
    assert str(info.value) == message
    token = await rig.integration.ahandle_callback(kept)
    assert await rig.storage.get_integration_token() == token
    with pytest.raises(AuthenticationError) as info:  # taken: not pending any more
        rig.integration.handle_callback(kept)


@pytest.mark.parametrize("status", [400, 401])
async def test_a_refused_code_exchange_keeps_the_error_details(rig: AuthRig, status: int) -> None:
    body = {"message": "bad code", "errors": [{"description": "the code expired"}]}
    rig.emu.fail_next(TOKEN_PATH, status=status, body=body)
    request = rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/cb")
    with pytest.raises(AuthenticationError) as info:
        await rig.integration.aexchange_code("code", state=request.state)
    error, cause = info.value, info.value.__cause__
    assert type(error) is AuthenticationError
    assert isinstance(cause, WebexBYOVAError)
    assert error.message == f"authorization code exchange failed: {cause.message}"
    assert (error.status_code, error.body, error.tracking_id, error.descriptions) == (
        status,
        cause.body,
        cause.tracking_id,
        cause.descriptions,
    )
    assert error.tracking_id
    assert error.body
    assert error.descriptions


async def test_announce_logs_and_prints(
    rig: AuthRig, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    from webex_byova._oauth import authorize_instructions

    request = rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/cb")
    caplog.set_level(logging.INFO, logger="webex_byova.auth")
    for opened in (None, False, True):
        caplog.clear()
        IntegrationTokenManager._announce(request, 12.5, opened, print_it=True)
        messages = [(r.levelname, r.getMessage()) for r in caplog.records]
        info = (
            "INFO",
            f"authorize URL: {request.url} (waiting up to 12.5s for the redirect to "
            "http://127.0.0.1:9/cb)",
        )
        warning = ("WARNING", "could not open a browser for the authorize URL; open it yourself")
        assert messages == ([warning, info] if opened is False else [info])
        printed = capsys.readouterr().err
        assert (
            printed
            == authorize_instructions(
                request.url,
                redirect_uri="http://127.0.0.1:9/cb",
                timeout=12.5,
                browser_opened=opened,
            )
            + "\n"
        )
    IntegrationTokenManager._announce(request, 1.0, None, print_it=False)
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------------- log texts


async def test_what_the_managers_log(rig: AuthRig, caplog: pytest.LogCaptureFixture) -> None:
    emu = rig.emu
    org = emu.org.org_id
    caplog.set_level(logging.INFO, logger="webex_byova.auth")

    def messages() -> list[str]:
        found = [r.getMessage() for r in caplog.records if r.name == "webex_byova.auth"]
        caplog.clear()
        return found

    await rig.seed_integration()
    token = await rig.integration.arefresh()
    assert messages() == [f"Integration token refreshed (expires {token.expires_at_datetime})"]
    emu.authorize_service_app(org)
    fetched = await rig.service_app.afetch_org_token(org)
    assert messages() == [
        f"Service App token of org {org} fetched (expires {fetched.expires_at_datetime})"
    ]
    refreshed = await rig.service_app.arefresh_org_token(org)
    assert messages() == [
        f"Service App token of org {org} refreshed (expires {refreshed.expires_at_datetime})"
    ]
    emu.fail_next(TOKEN_PATH, status=400, body={"error": "invalid_grant"})
    dead = await rig.service_app.arefresh_org_token(org)
    assert messages() == [
        f"Service App refresh token of org {org} is dead; fetching a new pair",
        f"Service App token of org {org} fetched (expires {dead.expires_at_datetime})",
    ]
    emu.fail_next(APPS_PATH, status=401)
    again = await rig.service_app.afetch_org_token(org)
    bearer = await rig.storage.get_integration_token()
    assert messages() == [
        "Integration bearer rejected; refreshing it once",
        f"Integration token refreshed (expires {bearer.expires_at_datetime})",
        f"Service App token of org {org} fetched (expires {again.expires_at_datetime})",
    ]
    request = rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/cb")
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(request.url)).headers["location"]
    authorized = await rig.integration.ahandle_callback(location)
    assert messages() == [
        f"Integration authorized; token stored (expires {authorized.expires_at_datetime})"
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_authorize_defaults_open_the_browser_and_wait_300_s(
    rig: AuthRig,
    mode: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pages: list[httpx.Response] = []
    browsers: list[threading.Thread] = []

    def browser(url: str) -> bool:  # the machine's browser: follows the URL to the listener
        thread = threading.Thread(
            target=lambda: pages.append(httpx.get(url, follow_redirects=True, timeout=10))
        )
        browsers.append(thread)
        thread.start()
        return True

    monkeypatch.setattr(webbrowser, "open", browser)
    if mode == "sync":
        token = rig.integration.authorize()
    else:
        token = await rig.integration.aauthorize()
    for thread in browsers:
        thread.join(10)
    assert await rig.storage.get_integration_token() == token
    (page,) = pages
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert page.headers["content-length"] == str(len(page.content))
    assert page.headers["connection"] == "close"
    printed = capsys.readouterr().err
    assert printed.startswith(
        "A browser was opened to authorize the Integration; if none appeared, open:\n"
    )
    assert "\nWaiting up to 300 s for the redirect to http://127.0.0.1:" in printed


async def test_refresh_margin_and_store_lock_defaults(rig: AuthRig) -> None:
    """Refreshed from 300 s before expiry on, under the store's lock named after the token,
    held with a 30 s TTL."""
    emu = rig.emu
    store = LockingStore()
    store.tokens["integration"] = _seed(emu)
    integration, service_app = _managers(emu, rig.http, store)
    token = store.tokens["integration"]
    emu.clock.advance(token.expires_at - emu.clock.now() - 300.5)
    emu.clear_requests()
    assert await integration.aget_access_token() == token.access_token
    assert emu.requests == []
    emu.clock.advance(1.0)
    assert await integration.aget_access_token() != token.access_token
    assert store.locks == [("integration", 30.0)]
    store.locks.clear()
    org = emu.org.org_id
    emu.authorize_service_app(org)
    sa_token = await service_app.afetch_org_token(org)
    assert store.locks == [(f"org:{org}", 30.0)]
    store.locks.clear()
    emu.clock.advance(sa_token.expires_at - emu.clock.now() - 300.5)
    emu.clear_requests()
    assert await service_app.aget_org_token(org) == sa_token.access_token
    assert emu.requests == []
    emu.clock.advance(1.0)
    assert await service_app.aget_org_token(org) != sa_token.access_token
    assert store.locks == [(f"org:{org}", 30.0)]


async def test_concurrent_callers_take_the_store_lock_once(rig: AuthRig) -> None:
    """The second of two concurrent callers finds the first one's refresh in the hot cache
    once it has the process lock, and returns it without the store's lock."""
    emu = rig.emu
    store = LockingStore()
    store.tokens["integration"] = _seed(emu)
    integration, service_app = _managers(emu, rig.http, store)
    org = emu.org.org_id
    emu.authorize_service_app(org)
    pair = emu.issue_service_app_token(org)
    await service_app.aregister_org_from_refresh_token(org, pair["refresh_token"])
    assert store.locks == [(f"org:{org}", 30.0)]
    for force in (False, True):
        store.locks.clear()
        if not force:
            emu.clock.advance(FIFTEEN_DAYS)  # both tokens due
        first, second = await asyncio.gather(
            service_app.aget_org_token(org, force_refresh=force),
            service_app.aget_org_token(org, force_refresh=force),
        )
        assert first == second
        assert store.locks == [(f"org:{org}", 30.0)]
        store.locks.clear()
        if force:
            one, two = await asyncio.gather(integration.arefresh(), integration.arefresh())
        else:
            one, two = await asyncio.gather(integration.aget_token(), integration.aget_token())
        assert one == two
        assert store.locks == [("integration", 30.0)]


async def test_an_org_deleted_elsewhere_is_forgotten(rig: AuthRig) -> None:
    emu = rig.emu
    store = LockingStore()
    store.tokens["integration"] = _seed(emu)
    _, service_app = _managers(emu, rig.http, store)
    org = emu.org.org_id
    emu.authorize_service_app(org)
    await service_app.afetch_org_token(org)
    del store.tokens[org]  # another process revoked the org
    store.locks.clear()
    with pytest.raises(OrgNotRegisteredError) as info:
        await service_app.aget_org_token(org, force_refresh=True)
    assert info.value.org_id == org
    assert store.locks == [(f"org:{org}", 30.0)]
    emu.clock.advance(FIFTEEN_DAYS)
    with pytest.raises(OrgNotRegisteredError) as info:
        await service_app.aget_org_token(org)  # read unlocked: nothing to refresh
    assert info.value.org_id == org
    assert store.locks == [(f"org:{org}", 30.0)]


async def test_an_expired_refresh_token_is_not_tried(rig: AuthRig) -> None:
    emu = rig.emu
    await rig.seed_integration()
    org = emu.org.org_id
    emu.authorize_service_app(org)
    fetched = await rig.service_app.afetch_org_token(org)
    now = emu.clock.now()
    stale = OAuthToken(
        access_token=fetched.access_token,
        expires_at=now + 10,
        refresh_token=fetched.refresh_token,
        refresh_token_expires_at=now - 1,
        obtained_at=now - 100,
    )
    await rig.storage.set_org_token(org, stale)
    _, service_app = _managers(emu, rig.http, rig.storage)
    emu.clear_requests()
    token = await service_app.aget_org_token_info(org)
    assert token.access_token != stale.access_token
    assert emu.count("POST", TOKEN_PATH) == 0
    assert emu.count("POST", APPS_PATH) == 1


async def test_a_dead_sandbox_refresh_token_needs_reauthorization(rig: AuthRig) -> None:
    org = rig.emu.org.org_id
    with pytest.raises(ReauthorizationRequiredError) as info:
        await rig.service_app.aregister_org_from_refresh_token(org, "not-a-live-refresh-token")
    error, cause = info.value, info.value.__cause__
    assert str(error).startswith(
        f"Service App token of org {org}: the refresh token is expired or revoked; "
        "re-authorization is needed (run authorize() or `byova auth login`)"
    )
    assert isinstance(cause, WebexBYOVAError)
    assert (error.status_code, error.tracking_id) == (cause.status_code, cause.tracking_id)
    assert error.status_code == 400
    assert error.tracking_id


async def test_a_failed_service_app_refresh_is_not_retried(rig: AuthRig) -> None:
    from webex_byova.errors import ServerError

    emu = rig.emu
    await rig.seed_integration()
    org = emu.org.org_id
    emu.authorize_service_app(org)
    fetched = await rig.service_app.afetch_org_token(org)
    emu.clear_requests()
    emu.fail_next(TOKEN_PATH, status=502)  # retried for idempotent requests only
    with pytest.raises(ServerError):
        await rig.service_app.arefresh_org_token(org)
    assert emu.count("POST", TOKEN_PATH) == 1  # a refresh is not idempotent: sent once
    assert emu.count("POST", APPS_PATH) == 0  # and not a dead refresh token: no fetch
    assert await rig.storage.get_org_token(org) == fetched
    emu.fail_next(APPS_PATH, status=502)
    with pytest.raises(ServerError):
        await rig.service_app.afetch_org_token(org)
    assert emu.count("POST", APPS_PATH) == 1
    emu.clear_requests()
    emu.fail_next(TOKEN_PATH, status=502)
    with pytest.raises(ServerError):
        await rig.integration.arefresh()
    assert emu.count("POST", TOKEN_PATH) == 1
    emu.clear_requests()
    request = rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/cb")
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(request.url)).headers["location"]
    emu.fail_next(TOKEN_PATH, status=502)
    with pytest.raises(ServerError):
        await rig.integration.ahandle_callback(location)
    assert emu.count("POST", TOKEN_PATH) == 1


async def test_org_tokens_are_kept_hot_after_each_way_in(rig: AuthRig) -> None:
    """Read, fetched or refreshed: the next call is served without a store read (and the
    flows, driven directly, do not refresh a fresh token)."""
    emu = rig.emu
    store = PlainStore()
    store.tokens["integration"] = _seed(emu)
    org = emu.org.org_id
    emu.authorize_service_app(org)
    _, first = _managers(emu, rig.http, store)
    fetched = await first.afetch_org_token(org)
    store.calls.clear()
    assert await first.aget_org_token(org) == fetched.access_token
    assert store.names() == []
    refreshed = await first.arefresh_org_token(org)
    store.calls.clear()
    assert await first.aget_org_token(org) == refreshed.access_token
    assert store.names() == []
    _, second = _managers(emu, rig.http, store)  # a new process: reads the store once
    emu.clear_requests()
    assert await run_async(second.org_token_info_flow(org), rig.http) == refreshed
    assert await run_async(second.org_token_flow(org), rig.http) == refreshed.access_token
    assert store.names() == ["get_org_token"]
    assert emu.requests == []


async def test_code_exchange_without_state(rig: AuthRig) -> None:
    """Without ``state`` the newest pending request supplies the PKCE verifier and redirect
    URI; with none pending, the explicit verifier and the credentials' redirect URI."""
    integration = rig.integration
    redirect = "http://127.0.0.1:9/cb"
    async with httpx.AsyncClient(timeout=10) as client:

        async def code_for(url: str) -> str:
            location = (await client.get(url)).headers["location"]
            return parse_qs(urlsplit(location).query)["code"][0]

        request = integration.create_authorization_request(redirect_uri=redirect)
        token = await integration.aexchange_code(await code_for(request.url))
        assert await rig.storage.get_integration_token() == token
        # Nothing pending now: no verifier is sent, which this PKCE code needs.
        request = integration.create_authorization_request(redirect_uri=redirect)
        code = await code_for(request.url)
        await integration.aexchange_code(await code_for(request.url))  # takes the pending one
        with pytest.raises(AuthenticationError) as info:
            await integration.aexchange_code(code, redirect_uri=redirect)
        assert type(info.value) is AuthenticationError
        assert info.value.status_code == 400
        with pytest.raises(AuthenticationError) as info:  # the credentials' redirect URI
            await integration.aexchange_code(code, code_verifier=request.code_verifier)
        assert type(info.value) is AuthenticationError
        # A request for the credentials' own redirect URI, finished by another manager.
        own = integration.create_authorization_request()
        other, _ = _managers(rig.emu, rig.http, rig.storage)
        token = await other.aexchange_code(await code_for(own.url), code_verifier=own.code_verifier)
        assert await rig.storage.get_integration_token() == token


def test_fetch_targets_the_org_in_the_configured_region_and_quotes_the_app_id() -> None:
    from webex_byova._http import HttpClient

    with WebexEmulator(region="eu") as emu:
        http = HttpClient(emu.config())
        try:
            store = InMemoryTokenStorage()
            integration, service_app = _managers(emu, http, store)
            integration.set_token(_seed(emu))
            org = emu.org.org_id
            emu.authorize_service_app(org)
            service_app.fetch_org_token(org)
            fetch = next(r for r in emu.requests if r.path.startswith(APPS_PATH))
            assert fetch.json is not None
            assert fetch.json["targetOrgId"] == emu.org.hydra_id
            assert emu.org.hydra_id == to_hydra("ORGANIZATION", org, region="eu")
            slashed = ServiceAppTokenManager(
                ServiceAppCredentials("cid", "secret", application_id="app/with/slash"),
                integration,
                http,
            )
            emu.clear_requests()
            with pytest.raises(WebexBYOVAError):
                slashed.fetch_org_token(org)
            assert [r.path for r in emu.requests] == ["/v1/applications/app%2Fwith%2Fslash/token"]
        finally:
            http.close()


async def test_an_authorization_and_an_event_keep_their_names(rig: AuthRig) -> None:
    """The token an authorization stores is served without a store read; an event takes the
    store lock of its org."""
    emu = rig.emu
    store = LockingStore()
    integration, service_app = _managers(emu, rig.http, store)
    request = integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/cb")
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(request.url)).headers["location"]
    token = await integration.ahandle_callback(location)
    store.calls.clear()
    assert await integration.aget_access_token() == token.access_token
    assert store.names() == []
    org = emu.org.org_id
    emu.authorize_service_app(org)
    await run_async(service_app.handle_event_flow(_event("authorized", org, "e1", None)), rig.http)
    assert store.locks == [(f"org:{org}", 30.0)]


async def test_the_async_listener_answers_raw_requests(rig: AuthRig) -> None:
    """A request line without a target (even with the redirect in a header line) or for
    another path gets the 404 page; a client that hangs up mid-request is dropped; the real
    redirect still completes the authorization."""
    from webex_byova.integration import _http_response

    tasks: list[asyncio.Task[tuple[list[bytes], httpx.Response]]] = []

    async def browser(url: str) -> tuple[list[bytes], httpx.Response]:
        redirect = urlsplit(parse_qs(urlsplit(url).query)["redirect_uri"][0])
        host, port = redirect.hostname, redirect.port
        assert host is not None
        assert port is not None

        async def raw(data: bytes) -> bytes:
            reader, writer = await asyncio.open_connection(host, port)
            writer.write(data)
            if not data.endswith(b"\r\n\r\n"):
                writer.write_eof()
            answer = await reader.read()
            writer.close()
            await writer.wait_closed()
            return answer

        state = parse_qs(urlsplit(url).query)["state"][0].encode()
        answers = [
            await raw(b"GET\r\n\r\n"),
            await raw(b"GET /elsewhere HTTP/1.1\r\nHost: x\r\n\r\n"),
            # Only the request line names the target, never a header line after it.
            await raw(b"GET\r\nX: /callback?code=x&state=" + state + b" HTTP/1.1\r\n\r\n"),
            # Fields are separated by single spaces: a tab leaves no target.
            await raw(b"GET\t/callback?code=x&state=" + state + b" HTTP/1.1\r\n\r\n"),
            await raw(b"GET /callback?code=x"),
        ]
        async with httpx.AsyncClient(follow_redirects=True, timeout=10) as client:
            return answers, await client.get(url)

    def on_url(url: str) -> None:
        tasks.append(asyncio.get_running_loop().create_task(browser(url)))

    token = await rig.integration.aauthorize(open_browser=False, on_url=on_url, timeout=30)
    answers, page = await tasks[0]
    not_found = _http_response(404, b"not found")
    assert answers == [not_found, not_found, not_found, not_found, b""]
    assert page.status_code == 200
    assert page.headers["content-type"] == "text/html; charset=utf-8"
    assert await rig.storage.get_integration_token() == token


async def test_the_sync_listener_ignores_other_paths_then_accepts_the_redirect(
    rig: AuthRig,
) -> None:
    pages: list[httpx.Response] = []
    browsers: list[threading.Thread] = []

    def browse(url: str) -> None:
        with httpx.Client(timeout=10) as client:
            redirect = client.get(url).headers["location"]
            parts = urlsplit(redirect)
            pages.append(client.get(f"{parts.scheme}://{parts.netloc}/favicon.ico"))
            pages.append(client.get(redirect))

    def on_url(url: str) -> None:
        thread = threading.Thread(target=browse, args=(url,))
        browsers.append(thread)
        thread.start()

    token = rig.integration.authorize(open_browser=False, on_url=on_url, timeout=30)
    for thread in browsers:
        thread.join(10)
    assert [page.status_code for page in pages] == [404, 200]
    assert pages[0].content == b"not found"
    assert rig.integration.get_stored_token() == token


async def test_integration_refresh_chain_edges(rig: AuthRig) -> None:
    """A refresh token known to be expired is not sent; a token deleted elsewhere needs
    authorization (and is forgotten); a refresh token rotated by a lock-less peer is
    picked up instead of failing."""
    emu = rig.emu
    store = PlainStore()
    seeded = _seed(emu)
    now = emu.clock.now()
    store.tokens["integration"] = OAuthToken(
        access_token=seeded.access_token,
        expires_at=now + 10,
        refresh_token=seeded.refresh_token,
        refresh_token_expires_at=now - 1,
        obtained_at=now - 100,
    )
    integration, _ = _managers(emu, rig.http, store)
    emu.clear_requests()
    with pytest.raises(ReauthorizationRequiredError) as info:
        await integration.aget_access_token()
    assert str(info.value) == (
        "Integration: the refresh token is expired or revoked; re-authorization is needed "
        "(run authorize() or `byova auth login`)"
    )
    assert emu.requests == []
    store.tokens["integration"] = _seed(emu)
    integration, _ = _managers(emu, rig.http, store)
    await integration.aget_access_token()
    del store.tokens["integration"]  # logged out by another process
    for _ in range(2):
        with pytest.raises(ReauthorizationRequiredError) as info:
            await integration.arefresh()
        assert str(info.value).startswith(
            "no Integration token is stored; run authorize() (or `byova auth login`) first"
        )
    # Two managers over two store objects sharing the data and no lock: the peer read the
    # token, then the first refreshed it (Webex rotates the refresh token); the peer's refresh
    # with the old one fails and it finds the rotated one stored. (Run in this order: with
    # both refreshes concurrent, the peer may re-read before the first has stored.)
    old = _seed(emu)
    store.tokens["integration"] = old
    one, _ = _managers(emu, rig.http, store)
    two, _ = _managers(emu, rig.http, StaleReads(store.tokens, old))
    emu.clear_requests()
    first = await one.arefresh()
    assert first.refresh_token != old.refresh_token
    second = await two.arefresh()
    assert emu.count("POST", TOKEN_PATH) == 2
    assert first == second == store.tokens["integration"]


async def test_a_revoked_integration_refresh_token_keeps_the_error_details(rig: AuthRig) -> None:
    await rig.seed_integration()
    token = await rig.storage.get_integration_token()
    assert rig.emu.revoke_refresh_token(token.refresh_token)
    with pytest.raises(ReauthorizationRequiredError) as info:
        await rig.integration.arefresh()
    error, cause = info.value, info.value.__cause__
    assert isinstance(cause, WebexBYOVAError)
    assert error.message == (
        "Integration: the refresh token is expired or revoked; re-authorization is needed "
        "(run authorize() or `byova auth login`)"
    )
    assert (error.status_code, error.tracking_id) == (cause.status_code, cause.tracking_id)
    assert error.status_code == 400
