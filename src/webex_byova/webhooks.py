"""Webhooks in and out: registration (``/webhooks``), signature checks, serviceApp events.

Outbound (:class:`WebhookManager`, integration token): list (paginated), get, create, update,
delete and :meth:`WebhookManager.ensure_service_app_webhooks`, each sync and async.

Inbound (no I/O):

* :func:`verify_webhook_signature` checks ``X-Spark-Signature`` (lowercase hex HMAC-SHA1 of
  the raw body) and, when present, ``X-Webex-Signature`` (HMAC-SHA256/512), in constant time.
  It **fails closed**: a missing, malformed or mismatching signature returns ``False``;
  calling it without a secret raises ``ValueError`` (that is a configuration bug).
* :func:`parse_service_app_event` turns a ``serviceApp`` ``authorized``/``deauthorized``
  delivery into a :class:`~webex_byova.models.ServiceAppEvent`. The customer org is read from
  ``data.authorizerOrgId``, then ``data.orgId``, then the envelope ``orgId`` (the envelope
  ``orgId`` is the webhook owner's org, hence last); UUID or Hydra ids are accepted.
* :class:`OrgEventLog` orders one org's events and recognises redeliveries: an event is
  applied only when it is newer than the last one applied for the org (see
  :func:`event_position`), so a ``deauthorized`` delivered late, or replayed after a
  restart, cannot delete the tokens of an org that authorized the app again. The service-app
  manager keeps the log in the token store, under the org's lock.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal, Protocol

from ._authed import TokenFlow, authed_request, iterate_async, iterate_sync, page_flow
from ._flow import Call, Flow, Portal, run_async, run_sync
from ._http import HttpClient, RequestSpec
from ._ids import from_hydra, org_hydra_id, org_uuid
from ._logging import get_logger
from .errors import AuthenticationError, ValidationError
from .models import ServiceAppEvent, Webhook

__all__ = [
    "SERVICE_APP_EVENTS",
    "OrgEventLog",
    "WebhookManager",
    "WebhookSignatureError",
    "event_position",
    "parse_service_app_event",
    "read_service_app_delivery",
    "same_application",
    "verify_webhook_signature",
]

log = get_logger("webex_byova.webhooks")

SERVICE_APP_RESOURCE = "serviceApp"
SERVICE_APP_EVENTS = ("authorized", "deauthorized")
DEFAULT_WEBHOOK_NAME = "webex_byova serviceApp"


class WebhookSignatureError(AuthenticationError):
    """An inbound webhook's signature is missing or does not match the configured secret."""


# --------------------------------------------------------------------------- signatures


def _header_values(headers: Any, name: str) -> builtins.list[str]:
    lname = name.lower()
    items: Iterable[tuple[Any, Any]]
    if hasattr(headers, "multi_items"):  # starlette Headers keeps repeated headers
        items = headers.multi_items()
    elif hasattr(headers, "items"):
        items = headers.items()
    else:
        items = headers
    out: builtins.list[str] = []
    for key, value in items:
        if isinstance(key, bytes):
            key = key.decode("latin-1")
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if str(key).lower() == lname:
            out.append(str(value))
    return out


_WEBEX_ALGS = {"sha1": hashlib.sha1, "sha256": hashlib.sha256, "sha512": hashlib.sha512}
_HEX_LENGTHS = {40: "sha1", 64: "sha256", 128: "sha512"}


def _digest_matches(body: bytes, secret: bytes, algorithm: str, presented: str) -> bool:
    expected = hmac.new(secret, body, _WEBEX_ALGS[algorithm]).hexdigest()
    return hmac.compare_digest(expected.encode(), presented.strip().lower().encode())


def verify_webhook_signature(
    raw_body: bytes,
    headers: Mapping[str, str] | Iterable[tuple[str, str]] | Any,
    secret: str,
) -> bool:
    """Check a webhook delivery's signature over the exact bytes received.

    Args:
        raw_body: The request body exactly as received (not re-serialised JSON).
        headers: Request headers (any mapping, Starlette ``Headers`` or ``(name, value)``
            pairs); names are matched case-insensitively.
        secret: The webhook secret given when the webhook was created.

    Returns:
        ``True`` when every signature header present matches and at least one is present.
        ``False`` when no signature header is present, a header appears twice, a value is
        malformed, or any signature does not match (fail closed).

    Raises:
        ValueError: If ``secret`` is empty (cannot verify, so nothing may be accepted).
        TypeError: If ``raw_body`` is not bytes.
    """
    if not secret:
        raise ValueError("a webhook secret is required to verify signatures")
    if not isinstance(raw_body, bytes | bytearray | memoryview):
        raise TypeError("raw_body must be the raw request bytes")
    body = bytes(raw_body)
    key = secret.encode("utf-8")
    spark = _header_values(headers, "X-Spark-Signature")
    webex = _header_values(headers, "X-Webex-Signature")
    if not spark and not webex:
        return False
    if len(spark) > 1 or len(webex) > 1:
        return False
    if spark and not _digest_matches(body, key, "sha1", spark[0]):
        return False
    if webex:
        value = webex[0].strip()
        algorithm, sep, digest = value.partition("=")
        if sep:
            algorithm = algorithm.strip().lower()
            if algorithm not in ("sha256", "sha512"):
                return False
        else:
            digest = value
            found = _HEX_LENGTHS.get(len(digest))
            if found is None or found == "sha1":
                return False
            algorithm = found
        if not _digest_matches(body, key, algorithm, digest):
            return False
    return True


# --------------------------------------------------------------------------- event parsing


def _first_text(*values: Any) -> str | None:
    for value in values:
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def parse_service_app_event(payload: Any) -> ServiceAppEvent:
    """Parse a ``serviceApp`` ``authorized``/``deauthorized`` webhook delivery.

    Raises:
        ValidationError: If the payload is not a JSON object, is not a ``serviceApp``
            ``authorized``/``deauthorized`` event, or carries no usable org id.
    """
    if not isinstance(payload, Mapping):
        raise ValidationError("webhook payload must be a JSON object")
    resource = payload.get("resource")
    event = payload.get("event")
    if resource != SERVICE_APP_RESOURCE:
        raise ValidationError(
            f"not a serviceApp webhook (resource={resource!r}, event={event!r})", body=None
        )
    if event not in SERVICE_APP_EVENTS:
        raise ValidationError(f"unsupported serviceApp event {event!r}")
    data = payload.get("data")
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ValidationError("serviceApp webhook 'data' must be a JSON object")
    candidates = (
        ("data.authorizerOrgId", data.get("authorizerOrgId")),
        ("data.orgId", data.get("orgId")),
        ("orgId", payload.get("orgId")),
    )
    source, raw_org = next(
        ((name, value) for name, value in candidates if _first_text(value)), ("", None)
    )
    if raw_org is None:
        raise ValidationError("serviceApp webhook carries no org id")
    try:
        uuid = org_uuid(str(raw_org))
        hydra = org_hydra_id(uuid)
    except ValueError as exc:
        raise ValidationError(f"serviceApp webhook {source} is not an org id") from exc
    app = _first_text(data.get("id"), data.get("applicationId"), data.get("appId"))
    date = _first_text(
        data.get("authorizationDate"),
        data.get("deauthorizationDate"),
        data.get("created"),
        payload.get("created"),
    )
    if date is not None:
        basis = "|".join((_plain_app_id(app) or "", uuid, str(event), date))
    else:
        basis = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    key = hashlib.sha256(basis.encode()).hexdigest()
    log.info("serviceApp %s event for org %s (org id read from %s)", event, uuid, source)
    return ServiceAppEvent(
        event=event,
        org_id=uuid,
        org_hydra_id=hydra,
        org_id_source=source,
        application_id=app,
        webhook_id=_first_text(payload.get("id")),
        authorization_date=date,
        idempotency_key=key,
        raw=dict(payload),
    )


# --------------------------------------------------------------------------- event order

#: Idempotency keys of applied events remembered per org (redeliveries are recognised).
EVENTS_REMEMBERED: Final = 64
_RANK = {"authorized": 0, "deauthorized": 1}
Disposition = Literal["apply", "duplicate", "stale"]


def _timestamp(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value.strip() or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def event_position(event: ServiceAppEvent) -> tuple[datetime, int] | None:
    """Where an event falls in its org's history: its time, then ``authorized`` before
    ``deauthorized`` at the same time; ``None`` when the payload carries no usable time.

    The time is ``data.deauthorizationDate`` (deauthorizations), else ``data.authorizationDate``
    (for a deauthorization, the date of the authorization it ends), else ``data.created``. The
    envelope ``created`` is not used: it is the webhook's own creation time, the same for every
    delivery.
    """
    data = event.raw.get("data")
    if not isinstance(data, Mapping):
        return None
    names: tuple[str, ...] = ("authorizationDate", "created")
    if event.event == "deauthorized":
        names = ("deauthorizationDate", *names)
    for name in names:
        moment = _timestamp(data.get(name))
        if moment is not None:
            return moment, _RANK[event.event]
    return None


@dataclass(frozen=True)
class OrgEventLog:
    """What is remembered of one org's applied ``serviceApp`` events (sans-IO).

    Attributes:
        last_at: Time of the newest applied event that had one.
        last_rank: 0 when that event was an authorization, 1 for a deauthorization.
        last_event: ``authorized`` or ``deauthorized`` (the newest applied event).
        seen: Idempotency keys of the last :data:`EVENTS_REMEMBERED` applied events.
    """

    last_at: datetime | None = None
    last_rank: int = 0
    last_event: str | None = None
    seen: tuple[str, ...] = ()

    def disposition(self, event: ServiceAppEvent) -> Disposition:
        """``duplicate`` (this delivery was applied), ``stale`` (a newer or equal event was
        applied for the org) or ``apply``."""
        if event.idempotency_key in self.seen:
            return "duplicate"
        position = event_position(event)
        if (
            position is not None
            and self.last_at is not None
            and position <= (self.last_at, self.last_rank)
        ):
            return "stale"
        return "apply"

    def after(self, event: ServiceAppEvent) -> OrgEventLog:
        """The log once ``event`` is applied."""
        seen = (*self.seen, event.idempotency_key)[-EVENTS_REMEMBERED:]
        position = event_position(event)
        if position is None:
            return OrgEventLog(self.last_at, self.last_rank, event.event, seen)
        return OrgEventLog(position[0], position[1], event.event, seen)

    def to_json(self) -> bytes:
        """Serialise for the token store (no secrets: times and hashes)."""
        doc = {
            "v": 1,
            "last_at": self.last_at.isoformat() if self.last_at is not None else None,
            "last_rank": self.last_rank,
            "last_event": self.last_event,
            "seen": list(self.seen),
        }
        return json.dumps(doc, separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, data: bytes) -> OrgEventLog:
        """Parse :meth:`to_json` output.

        Raises:
            ValueError: The data is not an event log.
        """
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("v") != 1:
            raise ValueError("not a webhook event log")
        last_at = doc.get("last_at")
        seen = doc.get("seen")
        rank = doc.get("last_rank")
        event = doc.get("last_event")
        if (
            (last_at is not None and _timestamp(last_at) is None)
            or rank not in (0, 1)
            or (event is not None and event not in SERVICE_APP_EVENTS)
            or not isinstance(seen, list)
            or not all(isinstance(k, str) for k in seen)
        ):
            raise ValueError("malformed webhook event log")
        return cls(_timestamp(last_at), int(rank), event, tuple(seen[-EVENTS_REMEMBERED:]))


def read_service_app_delivery(
    payload: Mapping[str, Any] | None,
    *,
    raw_body: bytes | None = None,
    headers: Any = None,
    secret: str | None = None,
) -> ServiceAppEvent:
    """Verify (when ``secret`` is set) and parse one ``serviceApp`` delivery (no I/O).

    With a ``secret`` the delivery must come with ``raw_body`` and ``headers`` and a valid
    signature; the event is then read from the verified bytes, and ``payload`` (if given)
    must equal them, so an unverified dict can never be processed.

    Raises:
        WebhookSignatureError: A secret is configured and the signature is missing, malformed
            or wrong (an :class:`~webex_byova.errors.AuthenticationError`; answer 401).
        ValidationError: Anything else is wrong: no body to verify, undecodable JSON, not a
            ``serviceApp`` ``authorized``/``deauthorized`` event, no usable org id.
    """
    data: Any = payload
    if raw_body is not None:
        if not isinstance(raw_body, bytes | bytearray | memoryview):
            raise ValidationError("raw_body must be the raw request bytes")
        if secret and not verify_webhook_signature(bytes(raw_body), headers or {}, secret):
            raise WebhookSignatureError("webhook signature missing or invalid", status_code=401)
        try:
            data = json.loads(bytes(raw_body))
        except (ValueError, UnicodeDecodeError, RecursionError):  # absurd nesting included
            raise ValidationError("webhook body is not valid JSON") from None
        if payload is not None and dict(payload) != data:
            raise ValidationError("payload does not match raw_body")
    elif secret:
        raise ValidationError(
            "a webhook secret is configured: pass raw_body (the exact request bytes) and "
            "headers so the signature can be verified"
        )
    if data is None:
        raise ValidationError("no webhook payload given")
    return parse_service_app_event(data)


def _plain_app_id(app_id: str | None) -> str | None:
    """The client id inside an application id (Hydra or plain), lowercased for comparison."""
    if not app_id:
        return None
    decoded = from_hydra(app_id)
    return (decoded[2] if decoded is not None else app_id).strip().lower()


def same_application(a: str | None, b: str | None) -> bool:
    """Whether two application ids (Hydra or plain client id) name the same app."""
    pa, pb = _plain_app_id(a), _plain_app_id(b)
    return pa is not None and pa == pb


# --------------------------------------------------------------------------- request building


class IntegrationTokenSource(Protocol):
    """What :class:`WebhookManager` needs from the integration token manager."""

    async def aget_access_token(self) -> str:
        """A valid integration access token."""
        ...


def integration_token_flow(integration: Any) -> TokenFlow:
    """Adapt an integration token manager to a :data:`~webex_byova._authed.TokenFlow`."""
    flow_fn = getattr(integration, "access_token_flow", None)
    if flow_fn is not None:

        def _flow(force: bool) -> Flow[str]:
            token: str = yield from flow_fn(force_refresh=force)
            return token

        return _flow

    def _call_flow(force: bool) -> Flow[str]:
        if force and hasattr(integration, "arefresh"):
            yield Call(lambda: integration.arefresh())
        token: str = yield Call(lambda: integration.aget_access_token())
        return token

    return _call_flow


def _webhook_body(
    *,
    name: str,
    target_url: str,
    resource: str | None = None,
    event: str | None = None,
    secret: str | None = None,
    filter: str | None = None,
    owned_by: str | None = None,
    status: str | None = None,
) -> dict[str, Any]:
    if not name or not target_url:
        raise ValidationError("a webhook needs a non-empty name and target_url")
    if not target_url.startswith(("https://", "http://")):
        raise ValidationError(f"target_url must be an http(s) URL, got {target_url!r}")
    body: dict[str, Any] = {"name": name, "targetUrl": target_url}
    for key, value in (
        ("resource", resource),
        ("event", event),
        ("filter", filter),
        ("secret", secret),
        ("ownedBy", owned_by),
        ("status", status),
    ):
        if value is not None:
            body[key] = value
    return body


def _webhook_id(webhook_id: str) -> str:
    if not isinstance(webhook_id, str) or not webhook_id.strip() or "/" in webhook_id:
        raise ValidationError(f"invalid webhook id {webhook_id!r}")
    return webhook_id.strip()


# --------------------------------------------------------------------------- manager


class WebhookManager:
    """Register and manage webhooks with the integration's token (sync and async).

    Args:
        integration: The :class:`~webex_byova.integration.IntegrationTokenManager`.
        http: The shared :class:`~webex_byova._http.HttpClient`.
        portal: Event loop used by sync methods for async storage calls (default: shared).
    """

    def __init__(self, integration: Any, http: HttpClient, *, portal: Portal | None = None) -> None:
        self._integration = integration
        self._http = http
        self._portal = portal if portal is not None else getattr(integration, "portal", None)
        self._token_flow = integration_token_flow(integration)

    # -- flows (written once)
    def _list_spec(self, max: int | None, owned_by: str | None) -> RequestSpec:
        if max is not None and (not isinstance(max, int) or isinstance(max, bool) or max < 1):
            raise ValidationError(f"max must be a positive integer, got {max!r}")
        return self._http.build("GET", "webhooks", params={"max": max, "ownedBy": owned_by})

    def _one_flow(self, spec: RequestSpec) -> Flow[Webhook]:
        response = yield from authed_request(spec, self._token_flow)
        return Webhook.model_validate(response.json())

    def get_flow(self, webhook_id: str) -> Flow[Webhook]:
        """Flow: ``GET /webhooks/{id}``."""
        return self._one_flow(self._http.build("GET", f"webhooks/{_webhook_id(webhook_id)}"))

    def create_flow(
        self,
        *,
        name: str,
        target_url: str,
        resource: str,
        event: str,
        secret: str | None = None,
        filter: str | None = None,
        owned_by: str | None = None,
    ) -> Flow[Webhook]:
        """Flow: ``POST /webhooks``."""
        if not resource or not event:
            raise ValidationError("a webhook needs a resource and an event")
        body = _webhook_body(
            name=name,
            target_url=target_url,
            resource=resource,
            event=event,
            secret=secret,
            filter=filter,
            owned_by=owned_by,
        )
        return self._one_flow(self._http.build("POST", "webhooks", json_body=body))

    def update_flow(
        self,
        webhook_id: str,
        *,
        name: str | None = None,
        target_url: str | None = None,
        secret: str | None = None,
        status: str | None = None,
    ) -> Flow[Webhook]:
        """Flow: ``PUT /webhooks/{id}``; a missing name/target URL is read from a GET first."""
        wid = _webhook_id(webhook_id)
        if status is not None and status not in ("active", "inactive"):
            raise ValidationError(f"status must be 'active' or 'inactive', got {status!r}")
        if name is None or target_url is None:
            current = yield from self.get_flow(wid)
            name = name if name is not None else current.name
            target_url = target_url if target_url is not None else current.target_url
        body = _webhook_body(
            name=name or "", target_url=target_url or "", secret=secret, status=status
        )
        spec = self._http.build("PUT", f"webhooks/{wid}", json_body=body)
        return (yield from self._one_flow(spec))

    def delete_flow(self, webhook_id: str) -> Flow[None]:
        """Flow: ``DELETE /webhooks/{id}``."""
        spec = self._http.build("DELETE", f"webhooks/{_webhook_id(webhook_id)}")
        yield from authed_request(spec, self._token_flow)
        return None

    def _all_flow(self) -> Flow[builtins.list[Webhook]]:
        found: builtins.list[Webhook] = []
        current: RequestSpec | None = self._list_spec(None, None)
        while current is not None:
            items, current = yield from page_flow(current, self._token_flow)
            found.extend(Webhook.model_validate(item) for item in items)
        return found

    def ensure_flow(
        self,
        target_url: str,
        *,
        secret: str | None = None,
        filter: str | None = None,
        name: str = DEFAULT_WEBHOOK_NAME,
    ) -> Flow[builtins.list[Webhook]]:
        """Flow behind :meth:`ensure_service_app_webhooks`."""
        _webhook_body(name=name, target_url=target_url)  # validate before any request
        existing = yield from self._all_flow()
        result: builtins.list[Webhook] = []
        for event in SERVICE_APP_EVENTS:
            matches = [
                w
                for w in existing
                if w.resource == SERVICE_APP_RESOURCE
                and w.event == event
                and w.target_url == target_url
                and (filter is None or w.filter == filter)
            ]
            if not matches:
                created = yield from self.create_flow(
                    name=f"{name} {event}",
                    target_url=target_url,
                    resource=SERVICE_APP_RESOURCE,
                    event=event,
                    secret=secret,
                    filter=filter,
                )
                log.info("created serviceApp %s webhook %s", event, created.id)
                result.append(created)
                continue
            matches.sort(key=lambda w: not w.is_active)
            hook = matches[0]
            if len(matches) > 1:
                log.warning(
                    "%d serviceApp %s webhooks target %s; keeping %s",
                    len(matches),
                    event,
                    target_url,
                    hook.id,
                )
            secret_changed = secret is not None and hook.secret != secret
            if hook.is_active and not secret_changed:
                result.append(hook)
                continue
            updated = yield from self.update_flow(
                hook.id,
                name=hook.name or f"{name} {event}",
                target_url=target_url,
                secret=secret if secret is not None else hook.secret,
                status="active",
            )
            log.info(
                "updated serviceApp %s webhook %s (re-enabled=%s, secret changed=%s)",
                event,
                hook.id,
                not hook.is_active,
                secret_changed,
            )
            result.append(updated)
        return result

    # -- sync / async shells
    def list(self, *, max: int | None = None, owned_by: str | None = None) -> Iterator[Webhook]:
        """Iterate over every webhook (follows pagination lazily).

        Args:
            max: Page size (``max`` query parameter).
            owned_by: ``"org"`` to list org-wide webhooks.
        """
        spec = self._list_spec(max, owned_by)
        for item in iterate_sync(spec, self._token_flow, self._http, self._portal):
            yield Webhook.model_validate(item)

    async def alist(
        self, *, max: int | None = None, owned_by: str | None = None
    ) -> AsyncIterator[Webhook]:
        """Async :meth:`list`."""
        spec = self._list_spec(max, owned_by)
        async for item in iterate_async(spec, self._token_flow, self._http):
            yield Webhook.model_validate(item)

    def get(self, webhook_id: str) -> Webhook:
        """Return one webhook."""
        return run_sync(self.get_flow(webhook_id), self._http, self._portal)

    async def aget(self, webhook_id: str) -> Webhook:
        """Async :meth:`get`."""
        return await run_async(self.get_flow(webhook_id), self._http)

    def create(
        self,
        *,
        name: str,
        target_url: str,
        resource: str,
        event: str,
        secret: str | None = None,
        filter: str | None = None,
        owned_by: str | None = None,
    ) -> Webhook:
        """Create a webhook; ``secret`` makes Webex sign each delivery."""
        flow = self.create_flow(
            name=name,
            target_url=target_url,
            resource=resource,
            event=event,
            secret=secret,
            filter=filter,
            owned_by=owned_by,
        )
        return run_sync(flow, self._http, self._portal)

    async def acreate(
        self,
        *,
        name: str,
        target_url: str,
        resource: str,
        event: str,
        secret: str | None = None,
        filter: str | None = None,
        owned_by: str | None = None,
    ) -> Webhook:
        """Async :meth:`create`."""
        flow = self.create_flow(
            name=name,
            target_url=target_url,
            resource=resource,
            event=event,
            secret=secret,
            filter=filter,
            owned_by=owned_by,
        )
        return await run_async(flow, self._http)

    def update(
        self,
        webhook_id: str,
        *,
        name: str | None = None,
        target_url: str | None = None,
        secret: str | None = None,
        status: str | None = None,
    ) -> Webhook:
        """Update a webhook (``status="active"`` re-enables one Webex disabled)."""
        flow = self.update_flow(
            webhook_id, name=name, target_url=target_url, secret=secret, status=status
        )
        return run_sync(flow, self._http, self._portal)

    async def aupdate(
        self,
        webhook_id: str,
        *,
        name: str | None = None,
        target_url: str | None = None,
        secret: str | None = None,
        status: str | None = None,
    ) -> Webhook:
        """Async :meth:`update`."""
        flow = self.update_flow(
            webhook_id, name=name, target_url=target_url, secret=secret, status=status
        )
        return await run_async(flow, self._http)

    def delete(self, webhook_id: str) -> None:
        """Delete a webhook."""
        run_sync(self.delete_flow(webhook_id), self._http, self._portal)

    async def adelete(self, webhook_id: str) -> None:
        """Async :meth:`delete`."""
        await run_async(self.delete_flow(webhook_id), self._http)

    def ensure_service_app_webhooks(
        self,
        target_url: str,
        *,
        secret: str | None = None,
        filter: str | None = None,
        name: str = DEFAULT_WEBHOOK_NAME,
    ) -> builtins.list[Webhook]:
        """Make sure ``serviceApp`` ``authorized`` and ``deauthorized`` webhooks exist.

        Idempotent: missing webhooks are created, an ``inactive`` one is re-enabled and one
        whose secret differs from ``secret`` is updated; otherwise nothing is sent but the
        list request. (When Webex omits ``secret`` from the listing the webhook is updated
        every time, which is harmless.)

        Args:
            target_url: Where Webex delivers the events (your receiver).
            secret: Webhook secret used to sign deliveries (strongly recommended).
            filter: Optional Webex filter, e.g. ``"id=<service app applicationId>"``.
            name: Name prefix of created webhooks.

        Returns:
            The ``authorized`` and ``deauthorized`` webhooks, in that order.
        """
        flow = self.ensure_flow(target_url, secret=secret, filter=filter, name=name)
        return run_sync(flow, self._http, self._portal)

    async def aensure_service_app_webhooks(
        self,
        target_url: str,
        *,
        secret: str | None = None,
        filter: str | None = None,
        name: str = DEFAULT_WEBHOOK_NAME,
    ) -> builtins.list[Webhook]:
        """Async :meth:`ensure_service_app_webhooks`."""
        flow = self.ensure_flow(target_url, secret=secret, filter=filter, name=name)
        return await run_async(flow, self._http)
