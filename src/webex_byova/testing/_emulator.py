"""A local, real-HTTP Webex emulator for offline development and tests.

:class:`WebexEmulator` serves the parts of Webex this SDK talks to on ``127.0.0.1`` (an
ephemeral port by default), from memory, in a daemon thread, so sync and async code can both
call it::

    from webex_byova.testing import WebexEmulator

    with WebexEmulator() as emu:
        cfg = emu.config()                      # BYOVAConfig pointing at the emulator
        emu.authorize_service_app(emu.org.org_id)
        tokens = emu.issue_service_app_token(emu.org.org_id)

Endpoints (below ``emu.base_url`` = ``http://127.0.0.1:PORT/v1``):

* ``GET /authorize`` auto-consents and redirects to ``redirect_uri?code=..&state=..``.
* ``POST /access_token`` (form) ``authorization_code`` and ``refresh_token`` grants; the
  client authenticates with HTTP Basic (``client_secret_basic``) or in the form
  (``client_secret_post``); a wrong client gets 401 with ``WWW-Authenticate``.
* ``POST /applications/{applicationId}/token`` Service App org tokens.
* ``/webhooks`` and ``/webhooks/{id}``: POST, GET (``max``, ``ownedBy``, ``Link`` paging),
  PUT, DELETE.
* ``/dataSources`` (trailing slash too), ``/dataSources/{id}``, ``/dataSources/schemas[/{id}]``.
* ``GET /idb/oauth2/v2/keys/verificationjwk`` (below ``emu.url``): the JWKS of ``emu.issuer``.

Every response carries a ``TrackingID`` header: the caller's own ``TrackingID`` echoed (when
it is a plain token, as Webex does), else ``EMU_<uuid>``; errors use Webex's body
``{message, errors:[{description}], trackingId}``; OAuth errors add ``error`` and
``error_description``.

Behaviours chosen where the spec is unsure (see docs/ARCHITECTURE.md and the REST spec §8):

* **Clock.** ``emu.clock.now()`` is wall time plus an offset moved by ``advance()``; every
  lifetime, ``iat``/``exp`` and expiry check uses it.
* **Authorize.** An unknown ``client_id`` or unregistered ``redirect_uri`` gives a 400 HTML
  page (no redirect). The seeded integration also accepts any ``http`` loopback redirect URI
  (``127.0.0.1``, ``localhost``, ``::1``, any port). A missing ``scope`` grants every scope
  of the integration; a scope it was not registered with redirects ``error=invalid_scope``.
  PKCE supports ``S256`` only; ``plain`` or a malformed challenge redirects
  ``error=invalid_request``.
* **Codes** live 10 minutes and are consumed by any exchange attempt with valid client
  credentials, even a failed one. ``redirect_uri`` must equal the authorize request's. A
  ``code_verifier`` without a prior challenge is ``invalid_grant``.
* **Token endpoint** requires form encoding (JSON gives 400 ``invalid_request``). Bad client
  credentials: 401 ``invalid_client``. Dead codes and refresh tokens: 400 ``invalid_grant``.
* **Refresh.** Without ``rotate_refresh_tokens`` the response repeats the same
  ``refresh_token`` and its expiry slides to ``now + refresh_token_lifetime`` (refresh tokens
  used regularly never expire). With rotation the old refresh token is revoked.
* **Service App token.** ``applicationId`` must be the Hydra id (padded, unpadded or
  URL-safe base64); a plain client id is 404. Check order: bearer (401), scope
  ``spark:applications_token`` (403), app (404), body (400; ``clientId`` must match the
  path), ``clientSecret`` (401), org authorized (403; an unknown org is also 403).
  ``targetOrgId`` may be a UUID or Hydra id. Deauthorizing revokes the app's tokens there.
* **Webhooks** need any live token; they are owned by the token's user (``ownedBy:creator``)
  or the token's org (``ownedBy:org``, one per resource/filter, else 409). Scopes are not
  checked. ``GET`` pages with an opaque ``cursor`` and keeps every query parameter in the
  ``next`` link. ``PUT`` needs ``name`` and ``targetUrl``; ``status`` may only be
  ``active``; other fields are ignored. Webhooks are returned with their ``secret``.
* **Delivery.** Admin actions POST to every matching active webhook of the developer org
  (``serviceApp``; event equal or ``all``; a ``filter`` ``id=`` must name the app in any
  Hydra form, ``friendlyName=`` its name, other filter keys are ignored). Envelope: ``id,
  name, targetUrl, resource, event, filter, orgId`` (developer org Hydra), ``createdBy, appId,
  ownedBy, status, created, actorId`` (customer org admin) and ``data`` ``{id`` (app Hydra id),
  ``friendlyName, authorizerOrgId, orgId`` (customer org Hydra), ``authorizationDate}``. A
  non-2xx answer or connection error is a failure; 100 failures inside 5 minutes (emulator
  clock) set ``status: inactive``. Reactivating does not clear the failure window, so a
  webhook re-enabled within 5 minutes is disabled again by its next failure (the guide's rule).
* **Data sources** need a Service App org token (an integration token is 403) with
  ``spark-admin:datasource_read`` (GET) or ``_write``; the org is the token's and only that
  app's sources are visible. ``POST`` answers 200. ``PUT`` is a full replacement of
  ``schemaId, url, audience, subject, nonce, tokenLifetimeMinutes`` (1..1440, an integer);
  ``status`` (``active``/``disabled``) is optional and kept when absent; ``disabled`` needs a
  non-empty ``errorMessage``; reusing the current nonce is 409. A BYOVA-over-WebSocket source
  (schema ``a38a10b7-…``) must register its bare ``wss://host[:port]`` origin (no path, query,
  fragment or credentials; Webex appends ``/v1/va``), else 400. Duplicate URLs are allowed.
  Each create/update mints an RS256 JWS (``jti`` is a fresh UUID). If the Service App has
  ``valid_domains``, the ``url`` host must be one of them or a subdomain. Schemas accept any
  live token. Deauthorizing an org keeps its data sources.
* **Fault injection** (``fail_next``, ``drop_next``, ``add_latency``) runs before routing and
  every request, faulted or not, is recorded in ``emu.requests``. Path prefixes are matched
  against the raw path; a prefix not starting with ``/v1`` or ``/idb`` gets ``/v1``
  prepended, so ``fail_next("/access_token")`` works.
* **Log bounds.** ``emu.requests`` and ``emu.deliveries`` each keep at most
  ``max_log_entries`` entries (10,000 by default; ``None`` keeps everything), dropping the
  oldest first, so a long-running ``byova emulator`` does not grow without limit.
  ``emu.count(...)`` counts within that window.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import socket
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self
from urllib.parse import parse_qs, urlsplit

from .._logging import get_logger, mask, redact, redact_mapping
from ..config import BYOVAConfig
from ._emulator_jws import KeyRing
from ._emulator_routes import (
    JWKS_PATH,
    EmuRequest,
    EmuResponse,
    RouteContext,
    error_response,
    mint_data_source_claims,
    route,
    tracking_id_for,
)
from ._emulator_state import (
    DataSourceRecord,
    EmulatorClock,
    EmulatorError,
    EmulatorState,
    Integration,
    Org,
    ServiceApp,
    WebhookRecord,
    hydra_decode,
    iso_ms,
    resolve_org_uuid,
)

__all__ = [
    "BYOVA_SCHEMA_ID",
    "Delivery",
    "EmulatorClock",
    "EmulatorError",
    "Integration",
    "Org",
    "RequestRecord",
    "ServiceApp",
    "WebexEmulator",
]

BYOVA_SCHEMA_ID = "5397013b-7920-4ffc-807c-e8a3e0a18f43"
FAILURE_WINDOW_SECONDS = 300.0
FAILURES_TO_DISABLE = 100

_log = get_logger("testing.emulator")


@dataclass(frozen=True)
class RequestRecord:
    """One request the emulator received (``json``/``form`` parsed when the body allows)."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    form: dict[str, str] | None
    body: bytes
    status: int | None  # None when the connection was dropped
    at: float  # emulator clock
    tracking_id: str
    fault: str | None = None  # "status", "drop" or None

    def __repr__(self) -> str:
        return (
            f"RequestRecord({self.method} {self.path} query={redact_mapping(self.query)} "
            f"status={self.status} fault={self.fault} tracking_id={self.tracking_id})"
        )


@dataclass(frozen=True)
class Delivery:
    """Outcome of one webhook POST."""

    webhook_id: str
    status_code: int | None
    error: str | None
    target_url: str = ""
    resource: str = ""
    event: str = ""
    body: bytes = field(default=b"", repr=False)
    signature: str | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        """Whether the receiver answered 2xx."""
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def payload(self) -> Any:
        """The JSON envelope that was sent."""
        return json.loads(self.body) if self.body else None


@dataclass
class _Fault:
    prefix: str
    method: str | None
    kind: str  # "status" | "drop" | "latency"
    remaining: int | None  # None: forever
    status: int = 500
    retry_after: str | None = None
    body: bytes | None = None
    content_type: str = "application/json;charset=UTF-8"
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining is not None and self.remaining <= 0:
            return False
        if self.method is not None and self.method != method:
            return False
        return path.startswith(self.prefix)


@dataclass
class _Plan:
    hook: WebhookRecord
    envelope: dict[str, Any]


def _norm_prefix(prefix: str) -> str:
    if not prefix.startswith("/"):
        prefix = "/" + prefix
    if prefix == "/" or prefix.startswith(("/v1", "/idb")):
        return prefix
    return "/v1" + prefix


def _retry_after_value(value: int | float | str | datetime | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return format_datetime(value, usegmt=True)
    if isinstance(value, int | float):
        return str(int(value))
    return str(value)


def _filter_matches(filter_text: str | None, app: ServiceApp) -> bool:
    if not filter_text:
        return True
    for part in filter_text.split("&"):
        key, _, value = part.partition("=")
        key = key.strip()
        value = value.strip()
        if key == "id":
            decoded = hydra_decode(value)
            ident = decoded[2] if decoded is not None else value
            if ident != app.client_id:
                return False
        elif key == "friendlyName" and value != app.name:
            return False
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        self.open_sockets: set[socket.socket] = set()
        self.handler_threads: set[threading.Thread] = set()
        self.sockets_lock = threading.Lock()
        super().__init__(addr, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Track the socket and its thread from the moment of accept (not from the handler's
        # setup()), so stop() can shut down and join every connection, even a fresh one.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"webex-emulator-conn-{self.server_address[1]}",
            daemon=True,
        )
        with self.sockets_lock:
            self.handler_threads = {t for t in self.handler_threads if t.is_alive()}
            self.handler_threads.add(thread)
            self.open_sockets.add(request)
        thread.start()

    def shutdown_request(self, request: Any) -> None:
        with self.sockets_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        _log.debug("emulator connection error from %s", client_address, exc_info=True)


class WebexEmulator:
    """A real HTTP server emulating Webex OAuth, Service Apps, webhooks, data sources and JWKS.

    Args:
        host: Interface to bind (loopback by default).
        port: Port to bind; ``0`` picks a free ephemeral port.
        access_token_lifetime: Integration access token ``expires_in`` (seconds).
        refresh_token_lifetime: Refresh token ``refresh_token_expires_in`` (seconds).
        service_app_token_lifetime: Service App access token ``expires_in`` (seconds).
        rotate_refresh_tokens: Issue a new refresh token on every refresh and revoke the old.
        region: Region segment of Hydra ids (``"us"`` or ``"eu"``).
        clock: A shared :class:`EmulatorClock` (a fresh one by default).
        webhook_timeout: Seconds to wait for a webhook receiver.
        max_log_entries: Most entries kept in each of ``requests`` and ``deliveries`` (the
            oldest are dropped first); ``None`` keeps every entry.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        access_token_lifetime: int = 1209600,
        refresh_token_lifetime: int = 7776000,
        service_app_token_lifetime: int = 1209600,
        rotate_refresh_tokens: bool = False,
        region: str = "us",
        clock: EmulatorClock | None = None,
        webhook_timeout: float = 5.0,
        max_log_entries: int | None = 10_000,
    ) -> None:
        if max_log_entries is not None and max_log_entries < 1:
            raise ValueError("max_log_entries must be at least 1 (or None for unbounded)")
        self.host = host
        self._requested_port = port
        self.clock = clock or EmulatorClock()
        self.region = region
        self.webhook_timeout = webhook_timeout
        self._state = EmulatorState(
            clock=self.clock,
            region=region,
            access_token_lifetime=access_token_lifetime,
            refresh_token_lifetime=refresh_token_lifetime,
            service_app_token_lifetime=service_app_token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
        )
        self._keys = KeyRing()
        self.max_log_entries = max_log_entries
        self._records: deque[RequestRecord] = deque(maxlen=max_log_entries)
        self._deliveries: deque[Delivery] = deque(maxlen=max_log_entries)
        self._faults: list[_Fault] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self._port = 0
        self.developer_org: Org = self._state.create_org("Developer Org")
        self.org: Org = self._state.create_org("Customer Org")
        self.integration: Integration = self._state.create_integration(owner_org=self.developer_org)
        self.service_app: ServiceApp = self._state.create_service_app()

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> Self:
        """Bind and serve in a daemon thread (no-op when already running)."""
        with self._lifecycle:
            if self._server is not None:
                return self
            server = _Server((self.host, self._requested_port), self._handler_class())
            self._server = server
            self._port = int(server.server_address[1])
            self._thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.01},  # bounds stop() latency
                name=f"webex-emulator-{self._port}",
                daemon=True,
            )
            self._thread.start()
            _log.debug("webex emulator listening on %s", self.url)
            return self

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            self._server = None
            self._thread = None
            if server is None:
                return
            server.shutdown()  # no accept() after this: the sets below only shrink
            with server.sockets_lock:
                conns = list(server.open_sockets)
                handlers = list(server.handler_threads)
            for conn in conns:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
            server.server_close()
            if thread is not None:
                thread.join(timeout=5)
            deadline = time.monotonic() + 5
            for handler in handlers:  # a handler may be in injected latency or a webhook POST
                if handler is threading.current_thread():
                    continue
                handler.join(timeout=max(0.0, deadline - time.monotonic()))

    @property
    def running(self) -> bool:
        """Whether the server is serving."""
        return self._server is not None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def astart(self) -> Self:
        """Start without blocking the event loop."""
        await asyncio.to_thread(self.start)
        return self

    async def astop(self) -> None:
        """Stop without blocking the event loop."""
        await asyncio.to_thread(self.stop)

    async def __aenter__(self) -> Self:
        return await self.astart()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.astop()

    def __repr__(self) -> str:
        where = self.url if self._server is not None else "stopped"
        return f"WebexEmulator({where})"

    # -- URLs -----------------------------------------------------------------------------
    @property
    def port(self) -> int:
        """Bound port (valid after :meth:`start`)."""
        if self._server is None and not self._port:
            raise EmulatorError("the emulator is not started; call start() first")
        return self._port

    @property
    def url(self) -> str:
        """Root URL ``http://127.0.0.1:PORT``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """REST base URL (ends with ``/v1``)."""
        return self.url + "/v1"

    @property
    def authorize_url(self) -> str:
        """OAuth authorize endpoint."""
        return self.base_url + "/authorize"

    @property
    def token_url(self) -> str:
        """OAuth token endpoint."""
        return self.base_url + "/access_token"

    @property
    def issuer(self) -> str:
        """``iss`` of minted data-source tokens."""
        return self.url + "/idb"

    @property
    def jwks_url(self) -> str:
        """JWKS URL of :attr:`issuer`."""
        return self.url + JWKS_PATH

    def config(self, **overrides: Any) -> BYOVAConfig:
        """A :class:`~webex_byova.config.BYOVAConfig` pointing every URL at this emulator."""
        values: dict[str, Any] = {
            "base_url": self.base_url,
            "authorize_url": self.authorize_url,
            "token_url": self.token_url,
            "jwk_url_us": self.jwks_url,
            "jwk_url_eu": self.jwks_url,
            "region": self.region if self.region in ("us", "eu") else "us",
            "extra_issuers": (self.issuer,),
            "backoff_base": 0.01,
        }
        values.update(overrides)
        return BYOVAConfig(**values)

    def _ctx(self) -> RouteContext:
        return RouteContext(
            state=self._state, keys=self._keys, base_url=self.base_url, issuer=self.issuer
        )

    # -- HTTP shell -----------------------------------------------------------------------
    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = "WebexEmulator/1"
            timeout = 60

            def setup(self) -> None:
                super().setup()
                # headers and body are two writes: without this, Nagle + delayed ACK
                # add ~40 ms to every keep-alive response
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, format: str, *args: Any) -> None:
                _log.debug("emulator: " + redact(format % args))

            def send_error(
                self, code: int, message: str | None = None, explain: str | None = None
            ) -> None:
                # http.server's own errors (bad request line, unknown method, ...) get the
                # Webex body and a TrackingID like every other answer, not an HTML page.
                self.log_error("code %d, message %s", code, message)
                if self.request_version == "HTTP/0.9":
                    self.request_version = "HTTP/1.1"  # always write a status line
                tracking_id = f"EMU_{uuid.uuid4()}"
                text = message or self.responses.get(code, ("Error",))[0]
                resp = error_response(code, text, tracking_id)
                self.close_connection = True
                self.send_response(code)
                self.send_header("Connection", "close")
                for name, value in resp.headers:
                    self.send_header(name, value)
                self.send_header("TrackingID", tracking_id)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.body)

            def _dispatch(self) -> None:
                raw_length = (self.headers.get("Content-Length") or "0").strip()
                if not raw_length.isdigit():
                    self.send_error(400, f"Invalid Content-Length {raw_length!r}.")
                    return
                length = int(raw_length)
                body = self.rfile.read(length) if length > 0 else b""
                split = urlsplit(self.path)
                req = EmuRequest(
                    method=self.command,
                    path=split.path,
                    query=parse_qs(split.query, keep_blank_values=True),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                    tracking_id=tracking_id_for(self.headers.get("TrackingID")),
                )
                resp = emulator._process(req)
                if resp is None:
                    self.close_connection = True
                    return
                self.send_response(resp.status)
                for name, value in resp.headers:
                    self.send_header(name, value)
                self.send_header("TrackingID", req.tracking_id)
                self.send_header("Content-Length", str(len(resp.body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(resp.body)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch

        return Handler

    def _process(self, req: EmuRequest) -> EmuResponse | None:
        latency = 0.0
        action: _Fault | None = None
        with self._state.lock:
            for fault in self._faults:
                if not fault.matches(req.method, req.path):
                    continue
                if fault.kind == "latency":
                    latency += fault.seconds
                    if fault.remaining is not None:
                        fault.remaining -= 1
                elif action is None:
                    action = fault
                    if fault.remaining is not None:
                        fault.remaining -= 1
            self._faults = [f for f in self._faults if f.remaining is None or f.remaining > 0]
        if latency > 0:
            time.sleep(latency)
        resp: EmuResponse | None
        if action is not None and action.kind == "drop":
            resp = None
        elif action is not None:
            headers: list[tuple[str, str]] = []
            if action.retry_after is not None:
                headers.append(("Retry-After", action.retry_after))
            if action.body is not None:
                resp = EmuResponse(
                    action.status, action.body, [("Content-Type", action.content_type), *headers]
                )
            else:
                resp = error_response(
                    action.status,
                    f"Injected failure ({action.status}).",
                    req.tracking_id,
                    headers=headers,
                )
        else:
            with self._state.lock:
                try:
                    resp = route(self._ctx(), req)
                except Exception:  # a bug in a route must still answer
                    _log.exception("emulator route failed")
                    resp = error_response(500, "Internal emulator error.", req.tracking_id)
        self._record(req, resp, None if action is None else action.kind)
        return resp

    def _record(self, req: EmuRequest, resp: EmuResponse | None, fault: str | None) -> None:
        parsed_json: Any = None
        form: dict[str, str] | None = None
        ctype = req.headers.get("content-type", "").lower()
        if req.body and "json" in ctype:
            try:
                parsed_json = json.loads(req.body)
            except ValueError:
                parsed_json = None
        elif req.body and ctype.startswith("application/x-www-form-urlencoded"):
            form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
        record = RequestRecord(
            method=req.method,
            path=req.path,
            query={k: v[0] for k, v in req.query.items() if v},
            headers=dict(req.headers),
            json=parsed_json,
            form=form,
            body=req.body,
            status=None if resp is None else resp.status,
            at=self.clock.now(),
            tracking_id=req.tracking_id,
            fault=fault,
        )
        with self._state.lock:
            self._records.append(record)

    # -- inspection -----------------------------------------------------------------------
    @property
    def requests(self) -> list[RequestRecord]:
        """Snapshot of the recorded requests, oldest first (at most ``max_log_entries``)."""
        with self._state.lock:
            return list(self._records)

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self._state.lock:
            self._records.clear()

    def count(self, method: str | None = None, path_prefix: str = "/") -> int:
        """Number of recorded requests with ``method`` (any if None) under ``path_prefix``.

        Only requests still in the log (the last ``max_log_entries``) are counted.
        """
        prefix = _norm_prefix(path_prefix)
        with self._state.lock:
            return sum(
                1
                for r in self._records
                if (method is None or r.method == method.upper()) and r.path.startswith(prefix)
            )

    @property
    def deliveries(self) -> list[Delivery]:
        """Webhook deliveries attempted so far, oldest first (at most ``max_log_entries``)."""
        with self._state.lock:
            return list(self._deliveries)

    @property
    def data_sources(self) -> list[DataSourceRecord]:
        """Snapshot of all data sources (copies)."""
        with self._state.lock:
            return [replace(d) for d in self._state.data_sources.values()]

    @property
    def webhooks(self) -> list[WebhookRecord]:
        """Snapshot of all webhooks (copies)."""
        with self._state.lock:
            return [replace(w) for w in self._state.webhooks.values()]

    def jwks(self) -> dict[str, Any]:
        """The JWK set served at :attr:`jwks_url`."""
        return self._keys.jwks()

    def public_key_pem(self) -> bytes:
        """PEM of the current signing key's public half (e.g. for algorithm-confusion tests)."""
        return self._keys.public_pem()

    @property
    def current_kid(self) -> str:
        """``kid`` of the key signing new tokens."""
        return self._keys.current_kid

    # -- fault injection ------------------------------------------------------------------
    def fail_next(
        self,
        path_prefix: str,
        *,
        status: int = 500,
        times: int | None = 1,
        retry_after: int | float | str | datetime | None = None,
        body: Mapping[str, Any] | str | bytes | None = None,
        method: str | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests (``None``: all) with ``status``.

        ``retry_after`` is sent as ``Retry-After`` (seconds, or an HTTP-date string/datetime).
        ``body`` replaces the default Webex error body (a mapping is sent as JSON).
        """
        content_type = "application/json;charset=UTF-8"
        raw: bytes | None
        if body is None:
            raw = None
        elif isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode()
            content_type = "text/plain;charset=UTF-8"
        else:
            raw = json.dumps(dict(body)).encode()
        self._add_fault(
            _Fault(
                prefix=_norm_prefix(path_prefix),
                method=method.upper() if method else None,
                kind="status",
                remaining=times,
                status=status,
                retry_after=_retry_after_value(retry_after),
                body=raw,
                content_type=content_type,
            )
        )

    def drop_next(
        self, path_prefix: str, *, times: int | None = 1, method: str | None = None
    ) -> None:
        """Close the connection without answering the next ``times`` matching requests."""
        self._add_fault(
            _Fault(
                prefix=_norm_prefix(path_prefix),
                method=method.upper() if method else None,
                kind="drop",
                remaining=times,
            )
        )

    def add_latency(
        self,
        path_prefix: str,
        seconds: float,
        *,
        times: int | None = None,
        method: str | None = None,
    ) -> None:
        """Delay matching requests by ``seconds`` of real time (``times=None``: until cleared)."""
        self._add_fault(
            _Fault(
                prefix=_norm_prefix(path_prefix),
                method=method.upper() if method else None,
                kind="latency",
                remaining=times,
                seconds=float(seconds),
            )
        )

    def clear_faults(self) -> None:
        """Remove every pending fault and latency rule."""
        with self._state.lock:
            self._faults.clear()

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining is not None and fault.remaining < 1:
            raise EmulatorError("times must be >= 1 or None")
        with self._state.lock:
            self._faults.append(fault)

    # -- tokens ---------------------------------------------------------------------------
    def issue_integration_token(
        self, scopes: Iterable[str] | None = None, *, integration: Integration | None = None
    ) -> dict[str, Any]:
        """Mint an integration token pair directly (as if the browser flow had completed)."""
        integ = integration or self.integration
        granted = tuple(scopes) if scopes is not None else integ.scopes
        with self._state.lock:
            person = self._state.people[integ.user_id]
            return self._state.issue_tokens(
                kind="integration",
                client_id=integ.client_id,
                scopes=granted,
                org_id=person.org_id,
                person_id=person.person_id,
            )

    def issue_service_app_token(
        self, org_id: str, *, service_app: ServiceApp | None = None
    ) -> dict[str, Any]:
        """Mint a Service App token pair for an org the app is authorized in."""
        app = service_app or self.service_app
        with self._state.lock:
            org = self._org(org_id)
            machine = app.authorized_orgs.get(org.org_id)
            if machine is None:
                raise EmulatorError(
                    f"service app is not authorized in org {org.org_id}; "
                    "call authorize_service_app() first"
                )
            return self._state.issue_tokens(
                kind="service_app",
                client_id=app.client_id,
                scopes=app.scopes,
                org_id=org.org_id,
                person_id=machine,
            )

    def expire_tokens(self, kind: str = "all") -> int:
        """Force live access tokens (``integration``, ``service_app`` or ``all``) to expire now."""
        return self._state.expire_tokens(kind)

    def revoke_refresh_token(self, token: str) -> bool:
        """Revoke a refresh token; return whether it existed."""
        with self._state.lock:
            rec = self._state.refresh_tokens.get(token)
            if rec is None:
                return False
            rec.revoked = True
            return True

    def revoke_access_token(self, token: str) -> bool:
        """Revoke an access token; return whether it existed."""
        with self._state.lock:
            rec = self._state.access_tokens.get(token)
            if rec is None:
                return False
            rec.revoked = True
            return True

    def deny_next_authorize(self, times: int = 1) -> None:
        """Make the next ``times`` ``/authorize`` calls redirect with ``error=access_denied``."""
        with self._state.lock:
            self._state.deny_authorize += times

    # -- orgs and apps --------------------------------------------------------------------
    def _org(self, org_id: str) -> Org:
        org_uuid = resolve_org_uuid(org_id)
        org = self._state.orgs.get(org_uuid) if org_uuid else None
        if org is None:
            raise EmulatorError(f"unknown org {org_id!r}")
        return org

    def create_org(self, name: str | None = None) -> Org:
        """Create a customer org (the Service App is not authorized in it)."""
        return self._state.create_org(name)

    def create_integration(
        self,
        *,
        redirect_uri: str = "http://localhost:8765/callback",
        scopes: Iterable[str] | None = None,
        name: str = "Emulated Integration",
    ) -> Integration:
        """Register another integration owned by the developer org."""
        kwargs: dict[str, Any] = {"owner_org": self.developer_org, "redirect_uri": redirect_uri}
        if scopes is not None:
            kwargs["scopes"] = tuple(scopes)
        return self._state.create_integration(name=name, **kwargs)

    def create_service_app(
        self,
        *,
        name: str = "Emulated Service App",
        scopes: Iterable[str] | None = None,
        valid_domains: Iterable[str] = (),
    ) -> ServiceApp:
        """Register another Service App owned by the developer."""
        kwargs: dict[str, Any] = {"name": name, "valid_domains": tuple(valid_domains)}
        if scopes is not None:
            kwargs["scopes"] = tuple(scopes)
        return self._state.create_service_app(**kwargs)

    def authorize_service_app(
        self, org_id: str, *, service_app: ServiceApp | None = None
    ) -> list[Delivery]:
        """Authorize the Service App in an org and deliver ``serviceApp``/``authorized`` webhooks.

        Already authorized: no-op, returns ``[]``. Delivery is synchronous; from async code
        whose event loop serves the receiver, use :meth:`aauthorize_service_app`.
        """
        app = service_app or self.service_app
        with self._state.lock:
            org = self._org(org_id)
            if org.org_id in app.authorized_orgs:
                return []
            machine = self._state.create_person(org.org_id, f"{app.name} machine account")
            app.authorized_orgs[org.org_id] = machine.person_id
            app.authorization_dates[org.org_id] = self.clock.now()
            plans = self._plan_service_app_event(app, org, "authorized")
        return self._deliver(plans)

    def deauthorize_service_app(
        self, org_id: str, *, service_app: ServiceApp | None = None
    ) -> list[Delivery]:
        """Deauthorize the Service App in an org (revoking its tokens there) and deliver webhooks.

        Not authorized: no-op, returns ``[]``.
        """
        app = service_app or self.service_app
        with self._state.lock:
            org = self._org(org_id)
            if org.org_id not in app.authorized_orgs:
                return []
            del app.authorized_orgs[org.org_id]
            self._state.revoke_service_app_tokens(app.client_id, org.org_id)
            plans = self._plan_service_app_event(app, org, "deauthorized")
            app.authorization_dates.pop(org.org_id, None)
        return self._deliver(plans)

    async def aauthorize_service_app(
        self, org_id: str, *, service_app: ServiceApp | None = None
    ) -> list[Delivery]:
        """:meth:`authorize_service_app` off the event loop."""
        return await asyncio.to_thread(self.authorize_service_app, org_id, service_app=service_app)

    async def adeauthorize_service_app(
        self, org_id: str, *, service_app: ServiceApp | None = None
    ) -> list[Delivery]:
        """:meth:`deauthorize_service_app` off the event loop."""
        return await asyncio.to_thread(
            self.deauthorize_service_app, org_id, service_app=service_app
        )

    def is_authorized(self, org_id: str, *, service_app: ServiceApp | None = None) -> bool:
        """Whether the Service App is authorized in the org."""
        app = service_app or self.service_app
        with self._state.lock:
            return self._org(org_id).org_id in app.authorized_orgs

    # -- webhooks -------------------------------------------------------------------------
    def _plan_service_app_event(self, app: ServiceApp, org: Org, event: str) -> list[_Plan]:
        now = self.clock.now()
        auth_date = app.authorization_dates.get(org.org_id, now)
        plans = []
        for hook in self._state.webhooks.values():
            if (
                hook.resource != "serviceApp"
                or hook.event not in (event, "all")
                or hook.status != "active"
                or hook.org_id != self.developer_org.hydra_id
                or not _filter_matches(hook.filter, app)
            ):
                continue
            envelope: dict[str, Any] = {
                "id": hook.id,
                "name": hook.name,
                "targetUrl": hook.target_url,
                "resource": hook.resource,
                "event": event,
            }
            if hook.filter:
                envelope["filter"] = hook.filter
            envelope.update(
                {
                    "orgId": hook.org_id,
                    "createdBy": hook.created_by,
                    "appId": hook.app_id,
                    "ownedBy": hook.owned_by,
                    "status": hook.status,
                    "created": iso_ms(hook.created),
                    "actorId": org.admin_person_id,
                    "data": {
                        "id": app.application_id,
                        "friendlyName": app.name,
                        "authorizerOrgId": org.hydra_id,
                        "orgId": org.hydra_id,
                        "authorizationDate": iso_ms(auth_date),
                    },
                }
            )
            plans.append(_Plan(hook=hook, envelope=envelope))
        return plans

    def _deliver(self, plans: list[_Plan]) -> list[Delivery]:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        results = []
        for plan in plans:
            body = json.dumps(plan.envelope).encode()
            headers = {"Content-Type": "application/json", "User-Agent": "WebexEmulator/1"}
            signature = None
            if plan.hook.secret:
                signature = hmac.new(plan.hook.secret.encode(), body, hashlib.sha1).hexdigest()
                headers["X-Spark-Signature"] = signature
            status: int | None = None
            error: str | None = None
            request = urllib.request.Request(  # noqa: S310 - http(s) validated on create
                plan.hook.target_url, data=body, headers=headers, method="POST"
            )
            try:
                with opener.open(request, timeout=self.webhook_timeout) as resp:
                    status = int(resp.status)
                    resp.read()
            except urllib.error.HTTPError as exc:
                status = int(exc.code)
                exc.close()
            except (OSError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            delivery = Delivery(
                webhook_id=plan.hook.id,
                status_code=status,
                error=error,
                target_url=plan.hook.target_url,
                resource=plan.hook.resource,
                event=str(plan.envelope["event"]),
                body=body,
                signature=signature,
            )
            self._note_delivery(plan.hook, delivery)
            results.append(delivery)
        return results

    def _note_delivery(self, hook: WebhookRecord, delivery: Delivery) -> None:
        with self._state.lock:
            self._deliveries.append(delivery)
            if delivery.ok:
                return
            now = self.clock.now()
            hook.failures.append(now)
            while hook.failures and hook.failures[0] <= now - FAILURE_WINDOW_SECONDS:
                hook.failures.popleft()
            if len(hook.failures) >= FAILURES_TO_DISABLE:
                hook.status = "inactive"
            _log.debug(
                "webhook %s delivery failed (%s); %d failures in window",
                hook.id,
                delivery.status_code or delivery.error,
                len(hook.failures),
            )

    def set_webhook_status(self, webhook_id: str, status: str) -> None:
        """Admin override of a webhook's status (e.g. ``inactive``), for tests."""
        if status not in ("active", "inactive"):
            raise EmulatorError("status must be 'active' or 'inactive'")
        with self._state.lock:
            hook = self._state.webhooks.get(webhook_id)
            if hook is None:
                raise EmulatorError(f"unknown webhook {webhook_id!r}")
            hook.status = status

    # -- identity broker ------------------------------------------------------------------
    def rotate_keys(self, keep_old: bool = True) -> str:
        """Start signing with a new key; return its ``kid``. Old keys stay in the JWKS if kept."""
        return self._keys.rotate(keep_old=keep_old)

    def drop_old_keys(self) -> None:
        """Stop publishing every key except the current signing key."""
        current = self._keys.current_kid
        self._keys.drop(k["kid"] for k in self._keys.jwks()["keys"] if k["kid"] != current)

    def mint_data_source_token(
        self,
        *,
        url: str,
        schema_id: str = BYOVA_SCHEMA_ID,
        org_id: str | None = None,
        audience: str = "BYOVAGateway",
        subject: str = "callAudioData",
        lifetime_minutes: float = 60,
        issuer: str | None = None,
        kid: str | None = None,
        alg: str = "RS256",
        extra_claims: Mapping[str, Any] | None = None,
        omit_claims: Iterable[str] = (),
        issued_at: float | None = None,
    ) -> str:
        """Mint a data-source JWS signed by the current key, with chosen claims.

        ``org_id`` defaults to the seeded customer org (UUID or Hydra accepted).
        ``lifetime_minutes`` may be negative to mint an already expired token; ``issued_at``
        defaults to the emulator clock. ``kid`` overrides the header ``kid`` (``""`` omits it);
        ``alg`` ``HS256``/``none`` forge tokens for negative verifier tests.
        """
        org_uuid = resolve_org_uuid(org_id) if org_id is not None else self.org.org_id
        if org_uuid is None:
            raise EmulatorError(f"bad org id {org_id!r}")
        iat = int(self.clock.now() if issued_at is None else issued_at)
        claims = mint_data_source_claims(
            issuer=self.issuer if issuer is None else issuer,
            audience=audience,
            subject=subject,
            url=url,
            schema_id=schema_id,
            org_id=org_uuid,
            issued_at=iat,
            lifetime_minutes=0,
        )
        claims["exp"] = iat + int(lifetime_minutes * 60)
        if extra_claims:
            claims.update(extra_claims)
        for name in omit_claims:
            claims.pop(name, None)
        return self._keys.sign(claims, alg=alg, kid=kid or None, include_kid=kid != "")

    # -- misc -----------------------------------------------------------------------------
    def secrets_summary(self) -> dict[str, str]:
        """Masked view of the seeded credentials (safe to print)."""
        return {
            "integration.client_id": self.integration.client_id,
            "integration.client_secret": mask(self.integration.client_secret),
            "service_app.client_id": self.service_app.client_id,
            "service_app.client_secret": mask(self.service_app.client_secret),
            "service_app.application_id": self.service_app.application_id,
            "org.org_id": self.org.org_id,
        }
