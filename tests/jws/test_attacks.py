"""The JWS attack matrix: every forged or unacceptable token is refused with its reason."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

from webex_byova.jws import JWSVerificationError, JWSVerifier
from webex_byova.testing import WebexEmulator

from .helpers import DS_URL, jwks_gets


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _decode(segment: str) -> dict[str, Any]:
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))  # type: ignore[no-any-return]


def _reject(verifier: JWSVerifier, token: str, reason: str, **kwargs: Any) -> JWSVerificationError:
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(token, **kwargs)
    assert info.value.reason == reason, str(info.value)
    assert isinstance(info.value, ValueError)
    return info.value


async def _areject(verifier: JWSVerifier, token: str, reason: str) -> None:
    with pytest.raises(JWSVerificationError) as info:
        await verifier.averify(token)
    assert info.value.reason == reason, str(info.value)


def test_alg_none_is_refused_without_fetching_keys(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    _reject(verifier, mint(alg="none"), "alg_not_allowed")
    assert jwks_gets(emu) == 0


async def test_alg_none_is_refused_async(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    await _areject(verifier, mint(alg="none"), "alg_not_allowed")
    assert jwks_gets(emu) == 0


def test_hs256_signed_with_the_public_key_is_refused(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    _reject(verifier, mint(alg="HS256"), "alg_not_allowed")
    assert jwks_gets(emu) == 0


def test_hmac_signature_under_an_rs256_header_fails_the_signature(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    """Algorithm confusion with a truthful-looking header: the key is only used for RS256."""
    header, payload, _ = mint().split(".")
    published = next(k for k in emu.jwks()["keys"] if k["kid"] == emu.current_kid)
    pem = RSAKey.import_key(published).as_pem(private=False)
    mac = hmac.new(pem, f"{header}.{payload}".encode(), hashlib.sha256).digest()
    _reject(verifier, f"{header}.{payload}.{_b64(mac)}", "bad_signature")


@pytest.mark.parametrize("alg", ["RS384", "PS256", "RS512"])
def test_other_rsa_algorithms_are_refused(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str], alg: str
) -> None:
    claims = _decode(mint().split(".")[1])
    key = RSAKey.generate_key(2048, private=True)
    token = jwt.encode({"alg": alg, "kid": emu.current_kid}, claims, key, algorithms=[alg])
    _reject(verifier, token, "alg_not_allowed")
    assert jwks_gets(emu) == 0


def test_expired_token(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    _reject(verifier, mint(lifetime_minutes=-1), "expired")


def test_expiry_within_leeway_is_accepted(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    token = mint(lifetime_minutes=-10 / 60)  # expired 10 s ago
    assert make_verifier(leeway=30).verify(token)["sub"] == "callAudioData"
    _reject(make_verifier(leeway=5), token, "expired")


def test_missing_exp(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    _reject(verifier, mint(omit_claims=["exp"]), "missing_claim:exp")


def test_non_numeric_exp(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    _reject(verifier, mint(extra_claims={"exp": "tomorrow"}), "invalid_claim:exp")


def test_issued_in_the_future_is_not_yet_valid(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    token = mint(issued_at=emu.clock.now() + 120)
    _reject(verifier, token, "not_yet_valid")
    emu.clock.advance(100)  # now within the 30 s leeway
    assert verifier.verify(token)["iss"] == emu.issuer


def test_nbf_in_the_future_is_not_yet_valid(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    _reject(verifier, mint(extra_claims={"nbf": emu.clock.now() + 300}), "not_yet_valid")


@pytest.mark.parametrize(
    "issuer",
    [
        "https://evil.example.com/idb",
        "https://idbroker.webex.com.evil.example/idb",
        "http://idbroker.webex.com/idb",
        "https://idbroker.webex.com/idb/../../attacker",
    ],
)
def test_wrong_issuer_causes_no_http_request(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str], issuer: str
) -> None:
    _reject(verifier, mint(issuer=issuer), "issuer_not_allowed")
    assert emu.requests == []


async def test_wrong_issuer_causes_no_http_request_async(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    await _areject(verifier, mint(issuer="https://evil.example.com/idb"), "issuer_not_allowed")
    assert emu.requests == []


def test_missing_issuer(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    _reject(verifier, mint(omit_claims=["iss"]), "missing_claim:iss")
    assert emu.requests == []


def test_missing_kid_is_refused_without_fetching(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    _reject(verifier, mint(kid=""), "missing_kid")
    assert jwks_gets(emu) == 0


def test_tampered_payload(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    header, payload, signature = mint().split(".")
    claims = _decode(payload)
    claims["com.cisco.org.uuid"] = "00000000-0000-4000-8000-000000000000"
    forged = f"{header}.{_b64(json.dumps(claims).encode())}.{signature}"
    _reject(verifier, forged, "bad_signature")


def test_tampered_signature(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    header, payload, signature = mint().split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    _reject(verifier, f"{header}.{payload}.{flipped}", "bad_signature")


def test_token_signed_by_a_key_of_another_party_with_a_known_kid(
    emu: WebexEmulator, verifier: JWSVerifier, mint: Callable[..., str]
) -> None:
    """A second emulator's key signs a token claiming our emulator's kid and issuer."""
    with WebexEmulator(clock=emu.clock) as other:
        token = other.mint_data_source_token(url=DS_URL, issuer=emu.issuer, kid=emu.current_kid)
    _reject(verifier, token, "bad_signature")


@pytest.mark.parametrize(
    ("expected", "claimed"),
    [
        ("https://host", "https://host:443"),
        ("https://host:443", "https://host"),
        ("https://host", "https://host/"),
        ("https://host", "https://HOST"),
    ],
)
def test_url_claim_must_match_character_for_character(
    make_verifier: Callable[..., JWSVerifier],
    mint: Callable[..., str],
    expected: str,
    claimed: str,
) -> None:
    verifier = make_verifier(expected_url=expected)
    _reject(verifier, mint(url=claimed), "claim_mismatch:url")
    assert verifier.verify(mint(url=expected))["com.cisco.datasource.url"] == expected


def test_missing_url_claim(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    token = mint(omit_claims=["com.cisco.datasource.url"])
    _reject(verifier, token, "missing_claim:com.cisco.datasource.url")


def test_wrong_schema(verifier: JWSVerifier, mint: Callable[..., str]) -> None:
    token = mint(schema_id="78efc775-dd7b-4f7c-9a5b-4b9e6e0b9c11")
    _reject(verifier, token, "claim_mismatch:schema")
    # the comparison can be disabled per call
    assert verifier.verify(token, expected_schema_id=None)["sub"] == "callAudioData"


@pytest.mark.parametrize("claim", ["aud", "sub", "jti"])
def test_missing_required_claims(
    verifier: JWSVerifier, mint: Callable[..., str], claim: str
) -> None:
    _reject(verifier, mint(omit_claims=[claim]), f"missing_claim:{claim}")


@pytest.mark.parametrize("claim", ["aud", "sub", "jti"])
def test_empty_required_claims(verifier: JWSVerifier, mint: Callable[..., str], claim: str) -> None:
    _reject(verifier, mint(extra_claims={claim: "  "}), f"missing_claim:{claim}")


def test_wrong_audience(
    make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(expected_audience="BYOVAGateway")
    _reject(verifier, mint(audience="someone-else"), "claim_mismatch:aud")
    assert verifier.verify(mint())["aud"] == "BYOVAGateway"


def test_wrong_org(
    emu: WebexEmulator, make_verifier: Callable[..., JWSVerifier], mint: Callable[..., str]
) -> None:
    verifier = make_verifier(expected_org_id="11111111-2222-4333-8444-555555555555")
    _reject(verifier, mint(), "claim_mismatch:org")
    assert verifier.verify(mint(), expected_org_id=emu.org.org_id)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "Bearer ",
        "not-a-token",
        "a.b",
        "a.b.c.d",
        "!!!.###.$$$",
        _b64(b"[1,2]") + "." + _b64(b"{}") + ".c2ln",
        "x" * 20_000,
    ],
)
def test_malformed_tokens(emu: WebexEmulator, verifier: JWSVerifier, token: str) -> None:
    _reject(verifier, token, "malformed")
    assert emu.requests == []


def test_non_string_token_is_malformed(verifier: JWSVerifier) -> None:
    _reject(verifier, b"abc", "malformed")  # type: ignore[arg-type]


def test_error_message_and_logs_never_contain_the_token(
    verifier: JWSVerifier, mint: Callable[..., str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="webex_byova")
    token = mint(lifetime_minutes=-5)
    err = _reject(verifier, token, "expired")
    for text in (str(err), repr(err), caplog.text):
        assert token not in text
        assert token.split(".")[2] not in text
