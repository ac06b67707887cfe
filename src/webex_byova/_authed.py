"""Authenticated requests as flows: bearer injection, one forced refresh on 401, pagination.

Shared by :mod:`webex_byova.webhooks` (integration token) and :mod:`webex_byova.data_sources`
(per-org Service App token). Everything here is a flow (see :mod:`webex_byova._flow`) or a
thin iteration shell around one, so the sync and async APIs share one implementation.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

from ._flow import Flow, Http, Portal, run_async, run_sync
from ._http import HttpClient, RequestSpec, Response, _page_items, _PageGuard, next_page
from ._logging import get_logger
from .errors import AuthenticationError, ValidationError

__all__ = [
    "TokenFlow",
    "authed_request",
    "iterate_async",
    "iterate_sync",
    "page_flow",
    "with_bearer",
]

log = get_logger("webex_byova.http")

#: ``token_flow(force_refresh)`` -> a flow returning a bearer access token.
TokenFlow = Callable[[bool], Flow[str]]


def with_bearer(spec: RequestSpec, token: str) -> RequestSpec:
    """Return ``spec`` with its ``Authorization`` header set to ``Bearer <token>``."""
    headers = tuple((k, v) for k, v in spec.headers if k.lower() != "authorization")
    return replace(spec, headers=(*headers, ("Authorization", f"Bearer {token}")))


def authed_request(spec: RequestSpec, token_flow: TokenFlow) -> Flow[Response]:
    """Send ``spec`` with a bearer token; on 401, force one token refresh and retry once."""
    token = yield from token_flow(False)
    try:
        response: Response = yield Http(with_bearer(spec, token))
        return response
    except AuthenticationError as exc:
        if exc.status_code != 401:
            raise
        log.info("%s %s got 401; refreshing the token once and retrying", spec.method, exc.url)
    token = yield from token_flow(True)
    response = yield Http(with_bearer(spec, token))
    return response


def page_flow(
    spec: RequestSpec, token_flow: TokenFlow, items_key: str = "items"
) -> Flow[tuple[list[Any], RequestSpec | None]]:
    """Fetch one page: return its items and the request for the next page (or ``None``)."""
    response = yield from authed_request(spec, token_flow)
    following = next_page(spec, response)
    if following is not None and _origin(following.url) != _origin(spec.url):
        # The bearer token goes with the next request: never to a host Link names.
        raise ValidationError(
            f"refusing to follow a pagination link to another origin ({_origin(following.url)})",
            status_code=response.status_code,
            tracking_id=response.tracking_id,
        )
    return _page_items(response, items_key), following


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urlsplit(url)
    port = parts.port or {"https": 443, "http": 80}.get(parts.scheme.lower())
    return parts.scheme.lower(), parts.hostname, port


def iterate_sync(
    spec: RequestSpec,
    token_flow: TokenFlow,
    http: HttpClient,
    portal: Portal | None = None,
    items_key: str = "items",
) -> Iterator[Any]:
    """Yield the items of every page lazily (blocking I/O)."""
    current: RequestSpec | None = spec
    guard = _PageGuard(spec)
    while current is not None:
        items, following = run_sync(page_flow(current, token_flow, items_key), http, portal)
        current = guard.admit(following)
        yield from items


async def iterate_async(
    spec: RequestSpec, token_flow: TokenFlow, http: HttpClient, items_key: str = "items"
) -> AsyncIterator[Any]:
    """Yield the items of every page lazily (async I/O)."""
    current: RequestSpec | None = spec
    guard = _PageGuard(spec)
    while current is not None:
        items, following = await run_async(page_flow(current, token_flow, items_key), http)
        current = guard.admit(following)
        for item in items:
            yield item
