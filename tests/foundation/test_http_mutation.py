"""Exact decisions of the HTTP core's I/O-free parts, pinned by the mutation run (issue 17).

Request building, error mapping (type, message, tracking id, descriptions, ``Retry-After``),
the ``Link`` parser, next-page building and the retry decisions at their boundaries, each
checked as values, without a server; then the client shells against a real loopback server
(exact log lines with an injected clock, errors, transports, redirects, closing on each kind of
event loop).
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
import threading
import time
from typing import Any

import httpx
import pytest

from webex_byova._http import (
    _CLOSING,
    DEFAULT_RATE_LIMIT_WAIT,
    Done,
    Fail,
    HttpClient,
    RequestSpec,
    Response,
    RetryPolicy,
    Wait,
    _PageGuard,
    build_request,
    extract_tracking_id,
    map_error,
    next_page,
    parse_link_header,
    parse_retry_after,
)
from webex_byova.config import BYOVAConfig
from webex_byova.errors import (
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

from .conftest import Scripted, ScriptServer

NOW = 1_800_000_000.0
CONFIG = BYOVAConfig(base_url="https://api.example/v1/", user_agent="ua/1")


def _response(
    status: int,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    url: str = "https://api.example/v1/things?secret=1",
    method: str = "GET",
) -> Response:
    return Response(status, headers or {}, body, url, method)


# --------------------------------------------------------------------------- requests


def test_build_request_defaults() -> None:
    spec = build_request(CONFIG, "get", "/things")
    assert spec == RequestSpec(
        method="GET",
        url="https://api.example/v1/things",
        params=(),
        headers=(("User-Agent", "ua/1"), ("Accept", "application/json")),
        json_body=None,
        form=None,
        idempotent=True,
    )


def test_build_request_with_everything() -> None:
    spec = build_request(
        CONFIG,
        "POST",
        "things/",
        token="tok",
        params={"a": 1, "skip": None, "yes": True, "no": False, "s": "x"},
        json_body={"k": "v"},
        headers={"X-Extra": "1", "Accept": "text/plain"},
    )
    assert spec.url == "https://api.example/v1/things/"
    assert spec.params == (("a", "1"), ("yes", "true"), ("no", "false"), ("s", "x"))
    assert dict(spec.headers) == {
        "User-Agent": "ua/1",
        "Accept": "text/plain",
        "Authorization": "Bearer tok",
        "Content-Type": "application/json",
        "X-Extra": "1",
    }
    assert spec.json_body == {"k": "v"}
    assert spec.idempotent is False
    form = build_request(CONFIG, "post", "https://other.example/t", form={"g": "h"})
    assert form.url == "https://other.example/t"
    assert form.form == (("g", "h"),)
    assert dict(form.headers)["Content-Type"] == "application/x-www-form-urlencoded"


@pytest.mark.parametrize(
    ("method", "idempotent"),
    [("GET", True), ("HEAD", True), ("OPTIONS", True), ("PUT", True), ("DELETE", True)]
    + [("POST", False), ("PATCH", False)],
)
def test_idempotency_follows_the_method(method: str, idempotent: bool) -> None:
    assert build_request(CONFIG, method, "x").idempotent is idempotent
    assert build_request(CONFIG, method, "x", idempotent=not idempotent).idempotent is (
        not idempotent
    )


def test_spec_copies() -> None:
    spec = build_request(CONFIG, "GET", "x", params={"a": "1"})
    assert spec.with_params({"b": "2"}).params == (("b", "2"),)
    assert spec.with_params((("c", "3"),)).params == (("c", "3"),)
    assert spec.with_url("https://z/").url == "https://z/"
    assert spec.with_url("https://z/").params == (("a", "1"),)


# --------------------------------------------------------------------------- responses


def test_response_helpers() -> None:
    assert _response(200, b"").json() is None
    assert _response(200, b'{"a": 1}').json() == {"a": 1}
    assert [_response(s).is_success for s in (199, 200, 299, 300)] == [False, True, True, False]
    assert _response(200, headers={"trackingid": "T1"}).tracking_id == "T1"


def test_tracking_id_sources() -> None:
    assert extract_tracking_id({"TrackingID": "h"}, {"trackingId": "b"}) == "h"
    assert extract_tracking_id({"TRACKINGID": ""}, {"trackingId": "b"}) == "b"
    assert extract_tracking_id({}, {"trackingID": "c"}) == "c"
    assert extract_tracking_id({}, {"tracking_id": "d"}) == "d"
    assert extract_tracking_id({}, {"trackingId": "", "tracking_id": "e"}) == "e"
    assert extract_tracking_id({}, {"trackingId": 5}) is None
    assert extract_tracking_id({"X-Other": "x"}, ["trackingId"]) is None


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, ValidationError),
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (409, ConflictError),
        (410, NotFoundError),
        (415, ValidationError),
        (422, ValidationError),
        (428, ValidationError),
        (429, RateLimitError),
        (499, WebexBYOVAError),
        (418, WebexBYOVAError),
        (405, WebexBYOVAError),
        (500, ServerError),
        (599, ServerError),
        (302, WebexBYOVAError),
    ],
)
def test_error_type_per_status(status: int, kind: type[WebexBYOVAError]) -> None:
    error = map_error(_response(status))
    assert type(error) is kind
    assert error.status_code == status
    assert str(error).startswith(f"GET https://api.example/v1/things failed: HTTP {status}")


@pytest.mark.parametrize(
    ("body", "summary", "descriptions"),
    [
        (b'{"message": "m", "errors": [{"description": "d"}]}', "m", ["d"]),
        (b'{"error_description": "ed", "error": "e"}', "ed", []),
        (b'{"error": "e"}', "e", []),
        (b'{"message": "", "error": "e"}', "e", []),
        (b'{"error": {"message": "inner"}}', "inner", []),
        (b'{"error": {"description": "inner-d"}}', "inner-d", []),
        (b'{"error": {"code": 1}}', "HTTP 400", []),
        (b'{"errors": [{"description": "d1"}, "d2", {"x": 1}, 3]}', "d1", ["d1", "d2"]),
        (b'{"errors": {"description": "x"}}', "HTTP 400", []),
        (b'{"message": 5}', "HTTP 400", []),
        (b"[1, 2]", "HTTP 400", []),
        (b"plain text", "HTTP 400", []),
    ],
)
def test_error_text(body: bytes, summary: str, descriptions: list[str]) -> None:
    error = map_error(_response(400, body, method="POST"))
    assert str(error).startswith(f"POST https://api.example/v1/things failed: {summary}")
    assert error.descriptions == descriptions


def test_error_carries_its_context() -> None:
    error = map_error(
        _response(
            404, b'{"message": "gone", "trackingId": "body-t"}', headers={"TrackingId": "hdr"}
        )
    )
    assert error.tracking_id == "hdr"
    assert error.body == {"message": "gone", "trackingId": "body-t"}
    assert error.url == "https://api.example/v1/things"
    assert error.method == "GET"
    assert map_error(_response(500, b"\xff\xfe oops")).body == "\ufffd\ufffd oops"
    assert map_error(_response(500, b"")).body is None


@pytest.mark.parametrize(
    ("value", "expected"),
    [("30", 30), ("2.6", 3), ("0", 0), ("", None), ("  ", None), ("x", None), (None, None)],
)
def test_rate_limit_error_retry_after(value: str | None, expected: int | None) -> None:
    headers = {} if value is None else {"retry-after": value}
    error = map_error(_response(429, headers=headers), now=NOW)
    assert isinstance(error, RateLimitError)
    assert error.retry_after == expected


def test_retry_after_forms() -> None:
    assert parse_retry_after(" 7 ") == 7.0
    assert parse_retry_after("1.5") == 1.5
    assert parse_retry_after("1.") is None
    assert parse_retry_after(".5") is None
    past = email.utils.formatdate(NOW - 30, usegmt=True)
    assert parse_retry_after(past, now=NOW) == 0.0
    future = email.utils.formatdate(NOW + 45, usegmt=True)
    assert parse_retry_after(future, now=NOW) == pytest.approx(45.0)
    assert parse_retry_after("Mon, 99 Foo 2020 99:99:99 GMT", now=NOW) is None
    in_an_hour = parse_retry_after(email.utils.formatdate(time.time() + 3600, usegmt=True))
    assert in_an_hour is not None
    assert 3000 < in_an_hour <= 3600  # against the wall clock when ``now`` is not given


# --------------------------------------------------------------------------- links and pages


def test_link_header_details() -> None:
    assert parse_link_header(None) == {}
    assert parse_link_header("") == {}
    assert parse_link_header("<https://a/2>; REL=NEXT") == {"next": "https://a/2"}
    assert parse_link_header('< https://a/2 >; rel="next"') == {"next": "https://a/2"}
    assert parse_link_header('<https://a/2>; title="x"; rel=next') == {"next": "https://a/2"}
    assert parse_link_header('<https://a/2>; rel="next"; rel="last"') == {
        "next": "https://a/2",
        "last": "https://a/2",
    }
    assert parse_link_header('https://a/2; rel="next"') == {}
    assert parse_link_header('<https://a/2; rel="next"') == {}
    assert parse_link_header('<https://a/2>; relx="next"') == {}
    assert parse_link_header('<https://a/1>; title="a, \\"b\\"; c"; rel="next"') == {
        "next": "https://a/1"
    }
    assert parse_link_header('<https://a/1>; rel="next",<https://a/0>; rel="prev"') == {
        "next": "https://a/1",
        "prev": "https://a/0",
    }


def test_next_page_keeps_filters_and_cursor() -> None:
    spec = build_request(CONFIG, "GET", "things", params={"max": "10", "cursor": "0"})
    response = _response(
        200,
        headers={"link": '</v1/things?cursor=abc&empty=>; rel="next"'},
        url="https://api.example/v1/things?max=10",
    )
    nxt = next_page(spec, response)
    assert nxt is not None
    assert nxt.url == "https://api.example/v1/things"
    assert nxt.params == (("cursor", "abc"), ("empty", ""), ("max", "10"))
    assert nxt.headers == spec.headers
    assert next_page(spec, _response(200, headers={"Link": '<https://a/0>; rel="prev"'})) is None
    assert next_page(spec, _response(200)) is None


def test_page_guard(caplog: pytest.LogCaptureFixture) -> None:
    first = build_request(CONFIG, "GET", "things", params={"a": "1", "b": "2"})
    guard = _PageGuard(first)
    assert guard.admit(None) is None
    second = first.with_params({"a": "1", "b": "3"})
    assert guard.admit(second) is second
    with caplog.at_level(logging.WARNING, logger="webex_byova.http"):
        assert guard.admit(first.with_params((("b", "2"), ("a", "1")))) is None
        assert guard.admit(second) is None
    assert [r.getMessage() for r in caplog.records] == [
        "pagination stopped: the server repeated a next link (https://api.example/v1/things)"
    ] * 2


# --------------------------------------------------------------------------- retry decisions


def _policy(**kwargs: Any) -> RetryPolicy:
    kwargs.setdefault("rng", lambda: 0.0)
    return RetryPolicy(**kwargs)


def test_policy_defaults_and_from_config() -> None:
    policy = RetryPolicy()
    assert (policy.max_retries, policy.deadline, policy.backoff_base, policy.backoff_max) == (
        3,
        120.0,
        0.5,
        30.0,
    )
    assert policy.rate_limit_default == DEFAULT_RATE_LIMIT_WAIT == 15.0
    config = BYOVAConfig(max_retries=7, retry_deadline=9.0, backoff_base=0.25, backoff_max=4.0)
    assert RetryPolicy.from_config(config) == RetryPolicy(
        max_retries=7, deadline=9.0, backoff_base=0.25, backoff_max=4.0
    )


def test_backoff_is_full_jitter_exponential_and_capped() -> None:
    low = _policy(backoff_base=1.0, backoff_max=5.0, rng=lambda: 0.0)
    high = _policy(backoff_base=1.0, backoff_max=5.0, rng=lambda: 1.0)
    assert [low.backoff(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 2.5]
    assert [high.backoff(n) for n in (1, 2, 3, 4)] == [1.0, 2.0, 4.0, 5.0]
    assert _policy(backoff_base=1.0, rng=lambda: 0.5).backoff(1) == 0.75


def _state(method: str = "GET", **policy: Any) -> Any:
    spec = build_request(CONFIG, method, "things")
    return _policy(**policy).start(spec, started_at=100.0)


def test_success_and_redirects_are_final() -> None:
    for status in (200, 204, 299, 301, 304, 399):
        response = _response(status)
        assert _state().on_response(response, now=100.0) == Done(response)


@pytest.mark.parametrize("method", ["GET", "POST"])
@pytest.mark.parametrize("status", [423, 429])
def test_rate_limits_are_retried_for_every_method(method: str, status: int) -> None:
    state = _state(method)
    outcome = state.on_response(
        _response(status, headers={"Retry-After": "4"}, method=method), now=100.0, wall=NOW
    )
    assert outcome == Wait(4.0)
    assert state.retries == 1


def test_429_without_retry_after_waits_the_rate_limit_default() -> None:
    state = _state(backoff_base=1.0, backoff_max=30.0, rate_limit_default=15.0)
    assert state.on_response(_response(429), now=100.0) == Wait(15.0)
    capped = _state(backoff_base=1.0, backoff_max=6.0, rate_limit_default=15.0)
    assert capped.on_response(_response(429), now=100.0) == Wait(6.0)
    long_backoff = _state(backoff_base=40.0, backoff_max=60.0, rate_limit_default=15.0)
    assert long_backoff.on_response(_response(429), now=100.0) == Wait(20.0)
    locked = _state(backoff_base=1.0, backoff_max=30.0, rate_limit_default=15.0)
    assert locked.on_response(_response(423), now=100.0) == Wait(0.5)


@pytest.mark.parametrize("status", [502, 503, 504])
def test_idempotent_requests_retry_gateway_errors(status: int) -> None:
    state = _state("GET", backoff_base=2.0)
    assert state.on_response(_response(status), now=100.0) == Wait(1.0)
    assert state.on_response(_response(status, headers={"retry-after": "3"}), now=100.0) == Wait(
        3.0
    )
    outcome = _state("POST").on_response(_response(status, method="POST"), now=100.0)
    assert isinstance(outcome, Fail)
    assert isinstance(outcome.error, ServerError)


@pytest.mark.parametrize("status", [500, 501, 505, 400, 401, 404, 409])
def test_other_errors_are_not_retried(status: int) -> None:
    outcome = _state().on_response(_response(status), now=100.0)
    assert isinstance(outcome, Fail)
    assert outcome.error.status_code == status


def test_max_retries_then_the_last_error() -> None:
    state = _state(max_retries=2, backoff_base=1.0)
    assert state.on_response(_response(503), now=100.0) == Wait(0.5)
    assert state.on_response(_response(503), now=100.0) == Wait(1.0)
    outcome = state.on_response(_response(503, b'{"message": "third"}'), now=100.0)
    assert isinstance(outcome, Fail)
    assert "third" in str(outcome.error)
    assert state.retries == 2
    none = _state(max_retries=0)
    assert isinstance(none.on_response(_response(503), now=100.0), Fail)


def test_the_deadline_bounds_the_next_wait() -> None:
    state = _state(deadline=10.0)
    assert state.on_response(_response(503, headers={"Retry-After": "4"}), now=106.0) == Wait(4.0)
    late = _state(deadline=10.0)
    outcome = late.on_response(_response(503, headers={"Retry-After": "4"}), now=106.001)
    assert isinstance(outcome, Fail)


def test_attempt_timeout() -> None:
    state = _state(deadline=10.0)
    assert state.attempt_timeout(100.0, 3.0) == 3.0
    assert state.attempt_timeout(108.0, 3.0) == 2.0
    assert state.attempt_timeout(110.0, 3.0) == 0.001
    assert state.attempt_timeout(200.0, 3.0) == 0.001


def test_transport_failures() -> None:
    get = _state("GET", backoff_base=2.0)
    assert get.on_failure("timeout", "slow", now=100.0) == Wait(1.0)
    assert get.on_failure("read", "reset", now=100.0) == Wait(2.0)
    post = _state("POST", backoff_base=2.0)
    timed_out = post.on_failure("timeout", "slow", now=100.0)
    assert isinstance(timed_out, Fail)
    assert type(timed_out.error) is APITimeoutError
    assert str(timed_out.error) == "POST https://api.example/v1/things timed out: slow"
    assert (timed_out.error.method, timed_out.error.url) == (
        "POST",
        "https://api.example/v1/things",
    )
    read = post.on_failure("read", "reset", now=100.0)
    assert isinstance(read, Fail)
    assert type(read.error) is APIConnectionError
    assert str(read.error) == "POST https://api.example/v1/things failed: reset"
    assert (read.error.method, read.error.url) == ("POST", "https://api.example/v1/things")
    assert post.on_failure("connect", "refused", now=100.0) == Wait(1.0)
    assert post.retries == 1


# --------------------------------------------------------------------------- client shells


def _client(server: ScriptServer) -> HttpClient:
    return HttpClient(
        BYOVAConfig(base_url=server.url + "/v1"),
        sleep=lambda _: None,
        retry_policy=RetryPolicy(max_retries=0),
    )


async def test_request_json_decodes_the_body(server: ScriptServer) -> None:
    server.script("/v1/a", Scripted(200, {"k": [1]}), Scripted(200, {"k": [2]}))
    server.script("/v1/empty", Scripted(204, None), Scripted(204, None))
    async with _client(server) as client:
        assert client.request_json(client.build("GET", "a")) == {"k": [1]}
        assert await client.arequest_json(client.build("GET", "a")) == {"k": [2]}
        assert client.request_json(client.build("GET", "empty")) is None
        assert await client.arequest_json(client.build("GET", "empty")) is None
    assert [s.path for s in server.requests()] == ["/v1/a", "/v1/a", "/v1/empty", "/v1/empty"]


async def test_pages_without_the_items_key_are_empty(server: ScriptServer) -> None:
    server.script("/v1/p", Scripted(200, {"other": 1}), Scripted(200, [7, 8]))
    async with _client(server) as client:
        assert list(client.paginate(client.build("GET", "p"))) == []
        assert [i async for i in client.apaginate(client.build("GET", "p"))] == [7, 8]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"items": {"a": 1}}, "expected a list under 'items' in the response"),
        ("text", "expected a JSON object with a list of items"),
        (5, "expected a JSON object with a list of items"),
    ],
)
async def test_a_page_that_is_not_a_list_of_items(
    server: ScriptServer, body: Any, message: str
) -> None:
    page = Scripted(200, body, headers={"TrackingID": "T-9"})
    server.script("/v1/p", page, page)
    async with _client(server) as client:
        with pytest.raises(ValidationError) as info:
            list(client.paginate(client.build("GET", "p")))
        with pytest.raises(ValidationError) as ainfo:
            [i async for i in client.apaginate(client.build("GET", "p"))]
    for error in (info.value, ainfo.value):
        assert str(error) == f"{message} | status=200 | tracking_id=T-9"
        assert error.status_code == 200
        assert error.body == body
        assert error.tracking_id == "T-9"


def test_closing_after_the_loop_stopped_closes_its_client(server: ScriptServer) -> None:
    client = _client(server)
    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(client.arequest_json(client.build("GET", "x"))) == {}
        client.close()  # the loop is stopped, not closed: the async client is closed on it
        with pytest.raises(RuntimeError, match="^HttpClient is closed$"):
            loop.run_until_complete(client.arequest(client.build("GET", "x")))
    finally:
        loop.close()


async def _used_on_a_thread_loop(client: HttpClient) -> asyncio.AbstractEventLoop:
    """Make one async request on a new loop in another thread; return that (stopped) loop."""

    def use_on_own_loop() -> asyncio.AbstractEventLoop:
        loop = asyncio.new_event_loop()
        loop.run_until_complete(client.arequest(client.build("GET", "x")))
        return loop

    return await asyncio.to_thread(use_on_own_loop)


async def test_closing_inside_another_loop_leaves_a_stopped_loops_client(
    server: ScriptServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(server)
    # The server closes the connection, so the client that cannot be closed holds no socket.
    server.script("/v1/x", Scripted(200, {}, headers={"Connection": "close"}))

    holder = [await _used_on_a_thread_loop(client)]
    try:
        with caplog.at_level(logging.DEBUG, logger="webex_byova.http"):
            client.close()  # this thread runs a loop: the stopped one cannot be run here
        assert [r.getMessage() for r in caplog.records] == [
            "could not close an async HTTP client of a stopped event loop"
        ]
    finally:
        await asyncio.to_thread(holder[0].close)


def test_link_header_edge_syntax() -> None:
    assert parse_link_header('https://a/2>; rel="next"') == {}  # no "<": not a link-value
    assert parse_link_header('<https://a/1>; title=">"; rel="next"') == {"next": "https://a/1"}
    assert parse_link_header('<https://a/1>; rel="next=x"') == {"next=x": "https://a/1"}
    assert parse_link_header('<https://a/1>; rel="nextX"') == {"nextx": "https://a/1"}
    assert parse_link_header('<https://a/1>; title="a\\", b"; rel="next"') == {
        "next": "https://a/1"
    }


def test_next_page_moves_to_the_linked_path() -> None:
    spec = build_request(CONFIG, "GET", "things", params={"max": "10"})
    response = _response(
        200, headers={"Link": '<https://api.example/v1/other?cursor=1>; rel="next"'}
    )
    nxt = next_page(spec, response)
    assert nxt is not None
    assert nxt.url == "https://api.example/v1/other"
    assert nxt.params == (("cursor", "1"), ("max", "10"))


async def test_aclose_closes_the_clients_of_every_loop(server: ScriptServer) -> None:
    """A client used on a loop running in another thread is closed there; afterwards the
    client refuses new requests."""
    client = _client(server)
    other = asyncio.new_event_loop()
    runner = threading.Thread(target=other.run_forever, daemon=True)
    runner.start()
    try:
        used = asyncio.run_coroutine_threadsafe(
            client.arequest_json(client.build("GET", "x")), other
        )
        assert await asyncio.wrap_future(used) == {}
        assert await client.arequest_json(client.build("GET", "x")) == {}  # this loop's too
        await client.aclose()
        with pytest.raises(RuntimeError, match="^HttpClient is closed$"):
            await client.arequest(client.build("GET", "x"))
        with pytest.raises(RuntimeError, match="^HttpClient is closed$"):
            client.request(client.build("GET", "x"))
    finally:
        other.call_soon_threadsafe(other.stop)
        runner.join(timeout=10)
        other.close()


# --------------------------------------------------------------------------- client shells, exact


def _ticks() -> Any:
    """A clock that moves one second per reading: every attempt takes exactly 1000.0 ms."""
    counter = iter(range(1_000_000))
    return lambda: float(next(counter))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens on it any more: connecting is refused


class _CountingTransport(httpx.HTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.handled = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.handled += 1
        return super().handle_request(request)


class _CountingAsyncTransport(httpx.AsyncHTTPTransport):
    def __init__(self) -> None:
        super().__init__()
        self.handled = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.handled += 1
        return await super().handle_async_request(request)


class _SilentFailure(httpx.BaseTransport):
    """A transport whose every request fails with an exception that has no message."""

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("")


def test_join_edges() -> None:
    config = BYOVAConfig(base_url="https://api.example/v1X/")
    assert build_request(config, "GET", "Xid").url == "https://api.example/v1X/Xid"
    assert build_request(config, "GET", "/Xid").url == "https://api.example/v1X/Xid"
    assert build_request(config, "GET", "http://other.example/a").url == "http://other.example/a"
    assert build_request(config, "GET", "https://other.example/a").url == "https://other.example/a"


async def test_each_attempt_is_logged_at_debug(
    server: ScriptServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.script("/v1/x", *[Scripted(200, {}, headers={"TrackingID": "T-1"})] * 2)
    base = server.url + "/v1"
    for clock_client in (True, False):
        caplog.clear()
        client = HttpClient(
            BYOVAConfig(base_url=base), clock=_ticks(), retry_policy=RetryPolicy(max_retries=0)
        )
        with caplog.at_level(logging.DEBUG, logger="webex_byova.http"):
            if clock_client:
                client.request(client.build("GET", "x", params={"a": "1", "b": "2"}))
                client.request(client.build("GET", "y"))
            else:
                await client.arequest(client.build("GET", "x", params={"a": "1", "b": "2"}))
                await client.arequest(client.build("GET", "y"))
        await client.aclose()
        assert [r.getMessage() for r in caplog.records] == [
            f"GET {base}/x?a=1&b=2 -> 200 in 1000.0 ms (trackingId=T-1)",
            f"GET {base}/y -> 200 in 1000.0 ms (trackingId=None)",
        ]


async def test_a_refused_connection_is_an_exact_error(caplog: pytest.LogCaptureFixture) -> None:
    url = f"http://127.0.0.1:{_free_port()}/v1/x"
    client = HttpClient(clock=_ticks(), retry_policy=RetryPolicy(max_retries=0))
    errors: list[APIConnectionError] = []
    with caplog.at_level(logging.DEBUG, logger="webex_byova.http"):
        with pytest.raises(APIConnectionError) as info:
            client.request(RequestSpec("GET", url + "?q=1"))
        errors.append(info.value)
        with pytest.raises(APIConnectionError) as ainfo:
            await client.arequest(RequestSpec("POST", url, idempotent=False))
        errors.append(ainfo.value)
    await client.aclose()
    for error, method in zip(errors, ("GET", "POST"), strict=True):
        cause = error.__context__
        assert isinstance(cause, httpx.ConnectError)
        assert str(cause)
        assert str(error) == f"{method} {url} failed: {cause}"
        assert (error.method, error.url) == (method, url)
    assert [r.getMessage() for r in caplog.records] == [
        f"GET {url} -> ConnectError in 1000.0 ms (trackingId=None)",  # a query in the url: cut
        f"POST {url} -> ConnectError in 1000.0 ms (trackingId=None)",
    ]


def test_a_failure_without_a_message_is_named_by_its_type() -> None:
    client = HttpClient(transport=_SilentFailure(), retry_policy=RetryPolicy(max_retries=0))
    with pytest.raises(APIConnectionError) as info:
        client.request(RequestSpec("GET", "http://127.0.0.1:9/x"))
    assert str(info.value) == "GET http://127.0.0.1:9/x failed: ReadError"
    client.close()


async def test_the_given_transports_carry_the_requests(server: ScriptServer) -> None:
    sync, other = _CountingTransport(), _CountingAsyncTransport()
    client = HttpClient(BYOVAConfig(base_url=server.url), transport=sync, async_transport=other)
    assert client.request(client.build("GET", "a")).status_code == 200
    assert (await client.arequest(client.build("GET", "a"))).status_code == 200
    assert (await client.arequest(client.build("GET", "a"))).status_code == 200
    await client.aclose()
    assert (sync.handled, other.handled) == (1, 2)


@pytest.mark.parametrize("status", [300, 302])
async def test_redirects_are_returned_not_followed(server: ScriptServer, status: int) -> None:
    moved = Scripted(status, {}, headers={"Location": "/v1/elsewhere"})
    server.script("/v1/r", moved, moved)
    async with _client(server) as client:
        assert client.request(client.build("GET", "r")).status_code == status
        assert (await client.arequest(client.build("GET", "r"))).status_code == status
    assert [s.path for s in server.requests()] == ["/v1/r", "/v1/r"]


@pytest.mark.parametrize("status", [429, 503])
async def test_an_http_date_retry_after_is_read_against_the_wall_clock(
    server: ScriptServer, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    later = email.utils.formatdate(NOW + 30, usegmt=True)
    busy = Scripted(status, {}, headers={"Retry-After": later})
    server.script("/v1/r", busy, busy)
    sleeps: list[float] = []
    client = HttpClient(
        BYOVAConfig(base_url=server.url + "/v1"),
        sleep=sleeps.append,
        clock=_ticks(),
        wall_clock=lambda: NOW,
        retry_policy=RetryPolicy(max_retries=1),
    )
    with (
        caplog.at_level(logging.INFO, logger="webex_byova.http"),
        pytest.raises(WebexBYOVAError) as info,
    ):
        client.request(client.build("GET", "r", params={"q": "1"}))
    client.close()
    assert sleeps == [30.0]
    assert [r.getMessage() for r in caplog.records] == [f"retrying GET {server.url}/v1/r in 30.00s"]
    if status == 429:
        assert isinstance(info.value, RateLimitError)
        assert info.value.retry_after == 30


async def test_an_error_response_names_the_request(server: ScriptServer) -> None:
    server.script("/v1/gone", Scripted(404, None), Scripted(404, None))
    async with _client(server) as client:
        with pytest.raises(NotFoundError) as info:
            client.request(client.build("GET", "gone"))
        with pytest.raises(NotFoundError) as ainfo:
            await client.arequest(client.build("DELETE", "gone"))
    url = f"{server.url}/v1/gone"
    assert str(info.value) == f"GET {url} failed: HTTP 404 | status=404"
    assert str(ainfo.value) == f"DELETE {url} failed: HTTP 404 | status=404"
    assert (info.value.method, ainfo.value.method) == ("GET", "DELETE")


def test_a_closed_client_refuses_sync_requests(server: ScriptServer) -> None:
    client = _client(server)
    client.close()
    with pytest.raises(RuntimeError, match="^HttpClient is closed$"):
        client.request(client.build("GET", "x"))


async def test_close_inside_the_running_loop_closes_its_client_by_a_task(
    server: ScriptServer,
) -> None:
    client = _client(server)
    await client.arequest(client.build("GET", "x"))
    inner = client._async[asyncio.get_running_loop()]
    client.close()  # must not block this loop's thread waiting for its own loop
    closing = list(_CLOSING)
    assert len(closing) == 1
    await asyncio.gather(*closing)
    await asyncio.sleep(0)  # the done callback runs on the next loop turn
    assert inner.is_closed
    assert not _CLOSING  # the reference kept while closing is dropped once it is done


def test_close_closes_a_client_of_a_loop_running_in_another_thread(server: ScriptServer) -> None:
    client = _client(server)
    other = asyncio.new_event_loop()
    runner = threading.Thread(target=other.run_forever, daemon=True)
    runner.start()
    try:
        used = asyncio.run_coroutine_threadsafe(client.arequest(client.build("GET", "x")), other)
        assert used.result(10).status_code == 200
        inner = client._async[other]
        client.close()
        assert inner.is_closed
    finally:
        other.call_soon_threadsafe(other.stop)
        runner.join(timeout=10)
        other.close()


def test_close_skips_a_closed_loop_and_closes_the_next(server: ScriptServer) -> None:
    """The server closes each connection, so the client of the closed loop holds no socket."""
    client = _client(server)
    bye = Scripted(200, {}, headers={"Connection": "close"})
    server.script("/v1/x", bye, bye)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        for loop in (first, second):
            loop.run_until_complete(client.arequest(client.build("GET", "x")))
        inner = client._async[second]
        first.close()
        client.close()
        assert inner.is_closed
    finally:
        first.close()
        second.close()


async def test_aclose_tries_a_stopped_loops_client_and_then_closes_the_sync_one(
    server: ScriptServer, caplog: pytest.LogCaptureFixture
) -> None:
    client = _client(server)
    server.script("/v1/x", Scripted(200, {}, headers={"Connection": "close"}))

    holder = [await _used_on_a_thread_loop(client)]
    assert client.request(client.build("GET", "y")).status_code == 200
    try:
        with caplog.at_level(logging.DEBUG, logger="webex_byova.http"):
            await client.aclose()  # this thread runs a loop: the stopped one cannot be run here
        assert [r.getMessage() for r in caplog.records] == [
            "could not close an async HTTP client of a stopped event loop"
        ]
        client.close()  # a second close after aclose finds nothing left to close
    finally:
        await asyncio.to_thread(holder[0].close)
