"""Service App per-org tokens: fetch with the Integration, refresh, fall back, single-flight.

Refresh chain (spec §2), run under a per-org lock (process-wide, plus the store's lock when it
has one) so concurrent callers cause a single refresh:

1. refresh with the stored refresh token and the **Service App's** client id/secret
   (``POST /access_token``);
2. when that refresh token is dead (``invalid_grant``/401) or absent, fetch a fresh pair with
   ``POST /applications/{id}/token`` using the Integration's bearer;
3. which refreshes the Integration token first when needed (and retries once after a 401);
4. a dead Integration refresh token raises
   :class:`~webex_byova.errors.ReauthorizationRequiredError`.

Org ids are accepted as UUID or Hydra base64 and stored under their UUID.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Literal, TypeVar
from urllib.parse import quote

from ._flow import Call, Flow, Http, Locked, Portal, run_async, run_sync
from ._http import HttpClient
from ._ids import org_hydra_id, org_uuid
from ._logging import get_logger
from ._oauth import (
    application_token_body,
    is_dead_refresh_error,
    parse_token_response,
    reauthorization_error,
    refresh_form,
)
from .config import BYOVAConfig
from .credentials import ServiceAppCredentials
from .errors import (
    AuthenticationError,
    OrgNotRegisteredError,
    TokenStorageError,
    WebexBYOVAError,
)
from .integration import IntegrationTokenManager
from .models import ServiceAppAuthorizedResult, ServiceAppDeauthorizedResult, ServiceAppEvent
from .storage.base import (
    WEBHOOK_PREFIX,
    KeyValueTokenStorage,
    TokenStorage,
    WebhookStateStorage,
    store_lock,
)
from .tokens import OAuthToken
from .webhooks import OrgEventLog

__all__ = ["ServiceAppTokenManager", "WebhookResult"]

log = get_logger("webex_byova.auth")

T = TypeVar("T")
#: What handling a ``serviceApp`` event returns.
WebhookResult = ServiceAppAuthorizedResult | ServiceAppDeauthorizedResult


class ServiceAppTokenManager:
    """Per-org Service App tokens.

    Args:
        credentials: The Service App's client id/secret (and optional application id).
        integration: The Integration manager whose bearer fetches org tokens.
        http: Shared HTTP client.
        storage: Token store (default: the Integration manager's store).
        config: SDK configuration (default: ``http.config``); its region derives the
            application id when the credentials do not give one.
        clock: POSIX-seconds clock (default: the Integration manager's clock).
        refresh_margin: Refresh this many seconds before expiry (capped at half the lifetime).
        lock_ttl: Seconds a store-wide refresh lock (Redis/SQLite) outlives a crashed holder;
            a live refresh renews it every ``lock_ttl / 3``, however long it takes.
        target_org_format: Send ``targetOrgId`` as ``"hydra"`` (spec example, default) or
            ``"uuid"``.
        portal: Background loop for sync calls (default: the Integration manager's).
    """

    def __init__(
        self,
        credentials: ServiceAppCredentials,
        integration: IntegrationTokenManager,
        http: HttpClient,
        storage: TokenStorage | None = None,
        *,
        config: BYOVAConfig | None = None,
        clock: Callable[[], float] | None = None,
        refresh_margin: float = 300.0,
        lock_ttl: float = 30.0,
        target_org_format: Literal["hydra", "uuid"] = "hydra",
        portal: Portal | None = None,
    ) -> None:
        if target_org_format not in ("hydra", "uuid"):
            raise ValueError("target_org_format must be 'hydra' or 'uuid'")
        self._creds = credentials
        self._integration = integration
        self._http = http
        self._storage: TokenStorage = storage if storage is not None else integration.storage
        self._config = config or http.config
        self._clock = clock or integration.clock
        self._margin = refresh_margin
        self._lock_ttl = lock_ttl
        self._target_format = target_org_format
        self._portal = portal or integration.portal
        # Last token seen per org, served without a store read while not due for refresh.
        self._hot: dict[str, OAuthToken] = {}
        # Webhook event logs when the store cannot keep them (a custom TokenStorage).
        self._event_logs: dict[str, bytes] = {}

    # ------------------------------------------------------------------ properties
    @property
    def credentials(self) -> ServiceAppCredentials:
        """The Service App credentials."""
        return self._creds

    @property
    def application_id(self) -> str:
        """Application id used in ``/applications/{id}/token`` (explicit or derived)."""
        return self._creds.resolve_application_id(self._config.region)

    @property
    def storage(self) -> TokenStorage:
        """The token store."""
        return self._storage

    @property
    def integration(self) -> IntegrationTokenManager:
        """The Integration manager used to fetch org tokens."""
        return self._integration

    def _lock_key(self, uuid: str) -> str:
        return f"webex_byova:{id(self._storage)}:org:{uuid}"

    def _locked(self, uuid: str, flow: Flow[T]) -> Locked:
        """Process lock for the org, then (inside) the store's cross-process lock."""
        return Locked(self._lock_key(uuid), self._store_locked(uuid, flow))

    def _store_locked(self, uuid: str, flow: Flow[T]) -> Flow[T]:
        result: T = yield Locked(
            f"{self._lock_key(uuid)}:store",
            flow,
            store_lock(self._storage, f"org:{uuid}", self._lock_ttl),
        )
        return result

    # ------------------------------------------------------------------ flows
    def org_token_info_flow(self, org_id: str, *, force_refresh: bool = False) -> Flow[OAuthToken]:
        """The org's stored token, refreshed (single-flight) when near expiry or forced.

        Raises:
            OrgNotRegisteredError: No token is stored for the org.
            ReauthorizationRequiredError: The whole refresh chain is exhausted.
        """
        uuid = org_uuid(org_id)
        token = self._hot.get(uuid)
        if token is None:  # nothing in hand: read the store (a due refresh re-reads it locked)
            token = yield Call(lambda: self._storage.get_org_token(uuid))
            if token is None:
                raise OrgNotRegisteredError(uuid)
            self._hot[uuid] = token
        if not force_refresh and not token.should_refresh(self._clock(), self._margin):
            return token
        refreshed: OAuthToken = yield Locked(
            self._lock_key(uuid), self._locked_refresh_flow(uuid, token, force_refresh)
        )
        self._hot[uuid] = refreshed
        return refreshed

    def org_token_flow(self, org_id: str, *, force_refresh: bool = False) -> Flow[str]:
        """Like :meth:`org_token_info_flow`, returning only the access token string."""
        token = yield from self.org_token_info_flow(org_id, force_refresh=force_refresh)
        return token.access_token

    def fetch_org_token_flow(self, org_id: str) -> Flow[OAuthToken]:
        """Fetch a fresh pair via ``/applications/{id}/token`` (single-flight) and store it."""
        uuid = org_uuid(org_id)
        token: OAuthToken = yield self._locked(uuid, self._fetch_flow(uuid))
        self._hot[uuid] = token
        return token

    def register_org_from_refresh_token_flow(
        self, org_id: str, refresh_token: str
    ) -> Flow[OAuthToken]:
        """Sandbox path: redeem a refresh token (e.g. copied from the developer portal)."""
        uuid = org_uuid(org_id)
        if not refresh_token:
            raise ValueError("refresh_token must be a non-empty string")
        token: OAuthToken = yield self._locked(
            uuid, self._refresh_flow(uuid, refresh_token, previous=None)
        )
        self._hot[uuid] = token
        return token

    def _locked_refresh_flow(self, uuid: str, seen: OAuthToken, force: bool) -> Flow[OAuthToken]:
        hot = self._hot.get(uuid)  # a peer in this process refreshed (and stored) meanwhile
        if (
            hot is not None
            and hot.access_token != seen.access_token
            and (force or not hot.should_refresh(self._clock(), self._margin))
        ):
            return hot
        # Only now exclude other processes (the store lock may cost a durable write).
        return (
            yield from self._store_locked(uuid, self._store_locked_refresh_flow(uuid, seen, force))
        )

    def _store_locked_refresh_flow(
        self, uuid: str, seen: OAuthToken, force: bool
    ) -> Flow[OAuthToken]:
        current: OAuthToken | None = yield Call(lambda: self._storage.get_org_token(uuid))
        if current is None:
            self._hot.pop(uuid, None)
            raise OrgNotRegisteredError(uuid)  # not stored (any more)
        if force:
            if current.access_token != seen.access_token:
                return current  # someone refreshed while we waited
        elif not current.should_refresh(self._clock(), self._margin):
            return current
        if current.refresh_token and not current.refresh_token_expired(self._clock()):
            try:
                return (yield from self._refresh_flow(uuid, current.refresh_token, current))
            except WebexBYOVAError as exc:
                if not is_dead_refresh_error(exc):
                    raise
                log.info("Service App refresh token of org %s is dead; fetching a new pair", uuid)
        return (yield from self._fetch_flow(uuid))

    def _refresh_flow(
        self, uuid: str, refresh_token: str, previous: OAuthToken | None
    ) -> Flow[OAuthToken]:
        spec = self._http.build(
            "POST",
            self._config.token_url,
            form=refresh_form(
                client_id=self._creds.client_id,
                client_secret=self._creds.client_secret,
                refresh_token=refresh_token,
            ),
            idempotent=False,
        )
        try:
            response = yield Http(spec)
        except WebexBYOVAError as exc:
            if previous is None and is_dead_refresh_error(exc):
                raise reauthorization_error(f"Service App token of org {uuid}", exc) from exc
            raise
        if previous is None:
            previous = OAuthToken(access_token="-", expires_at=0.0, refresh_token=refresh_token)
        token = parse_token_response(response, now=self._clock(), previous=previous)
        yield Call(lambda: self._storage.set_org_token(uuid, token))
        self._hot[uuid] = token
        log.info(
            "Service App token of org %s refreshed (expires %s)", uuid, token.expires_at_datetime
        )
        return token

    def _fetch_flow(self, uuid: str) -> Flow[OAuthToken]:
        target = (
            org_hydra_id(uuid, region=self._config.hydra_region)
            if self._target_format == "hydra"
            else uuid
        )
        body = application_token_body(
            client_id=self._creds.client_id,
            client_secret=self._creds.client_secret,
            target_org_id=target,
        )
        path = f"applications/{quote(self.application_id, safe='')}/token"
        for attempt in range(2):
            bearer = yield from self._integration.access_token_flow(force_refresh=attempt > 0)
            spec = self._http.build("POST", path, token=bearer, json_body=body, idempotent=False)
            try:
                response = yield Http(spec)
            except AuthenticationError as exc:
                if exc.status_code == 401 and attempt == 0:
                    log.info("Integration bearer rejected; refreshing it once")
                    continue
                if exc.status_code == 403:
                    raise AuthenticationError(
                        f"the Service App is not authorized in org {uuid}, or the Integration "
                        f"lacks spark:applications_token: {exc.message}",
                        status_code=exc.status_code,
                        body=exc.body,
                        tracking_id=exc.tracking_id,
                        descriptions=exc.descriptions,
                        method=exc.method,
                        url=exc.url,
                    ) from exc
                raise
            token = parse_token_response(response, now=self._clock())
            yield Call(partial(self._storage.set_org_token, uuid, token))
            self._hot[uuid] = token
            log.info(
                "Service App token of org %s fetched (expires %s)", uuid, token.expires_at_datetime
            )
            return token
        raise AssertionError("unreachable")  # pragma: no cover

    # ------------------------------------------------------------------ serviceApp events
    def handle_event_flow(self, event: ServiceAppEvent) -> Flow[WebhookResult]:
        """Apply a verified ``serviceApp`` event under the org's lock (this process and, for
        SQLite/Redis stores, every process sharing the store).

        ``authorized`` fetches and stores the org's tokens, ``deauthorized`` deletes them; a
        redelivery (``duplicate``) or an event older than the org's last applied one
        (``stale``: e.g. a late ``deauthorized`` after the org authorized again) changes
        nothing. The org's event log lives in the token store, so this holds across restarts.
        """
        result: WebhookResult = yield self._locked(event.org_id, self._event_flow(event))
        return result

    def _event_flow(self, event: ServiceAppEvent) -> Flow[WebhookResult]:
        uuid = event.org_id
        history = yield from self._read_event_log(uuid)
        disposition = history.disposition(event)
        common = {
            "org_id": uuid,
            "org_hydra_id": event.org_hydra_id,
            "idempotency_key": event.idempotency_key,
        }
        if disposition != "apply":
            log.info(
                "serviceApp %s for org %s ignored: %s (last applied: %s at %s)",
                event.event,
                uuid,
                "already handled (redelivery)" if disposition == "duplicate" else "older event",
                history.last_event,
                history.last_at.isoformat() if history.last_at else "unknown time",
            )
            flags = {"duplicate": disposition == "duplicate", "stale": disposition == "stale"}
            if event.event == "authorized":
                return ServiceAppAuthorizedResult(**common, **flags)
            return ServiceAppDeauthorizedResult(**common, **flags)
        result: WebhookResult
        if event.event == "authorized":
            token = yield from self._fetch_flow(uuid)  # the org lock is held already
            result = ServiceAppAuthorizedResult(
                **common, token_expires_at=token.expires_at_datetime
            )
        else:
            had = yield Call(lambda: self._storage.get_org_token(uuid))
            yield Call(lambda: self._storage.delete_org_token(uuid))
            self._hot.pop(uuid, None)
            result = ServiceAppDeauthorizedResult(**common, tokens_removed=had is not None)
        yield from self._write_event_log(uuid, history.after(event))
        return result

    def _read_event_log(self, uuid: str) -> Flow[OrgEventLog]:
        store = self._storage
        if isinstance(store, WebhookStateStorage):
            raw: bytes | None = yield Call(lambda: store.get_webhook_state(uuid))
        else:
            raw = self._event_logs.get(uuid)
        if raw is None:
            return OrgEventLog()
        try:
            return OrgEventLog.from_json(raw)
        except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
            problem, key = "the webhook event log is not readable", f"{WEBHOOK_PREFIX}{uuid}"
            if isinstance(store, KeyValueTokenStorage):
                raise store.storage_error(problem, key=key) from None
            raise TokenStorageError(
                f"token store {type(store).__name__}: {problem}", key=key
            ) from None

    def _write_event_log(self, uuid: str, history: OrgEventLog) -> Flow[None]:
        store = self._storage
        data = history.to_json()
        if isinstance(store, WebhookStateStorage):
            yield Call(lambda: store.set_webhook_state(uuid, data))
        else:
            self._event_logs[uuid] = data

    # ------------------------------------------------------------------ public API
    def get_org_token(self, org_id: str, *, force_refresh: bool = False) -> str:
        """A valid access token for ``org_id`` (UUID or Hydra), sync."""
        flow = self.org_token_flow(org_id, force_refresh=force_refresh)
        return run_sync(flow, self._http, self._portal)

    async def aget_org_token(self, org_id: str, *, force_refresh: bool = False) -> str:
        """A valid access token for ``org_id`` (UUID or Hydra).

        Raises:
            OrgNotRegisteredError: No token is stored for the org.
        """
        return await run_async(self.org_token_flow(org_id, force_refresh=force_refresh), self._http)

    def get_org_token_info(self, org_id: str, *, force_refresh: bool = False) -> OAuthToken:
        """The org's valid :class:`OAuthToken` (with expiry), sync."""
        flow = self.org_token_info_flow(org_id, force_refresh=force_refresh)
        return run_sync(flow, self._http, self._portal)

    async def aget_org_token_info(self, org_id: str, *, force_refresh: bool = False) -> OAuthToken:
        """The org's valid :class:`OAuthToken` (with expiry)."""
        flow = self.org_token_info_flow(org_id, force_refresh=force_refresh)
        return await run_async(flow, self._http)

    def fetch_org_token(self, org_id: str) -> OAuthToken:
        """Fetch a fresh pair via the Integration and store it, sync."""
        return run_sync(self.fetch_org_token_flow(org_id), self._http, self._portal)

    async def afetch_org_token(self, org_id: str) -> OAuthToken:
        """Fetch a fresh pair via the Integration and store it (registers the org)."""
        return await run_async(self.fetch_org_token_flow(org_id), self._http)

    def refresh_org_token(self, org_id: str) -> OAuthToken:
        """Refresh the org's token now through the refresh chain, sync."""
        flow = self.org_token_info_flow(org_id, force_refresh=True)
        return run_sync(flow, self._http, self._portal)

    async def arefresh_org_token(self, org_id: str) -> OAuthToken:
        """Refresh the org's token now through the refresh chain."""
        return await run_async(self.org_token_info_flow(org_id, force_refresh=True), self._http)

    def register_org_from_refresh_token(self, org_id: str, refresh_token: str) -> OAuthToken:
        """Sandbox path: store tokens redeemed from a Service App refresh token, sync."""
        flow = self.register_org_from_refresh_token_flow(org_id, refresh_token)
        return run_sync(flow, self._http, self._portal)

    async def aregister_org_from_refresh_token(self, org_id: str, refresh_token: str) -> OAuthToken:
        """Sandbox path: store tokens redeemed from a Service App refresh token.

        Raises:
            ReauthorizationRequiredError: The refresh token is dead.
        """
        flow = self.register_org_from_refresh_token_flow(org_id, refresh_token)
        return await run_async(flow, self._http)

    def revoke_org(self, org_id: str) -> None:
        """Delete the org's stored tokens (e.g. after a ``deauthorized`` event), sync."""
        uuid = org_uuid(org_id)
        self._portal.call(lambda: self._storage.delete_org_token(uuid))
        self._hot.pop(uuid, None)

    async def arevoke_org(self, org_id: str) -> None:
        """Delete the org's stored tokens (e.g. after a ``deauthorized`` event)."""
        uuid = org_uuid(org_id)
        await self._storage.delete_org_token(uuid)
        self._hot.pop(uuid, None)

    def has_org(self, org_id: str) -> bool:
        """Whether tokens are stored for the org, sync."""
        uuid = org_uuid(org_id)
        return self._portal.call(lambda: self._storage.get_org_token(uuid)) is not None

    async def ahas_org(self, org_id: str) -> bool:
        """Whether tokens are stored for the org."""
        return (await self._storage.get_org_token(org_uuid(org_id))) is not None

    def list_orgs(self) -> list[str]:
        """UUIDs of the orgs with stored tokens, sync."""
        return self._portal.call(self._storage.list_orgs)

    async def alist_orgs(self) -> list[str]:
        """UUIDs of the orgs with stored tokens."""
        return await self._storage.list_orgs()

    def __repr__(self) -> str:
        return (
            f"ServiceAppTokenManager(client_id={self._creds.client_id!r}, "
            f"application_id={self.application_id!r})"
        )
