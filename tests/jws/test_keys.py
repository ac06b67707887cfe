"""JWKS handling: TTL, one refetch on an unknown kid with a cooldown, rotation, stale keys,
single-flight fetches, issuer allow-list configuration."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable

import pytest

from webex_byova.config import BYOVAConfig
from webex_byova.jws import (
    WEBEX_ISSUERS,
    JWSVerificationError,
    JWSVerifier,
    jwks_url_for,
)
from webex_byova.testing import WebexEmulator

from .helpers import DS_URL, JWKS_PREFIX, jwks_gets


def _reason(verifier: JWSVerifier, token: str) -> str:
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(token)
    return info.value.reason


def test_valid_token_sync_and_bearer_prefix(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    token = mint()
    claims = verifier.verify(f"Bearer {token}")
    assert claims["iss"] == emu.issuer
    assert claims["com.cisco.datasource.url"] == DS_URL
    assert claims["com.cisco.org.uuid"] == emu.org.org_id
    assert verifier.verify(token) == claims
    assert jwks_gets(emu) == 1


async def test_valid_token_async(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    claims = await verifier.averify("bearer  " + mint())
    assert claims["sub"] == "callAudioData"
    assert jwks_gets(emu) == 1


def test_unknown_kid_refetches_once_then_fails(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    verifier.verify(mint())
    assert jwks_gets(emu) == 1
    emu.clock.advance(verifier.refetch_cooldown + 1)
    assert _reason(verifier, mint(kid="no-such-kid")) == "unknown_kid"
    assert jwks_gets(emu) == 2  # exactly one refetch


def test_unknown_kid_on_a_cold_cache_fetches_once(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    assert _reason(verifier, mint(kid="no-such-kid")) == "unknown_kid"
    assert jwks_gets(emu) == 1


def test_cooldown_limits_refetches_for_sprayed_kids(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    verifier.verify(mint())
    emu.clock.advance(verifier.refetch_cooldown + 1)
    for i in range(50):
        assert _reason(verifier, mint(kid=f"random-{i}")) == "unknown_kid"
    assert jwks_gets(emu) == 2
    emu.clock.advance(verifier.refetch_cooldown + 1)
    for i in range(50):
        assert _reason(verifier, mint(kid=f"again-{i}")) == "unknown_kid"
    assert jwks_gets(emu) == 3
    # genuine tokens keep verifying from the cache meanwhile
    assert verifier.verify(mint())["sub"] == "callAudioData"
    assert jwks_gets(emu) == 3


async def test_cooldown_limits_refetches_async(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    await verifier.averify(mint())
    emu.clock.advance(verifier.refetch_cooldown + 1)
    tokens = [mint(kid=f"random-{i}") for i in range(100)]
    results = await asyncio.gather(*(verifier.averify(t) for t in tokens), return_exceptions=True)
    assert all(isinstance(r, JWSVerificationError) for r in results)
    assert {r.reason for r in results if isinstance(r, JWSVerificationError)} == {"unknown_kid"}
    assert jwks_gets(emu) == 2


def test_key_rotation_is_accepted_after_exactly_one_refetch(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    old_token = mint()
    verifier.verify(old_token)
    emu.clock.advance(600)
    emu.rotate_keys(keep_old=True)
    new_token = mint()
    assert verifier.verify(new_token)["iss"] == emu.issuer
    assert jwks_gets(emu) == 2
    verifier.clear_cache()
    assert verifier.verify(old_token)  # old key still published and cached
    assert verifier.verify(mint())
    assert jwks_gets(emu) == 2


async def test_key_rotation_async(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    await verifier.averify(mint())
    emu.clock.advance(600)
    emu.rotate_keys(keep_old=False)
    assert (await verifier.averify(mint()))["iss"] == emu.issuer
    assert jwks_gets(emu) == 2


def test_rotation_within_the_cooldown_waits_for_it(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    """The cooldown also applies to genuine rotations: at most one fetch per window."""
    verifier.verify(mint())
    emu.rotate_keys()
    token = mint()
    assert _reason(verifier, token) == "unknown_kid"
    assert jwks_gets(emu) == 1
    emu.clock.advance(verifier.refetch_cooldown)
    assert verifier.verify(token)
    assert jwks_gets(emu) == 2


def test_jwks_ttl_triggers_a_refresh(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(jwks_ttl=120)
    verifier.verify(mint())
    emu.clock.advance(60)
    verifier.verify(mint(extra_claims={"n": 1}))
    assert jwks_gets(emu) == 1
    emu.clock.advance(61)
    verifier.verify(mint(extra_claims={"n": 2}))
    assert jwks_gets(emu) == 2


@pytest.mark.parametrize(("status", "requests_per_fetch"), [(500, 1), (503, 2), (429, 2)])
def test_stale_keys_are_served_when_the_key_endpoint_fails(
    emu: WebexEmulator,
    make_verifier: Callable[..., JWSVerifier],
    mint: Callable[..., str],
    status: int,
    requests_per_fetch: int,
) -> None:
    verifier = make_verifier(jwks_ttl=120)
    verifier.verify(mint())
    emu.clock.advance(121)  # keys are stale now
    emu.fail_next(JWKS_PREFIX, status=status, times=None)
    assert verifier.verify(mint(extra_claims={"n": 1}))["sub"] == "callAudioData"
    attempts = jwks_gets(emu)
    assert attempts == 1 + requests_per_fetch  # 503/429 are retried once by the JWKS policy
    # within the cooldown no new attempt; after it one more attempt, still served stale
    assert verifier.verify(mint(extra_claims={"n": 2}))
    assert jwks_gets(emu) == attempts
    emu.clock.advance(verifier.refetch_cooldown + 1)
    assert verifier.verify(mint(extra_claims={"n": 3}))
    assert jwks_gets(emu) == attempts + requests_per_fetch
    # the endpoint recovers: fresh keys are fetched after the next cooldown
    emu.clear_faults()
    emu.clock.advance(verifier.refetch_cooldown + 1)
    before = jwks_gets(emu)
    assert verifier.verify(mint(extra_claims={"n": 4}))
    assert jwks_gets(emu) == before + 1
    assert verifier.verify(mint(extra_claims={"n": 5}))
    assert jwks_gets(emu) == before + 1


async def test_stale_keys_on_rate_limit_async(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(jwks_ttl=120)
    await verifier.averify(mint())
    emu.clock.advance(121)
    emu.fail_next(JWKS_PREFIX, status=429, times=2, retry_after=0)
    assert (await verifier.averify(mint(extra_claims={"n": 1})))["sub"] == "callAudioData"
    assert jwks_gets(emu) == 3


def test_stale_keys_on_network_failure(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(jwks_ttl=120)
    verifier.verify(mint())
    emu.clock.advance(121)
    emu.drop_next(JWKS_PREFIX, times=None)
    assert verifier.verify(mint(extra_claims={"n": 1}))["sub"] == "callAudioData"


def test_no_keys_and_a_failing_endpoint_is_jwks_unavailable(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    emu.fail_next(JWKS_PREFIX, status=500, times=None)
    token = mint()
    assert _reason(verifier, token) == "jwks_unavailable"
    attempts = jwks_gets(emu)
    assert _reason(verifier, token) == "jwks_unavailable"  # cooldown: no hammering
    assert jwks_gets(emu) == attempts
    emu.clear_faults()
    emu.clock.advance(verifier.refetch_cooldown)
    assert verifier.verify(token)


def test_a_new_kid_during_an_outage_is_jwks_unavailable(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    verifier.verify(mint())
    emu.clock.advance(verifier.refetch_cooldown + 1)
    emu.rotate_keys()
    emu.fail_next(JWKS_PREFIX, status=503, times=None)
    assert _reason(verifier, mint()) == "jwks_unavailable"


@pytest.mark.parametrize("status", [404, 403])
def test_non_transient_errors_are_not_masked_by_stale_keys(
    emu: WebexEmulator,
    make_verifier: Callable[..., JWSVerifier],
    mint: Callable[..., str],
    status: int,
) -> None:
    verifier = make_verifier(jwks_ttl=120)
    verifier.verify(mint())
    emu.clock.advance(121)
    emu.fail_next(JWKS_PREFIX, status=status)
    assert _reason(verifier, mint(extra_claims={"n": 1})) == "jwks_unavailable"
    emu.clock.advance(verifier.refetch_cooldown)
    assert verifier.verify(mint(extra_claims={"n": 2}))


def test_invalid_key_set_body_is_jwks_unavailable(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    emu.fail_next(JWKS_PREFIX, status=200, body={"not": "a jwks"})
    assert _reason(verifier, mint()) == "jwks_unavailable"


def test_default_client_serves_stale_keys(emu: WebexEmulator, mint: Callable[..., str]) -> None:
    """The verifier's own HTTP client (JWKS retry policy) falls back on a 500."""
    with JWSVerifier(emu.config(), clock=emu.clock.now, jwks_ttl=60, expected_url=DS_URL) as v:
        v.verify(mint())
        emu.clock.advance(61)
        emu.fail_next(JWKS_PREFIX, status=500)
        assert v.verify(mint(extra_claims={"n": 1}))
        assert jwks_gets(emu) == 2
        assert v.jwks_fetches == 2


async def test_thousand_concurrent_verifications_make_one_fetch(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    emu.add_latency(JWKS_PREFIX, 0.05)  # keep the fetch in flight while callers pile up
    token = mint()
    results = await asyncio.gather(*(verifier.averify(token) for _ in range(1000)))
    assert all(r["jti"] == results[0]["jti"] for r in results)
    assert jwks_gets(emu) == 1


async def test_concurrent_distinct_tokens_share_one_fetch(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    emu.add_latency(JWKS_PREFIX, 0.05)
    tokens = [mint(extra_claims={"n": i}) for i in range(200)]
    results = await asyncio.gather(*(verifier.averify(t) for t in tokens))
    assert [r["n"] for r in results] == list(range(200))
    assert jwks_gets(emu) == 1


def test_concurrent_threads_share_one_fetch(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    emu.add_latency(JWKS_PREFIX, 0.05)
    token = mint()
    barrier = threading.Barrier(16)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            verifier.verify(token)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert jwks_gets(emu) == 1


async def test_sync_verify_inside_a_running_event_loop(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    asyncio.get_running_loop()
    assert verifier.verify(mint())["sub"] == "callAudioData"
    assert jwks_gets(emu) == 1


def test_default_allow_list_and_jwks_urls() -> None:
    verifier = JWSVerifier()
    assert set(WEBEX_ISSUERS) <= set(verifier.issuers)
    assert len(WEBEX_ISSUERS) == 6
    for issuer in WEBEX_ISSUERS:
        assert verifier.jwks_url(issuer) == issuer + "/oauth2/v2/keys/verificationjwk"
    eu = JWSVerifier(BYOVAConfig(region="eu"))
    assert eu.jwks_url("https://idbroker-eu.webex.com/idb") == BYOVAConfig().jwk_url_eu
    verifier.close()
    eu.close()


def test_issuers_replace_and_extra_issuers_extend(emu: WebexEmulator) -> None:
    only = JWSVerifier(issuers=["https://idb.example.com/idb/"])
    assert only.issuers == ("https://idb.example.com/idb",)
    assert only.jwks_url("https://idb.example.com/idb") == jwks_url_for(
        "https://idb.example.com/idb"
    )
    extra = JWSVerifier(emu.config(), extra_issuers=["https://other.example/idb"])
    assert emu.issuer in extra.issuers
    assert "https://other.example/idb" in extra.issuers
    assert extra.jwks_url(emu.issuer) == emu.jwks_url
    only.close()
    extra.close()


def test_region_jwk_url_is_used_for_its_issuer() -> None:
    custom = "https://keys.example.net/idb"
    config = BYOVAConfig(jwk_url_us=custom + "/oauth2/v2/keys/verificationjwk")
    verifier = JWSVerifier(config)
    assert custom in verifier.issuers
    assert verifier.jwks_url(custom) == config.jwk_url_us
    verifier.close()


def test_webex_issuers_are_refused_when_issuers_replace_them(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(issuers=[])
    assert verifier.issuers == (emu.issuer,)  # config.extra_issuers still apply
    assert _reason(verifier, mint(issuer=WEBEX_ISSUERS[0])) == "issuer_not_allowed"
    assert emu.requests == []


def test_invalid_constructor_arguments() -> None:
    with pytest.raises(ValueError, match="org"):
        JWSVerifier(expected_org_id="not-an-org")
    with pytest.raises(ValueError):
        JWSVerifier(jwks_ttl=0)
