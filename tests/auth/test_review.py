"""Hostile input and secret hygiene of the auth flows (review findings)."""

from __future__ import annotations

import asyncio
import threading
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx
import pytest

from webex_byova._oauth import parse_callback
from webex_byova.errors import AuthenticationError

from .conftest import AuthRig

TOKEN_PATH = "/v1/access_token"
#: A forged ``state`` that is not ASCII (``é``, percent-encoded as a browser would send it).
NON_ASCII_STATE = "%C3%A9t%C3%A9"


def _forged_redirect(authorize_url: str, client: httpx.Client) -> str:
    redirect = client.get(authorize_url).headers["location"]
    parts = urlsplit(redirect)
    code = parse_qs(parts.query)["code"][0]
    query = f"code={code}&state={NON_ASCII_STATE}"
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))


def test_non_ascii_state_is_a_state_mismatch_not_a_crash() -> None:
    result = parse_callback(f"/cb?code=abc&state={NON_ASCII_STATE}", expected_state="s1")
    assert result.error == "state_mismatch"


async def test_async_listener_rejects_non_ascii_state(rig: AuthRig) -> None:
    pages: list[httpx.Response] = []

    def forge(url: str) -> None:
        with httpx.Client(timeout=10) as client:
            pages.append(client.get(_forged_redirect(url, client)))

    browsers: list[asyncio.Future[None]] = []

    def on_url(url: str) -> None:
        browsers.append(asyncio.get_running_loop().run_in_executor(None, forge, url))

    with pytest.raises(AuthenticationError, match="state_mismatch"):
        await rig.integration.aauthorize(open_browser=False, on_url=on_url, timeout=10)
    await browsers[0]  # the listener answers before the browser has read the page
    assert pages[0].status_code == 400
    assert rig.emu.count("POST", TOKEN_PATH) == 0


def test_sync_listener_rejects_non_ascii_state(rig: AuthRig) -> None:
    pages: list[httpx.Response] = []

    def forge(url: str) -> None:
        with httpx.Client(timeout=10) as client:
            pages.append(client.get(_forged_redirect(url, client)))

    threads: list[threading.Thread] = []

    def on_url(url: str) -> None:
        threads.append(threading.Thread(target=forge, args=(url,)))
        threads[-1].start()

    with pytest.raises(AuthenticationError, match="state_mismatch"):
        rig.integration.authorize(open_browser=False, on_url=on_url, timeout=10)
    threads[0].join(10)
    assert pages[0].status_code == 400
    assert rig.emu.count("POST", TOKEN_PATH) == 0
