"""HTTP core: the only module of the SDK that talks to httpx.

The protocol logic is I/O-free and shared by both shells:

* :func:`build_request` turns a method, path and payload into a :class:`RequestSpec`;
* :func:`map_error` turns a non-2xx :class:`Response` into a typed :mod:`webex_byova.errors`
  exception carrying the Webex tracking id and error descriptions;
* :class:`RetryPolicy` / :class:`RetryState` decide whether, and how long, to wait before the
  next attempt (exponential backoff with jitter, ``Retry-After`` in seconds or HTTP-date,
  idempotency rules, a total deadline);
* :func:`next_page` follows ``Link: rel="next"`` and re-adds query parameters that Webex
  sometimes drops from the next URL.

:class:`HttpClient` owns one ``httpx.Client`` (sync, safe inside a running event loop) and
one ``httpx.AsyncClient``, both created lazily, and runs the retry loop around them.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

import httpx

from ._logging import get_logger, redact
from .config import BYOVAConfig
from .errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    RateLimitError,
    ServerError,
    ValidationError,
    WebexBYOVAError,
)

__all__ = [
    "HttpClient",
    "RequestSpec",
    "Response",
    "RetryPolicy",
    "RetryState",
    "build_request",
    "extract_tracking_id",
    "map_error",
    "next_page",
    "parse_link_header",
    "parse_retry_after",
]

log = get_logger("webex_byova.http")

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Statuses where Webex did not process the request, so retrying is safe for every method.
RETRY_ANY_METHOD_STATUSES = frozenset({423, 429})
#: Statuses retried only for idempotent requests (the request may have been processed).
RETRY_IDEMPOTENT_STATUSES = frozenset({502, 503, 504})
#: Wait used when a 429/423 carries no usable ``Retry-After``.
DEFAULT_RATE_LIMIT_WAIT = 15.0


# --------------------------------------------------------------------------- sans-IO data


@dataclass(frozen=True)
class RequestSpec:
    """Everything needed to send one request; built by :func:`build_request`."""

    method: str
    url: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    json_body: Any = None
    form: tuple[tuple[str, str], ...] | None = None
    #: Whether the request may be repeated after it might have reached the server.
    idempotent: bool = True

    def with_params(self, params: Mapping[str, str] | tuple[tuple[str, str], ...]) -> RequestSpec:
        """Return a copy with the query parameters replaced."""
        items = tuple(params.items()) if isinstance(params, Mapping) else tuple(params)
        return replace(self, params=items)

    def with_url(self, url: str) -> RequestSpec:
        """Return a copy pointing at another URL."""
        return replace(self, url=url)


@dataclass
class Response:
    """A received response, detached from httpx."""

    status_code: int
    headers: dict[str, str]
    content: bytes
    url: str
    method: str
    elapsed: float = 0.0

    @property
    def tracking_id(self) -> str | None:
        """Webex ``TrackingID`` of this response, if any."""
        return extract_tracking_id(self.headers, None)

    def json(self) -> Any:
        """Decode the body as JSON (``None`` for an empty body)."""
        if not self.content:
            return None
        return json.loads(self.content)

    @property
    def is_success(self) -> bool:
        """True for 2xx."""
        return 200 <= self.status_code < 300


def _join(base_url: str, path: str) -> str:
    if path.startswith(("http://", "https://")):
        return path
    return f"{base_url.rstrip('/')}/{path.lstrip('/')}"


def build_request(
    config: BYOVAConfig,
    method: str,
    path: str,
    *,
    token: str | None = None,
    params: Mapping[str, Any] | None = None,
    json_body: Any = None,
    form: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    idempotent: bool | None = None,
) -> RequestSpec:
    """Build a request for ``path`` (relative to ``config.base_url``) or an absolute URL.

    ``None`` values in ``params`` are dropped; booleans become ``true``/``false``.
    ``idempotent`` defaults from the method (POST is not idempotent).
    """
    method = method.upper()
    hdrs: dict[str, str] = {"User-Agent": config.user_agent, "Accept": "application/json"}
    if token is not None:
        hdrs["Authorization"] = f"Bearer {token}"
    if json_body is not None:
        hdrs["Content-Type"] = "application/json"
    if form is not None:
        hdrs["Content-Type"] = "application/x-www-form-urlencoded"
    if headers:
        hdrs.update(headers)
    query: list[tuple[str, str]] = []
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            value = "true" if value else "false"
        query.append((key, str(value)))
    return RequestSpec(
        method=method,
        url=_join(config.base_url, path),
        params=tuple(query),
        headers=tuple(hdrs.items()),
        json_body=json_body,
        form=tuple(form.items()) if form is not None else None,
        idempotent=(method in IDEMPOTENT_METHODS) if idempotent is None else idempotent,
    )


def extract_tracking_id(headers: Mapping[str, str], body: Any) -> str | None:
    """Return the ``TrackingID`` header (case-insensitive) or the body's ``trackingId``."""
    for key, value in headers.items():
        if key.lower() == "trackingid" and value:
            return value
    if isinstance(body, Mapping):
        for name in ("trackingId", "trackingID", "tracking_id"):
            found = body.get(name)
            if isinstance(found, str) and found:
                return found
    return None


def _parse_body(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except (ValueError, UnicodeDecodeError):
        return content.decode("utf-8", "replace")


def _error_text(body: Any) -> tuple[str | None, list[str]]:
    """Return the Webex ``message`` and ``errors[].description`` values of an error body."""
    if not isinstance(body, Mapping):
        return None, []
    message: str | None = None
    for key in ("message", "error_description", "error"):
        value = body.get(key)
        if isinstance(value, str) and value:
            message = value
            break
        if isinstance(value, Mapping):  # e.g. {"error": {"message": ...}} in some CC APIs
            inner = value.get("message") or value.get("description")
            if isinstance(inner, str):
                message = inner
                break
    descriptions: list[str] = []
    errors = body.get("errors")
    if isinstance(errors, list):
        for item in errors:
            if isinstance(item, Mapping) and isinstance(item.get("description"), str):
                descriptions.append(item["description"])
            elif isinstance(item, str):
                descriptions.append(item)
    return message, descriptions


_DELTA_SECONDS = re.compile(r"[0-9]+(?:\.[0-9]+)?", re.ASCII)


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` as delta-seconds or an HTTP-date; ``None`` when absent/invalid."""
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    if _DELTA_SECONDS.fullmatch(value):
        # Only ASCII digits: ``float`` alone would take "inf", "1e3", "1_0" or non-ASCII
        # digits. An absurdly long number is clamped so it stays finite (and roundable).
        return min(float(value), sys.float_info.max)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    current = time.time() if now is None else now
    return max(0.0, when.timestamp() - current)


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lname = name.lower()
    for key, value in headers.items():
        if key.lower() == lname:
            return value
    return None


def map_error(response: Response, *, now: float | None = None) -> WebexBYOVAError:
    """Map a non-2xx response to the typed error for its status."""
    body = _parse_body(response.content)
    tracking_id = extract_tracking_id(response.headers, body)
    message, descriptions = _error_text(body)
    status = response.status_code
    summary = message or (descriptions[0] if descriptions else None) or f"HTTP {status}"
    text = f"{response.method} {_strip_query(response.url)} failed: {summary}"
    kwargs: dict[str, Any] = {
        "status_code": status,
        "body": body,
        "tracking_id": tracking_id,
        "descriptions": descriptions,
        "method": response.method,
        "url": _strip_query(response.url),
    }
    if status == 429:
        wait = parse_retry_after(_header(response.headers, "Retry-After"), now=now)
        return RateLimitError(text, retry_after=None if wait is None else round(wait), **kwargs)
    if status in (401, 403):
        return AuthenticationError(text, **kwargs)
    if status in (404, 410):
        return NotFoundError(text, **kwargs)
    if status == 409:
        return ConflictError(text, **kwargs)
    if status in (400, 415, 422, 428):
        return ValidationError(text, **kwargs)
    if status >= 500:
        return ServerError(text, **kwargs)
    return WebexBYOVAError(text, **kwargs)


def _strip_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def parse_link_header(value: str | None) -> dict[str, str]:
    """Parse an RFC 8288 ``Link`` header into ``{rel: url}``."""
    links: dict[str, str] = {}
    if not value:
        return links
    for part in _split_outside(value, ","):
        section = part.strip()
        if not section.startswith("<") or ">" not in section:
            continue
        url, _, attrs = section[1:].partition(">")
        for attr in _split_outside(attrs, ";"):
            key, _, val = attr.strip().partition("=")
            if key.strip().lower() == "rel":
                for rel in val.strip().strip('"').split():
                    links[rel.lower()] = url.strip()
    return links


def _split_outside(text: str, sep: str) -> list[str]:
    """Split ``text`` at ``sep`` except inside ``<...>`` or a quoted string (with ``\\`` escapes).

    Commas and semicolons are legal inside link targets and quoted parameters (``title``).
    """
    parts: list[str] = []
    start = 0
    quoted = angled = escaped = False
    for i, ch in enumerate(text):
        if escaped:
            escaped = False
        elif quoted:
            if ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
        elif angled:
            angled = ch != ">"
        elif ch == '"':
            quoted = True
        elif ch == "<" and not text[start:i].strip():  # only a link-value starts with "<"
            angled = True
        elif ch == sep:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return parts


def next_page(spec: RequestSpec, response: Response) -> RequestSpec | None:
    """Return the request for the next page, or ``None`` on the last page.

    The original query parameters are re-added when the ``next`` URL dropped them (a known
    Webex API bug); parameters present in the ``next`` URL win (they carry the cursor).
    """
    nxt = parse_link_header(_header(response.headers, "Link")).get("next")
    if not nxt:
        return None
    absolute = urljoin(response.url, nxt)
    parts = urlsplit(absolute)
    query = parse_qsl(parts.query, keep_blank_values=True)
    present = {key for key, _ in query}
    query.extend((k, v) for k, v in spec.params if k not in present)
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    return replace(spec, url=base, params=tuple(query))


class _PageGuard:
    """Stops pagination when a ``next`` link names a page that was already requested.

    A server that keeps answering with a ``next`` link it already gave would otherwise make
    every pagination loop (sync and async, here and in :mod:`webex_byova._authed`) run forever.
    """

    def __init__(self, first: RequestSpec) -> None:
        self._seen = {self._key(first)}

    @staticmethod
    def _key(spec: RequestSpec) -> tuple[str, tuple[tuple[str, str], ...]]:
        return spec.url, tuple(sorted(spec.params))

    def admit(self, nxt: RequestSpec | None) -> RequestSpec | None:
        """Return ``nxt``, or ``None`` (and log a warning) if it is ``None`` or a repeat."""
        if nxt is None:
            return None
        key = self._key(nxt)
        if key in self._seen:
            log.warning(
                "pagination stopped: the server repeated a next link (%s)",
                redact(_strip_query(nxt.url)),
            )
            return None
        self._seen.add(key)
        return nxt


# --------------------------------------------------------------------------- retry decisions

FailureKind = Literal["connect", "timeout", "read"]


@dataclass(frozen=True)
class Wait:
    """Outcome: sleep ``seconds`` then send again."""

    seconds: float


@dataclass(frozen=True)
class Done:
    """Outcome: the response is final (success)."""

    response: Response


@dataclass(frozen=True)
class Fail:
    """Outcome: raise ``error``."""

    error: WebexBYOVAError


Outcome = Wait | Done | Fail


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait between attempts."""

    max_retries: int = 3
    deadline: float = 120.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    rate_limit_default: float = DEFAULT_RATE_LIMIT_WAIT
    rng: Callable[[], float] = field(default=random.random, compare=False)

    @classmethod
    def from_config(cls, config: BYOVAConfig) -> RetryPolicy:
        """Build the policy from :class:`BYOVAConfig`."""
        return cls(
            max_retries=config.max_retries,
            deadline=config.retry_deadline,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
        )

    def backoff(self, retry_number: int) -> float:
        """Full-jitter exponential backoff for the ``retry_number``-th retry (1-based)."""
        ceiling = min(self.backoff_max, self.backoff_base * 2.0 ** (retry_number - 1))
        return float(ceiling * (0.5 + 0.5 * self.rng()))

    def start(self, spec: RequestSpec, *, started_at: float) -> RetryState:
        """Begin tracking one logical request."""
        return RetryState(self, spec, started_at)


class RetryState:
    """Per-request retry bookkeeping: feed it each attempt's result, act on the outcome."""

    def __init__(self, policy: RetryPolicy, spec: RequestSpec, started_at: float) -> None:
        self.policy = policy
        self.spec = spec
        self.started_at = started_at
        self.retries = 0

    def attempt_timeout(self, now: float, per_attempt: float) -> float:
        """Timeout for the next attempt: ``per_attempt``, but never past the total deadline."""
        remaining = self.policy.deadline - (now - self.started_at)
        return max(0.001, min(per_attempt, remaining))

    def _maybe_wait(
        self, error: WebexBYOVAError, now: float, server_wait: float | None = None
    ) -> Outcome:
        if self.retries >= self.policy.max_retries:
            return Fail(error)
        self.retries += 1
        delay = server_wait if server_wait is not None else self.policy.backoff(self.retries)
        if now - self.started_at + delay > self.policy.deadline:
            return Fail(error)
        return Wait(delay)

    def on_response(self, response: Response, *, now: float, wall: float | None = None) -> Outcome:
        """Decide what to do after a response arrived."""
        if response.is_success or 300 <= response.status_code < 400:
            return Done(response)
        error = map_error(response, now=wall)
        status = response.status_code
        if status in RETRY_ANY_METHOD_STATUSES:
            wait = parse_retry_after(_header(response.headers, "Retry-After"), now=wall)
            if wait is None:
                wait = max(self.policy.backoff(self.retries + 1), 0.0)
                if status == 429:
                    wait = max(wait, min(self.policy.rate_limit_default, self.policy.backoff_max))
            return self._maybe_wait(error, now, wait)
        if status in RETRY_IDEMPOTENT_STATUSES and self.spec.idempotent:
            wait = parse_retry_after(_header(response.headers, "Retry-After"), now=wall)
            return self._maybe_wait(error, now, wait)
        return Fail(error)

    def on_failure(self, kind: FailureKind, detail: str, *, now: float) -> Outcome:
        """Decide what to do after a transport failure.

        ``connect`` failures never reached the server and are always retried; timeouts and
        read failures are retried only for idempotent requests.
        """
        url = _strip_query(self.spec.url)
        error: WebexBYOVAError
        if kind == "timeout":
            error = APITimeoutError(
                f"{self.spec.method} {url} timed out: {detail}",
                method=self.spec.method,
                url=url,
            )
        else:
            error = APIConnectionError(
                f"{self.spec.method} {url} failed: {detail}", method=self.spec.method, url=url
            )
        if kind == "connect" or self.spec.idempotent:
            return self._maybe_wait(error, now)
        return Fail(error)


# --------------------------------------------------------------------------- I/O shells


def _classify(exc: httpx.TransportError) -> FailureKind:
    if isinstance(exc, httpx.ConnectTimeout | httpx.ConnectError):
        return "connect"
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    return "read"


def _to_response(spec: RequestSpec, resp: httpx.Response, elapsed: float) -> Response:
    return Response(
        status_code=resp.status_code,
        headers=dict(resp.headers.items()),
        content=resp.content,
        url=str(resp.url),
        method=spec.method,
        elapsed=elapsed,
    )


def _httpx_kwargs(spec: RequestSpec) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"params": list(spec.params), "headers": dict(spec.headers)}
    if spec.json_body is not None:
        kwargs["content"] = json.dumps(spec.json_body, separators=(",", ":")).encode()
    elif spec.form is not None:
        kwargs["content"] = urlencode(list(spec.form)).encode()
    return kwargs


def _log_attempt(
    spec: RequestSpec, status: int | str, elapsed: float, tracking: str | None
) -> None:
    if log.isEnabledFor(10):  # DEBUG
        query = "&".join(f"{k}={v}" for k, v in spec.params)
        url = redact(f"{_strip_query(spec.url)}?{query}" if query else _strip_query(spec.url))
        log.debug(
            "%s %s -> %s in %.1f ms (trackingId=%s)",
            spec.method,
            url,
            status,
            elapsed * 1000,
            tracking,
        )


class HttpClient:
    """Sync and async HTTP with retries, pagination and typed errors.

    ``sleep``/``asleep``/``clock`` are injectable so tests can assert waits without wall time.
    ``transport``/``async_transport`` accept httpx transports (e.g. for proxies or custom TLS).
    """

    def __init__(
        self,
        config: BYOVAConfig | None = None,
        *,
        sleep: Callable[[float], None] = time.sleep,
        asleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        retry_policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        async_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.config = config or BYOVAConfig()
        self.retry_policy = retry_policy or RetryPolicy.from_config(self.config)
        self._sleep = sleep
        self._asleep = asleep
        self._clock = clock
        self._wall = wall_clock
        self._transport = transport
        self._async_transport = async_transport
        self._sync: httpx.Client | None = None
        # One AsyncClient per event loop: httpx connections belong to the loop that opened
        # them, so a client reused from another (or an already closed) loop fails.
        self._async: dict[asyncio.AbstractEventLoop, httpx.AsyncClient] = {}
        self._closed = False

    # -- request building shortcut
    def build(self, method: str, path: str, **kwargs: Any) -> RequestSpec:
        """:func:`build_request` with this client's config."""
        return build_request(self.config, method, path, **kwargs)

    # -- lazily created transports
    def _timeout(self) -> httpx.Timeout:
        return httpx.Timeout(self.config.timeout)

    def _sync_client(self) -> httpx.Client:
        if self._closed:
            raise RuntimeError("HttpClient is closed")
        if self._sync is None:
            self._sync = httpx.Client(
                timeout=self._timeout(), transport=self._transport, follow_redirects=False
            )
        return self._sync

    def _async_client(self) -> httpx.AsyncClient:
        if self._closed:
            raise RuntimeError("HttpClient is closed")
        loop = asyncio.get_running_loop()
        client = self._async.get(loop)
        if client is None:
            for old in [lp for lp in self._async if lp.is_closed()]:
                del self._async[old]  # its connections died with their loop
            client = self._async[loop] = httpx.AsyncClient(
                timeout=self._timeout(), transport=self._async_transport, follow_redirects=False
            )
        return client

    # -- one logical request
    # The sync and async shells differ only in how they send and sleep; everything else about
    # an attempt (its timeout, logging, the retry decision) lives in _send_kwargs/_settle.
    def _send_kwargs(self, state: RetryState, spec: RequestSpec, t0: float) -> dict[str, Any]:
        return {
            "timeout": state.attempt_timeout(t0, self.config.timeout),
            **_httpx_kwargs(spec),
        }

    def _settle(
        self,
        state: RetryState,
        spec: RequestSpec,
        t0: float,
        result: httpx.Response | httpx.TransportError,
    ) -> Response | float:
        """Return the final response, raise the typed error, or return seconds to wait."""
        if isinstance(result, httpx.TransportError):
            _log_attempt(spec, type(result).__name__, self._clock() - t0, None)
            detail = str(result) or type(result).__name__
            outcome = state.on_failure(_classify(result), detail, now=self._clock())
        else:
            response = _to_response(spec, result, self._clock() - t0)
            _log_attempt(spec, response.status_code, response.elapsed, response.tracking_id)
            outcome = state.on_response(response, now=self._clock(), wall=self._wall())
        if isinstance(outcome, Done):
            return outcome.response
        if isinstance(outcome, Fail):
            raise outcome.error
        log.info("retrying %s %s in %.2fs", spec.method, _strip_query(spec.url), outcome.seconds)
        return outcome.seconds

    def request(self, spec: RequestSpec) -> Response:
        """Send ``spec`` with retries; return the 2xx/3xx response or raise a typed error."""
        client = self._sync_client()
        state = self.retry_policy.start(spec, started_at=self._clock())
        while True:
            t0 = self._clock()
            try:
                raw = client.request(spec.method, spec.url, **self._send_kwargs(state, spec, t0))
            except httpx.TransportError as exc:
                settled = self._settle(state, spec, t0, exc)
            else:
                settled = self._settle(state, spec, t0, raw)
            if isinstance(settled, Response):
                return settled
            self._sleep(settled)

    async def arequest(self, spec: RequestSpec) -> Response:
        """Async :meth:`request`."""
        client = self._async_client()
        state = self.retry_policy.start(spec, started_at=self._clock())
        while True:
            t0 = self._clock()
            try:
                kwargs = self._send_kwargs(state, spec, t0)
                raw = await client.request(spec.method, spec.url, **kwargs)
            except httpx.TransportError as exc:
                settled = self._settle(state, spec, t0, exc)
            else:
                settled = self._settle(state, spec, t0, raw)
            if isinstance(settled, Response):
                return settled
            await self._asleep(settled)

    # -- convenience
    def request_json(self, spec: RequestSpec) -> Any:
        """:meth:`request` and decode JSON."""
        return self.request(spec).json()

    async def arequest_json(self, spec: RequestSpec) -> Any:
        """:meth:`arequest` and decode JSON."""
        return (await self.arequest(spec)).json()

    def paginate(self, spec: RequestSpec, *, items_key: str = "items") -> Iterator[Any]:
        """Yield every item of every page, following ``Link: rel="next"``."""
        current: RequestSpec | None = spec
        guard = _PageGuard(spec)
        while current is not None:
            response = self.request(current)
            yield from _page_items(response, items_key)
            current = guard.admit(next_page(current, response))

    async def apaginate(self, spec: RequestSpec, *, items_key: str = "items") -> AsyncIterator[Any]:
        """Async :meth:`paginate`."""
        current: RequestSpec | None = spec
        guard = _PageGuard(spec)
        while current is not None:
            response = await self.arequest(current)
            for item in _page_items(response, items_key):
                yield item
            current = guard.admit(next_page(current, response))

    # -- lifecycle
    def close(self) -> None:
        """Close the sync client and the async ones (safe inside a running loop).

        An async client of the calling thread's running loop is closed by a task on that
        loop; one of a loop running on another thread is closed there (waited for).
        """
        self._closed = True
        if self._sync is not None:
            self._sync.close()
            self._sync = None
        clients, self._async = self._async, {}
        try:
            current: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            current = None
        for loop, client in clients.items():
            if loop.is_closed():
                continue
            if loop is current:
                task = loop.create_task(client.aclose())
                _CLOSING.add(task)  # keep a reference until it is done
                task.add_done_callback(_CLOSING.discard)
            elif loop.is_running():
                asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(10)
            else:
                _close_on_idle_loop(loop, client)

    async def aclose(self) -> None:
        """Close both clients."""
        self._closed = True
        clients, self._async = self._async, {}
        current = asyncio.get_running_loop()
        for loop, client in clients.items():
            if loop is current:
                await client.aclose()
            elif loop.is_running():
                future = asyncio.run_coroutine_threadsafe(client.aclose(), loop)
                await asyncio.wrap_future(future)
            elif not loop.is_closed():
                _close_on_idle_loop(loop, client)
        if self._sync is not None:
            self._sync.close()
            self._sync = None

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


_CLOSING: set[asyncio.Task[None]] = set()


def _close_on_idle_loop(loop: asyncio.AbstractEventLoop, client: httpx.AsyncClient) -> None:
    """Close ``client`` on its own (stopped, not closed) loop, when this thread may run it."""
    closing = client.aclose()
    try:
        loop.run_until_complete(closing)
    except RuntimeError:  # another loop runs in this thread: its sockets go with their loop
        closing.close()  # never started; unclosed it warns "coroutine ... never awaited"
        log.debug("could not close an async HTTP client of a stopped event loop")


def _page_items(response: Response, items_key: str) -> list[Any]:
    body = response.json()
    if isinstance(body, Mapping):
        items = body.get(items_key, [])
        if not isinstance(items, list):
            raise ValidationError(
                f"expected a list under {items_key!r} in the response",
                status_code=response.status_code,
                body=body,
                tracking_id=response.tracking_id,
            )
        return items
    if isinstance(body, list):
        return body
    raise ValidationError(
        "expected a JSON object with a list of items",
        status_code=response.status_code,
        body=body,
        tracking_id=response.tracking_id,
    )
