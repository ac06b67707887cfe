"""The verified-token cache: hits need no HTTP and no crypto, expiry is honoured, and the
expectations are part of the key."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from webex_byova.jws import JWSVerificationError, JWSVerifier
from webex_byova.testing import WebexEmulator

from .helpers import JWKS_PREFIX, jwks_gets


def test_cached_verification_makes_no_http_request(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    token = mint()
    first = verifier.verify(token)
    emu.clear_requests()
    emu.stop()  # nothing to talk to any more
    for _ in range(100):
        assert verifier.verify(token) == first
    assert verifier.verify("Bearer " + token) == first
    assert emu.requests == []


async def test_cached_verification_async(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    token = mint()
    first = await verifier.averify(token)
    emu.stop()
    assert await verifier.averify(token) == first
    assert verifier.cached_tokens == 1


def test_returned_claims_are_a_copy(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    token = mint()
    claims = verifier.verify(token)
    claims["sub"] = "mutated"
    assert verifier.verify(token)["sub"] == "callAudioData"


def test_cached_token_expiry_is_honoured(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    token = mint(lifetime_minutes=5)
    verifier.verify(token)
    emu.clock.advance(5 * 60 + verifier.leeway - 1)
    assert verifier.verify(token)["sub"] == "callAudioData"  # still inside the leeway
    emu.clock.advance(2)
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(token)
    assert info.value.reason == "expired"
    assert verifier.cached_tokens == 0
    with pytest.raises(JWSVerificationError) as again:  # re-verification agrees
        verifier.verify(token)
    assert again.value.reason == "expired"


def test_expectations_are_part_of_the_cache_key(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    token = mint()
    verifier.verify(token)
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(token, expected_url="https://other.example.com")
    assert info.value.reason == "claim_mismatch:url"
    with pytest.raises(JWSVerificationError) as org:
        verifier.verify(token, expected_org_id="11111111-2222-4333-8444-555555555555")
    assert org.value.reason == "claim_mismatch:org"
    assert verifier.verify(token, expected_url=None)["sub"] == "callAudioData"


def test_failed_verifications_are_not_cached(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    token = mint(issued_at=emu.clock.now() + 120)
    with pytest.raises(JWSVerificationError):
        verifier.verify(token)
    assert verifier.cached_tokens == 0
    emu.clock.advance(120)
    assert verifier.verify(token)


def test_cache_is_bounded_lru(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(token_cache_size=3, jwks_ttl=60)
    tokens = [mint(extra_claims={"n": i}) for i in range(5)]
    for token in tokens[:3]:
        verifier.verify(token)
    verifier.verify(tokens[0])  # refresh: tokens[1] is now the least recently used
    verifier.verify(tokens[3])
    verifier.verify(tokens[4])
    assert verifier.cached_tokens == 3
    # Make the key path fail: stale key set and a key endpoint answering 404. Cached tokens
    # still verify (dictionary hit); evicted ones have to go through the keys and fail.
    emu.clock.advance(61)
    emu.fail_next(JWKS_PREFIX, status=404, times=None)
    for token in (tokens[0], tokens[3], tokens[4]):
        assert verifier.verify(token)["sub"] == "callAudioData"
    assert jwks_gets(emu) == 1
    for evicted in (tokens[1], tokens[2]):
        with pytest.raises(JWSVerificationError) as info:
            verifier.verify(evicted)
        assert info.value.reason == "jwks_unavailable"


def test_zero_cache_size_disables_caching(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(token_cache_size=0)
    token = mint()
    verifier.verify(token)
    verifier.verify(token)
    assert verifier.cached_tokens == 0
    assert jwks_gets(emu) == 1


async def test_context_managers_close_the_private_client(
    emu: WebexEmulator, mint: Callable[..., str]
) -> None:
    async with JWSVerifier(emu.config(), clock=emu.clock.now, expected_url=None) as verifier:
        assert (await verifier.averify(mint()))["sub"] == "callAudioData"
    with JWSVerifier(emu.config(), clock=emu.clock.now, expected_url=None) as sync_verifier:
        assert sync_verifier.verify(mint())["sub"] == "callAudioData"
    assert repr(sync_verifier).startswith("JWSVerifier(")
