"""Fixtures for the JWS verifier tests: a started WebexEmulator with a frozen clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from webex_byova._http import HttpClient
from webex_byova.jws import JWKS_RETRY_POLICY, JWSVerifier
from webex_byova.testing import EmulatorClock, WebexEmulator

from .helpers import DS_URL, use_key_pool


@pytest.fixture(autouse=True)
def _pooled_rsa_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulator signing keys come from a pool made at import (see ``helpers.KEY_POOL``)."""
    use_key_pool(monkeypatch)


@pytest.fixture
def emu() -> Iterator[WebexEmulator]:
    """An emulator whose clock only moves when a test advances it."""
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emulator:
        yield emulator


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def http(emu: WebexEmulator) -> AsyncIterator[HttpClient]:
    """The SDK HTTP client with the JWKS retry policy and no real waits between retries."""
    client = HttpClient(
        emu.config(),
        retry_policy=JWKS_RETRY_POLICY,
        sleep=lambda _: None,
        asleep=_no_sleep,
    )
    yield client
    await client.aclose()


@pytest.fixture
def make_verifier(emu: WebexEmulator, http: HttpClient) -> Iterator[Callable[..., JWSVerifier]]:
    """Build verifiers wired to the emulator (its issuer, its clock, the test HTTP client)."""
    made: list[JWSVerifier] = []

    def factory(**kwargs: Any) -> JWSVerifier:
        kwargs.setdefault("http", http)
        kwargs.setdefault("clock", emu.clock.now)
        kwargs.setdefault("expected_url", DS_URL)
        verifier = JWSVerifier(emu.config(), **kwargs)
        made.append(verifier)
        return verifier

    yield factory
    for verifier in made:
        verifier.close()


@pytest.fixture
def verifier(make_verifier: Callable[..., JWSVerifier]) -> JWSVerifier:
    """A verifier with default settings expecting :data:`DS_URL`."""
    return make_verifier()


@pytest.fixture
def mint(emu: WebexEmulator) -> Callable[..., str]:
    """Mint a data-source token for :data:`DS_URL` (keyword overrides passed through)."""

    def _mint(**kwargs: Any) -> str:
        kwargs.setdefault("url", DS_URL)
        return emu.mint_data_source_token(**kwargs)

    return _mint
