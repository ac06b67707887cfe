"""Shared helpers of the security pattern tests: near-miss credentials and a wired facade.

A "near miss" is a credential that is almost right: its last character changed, truncated,
a short prefix of the right one, or extended. Comparisons that look only at a prefix, or stop
at the shorter value, accept some of them; every check in the SDK must refuse all of them.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from webex_byova.client import BYOVA
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.testing import WebexEmulator
from webex_byova.tokens import OAuthToken

HEX = "0123456789abcdef"
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
WEBHOOK_SECRET = "security-test-webhook-secret"


def _other(char: str, alphabet: str, step: int = 1) -> str:
    index = alphabet.index(char) if char in alphabet else 0
    return alphabet[(index + step) % len(alphabet)]


def near_misses(good: str, alphabet: str = HEX, *, last_step: int = 1) -> dict[str, str]:
    """Almost-right variants of ``good``, by name (every one must be refused).

    ``last_step`` moves the last character that far in ``alphabet``: base64url segments need
    32 so that the change reaches the bits the last character really carries.
    """
    assert len(good) > 8
    return {
        "last_char_changed": good[:-1] + _other(good[-1], alphabet, last_step),
        "last_two_changed": good[:-2] + _other(good[-2], alphabet) + _other(good[-1], alphabet),
        "first_char_changed": _other(good[0], alphabet) + good[1:],
        "truncated_by_one": good[:-1],
        "short_prefix": good[:8],
        "half": good[: len(good) // 2],
        "extended_by_one": good + alphabet[0],
        "doubled": good + good,
        "single_char": good[:1],
    }


def issued_token(emu: WebexEmulator) -> OAuthToken:
    """An integration token minted by the emulator (skips the browser flow)."""
    data = emu.issue_integration_token()
    now = time.time()
    return OAuthToken(
        access_token=data["access_token"],
        expires_at=now + data["expires_in"],
        refresh_token=data["refresh_token"],
        refresh_token_expires_at=now + data["refresh_token_expires_in"],
    )


def make_sdk(emu: WebexEmulator, **kwargs: object) -> BYOVA:
    """A facade wired to ``emu`` with the webhook secret set."""
    kwargs.setdefault("webhook_secret", WEBHOOK_SECRET)
    return BYOVA(
        IntegrationCredentials(
            client_id=emu.integration.client_id,
            client_secret=emu.integration.client_secret,
            redirect_uri="http://127.0.0.1:0/callback",
        ),
        ServiceAppCredentials(
            client_id=emu.service_app.client_id,
            client_secret=emu.service_app.client_secret,
            application_id=emu.service_app.application_id,
        ),
        config=emu.config(),
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
def emu() -> Iterator[WebexEmulator]:
    with WebexEmulator() as emulator:
        yield emulator


@pytest.fixture
def sdk(emu: WebexEmulator) -> Iterator[BYOVA]:
    """Sync facade with a stored integration token and a webhook secret."""
    client = make_sdk(emu)
    client.integration.set_token(issued_token(emu))
    with client:
        yield client


@pytest.fixture
async def asdk(emu: WebexEmulator) -> AsyncIterator[BYOVA]:
    """Async facade with a stored integration token and a webhook secret."""
    client = make_sdk(emu)
    await client.integration.aset_token(issued_token(emu))
    async with client:
        yield client


# --------------------------------------------------------------------------- media server

FAST_MEDIA: dict[str, object] = {
    "host": "127.0.0.1",
    "port": 0,
    "verify_tokens": False,
    "realtime_pacing": False,
    "half_close_timeout_s": 5.0,
}


@pytest.fixture
async def media_server() -> AsyncIterator[Any]:
    """Factory: ``server = await media_server(**config_overrides)`` (stopped after the test)."""
    from webex_byova.media.config import MediaServerConfig
    from webex_byova.media.server import BYOVAMediaServer

    servers: list[BYOVAMediaServer] = []

    async def factory(**kwargs: Any) -> BYOVAMediaServer:
        server_kwargs = {k: kwargs.pop(k) for k in ("agents", "verifier") if k in kwargs}
        server = BYOVAMediaServer(MediaServerConfig(**{**FAST_MEDIA, **kwargs}), **server_kwargs)
        servers.append(server)
        return server

    yield factory
    for server in servers:
        await server.stop(grace=0.5)
