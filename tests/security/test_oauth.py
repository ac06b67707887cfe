"""OAuth ``state`` checks refuse every near miss (integration authorization, sync and async).

The redirect's ``state`` ties a browser's return to the authorization request this manager
made (CSRF protection); it is checked twice: by :func:`parse_callback` against the expected
value and by the manager's lookup of its pending requests. A near-miss state must be refused
before any code is exchanged, and must not consume the genuine pending request.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from webex_byova._oauth import code_challenge, parse_callback
from webex_byova.client import BYOVA
from webex_byova.errors import AuthenticationError
from webex_byova.testing import WebexEmulator

from .conftest import B64URL, near_misses

TOKEN_PATH = "/v1/access_token"
REDIRECT = "http://127.0.0.1:9/cb"


def _with_state(location: str, state: str) -> str:
    parts = urlsplit(location)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query["state"] = state
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


def _redirect_for(url: str) -> str:
    """What the emulator's authorize page redirects the browser to (code and state)."""
    with httpx.Client(timeout=10) as client:
        return client.get(url).headers["location"]


def _state_misses(state: str) -> dict[str, str]:
    return {**near_misses(state, B64URL), "empty": "", "non_ascii": state[:-1] + "\u00e9"}


def test_parse_callback_refuses_near_miss_states() -> None:
    state = "Xy3_abcdefghijklmnopqrstuvwxyz012345"
    good = parse_callback(f"/cb?code=c0de&state={state}", expected_state=state)
    assert good.code == "c0de"
    for name, bad in _state_misses(state).items():
        result = parse_callback(
            f"/cb?{urlencode({'code': 'c0de', 'state': bad})}", expected_state=state
        )
        assert result.code is None, name
        assert result.error == "state_mismatch", name
    missing = parse_callback("/cb?code=c0de", expected_state=state)
    assert missing.error == "state_mismatch"


def test_sync_callback_with_near_miss_state_exchanges_nothing(sdk: BYOVA, emu: WebexEmulator):
    request = sdk.integration.create_authorization_request(redirect_uri=REDIRECT)
    assert f"code_challenge={code_challenge(request.code_verifier)}" in request.url
    location = _redirect_for(request.url)
    for name, bad in _state_misses(request.state).items():
        with pytest.raises(AuthenticationError, match="state_mismatch"):
            sdk.integration.handle_callback(_with_state(location, bad))
        assert emu.count("POST", TOKEN_PATH) == 0, name
    token = sdk.integration.handle_callback(location)  # the genuine request is still pending
    assert emu.count("POST", TOKEN_PATH) == 1
    assert sdk.integration.get_access_token() == token.access_token


async def test_async_callback_with_near_miss_state_exchanges_nothing(
    asdk: BYOVA, emu: WebexEmulator
):
    request = asdk.integration.create_authorization_request(redirect_uri=REDIRECT)
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(request.url)).headers["location"]
    for name, bad in _state_misses(request.state).items():
        with pytest.raises(AuthenticationError, match="state_mismatch"):
            await asdk.integration.ahandle_callback(_with_state(location, bad))
        assert emu.count("POST", TOKEN_PATH) == 0, name
    token = await asdk.integration.ahandle_callback(location)
    assert await asdk.integration.aget_access_token() == token.access_token


async def test_exchange_code_with_near_miss_state_exchanges_nothing(
    asdk: BYOVA, emu: WebexEmulator
):
    request = asdk.integration.create_authorization_request(redirect_uri=REDIRECT)
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(request.url)).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    for name, bad in near_misses(request.state, B64URL).items():
        with pytest.raises(AuthenticationError, match="state_mismatch"):
            await asdk.integration.aexchange_code(code, state=bad)
        with pytest.raises(AuthenticationError, match="state_mismatch"):
            asdk.integration.exchange_code(code, state=bad)
        assert emu.count("POST", TOKEN_PATH) == 0, name
    await asdk.integration.aexchange_code(code, state=request.state)
    assert emu.count("POST", TOKEN_PATH) == 1
    # Used once: the same state is no longer pending.
    with pytest.raises(AuthenticationError, match="state_mismatch"):
        await asdk.integration.aexchange_code(code, state=request.state)


async def test_near_miss_pkce_verifier_is_sent_as_given(asdk: BYOVA, emu: WebexEmulator):
    """An explicit verifier overrides the pending one and reaches the token endpoint as is:
    a near miss of the right verifier fails the exchange, the right one succeeds."""
    request = asdk.integration.create_authorization_request(redirect_uri=REDIRECT)
    async with httpx.AsyncClient(timeout=10) as client:
        location = (await client.get(request.url)).headers["location"]
    code = parse_qs(urlsplit(location).query)["code"][0]
    bad = near_misses(request.code_verifier, B64URL)["last_char_changed"]
    with pytest.raises(AuthenticationError, match="code exchange failed"):
        await asdk.integration.aexchange_code(code, code_verifier=bad, redirect_uri=REDIRECT)
