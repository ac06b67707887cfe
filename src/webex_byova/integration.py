"""Integration OAuth: authorization (state + PKCE), code exchange, single-flight refresh.

Every operation is written once as a *flow* (see :mod:`webex_byova._flow`); the public sync
and async methods only pick a driver. Tokens are always persisted in the
:class:`~webex_byova.storage.TokenStorage` before they are returned, so a rotated refresh token
is stored before anyone can use it again.

Example::

    manager = IntegrationTokenManager(credentials, HttpClient(config), SQLiteTokenStorage(path))
    await manager.aauthorize()            # opens the browser once
    token = await manager.aget_access_token()  # refreshed ahead of expiry, one refresh at a time
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import webbrowser
from collections import OrderedDict
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._flow import Call, Flow, Http, Locked, Portal, default_portal, run_async, run_sync
from ._http import HttpClient
from ._logging import get_logger
from ._oauth import (
    AuthorizationRequest,
    CallbackResult,
    authorization_code_form,
    authorize_instructions,
    callback_page,
    is_dead_refresh_error,
    new_authorization_request,
    parse_callback,
    parse_token_response,
    reauthorization_error,
    redirect_target,
    refresh_form,
    with_port,
)
from .config import BYOVAConfig
from .credentials import IntegrationCredentials
from .errors import AuthenticationError, ReauthorizationRequiredError, WebexBYOVAError
from .storage.base import TokenStorage, store_lock
from .storage.memory import InMemoryTokenStorage
from .tokens import OAuthToken

__all__ = ["IntegrationTokenManager"]

log = get_logger("webex_byova.auth")

_MAX_PENDING = 16


class IntegrationTokenManager:
    """Obtains, stores and refreshes the Integration's OAuth token.

    Args:
        credentials: The Integration's client id/secret, redirect URI and scopes.
        http: Shared :class:`~webex_byova._http.HttpClient`.
        storage: Token store (default: a new :class:`InMemoryTokenStorage`).
        config: SDK configuration (default: ``http.config``); ``authorize_url`` and
            ``token_url`` come from it.
        clock: POSIX-seconds clock used for expiry decisions (injectable for tests).
        refresh_margin: Refresh this many seconds before expiry (capped at half the lifetime).
        lock_ttl: Seconds a store-wide refresh lock (Redis/SQLite) outlives a crashed holder;
            a live refresh renews it every ``lock_ttl / 3``, however long it takes.
        portal: Background loop for sync calls (default: the process-wide one).
    """

    def __init__(
        self,
        credentials: IntegrationCredentials,
        http: HttpClient,
        storage: TokenStorage | None = None,
        config: BYOVAConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        refresh_margin: float = 300.0,
        lock_ttl: float = 30.0,
        portal: Portal | None = None,
    ) -> None:
        self._creds = credentials
        self._http = http
        self._storage: TokenStorage = storage if storage is not None else InMemoryTokenStorage()
        self._config = config or http.config
        self._clock = clock
        self._margin = refresh_margin
        self._lock_ttl = lock_ttl
        self._portal = portal or default_portal()
        self._pending: OrderedDict[str, AuthorizationRequest] = OrderedDict()
        self._pending_guard = threading.Lock()
        self._lock_key = f"webex_byova:{id(self._storage)}:integration"
        # Last token seen, served without a store read while it is not due for refresh.
        self._hot: OAuthToken | None = None

    # ------------------------------------------------------------------ properties
    @property
    def credentials(self) -> IntegrationCredentials:
        """The Integration credentials."""
        return self._creds

    @property
    def storage(self) -> TokenStorage:
        """The token store."""
        return self._storage

    @property
    def config(self) -> BYOVAConfig:
        """The SDK configuration."""
        return self._config

    @property
    def http(self) -> HttpClient:
        """The HTTP client."""
        return self._http

    @property
    def clock(self) -> Callable[[], float]:
        """The POSIX-seconds clock used for expiry decisions."""
        return self._clock

    @property
    def portal(self) -> Portal:
        """The background loop used by sync methods."""
        return self._portal

    # ------------------------------------------------------------------ authorization URL
    def create_authorization_request(
        self,
        *,
        redirect_uri: str | None = None,
        scopes: Iterable[str] | None = None,
        state: str | None = None,
    ) -> AuthorizationRequest:
        """Create (and remember) a state + PKCE authorization request.

        Finish it with :meth:`exchange_code` (``state=``) or :meth:`handle_callback`.
        """
        request = new_authorization_request(
            self._config.authorize_url,
            client_id=self._creds.client_id,
            redirect_uri=redirect_uri or self._creds.redirect_uri,
            scopes=tuple(scopes) if scopes is not None else self._creds.scopes,
            state=state,
        )
        with self._pending_guard:
            self._pending[request.state] = request
            while len(self._pending) > _MAX_PENDING:
                self._pending.popitem(last=False)
        return request

    def authorization_url(
        self, *, redirect_uri: str | None = None, scopes: Iterable[str] | None = None
    ) -> str:
        """The URL to open in a browser (state and PKCE challenge included)."""
        return self.create_authorization_request(redirect_uri=redirect_uri, scopes=scopes).url

    def _take_pending(self, state: str | None) -> AuthorizationRequest | None:
        with self._pending_guard:
            if state is None:
                return self._pending.popitem()[1] if self._pending else None
            request = self._pending.pop(state, None)
        if request is None:
            raise AuthenticationError(
                "authorization failed (state_mismatch): the state does not belong to a pending "
                "authorization request of this manager"
            )
        return request

    # ------------------------------------------------------------------ flows
    def exchange_code_flow(
        self,
        code: str,
        *,
        state: str | None = None,
        code_verifier: str | None = None,
        redirect_uri: str | None = None,
    ) -> Flow[OAuthToken]:
        """Exchange an authorization code and store the tokens.

        Without ``state`` the most recent pending request (if any) supplies the PKCE verifier
        and redirect URI.
        """
        pending = self._take_pending(state)
        verifier = code_verifier or (pending.code_verifier if pending else None)
        redirect = redirect_uri or (pending.redirect_uri if pending else self._creds.redirect_uri)
        spec = self._http.build(
            "POST",
            self._config.token_url,
            form=authorization_code_form(
                client_id=self._creds.client_id,
                client_secret=self._creds.client_secret,
                code=code,
                redirect_uri=redirect,
                code_verifier=verifier,
            ),
            idempotent=False,
        )
        try:
            response = yield Http(spec)
        except WebexBYOVAError as exc:
            if exc.status_code in (400, 401):
                raise AuthenticationError(
                    f"authorization code exchange failed: {exc.message}",
                    status_code=exc.status_code,
                    body=exc.body,
                    tracking_id=exc.tracking_id,
                    descriptions=exc.descriptions,
                ) from exc
            raise
        token = parse_token_response(response, now=self._clock())
        yield Call(lambda: self._storage.set_integration_token(token))
        self._hot = token
        log.info("Integration authorized; token stored (expires %s)", token.expires_at_datetime)
        return token

    def token_flow(self, *, force_refresh: bool = False) -> Flow[OAuthToken]:
        """The stored token, refreshed first when it is near expiry (or ``force_refresh``).

        Refreshes are single-flight: concurrent callers wait for one refresh and reuse it.

        Raises:
            ReauthorizationRequiredError: No token is stored, or the refresh token is dead.
        """
        token = self._hot
        if token is None:  # nothing in hand: read the store (a due refresh re-reads it locked)
            token = yield Call(self._storage.get_integration_token)
            if token is None:
                raise ReauthorizationRequiredError(
                    "no Integration token is stored; run authorize() (or `byova auth login`) first"
                )
            self._hot = token
        if not force_refresh and not token.should_refresh(self._clock(), self._margin):
            return token
        refreshed: OAuthToken = yield Locked(
            self._lock_key, self._locked_refresh_flow(token, force_refresh)
        )
        self._hot = refreshed
        return refreshed

    def access_token_flow(self, *, force_refresh: bool = False) -> Flow[str]:
        """Like :meth:`token_flow`, returning only the access token string."""
        token = yield from self.token_flow(force_refresh=force_refresh)
        return token.access_token

    def _locked_refresh_flow(self, seen: OAuthToken, force: bool) -> Flow[OAuthToken]:
        hot = self._hot  # a peer in this process refreshed (and stored) while we waited
        if (
            hot is not None
            and hot.access_token != seen.access_token
            and (force or not hot.should_refresh(self._clock(), self._margin))
        ):
            return hot
        # Only now exclude other processes (the store lock may cost a durable write).
        refreshed: OAuthToken = yield Locked(
            f"{self._lock_key}:store",
            self._store_locked_refresh_flow(seen, force),
            store_lock(self._storage, "integration", self._lock_ttl),
        )
        return refreshed

    def _store_locked_refresh_flow(self, seen: OAuthToken, force: bool) -> Flow[OAuthToken]:
        current: OAuthToken | None = yield Call(self._storage.get_integration_token)
        if current is None:
            self._hot = None
            raise ReauthorizationRequiredError(
                "no Integration token is stored; run authorize() (or `byova auth login`) first"
            )
        if force:
            if current.access_token != seen.access_token:
                return current  # someone refreshed while we waited
        elif not current.should_refresh(self._clock(), self._margin):
            return current
        return (yield from self._refresh_flow(current, retry_on_rotation=True))

    def _refresh_flow(self, current: OAuthToken, *, retry_on_rotation: bool) -> Flow[OAuthToken]:
        if not current.refresh_token or current.refresh_token_expired(self._clock()):
            raise reauthorization_error("Integration")
        spec = self._http.build(
            "POST",
            self._config.token_url,
            form=refresh_form(
                client_id=self._creds.client_id,
                client_secret=self._creds.client_secret,
                refresh_token=current.refresh_token,
            ),
            idempotent=False,
        )
        try:
            response = yield Http(spec)
        except WebexBYOVAError as exc:
            if not is_dead_refresh_error(exc):
                raise
            # Another process may have rotated the refresh token (a store without a lock).
            latest: OAuthToken | None = yield Call(self._storage.get_integration_token)
            if (
                retry_on_rotation
                and latest is not None
                and latest.refresh_token != current.refresh_token
            ):
                if not latest.should_refresh(self._clock(), self._margin):
                    return latest
                return (yield from self._refresh_flow(latest, retry_on_rotation=False))
            raise reauthorization_error("Integration", exc) from exc
        token = parse_token_response(response, now=self._clock(), previous=current)
        yield Call(lambda: self._storage.set_integration_token(token))
        self._hot = token
        log.info("Integration token refreshed (expires %s)", token.expires_at_datetime)
        return token

    def callback_flow(self, url: str) -> Flow[OAuthToken]:
        """Finish an authorization from the redirect URL (or ``path?query``) a browser hit."""
        state = dict(parse_qsl(urlsplit(url).query)).get("state")
        with self._pending_guard:
            request = self._pending.get(state) if state else None
        # An unknown state never matches; error redirects are reported as such.
        expected = request.state if request is not None else "\x00unknown-state"
        result = parse_callback(url, expected_state=expected)
        code = result.raise_for_error()
        return (yield from self.exchange_code_flow(code, state=state))

    # ------------------------------------------------------------------ public API
    def exchange_code(
        self,
        code: str,
        *,
        state: str | None = None,
        code_verifier: str | None = None,
        redirect_uri: str | None = None,
    ) -> OAuthToken:
        """Exchange an authorization code for tokens and **store** them (sync)."""
        flow = self.exchange_code_flow(
            code, state=state, code_verifier=code_verifier, redirect_uri=redirect_uri
        )
        return run_sync(flow, self._http, self._portal)

    async def aexchange_code(
        self,
        code: str,
        *,
        state: str | None = None,
        code_verifier: str | None = None,
        redirect_uri: str | None = None,
    ) -> OAuthToken:
        """Exchange an authorization code for tokens and **store** them."""
        flow = self.exchange_code_flow(
            code, state=state, code_verifier=code_verifier, redirect_uri=redirect_uri
        )
        return await run_async(flow, self._http)

    def handle_callback(self, url: str) -> OAuthToken:
        """Verify ``state``, exchange the code of a redirect URL and store the tokens (sync)."""
        return run_sync(self.callback_flow(url), self._http, self._portal)

    async def ahandle_callback(self, url: str) -> OAuthToken:
        """Verify ``state``, exchange the code of a redirect URL and store the tokens."""
        return await run_async(self.callback_flow(url), self._http)

    def get_token(self, *, force_refresh: bool = False) -> OAuthToken:
        """A valid token (refreshed ahead of expiry), sync."""
        return run_sync(self.token_flow(force_refresh=force_refresh), self._http, self._portal)

    async def aget_token(self, *, force_refresh: bool = False) -> OAuthToken:
        """A valid token (refreshed ahead of expiry)."""
        return await run_async(self.token_flow(force_refresh=force_refresh), self._http)

    def get_access_token(self) -> str:
        """A valid access token string (refreshed ahead of expiry), sync."""
        return run_sync(self.access_token_flow(), self._http, self._portal)

    async def aget_access_token(self) -> str:
        """A valid access token string (refreshed ahead of expiry)."""
        return await run_async(self.access_token_flow(), self._http)

    def refresh(self) -> OAuthToken:
        """Refresh now (single-flight) and store the result, sync."""
        return run_sync(self.token_flow(force_refresh=True), self._http, self._portal)

    async def arefresh(self) -> OAuthToken:
        """Refresh now (single-flight) and store the result."""
        return await run_async(self.token_flow(force_refresh=True), self._http)

    def get_stored_token(self) -> OAuthToken | None:
        """The stored token as is (no refresh), sync."""
        return self._portal.call(self._storage.get_integration_token)

    async def aget_stored_token(self) -> OAuthToken | None:
        """The stored token as is (no refresh)."""
        return await self._storage.get_integration_token()

    def has_token(self) -> bool:
        """Whether a token is stored, sync."""
        return self.get_stored_token() is not None

    async def ahas_token(self) -> bool:
        """Whether a token is stored."""
        return (await self._storage.get_integration_token()) is not None

    def set_token(self, token: OAuthToken) -> None:
        """Store a token obtained elsewhere, sync."""
        self._portal.call(lambda: self._storage.set_integration_token(token))
        self._hot = None

    async def aset_token(self, token: OAuthToken) -> None:
        """Store a token obtained elsewhere."""
        await self._storage.set_integration_token(token)
        self._hot = None

    def clear_token(self) -> None:
        """Delete the stored token (log out), sync."""
        self._portal.call(self._storage.delete_integration_token)
        self._hot = None

    async def aclear_token(self) -> None:
        """Delete the stored token (log out)."""
        await self._storage.delete_integration_token()
        self._hot = None

    # ------------------------------------------------------------------ local redirect listener
    def _listener_request(
        self, port: int, requested_port: int, scopes: Iterable[str] | None
    ) -> AuthorizationRequest:
        redirect = self._creds.redirect_uri
        if requested_port == 0:
            redirect = with_port(redirect, port)
        return self.create_authorization_request(redirect_uri=redirect, scopes=scopes)

    @staticmethod
    def _announce(
        request: AuthorizationRequest, timeout: float, opened: bool | None, *, print_it: bool
    ) -> None:
        """Log (and without ``on_url``, print to stderr) the URL and how long we will wait.

        Without this a machine with no browser would wait the whole ``timeout`` in silence.
        """
        if opened is False:
            log.warning("could not open a browser for the authorize URL; open it yourself")
        log.info(
            "authorize URL: %s (waiting up to %gs for the redirect to %s)",
            request.url,
            timeout,
            request.redirect_uri,
        )
        if print_it:
            text = authorize_instructions(
                request.url,
                redirect_uri=request.redirect_uri,
                timeout=timeout,
                browser_opened=opened,
            )
            print(text, file=sys.stderr, flush=True)

    @staticmethod
    def _answer(
        target: str, path: str, request: AuthorizationRequest | None
    ) -> tuple[int, bytes, CallbackResult | None]:
        """Response to one listener hit, and the callback result when it was the redirect."""
        if request is None or urlsplit(target).path != path:
            return 404, b"not found", None
        result = parse_callback(target, expected_state=request.state)
        status, body = callback_page(result)
        return status, body, result

    async def aauthorize(
        self,
        *,
        open_browser: bool = True,
        timeout: float = 300.0,  # noqa: ASYNC109 - public contract
        scopes: Iterable[str] | None = None,
        on_url: Callable[[str], Any] | None = None,
    ) -> OAuthToken:
        """Run the browser authorization with a local redirect listener and store the tokens.

        Listens on the redirect URI's host and port (port ``0``: a free port, substituted into
        the redirect URI) without blocking the event loop, opens the browser (optional),
        verifies ``state`` and exchanges the code. ``on_url`` receives the authorize URL
        (e.g. to print it); without ``on_url`` the URL, whether a browser opened and how long
        it waits are printed to stderr (and logged), so a machine without a browser does not
        wait in silence.

        Raises:
            AuthenticationError: Denied access, state mismatch, or no redirect within
                ``timeout`` seconds.
        """
        host, requested_port, path = redirect_target(self._creds.redirect_uri)
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[CallbackResult] = loop.create_future()
        holder: list[AuthorizationRequest] = []

        async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10.0)
                parts = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
                # No target: "" never equals the redirect path (a "/" fallback would take a
                # bare "GET" for the redirect when its path is "/" and fail the authorization).
                target = parts[1] if len(parts) >= 2 else ""
                status, body, result = self._answer(target, path, holder[0] if holder else None)
                writer.write(_http_response(status, body))
                await writer.drain()
                if result is not None and not outcome.done():
                    outcome.set_result(result)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(_serve, _bind_host(host), requested_port)
        try:
            port = int(server.sockets[0].getsockname()[1])
            request = self._listener_request(port, requested_port, scopes)
            holder.append(request)
            if on_url is not None:
                on_url(request.url)
            opened = None
            if open_browser:
                opened = bool(await loop.run_in_executor(None, webbrowser.open, request.url))
            self._announce(request, timeout, opened, print_it=on_url is None)
            try:
                result = await asyncio.wait_for(outcome, timeout)
            except TimeoutError:
                raise AuthenticationError(
                    f"authorization timed out: no redirect reached {request.redirect_uri} "
                    f"within {timeout:g}s"
                ) from None
        finally:
            server.close()
            await server.wait_closed()
        code = result.raise_for_error()
        return await run_async(self.exchange_code_flow(code, state=request.state), self._http)

    def authorize(
        self,
        *,
        open_browser: bool = True,
        timeout: float = 300.0,
        scopes: Iterable[str] | None = None,
        on_url: Callable[[str], Any] | None = None,
    ) -> OAuthToken:
        """Sync :meth:`aauthorize` (the listener is a stdlib HTTP server on a thread)."""
        host, requested_port, path = redirect_target(self._creds.redirect_uri)
        done = threading.Event()
        holder: list[AuthorizationRequest] = []
        results: list[CallbackResult] = []
        answer = self._answer

        class _Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body, result = answer(self.path, path, holder[0] if holder else None)
                self.send_response(status)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                if result is not None and not done.is_set():
                    results.append(result)
                    done.set()

            def log_message(self, format: str, *args: Any) -> None:
                return  # the query carries the authorization code: never log it

        server = HTTPServer((_bind_host(host), requested_port), _Handler)
        thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        thread.start()
        try:
            request = self._listener_request(server.server_address[1], requested_port, scopes)
            holder.append(request)
            if on_url is not None:
                on_url(request.url)
            opened = bool(webbrowser.open(request.url)) if open_browser else None
            self._announce(request, timeout, opened, print_it=on_url is None)
            if not done.wait(timeout):
                raise AuthenticationError(
                    f"authorization timed out: no redirect reached {request.redirect_uri} "
                    f"within {timeout:g}s"
                )
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        code = results[0].raise_for_error()
        flow = self.exchange_code_flow(code, state=request.state)
        return run_sync(flow, self._http, self._portal)

    def __repr__(self) -> str:
        return (
            f"IntegrationTokenManager(client_id={self._creds.client_id!r}, "
            f"storage={self._storage!r})"
        )


def _bind_host(host: str) -> str:
    # "localhost" may resolve to ::1 and 127.0.0.1; with port 0 they would get different ports.
    return "127.0.0.1" if host == "localhost" else host


def _http_response(status: int, body: bytes) -> bytes:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}.get(status, "OK")
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode("latin-1") + body
