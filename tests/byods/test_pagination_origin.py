"""Pagination never sends the bearer token to a host named by a ``Link`` header."""

from __future__ import annotations

import json

import pytest

from webex_byova._authed import page_flow
from webex_byova._flow import Flow, Http
from webex_byova._http import HttpClient, Response
from webex_byova.config import BYOVAConfig
from webex_byova.errors import ValidationError

BASE = "https://webexapis.com/v1"


def _token(force: bool) -> Flow[str]:
    return "token-value"
    yield  # pragma: no cover - makes this a generator


def _page(link: str) -> Response:
    return Response(
        status_code=200,
        headers={"Link": f'<{link}>; rel="next"'},
        content=json.dumps({"items": [{"id": "w1"}]}).encode(),
        url=f"{BASE}/webhooks?max=1",
        method="GET",
    )


def _drive(link: str) -> tuple[list[object], str | None]:
    spec = HttpClient(BYOVAConfig()).build("GET", "webhooks", params={"max": 1})
    flow = page_flow(spec, _token)
    effect = next(flow)
    assert isinstance(effect, Http)
    try:
        flow.send(_page(link))
    except StopIteration as stop:
        items, following = stop.value
        return items, None if following is None else following.url
    raise AssertionError("page_flow asked for more than one request")


def test_same_origin_next_page_is_followed() -> None:
    items, url = _drive(f"{BASE}/webhooks?max=1&cursor=abc")
    assert items == [{"id": "w1"}]
    assert url == f"{BASE}/webhooks"
    assert _drive("https://webexapis.com:443/v1/webhooks?cursor=x")[1] is not None


@pytest.mark.parametrize(
    "link",
    [
        "https://attacker.example/v1/webhooks?cursor=abc",
        "http://webexapis.com/v1/webhooks?cursor=abc",
        "https://webexapis.com:8443/v1/webhooks?cursor=abc",
        "//attacker.example/steal",
    ],
)
def test_cross_origin_next_page_is_refused(link: str) -> None:
    with pytest.raises(ValidationError, match="another origin"):
        _drive(link)
