"""Regression tests for defects found in the foundation review (real loopback server)."""

from __future__ import annotations

from typing import Any

import pytest

from webex_byova._authed import iterate_async, iterate_sync
from webex_byova._flow import Flow
from webex_byova._http import parse_link_header, parse_retry_after
from webex_byova._logging import redact
from webex_byova.errors import RateLimitError

from .conftest import Scripted, ScriptServer
from .test_http_core import Recorder, Runner, both, make_client


@pytest.mark.parametrize(
    "value", ["inf", "Infinity", "nan", "１２", "٣", "1_0", "1e3", "+5", "-1", "0x10"]
)
def test_retry_after_accepts_only_ascii_delta_seconds(value: str) -> None:
    assert parse_retry_after(value) is None


def test_retry_after_huge_delta_is_finite() -> None:
    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(" 2.5 ") == 2.5
    huge = parse_retry_after("9" * 400)
    assert huge is not None
    assert huge > 1e300
    assert huge < float("inf")


@both
def test_retry_after_huge_raises_rate_limit_error_without_waiting(
    server: ScriptServer, run: Runner
) -> None:
    server.script("/v1/x", Scripted(429, {}, {"Retry-After": "9" * 400}), Scripted(200, {}))
    rec = Recorder()
    client = make_client(server, rec)
    with pytest.raises(RateLimitError) as info:
        run(client, client.build("GET", "x"))
    assert info.value.retry_after is not None
    assert info.value.retry_after > 10**300
    assert rec.waits == []


@both
def test_retry_after_inf_falls_back_to_default_wait(server: ScriptServer, run: Runner) -> None:
    server.script("/v1/x", Scripted(429, {}, {"Retry-After": "inf"}), Scripted(200, {"ok": 1}))
    rec = Recorder()
    client = make_client(server, rec)
    response: Any = run(client, client.build("GET", "x"))
    assert response.json() == {"ok": 1}
    assert rec.waits == [15.0]


def test_link_header_commas_inside_urls_and_quoted_params() -> None:
    header = (
        '<https://a/x?ids=1,2>; rel="next"; title="page 2, of 3", '
        '<https://a/p>; title="say \\"hi\\", ok"; rel="prev first"'
    )
    assert parse_link_header(header) == {
        "next": "https://a/x?ids=1,2",
        "prev": "https://a/p",
        "first": "https://a/p",
    }
    assert parse_link_header('<https://a/2>; title="a, b"; rel=next') == {"next": "https://a/2"}
    assert parse_link_header('<https://a/u;v=1>; rel="next"') == {"next": "https://a/u;v=1"}
    assert parse_link_header('garbage, <https://a/3>; rel="next"') == {"next": "https://a/3"}
    assert parse_link_header('<https://a/4>; rel="next"; title="unterminated, x') == {
        "next": "https://a/4"
    }
    assert parse_link_header("<https://a/5") == {}
    assert parse_link_header('junk <x, <https://a/6>; rel="next"') == {"next": "https://a/6"}


def test_pagination_follows_relative_next_with_quoted_comma(server: ScriptServer) -> None:
    server.script(
        "/v1/items",
        Scripted(200, {"items": [1]}, {"Link": '<items?cursor=b>; title="next, page"; rel="next"'}),
        Scripted(200, {"items": [2]}),
    )
    client = make_client(server, Recorder())
    assert list(client.paginate(client.build("GET", "items", params={"max": 1}))) == [1, 2]
    second = server.requests("/v1/items")[1]
    assert sorted(second.query) == [("cursor", "b"), ("max", "1")]


def _looping_pages(server: ScriptServer) -> None:
    loop = {"Link": '</v1/items?cursor=b>; rel="next"'}
    server.script(
        "/v1/items",
        Scripted(200, {"items": [1]}, loop),
        *[Scripted(200, {"items": [2]}, loop) for _ in range(30)],
    )


def test_pagination_stops_when_the_next_link_repeats_sync(server: ScriptServer) -> None:
    _looping_pages(server)
    client = make_client(server, Recorder())
    assert list(client.paginate(client.build("GET", "items", params={"max": 1}))) == [1, 2]
    assert len(server.requests("/v1/items")) == 2


async def test_pagination_stops_when_the_next_link_repeats_async(server: ScriptServer) -> None:
    _looping_pages(server)
    client = make_client(server, Recorder())
    try:
        spec = client.build("GET", "items", params={"max": 1})
        assert [item async for item in client.apaginate(spec)] == [1, 2]
    finally:
        await client.aclose()
    assert len(server.requests("/v1/items")) == 2


def _static_token(force_refresh: bool) -> Flow[str]:
    return "tok-" + ("new" if force_refresh else "old")
    yield  # a flow that needs no effects


def test_authed_pagination_stops_when_the_next_link_repeats_sync(server: ScriptServer) -> None:
    _looping_pages(server)
    client = make_client(server, Recorder())
    spec = client.build("GET", "items", params={"max": 1})
    assert list(iterate_sync(spec, _static_token, client)) == [1, 2]
    assert len(server.requests("/v1/items")) == 2


async def test_authed_pagination_stops_when_the_next_link_repeats_async(
    server: ScriptServer,
) -> None:
    _looping_pages(server)
    client = make_client(server, Recorder())
    try:
        spec = client.build("GET", "items", params={"max": 1})
        assert [i async for i in iterate_async(spec, _static_token, client)] == [1, 2]
    finally:
        await client.aclose()
    assert len(server.requests("/v1/items")) == 2


SECRET = "ZmFrZXRva2VuMTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3A"


@pytest.mark.parametrize(
    "text",
    [
        f"{{'access_token': '{SECRET}', 'expires_in': 1}}",  # a dict's repr
        f"{{'refresh_token':'{SECRET}'}}",
        f'{{"accessToken": "{SECRET}"}}',
        f'{{"refreshToken":"{SECRET}"}}',
        f"Authorization: Basic {SECRET}",
        f"authorization: {SECRET}",
        f"AUTHORIZATION=WEBEX-TOKEN {SECRET}",
        f"{{'Authorization': 'Basic {SECRET}'}}",
        f"password={SECRET}",
        f"https://x/cb?state=1&access_token={SECRET}",
    ],
)
def test_redact_removes_secrets_in_common_text_forms(text: str) -> None:
    out = redact(text)
    assert SECRET not in out
    assert SECRET[4:12] not in out


def test_redact_keeps_harmless_text() -> None:
    text = "GET https://webexapis.com/v1/items?max=10 -> 200 (trackingId=ROUTER_1)"
    assert redact(text) == text
