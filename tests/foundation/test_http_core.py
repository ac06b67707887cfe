"""HTTP core against a real local server, sync and async."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import socket
from collections.abc import Callable
from typing import Any

import pytest

from webex_byova._http import HttpClient, RetryPolicy, parse_link_header, parse_retry_after
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

FIXED_NOW = 1_800_000_000.0


class Recorder:
    """Injected sleeps: record the waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)

    async def asleep(self, seconds: float) -> None:
        self.waits.append(seconds)


_CREATED: list[HttpClient] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Any:
    yield
    while _CREATED:
        _CREATED.pop().close()


def make_client(server: ScriptServer, rec: Recorder, **cfg: Any) -> HttpClient:
    config = BYOVAConfig(base_url=server.url + "/v1", **cfg)
    client = HttpClient(
        config,
        sleep=rec.sleep,
        asleep=rec.asleep,
        wall_clock=lambda: FIXED_NOW,
        retry_policy=RetryPolicy(
            max_retries=config.max_retries,
            deadline=config.retry_deadline,
            backoff_base=config.backoff_base,
            backoff_max=config.backoff_max,
            rng=lambda: 1.0,
        ),
    )
    _CREATED.append(client)
    return client


Runner = Callable[[HttpClient, Any], Any]


def run_sync(client: HttpClient, spec: Any) -> Any:
    return client.request(spec)


def run_async(client: HttpClient, spec: Any) -> Any:
    async def go() -> Any:
        try:
            return await client.arequest(spec)
        finally:
            await client.aclose()

    return asyncio.run(go())


both = pytest.mark.parametrize("run", [run_sync, run_async], ids=["sync", "async"])


@both
def test_429_retry_after_seconds_is_honoured(server: ScriptServer, run: Runner) -> None:
    server.script(
        "/v1/things",
        Scripted(429, {"message": "slow down"}, {"Retry-After": "7"}),
        Scripted(200, {"ok": True}),
    )
    rec = Recorder()
    client = make_client(server, rec)
    response = run(client, client.build("GET", "things"))
    assert response.json() == {"ok": True}
    assert rec.waits == [7.0]
    assert len(server.requests("/v1/things")) == 2


@both
def test_429_retry_after_http_date_is_honoured(server: ScriptServer, run: Runner) -> None:
    when = email.utils.formatdate(FIXED_NOW + 12, usegmt=True)
    server.script("/v1/x", Scripted(429, {}, {"Retry-After": when}), Scripted(200, {}))
    rec = Recorder()
    client = make_client(server, rec)
    run(client, client.build("POST", "x", json_body={"a": 1}))
    assert rec.waits == [pytest.approx(12.0)]


@both
def test_423_is_retried_with_retry_after(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/x", Scripted(423, {}, {"Retry-After": "2"}), Scripted(200, {}))
    rec = Recorder()
    client = make_client(server, rec)
    run(client, client.build("GET", "x"))
    assert rec.waits == [2.0]


@both
def test_5xx_then_success_retries_with_backoff(server: ScriptServer, run: Runner) -> None:
    server.script(
        "/v1/x", Scripted(502, {}), Scripted(503, {}), Scripted(504, {}), Scripted(200, {"n": 1})
    )
    rec = Recorder()
    client = make_client(server, rec, backoff_base=0.5, max_retries=3)
    assert run(client, client.build("GET", "x")).json() == {"n": 1}
    # rng pinned to 1.0 => exactly the exponential ceiling: 0.5, 1, 2
    assert rec.waits == [0.5, 1.0, 2.0]


@both
def test_400_is_not_retried(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/x", Scripted(400, {"message": "bad", "errors": [{"description": "no"}]}))
    rec = Recorder()
    client = make_client(server, rec)
    with pytest.raises(ValidationError) as info:
        run(client, client.build("GET", "x"))
    assert rec.waits == []
    assert info.value.descriptions == ["no"]
    assert len(server.requests("/v1/x")) == 1


@both
def test_401_is_never_retried(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/x", Scripted(401, {"message": "expired"}))
    rec = Recorder()
    client = make_client(server, rec)
    with pytest.raises(AuthenticationError):
        run(client, client.build("GET", "x"))
    assert len(server.requests("/v1/x")) == 1


@both
def test_retries_stop_at_max_retries_with_last_error(server: ScriptServer, run: Runner) -> None:
    server.script(
        "/v1/x",
        Scripted(503, {"message": "first"}),
        Scripted(503, {"message": "second"}),
        Scripted(503, {"message": "third"}, {"TrackingID": "ROUTER_LAST"}),
        Scripted(200, {}),
    )
    rec = Recorder()
    client = make_client(server, rec, max_retries=2)
    with pytest.raises(ServerError) as info:
        run(client, client.build("GET", "x"))
    assert "third" in str(info.value)
    assert info.value.tracking_id == "ROUTER_LAST"
    assert len(server.requests("/v1/x")) == 3
    assert len(rec.waits) == 2


@both
def test_post_is_not_retried_on_5xx_but_is_on_429(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/p", Scripted(503, {}), Scripted(200, {}))
    rec = Recorder()
    client = make_client(server, rec)
    with pytest.raises(ServerError):
        run(client, client.build("POST", "p", json_body={}))
    assert len(server.requests("/v1/p")) == 1
    server.script("/v1/q", Scripted(429, {}, {"Retry-After": "1"}), Scripted(200, {}))
    client = make_client(server, rec)
    run(client, client.build("POST", "q", json_body={}))
    assert len(server.requests("/v1/q")) == 2


@both
def test_deadline_stops_retrying(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/x", Scripted(429, {}, {"Retry-After": "100"}), Scripted(200, {}))
    rec = Recorder()
    client = make_client(server, rec, retry_deadline=10.0)
    with pytest.raises(RateLimitError) as info:
        run(client, client.build("GET", "x"))
    assert info.value.retry_after == 100
    assert rec.waits == []


ERROR_CASES = [
    (400, ValidationError),
    (401, AuthenticationError),
    (403, AuthenticationError),
    (404, NotFoundError),
    (409, ConflictError),
    (415, ValidationError),
    (422, ValidationError),
    (429, RateLimitError),
    (500, ServerError),
    (418, WebexBYOVAError),
]


@pytest.mark.parametrize(("status", "error_type"), ERROR_CASES)
@both
def test_error_mapping_carries_tracking_id_and_body(
    server: ScriptServer, run: Runner, status: int, error_type: type[Exception]
) -> None:
    body = {
        "message": f"failure {status}",
        "errors": [{"description": "first"}, {"description": "second"}],
        "trackingId": "BODY_ID",
    }
    server.script("/v1/e", Scripted(status, body, {"TrackingID": "HEADER_ID"}))
    rec = Recorder()
    client = make_client(server, rec, max_retries=0)
    with pytest.raises(error_type) as info:
        run(client, client.build("GET", "e"))
    err = info.value
    assert isinstance(err, WebexBYOVAError)
    assert err.status_code == status
    assert err.tracking_id == "HEADER_ID"
    assert err.body == body
    assert err.descriptions == ["first", "second"]
    assert f"failure {status}" in str(err)


def test_tracking_id_falls_back_to_body(server: ScriptServer) -> None:
    server.script("/v1/e", Scripted(404, {"message": "gone", "trackingId": "GTWY_123"}))
    client = make_client(server, Recorder())
    with pytest.raises(NotFoundError) as info:
        client.request(client.build("GET", "e"))
    assert info.value.tracking_id == "GTWY_123"


def test_non_json_error_body_is_kept(server: ScriptServer) -> None:
    server.script("/v1/e", Scripted(500, b"<html>oops</html>"))
    client = make_client(server, Recorder(), max_retries=0)
    with pytest.raises(ServerError) as info:
        client.request(client.build("GET", "e"))
    assert info.value.body == "<html>oops</html>"


def _script_three_pages(server: ScriptServer) -> None:
    # page links drop the filter (the known Webex bug); the client must re-add it
    server.script(
        "/v1/items",
        Scripted(
            200,
            {"items": [1, 2]},
            {"Link": f'<{server.url}/v1/items?cursor=b>; rel="next"'},
        ),
        Scripted(
            200,
            {"items": [3, 4]},
            {"Link": f'<{server.url}/v1/items?cursor=c&max=2>; rel="next", <x>; rel="first"'},
        ),
        Scripted(200, {"items": [5]}),
    )


def test_pagination_sync_keeps_filters(server: ScriptServer) -> None:
    _script_three_pages(server)
    client = make_client(server, Recorder())
    spec = client.build("GET", "items", params={"ownedBy": "org", "max": 2})
    assert list(client.paginate(spec)) == [1, 2, 3, 4, 5]
    seen = server.requests("/v1/items")
    assert [dict(s.query) for s in seen] == [
        {"ownedBy": "org", "max": "2"},
        {"cursor": "b", "ownedBy": "org", "max": "2"},
        {"cursor": "c", "max": "2", "ownedBy": "org"},
    ]


async def test_pagination_async_keeps_filters(server: ScriptServer) -> None:
    _script_three_pages(server)
    async with make_client(server, Recorder()) as client:
        spec = client.build("GET", "items", params={"ownedBy": "org", "max": 2})
        items = [item async for item in client.apaginate(spec)]
    assert items == [1, 2, 3, 4, 5]
    assert all(dict(s.query)["ownedBy"] == "org" for s in server.requests("/v1/items"))


@both
def test_timeout_raises_timeout_error(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/slow", Scripted(200, {}, delay=0.6))
    client = make_client(server, Recorder(), timeout=0.2, max_retries=0)
    with pytest.raises(APITimeoutError):
        run(client, client.build("GET", "slow"))


@both
def test_timeout_is_retried_for_get(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/slow", Scripted(200, {}, delay=0.6), Scripted(200, {"ok": 1}))
    rec = Recorder()
    client = make_client(server, rec, timeout=0.2, max_retries=1)
    assert run(client, client.build("GET", "slow")).json() == {"ok": 1}
    assert len(rec.waits) == 1


@both
def test_attempt_timeout_never_runs_past_the_total_deadline(
    server: ScriptServer, run: Runner
) -> None:
    # a 30 s per-request timeout, but only 0.2 s left in the total deadline: the attempt is cut
    # at the deadline instead of waiting for the 0.6 s response
    server.script("/v1/slow", Scripted(200, {}, delay=0.6))
    client = make_client(server, Recorder(), timeout=30.0, retry_deadline=0.2, max_retries=0)
    with pytest.raises(APITimeoutError):
        run(client, client.build("GET", "slow"))


@both
def test_dropped_connection_on_post_is_not_retried(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/drop", Scripted(drop=True), Scripted(200, {}))
    client = make_client(server, Recorder(), max_retries=3)
    with pytest.raises(APIConnectionError):
        run(client, client.build("POST", "drop", json_body={}))
    assert len(server.requests("/v1/drop")) == 1


@both
def test_connection_refused_is_retried_then_raises(run: Runner) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now
    rec = Recorder()
    config = BYOVAConfig(base_url=f"http://127.0.0.1:{port}/v1", max_retries=2)
    client = HttpClient(config, sleep=rec.sleep, asleep=rec.asleep)
    _CREATED.append(client)
    with pytest.raises(APIConnectionError) as info:
        run(client, client.build("POST", "x", json_body={}))
    assert not isinstance(info.value, APITimeoutError)
    assert len(rec.waits) == 2  # connect failures never reached the server: safe for POST


async def test_sync_client_works_inside_running_loop(server: ScriptServer) -> None:
    server.script("/v1/x", Scripted(200, {"inside": "loop"}))
    asyncio.get_running_loop()  # we are inside a running loop
    client = make_client(server, Recorder())
    try:
        assert client.request(client.build("GET", "x")).json() == {"inside": "loop"}
    finally:
        client.close()


def test_user_agent_and_bearer_are_sent(server: ScriptServer) -> None:
    client = make_client(server, Recorder())
    client.request(client.build("GET", "x", token="tok-123"))
    seen = server.requests("/v1/x")[0]
    assert seen.headers["user-agent"].startswith("webex-byova-sdk/")
    assert "python/" in seen.headers["user-agent"]
    assert seen.headers["authorization"] == "Bearer tok-123"


def test_form_and_json_bodies(server: ScriptServer) -> None:
    client = make_client(server, Recorder())
    client.request(client.build("POST", "f", form={"grant_type": "refresh_token", "a": "b c"}))
    client.request(client.build("PUT", "j", json_body={"k": [1, 2]}))
    form = server.requests("/v1/f")[0]
    assert form.headers["content-type"] == "application/x-www-form-urlencoded"
    assert form.body == b"grant_type=refresh_token&a=b+c"
    assert server.requests("/v1/j")[0].body == b'{"k":[1,2]}'


def test_debug_logs_contain_no_secrets(
    server: ScriptServer, caplog: pytest.LogCaptureFixture
) -> None:
    secret_token = "SECRETACCESSTOKEN1234567890"
    server.script(
        "/v1/access_token", Scripted(400, {"message": "invalid_grant"}, {"TrackingID": "T1"})
    )
    server.script("/v1/x", Scripted(503, {}), Scripted(200, {}))
    client = make_client(server, Recorder())
    with caplog.at_level(logging.DEBUG, logger="webex_byova"):
        client.request(client.build("GET", "x", token=secret_token, params={"code": "CODE9876543"}))
        with pytest.raises(ValidationError):
            client.request(
                client.build(
                    "POST",
                    "access_token",
                    form={"client_secret": "CLIENTSECRET42424242", "refresh_token": "RT_abcdefgh"},
                )
            )
    text = caplog.text
    assert "/v1/x" in text  # something was logged at DEBUG
    for secret in (secret_token, "CODE9876543", "CLIENTSECRET42424242", "RT_abcdefgh"):
        assert secret not in text


def test_close_and_context_managers(server: ScriptServer) -> None:
    with make_client(server, Recorder()) as client:
        client.request(client.build("GET", "x"))
    with pytest.raises(RuntimeError):
        client.request(client.build("GET", "x"))


def test_parse_helpers() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("-1") is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None
    date = email.utils.formatdate(FIXED_NOW + 30, usegmt=True)
    assert parse_retry_after(date, now=FIXED_NOW) == pytest.approx(30.0)
    links = parse_link_header('<https://a/1>; rel="next", <https://a/0>; rel="prev first"')
    assert links == {"next": "https://a/1", "prev": "https://a/0", "first": "https://a/0"}
    assert parse_link_header("garbage") == {}
