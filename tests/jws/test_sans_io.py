"""The I/O-free pieces of the verifier: token parsing, JWKS parsing, key-cache planning."""

from __future__ import annotations

import pytest
from joserfc.jwk import RSAKey

from webex_byova.jws import (
    FetchFailed,
    FetchOk,
    IssuerKeys,
    JWSVerificationError,
    Plan,
    parse_jwks,
    strip_bearer,
)


def _jwk(kid: str, **extra: str) -> dict[str, object]:
    key = RSAKey.generate_key(2048, private=False, parameters={"kid": kid})
    return {**key.as_dict(private=False), **extra}


def test_strip_bearer() -> None:
    assert strip_bearer("  Bearer abc ") == "abc"
    assert strip_bearer("BEARER abc") == "abc"
    assert strip_bearer("abc") == "abc"


def test_parse_jwks_keeps_only_rs256_signing_keys() -> None:
    doc = {
        "keys": [
            _jwk("good"),
            _jwk("good-explicit", alg="RS256", use="sig"),
            _jwk("enc", use="enc"),
            _jwk("ps", alg="PS256"),
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "broken", "n": "!!", "e": "AQAB"},
            {"kty": "RSA", "n": "AQAB", "e": "AQAB"},
            "junk",
        ]
    }
    assert sorted(parse_jwks(doc)) == ["good", "good-explicit"]


@pytest.mark.parametrize("body", [b"[]", b"{}", b'{"keys": {}}', b"not json"])
def test_parse_jwks_rejects_non_key_sets(body: bytes) -> None:
    with pytest.raises(ValueError):
        parse_jwks(body)


def test_key_cache_plan() -> None:
    entry = IssuerKeys("https://x/keys")
    assert entry.plan("a", 0.0, ttl=100, cooldown=10) is Plan.FETCH
    key = RSAKey.generate_key(2048, private=False)
    entry.apply(FetchOk({"a": key}), 0.0)
    assert entry.plan("a", 50.0, ttl=100, cooldown=10) is Plan.USE
    assert entry.plan("a", 100.0, ttl=100, cooldown=10) is Plan.FETCH  # stale
    with pytest.raises(JWSVerificationError, match="unknown_kid"):
        entry.plan("b", 5.0, ttl=100, cooldown=10)  # cooling down
    assert entry.plan("b", 10.0, ttl=100, cooldown=10) is Plan.FETCH
    entry.apply(FetchFailed(True, "503"), 150.0)  # transient: stale keys stay usable
    assert entry.plan("a", 155.0, ttl=100, cooldown=10) is Plan.USE
    assert entry.key_after_fetch("a") is key
    with pytest.raises(JWSVerificationError, match="jwks_unavailable"):
        entry.key_after_fetch("b")
    entry.apply(FetchFailed(False, "404"), 170.0)  # non-transient: no stale keys
    with pytest.raises(JWSVerificationError, match="jwks_unavailable"):
        entry.plan("a", 175.0, ttl=100, cooldown=10)
    assert entry.plan("a", 180.0, ttl=100, cooldown=10) is Plan.FETCH
    assert entry.fetches == 3
