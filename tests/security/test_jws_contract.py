"""Exact outcomes of the JWS verifier that the mutation run found unpinned.

Each failure's reason *and* message (both reach logs and gRPC details), the boundaries of the
time checks, which claims may be lists, the verified-token cache being used, and concurrent
first verifications for two issuers (one key fetch each, neither waiting on the other's).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from webex_byova.jws import (
    BYOVA_SCHEMA_ID,
    CLAIM_ORG,
    CLAIM_SCHEMA,
    CLAIM_URL,
    Expectations,
    JWSVerificationError,
    JWSVerifier,
    check_claims,
)
from webex_byova.testing import EmulatorClock, WebexEmulator

from ..jws.helpers import use_key_pool

URL = "https://byova.example.com/grpc"
ORG = "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10"
NOW = 1_800_000_000.0


@pytest.fixture(autouse=True)
def _pooled_rsa_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulator signing keys come from a pool made at import (see ``tests/jws/helpers.py``)."""
    use_key_pool(monkeypatch)


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "iss": "https://idbroker.webex.com/idb",
        "aud": "BYOVAGateway",
        "sub": "callAudioData",
        "jti": "nonce-1",
        "iat": NOW - 10,
        "exp": NOW + 600,
        CLAIM_URL: URL,
        CLAIM_SCHEMA: BYOVA_SCHEMA_ID,
        CLAIM_ORG: ORG,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not _DROP}


_DROP: Any = object()
EXPECT = Expectations.build(url=URL, schema_id=BYOVA_SCHEMA_ID, audience="BYOVAGateway", org_id=ORG)


def _failure(claims: dict[str, Any], expect: Expectations = EXPECT, leeway: float = 0.0) -> str:
    with pytest.raises(JWSVerificationError) as info:
        check_claims(claims, expect, now=NOW, leeway=leeway)
    return str(info.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"exp": _DROP}, "missing_claim:exp: the token has no exp"),
        ({"exp": "soon"}, "invalid_claim:exp: exp must be a number"),
        ({"exp": NOW - 1}, "expired: the token has expired"),
        ({"nbf": "later"}, "invalid_claim:nbf: nbf must be a number"),
        ({"iat": NOW + 60}, "not_yet_valid: the token is not valid yet (iat)"),
        ({"nbf": NOW + 60}, "not_yet_valid: the token is not valid yet (nbf)"),
        ({"sub": ""}, "missing_claim:sub: claim 'sub' is missing or empty"),
        ({CLAIM_URL: _DROP}, f"missing_claim:{CLAIM_URL}: no data-source url claim"),
        ({CLAIM_URL: URL + "/"}, "claim_mismatch:url: data-source url does not match"),
        ({CLAIM_SCHEMA: _DROP}, f"missing_claim:{CLAIM_SCHEMA}: no schema claim"),
        ({CLAIM_SCHEMA: "x"}, "claim_mismatch:schema: schema id does not match"),
        ({"aud": "other"}, "claim_mismatch:aud: audience does not match"),
        ({CLAIM_ORG: _DROP}, f"missing_claim:{CLAIM_ORG}: no org claim"),
        ({CLAIM_ORG: "not-an-org"}, "claim_mismatch:org: org does not match"),
        ({CLAIM_ORG: ORG[:-1] + "1"}, "claim_mismatch:org: org does not match"),
    ],
)
def test_each_failure_has_its_reason_and_message(overrides: dict[str, Any], message: str):
    assert _failure(_claims(**overrides)) == message


def test_error_repr_and_bare_reason() -> None:
    error = JWSVerificationError("expired", "the token has expired")
    assert repr(error) == (
        "JWSVerificationError(reason='expired', message='expired: the token has expired')"
    )
    assert str(JWSVerificationError("malformed")) == "malformed"
    assert str(JWSVerificationError("malformed", "")) == "malformed"


def test_expiry_boundary_is_exclusive() -> None:
    """Valid strictly before ``exp + leeway``; at that instant the token is expired."""
    assert check_claims(_claims(exp=NOW + 5.0), EXPECT, now=NOW, leeway=0.0) == NOW + 5.0
    assert _failure(_claims(exp=NOW), leeway=0.0).startswith("expired")
    assert _failure(_claims(exp=NOW - 30), leeway=30.0).startswith("expired")
    assert check_claims(_claims(exp=NOW - 29.5), EXPECT, now=NOW, leeway=30.0) == NOW - 29.5


@pytest.mark.parametrize("name", ["nbf", "iat"])
def test_not_before_boundary_is_inclusive(name: str) -> None:
    """``nbf``/``iat`` equal to ``now + leeway`` is valid; a moment later it is not."""
    assert check_claims(_claims(**{name: NOW + 30}), EXPECT, now=NOW, leeway=30.0)
    assert _failure(_claims(**{name: NOW + 30.5}), leeway=30.0).startswith("not_yet_valid")


@pytest.mark.parametrize(
    ("claim", "value", "ok"),
    [
        ("aud", ["x", "BYOVAGateway"], True),
        ("aud", [], False),
        ("aud", [""], False),
        ("aud", ["BYOVAGateway", " "], False),
        ("aud", ["BYOVAGateway", 5], False),
        ("aud", "xBYOVAGatewayx", False),  # a substring is not a member
        ("sub", ["callAudioData"], False),  # only aud may be a list
        ("jti", ["nonce-1"], False),
        ("sub", 5, False),
    ],
)
def test_which_claims_may_be_lists(claim: str, value: Any, ok: bool) -> None:
    claims = _claims(**{claim: value})
    if ok:
        assert check_claims(claims, EXPECT, now=NOW, leeway=0.0)
    else:
        assert _failure(claims).split(":")[0] in ("missing_claim", "claim_mismatch")


def test_list_audience_without_expectation_needs_non_blank_members() -> None:
    open_expect = Expectations.build(url=None, schema_id=None, audience=None, org_id=None)
    assert check_claims(_claims(aud=["a", "b"]), open_expect, now=NOW, leeway=0.0)
    for bad in ([], [" "], ["a", None]):
        assert _failure(_claims(aud=bad), open_expect) == (
            "missing_claim:aud: claim 'aud' is missing or empty"
        )


# --------------------------------------------------------------------------- with real keys


@pytest.fixture
def two_emulators() -> Iterator[tuple[WebexEmulator, WebexEmulator]]:
    with (
        WebexEmulator(clock=EmulatorClock(frozen=True)) as first,
        WebexEmulator(clock=EmulatorClock(frozen=True)) as second,
    ):
        yield first, second


async def test_first_verifications_for_two_issuers_run_side_by_side(two_emulators) -> None:
    first, second = two_emulators
    verifier = JWSVerifier(
        first.config(),
        issuers=[first.issuer, second.issuer],
        expected_url=URL,
        clock=first.clock.now,
    )
    try:
        tokens = [e.mint_data_source_token(url=URL) for e in (first, second) for _ in range(3)]
        results = await asyncio.gather(*(verifier.averify(t) for t in tokens))
        assert [r["iss"] for r in results] == [first.issuer] * 3 + [second.issuer] * 3
        assert verifier.jwks_fetches == 2
    finally:
        await verifier.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_warm_keys_serve_new_tokens_without_refetching(mode: str) -> None:
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emu:
        verifier = JWSVerifier(emu.config(), expected_url=URL, clock=emu.clock.now)
        try:
            for _ in range(3):
                token = emu.mint_data_source_token(url=URL)
                if mode == "sync":
                    assert verifier.verify(token)["sub"]
                else:
                    assert (await verifier.averify(token))["sub"]
            assert verifier.jwks_fetches == 1
            assert verifier.cached_tokens == 3
        finally:
            await verifier.aclose()


async def test_a_cache_of_one_keeps_one_token() -> None:
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emu:
        verifier = JWSVerifier(
            emu.config(), expected_url=URL, clock=emu.clock.now, token_cache_size=1
        )
        try:
            for _ in range(2):
                assert verifier.verify(emu.mint_data_source_token(url=URL))
                assert verifier.cached_tokens == 1
            off = JWSVerifier(
                emu.config(), expected_url=URL, clock=emu.clock.now, token_cache_size=0
            )
            assert off.verify(emu.mint_data_source_token(url=URL))
            assert off.cached_tokens == 0
            off.close()
        finally:
            await verifier.aclose()


async def test_key_fetch_failure_is_logged_with_its_cause(caplog) -> None:
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emu:
        emu.fail_next("/idb/oauth2/v2/keys/verificationjwk", status=503, times=None)
        verifier = JWSVerifier(emu.config(), expected_url=URL, clock=emu.clock.now)
        try:
            with (
                caplog.at_level(logging.WARNING, logger="webex_byova.jws"),
                pytest.raises(JWSVerificationError),
            ):
                await verifier.averify(emu.mint_data_source_token(url=URL))
            messages = [r.getMessage() for r in caplog.records if r.name == "webex_byova.jws"]
            assert any(m.endswith("failed: ServerError: status=503") for m in messages), messages
        finally:
            await verifier.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_verified_token_is_answered_from_the_cache(mode: str) -> None:
    """Until it expires, a verified token needs no key: even after its key is gone and the
    key set is stale, the repeat is answered from the cache (a new token is not)."""
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emu:
        verifier = JWSVerifier(
            emu.config(), expected_url=URL, clock=emu.clock.now, jwks_ttl=60, refetch_cooldown=0
        )
        try:
            token = emu.mint_data_source_token(url=URL, lifetime_minutes=60)
            run = verifier.verify if mode == "sync" else None
            first = run(token) if run else await verifier.averify(token)
            emu.rotate_keys(keep_old=False)
            emu.clock.advance(120)
            again = run(token) if run else await verifier.averify(token)
            assert again == first
            assert verifier.jwks_fetches == 1
            # A new token under the removed key is not cached: its key is looked up and gone.
            old_kid = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))["kid"]
            fresh = emu.mint_data_source_token(url=URL, kid=old_kid)
            with pytest.raises(JWSVerificationError) as info:
                _ = run(fresh) if run else await verifier.averify(fresh)
            assert info.value.reason in ("unknown_kid", "bad_signature")
            assert verifier.jwks_fetches == 2
        finally:
            await verifier.aclose()
