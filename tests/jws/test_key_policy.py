"""Where keys come from and which keys are accepted.

* ``BYOVAConfig.jwk_url_us``/``jwk_url_eu`` are the key source of the US/EU Webex issuers
  whatever their path (a proxy, a mirror), served here by a small loopback server;
* RSA keys under 2048 bits, over 8192 bits, of another type/use/algorithm, that do not import,
  or sharing a ``kid`` with a different key are refused with a typed reason.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from webex_byova.config import BYOVAConfig
from webex_byova.jws import (
    JWKS_PATH,
    MAX_JWKS_KEYS,
    REGION_ISSUERS,
    JWSVerificationError,
    JWSVerifier,
    read_jwks,
)
from webex_byova.testing import EmulatorClock, WebexEmulator

from .helpers import DS_URL, KEY_POOL, KeyServer, b64url, public_jwk, sign_rs256

PROXY_PATH = "/proxy/webex/keys.json"


@pytest.fixture
def server() -> Iterator[KeyServer]:
    with KeyServer() as srv:
        yield srv


@pytest.fixture
def emu() -> Iterator[WebexEmulator]:
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emulator:
        yield emulator


@pytest.fixture(scope="module")
def strong() -> rsa.RSAPrivateKey:
    return KEY_POOL[0]


@pytest.fixture(scope="module")
def weak() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


def _reason(verifier: JWSVerifier, token: str) -> str:
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(token)
    return info.value.reason


# --------------------------------------------------------------------------- configured URLs


@pytest.mark.parametrize(
    ("region", "field"), [("us", "jwk_url_us"), ("eu", "jwk_url_eu"), ("us", "jwk_url_eu")]
)
def test_configured_region_url_is_the_key_source_whatever_its_path(
    emu: WebexEmulator, server: KeyServer, region: str, field: str
) -> None:
    server.routes[PROXY_PATH] = emu.jwks()
    config = BYOVAConfig(region=region, **{field: server.url + PROXY_PATH})
    issuer = REGION_ISSUERS[field.removeprefix("jwk_url_")]
    with JWSVerifier(config, expected_url=DS_URL, clock=emu.clock.now) as verifier:
        assert verifier.jwks_url(issuer) == server.url + PROXY_PATH
        claims = verifier.verify(emu.mint_data_source_token(url=DS_URL, issuer=issuer))
    assert claims["iss"] == issuer
    assert server.hits == {PROXY_PATH: 1}
    assert emu.requests == []  # the emulator's own key path was never used


async def test_configured_region_url_async(emu: WebexEmulator, server: KeyServer) -> None:
    server.routes[PROXY_PATH] = emu.jwks()
    config = BYOVAConfig(jwk_url_us=server.url + PROXY_PATH)
    issuer = REGION_ISSUERS["us"]
    async with JWSVerifier(config, expected_url=DS_URL, clock=emu.clock.now) as verifier:
        claims = await verifier.averify(emu.mint_data_source_token(url=DS_URL, issuer=issuer))
    assert claims["iss"] == issuer
    assert server.hits == {PROXY_PATH: 1}


def test_configured_region_url_applies_to_an_explicit_issuer_list(
    emu: WebexEmulator, server: KeyServer
) -> None:
    server.routes[PROXY_PATH] = emu.jwks()
    config = BYOVAConfig(jwk_url_eu=server.url + PROXY_PATH)
    issuer = REGION_ISSUERS["eu"]
    with JWSVerifier(config, issuers=[issuer], expected_url=DS_URL, clock=emu.clock.now) as v:
        assert v.verify(emu.mint_data_source_token(url=DS_URL, issuer=issuer))["iss"] == issuer


def test_default_urls_are_unchanged() -> None:
    with JWSVerifier() as verifier:
        for issuer in REGION_ISSUERS.values():
            assert verifier.jwks_url(issuer) == issuer + JWKS_PATH


# --------------------------------------------------------------------------- key acceptance


@pytest.fixture
def key_verifier(server: KeyServer) -> Iterator[Callable[[list[Any]], JWSVerifier]]:
    """A verifier trusting the loopback issuer whose key set is the given entries."""
    made: list[JWSVerifier] = []

    def build(entries: list[Any]) -> JWSVerifier:
        server.routes["/idb" + JWKS_PATH] = {"keys": entries}
        verifier = JWSVerifier(issuers=[server.url + "/idb"], expected_url=DS_URL)
        made.append(verifier)
        return verifier

    yield build
    for verifier in made:
        verifier.close()


def test_a_1024_bit_rsa_key_is_refused_as_weak(
    server: KeyServer,
    key_verifier: Callable[[list[Any]], JWSVerifier],
    weak: rsa.RSAPrivateKey,
    strong: rsa.RSAPrivateKey,
) -> None:
    issuer = server.url + "/idb"
    verifier = key_verifier([public_jwk(weak, "weak"), public_jwk(strong, "strong")])
    now = time.time()
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(sign_rs256(weak, "weak", issuer, now))
    assert info.value.reason == "weak_key"
    assert "refused" in str(info.value)
    assert verifier.verify(sign_rs256(strong, "strong", issuer, now))["iss"] == issuer


async def test_a_1024_bit_rsa_key_is_refused_async(
    server: KeyServer, key_verifier: Callable[[list[Any]], JWSVerifier], weak: rsa.RSAPrivateKey
) -> None:
    verifier = key_verifier([public_jwk(weak, "weak")])
    with pytest.raises(JWSVerificationError) as info:
        await verifier.averify(sign_rs256(weak, "weak", server.url + "/idb", time.time()))
    assert info.value.reason == "weak_key"


def _fake_modulus(bits: int) -> str:
    return b64url((1 << (bits - 1) | 1).to_bytes((bits + 7) // 8, "big"))


def _hostile_cases(
    strong: rsa.RSAPrivateKey, other: rsa.RSAPrivateKey
) -> dict[str, tuple[list[Any], str]]:
    """name -> (key-set entries, reason for a token whose kid is ``k``)."""
    good = public_jwk(strong, "k")
    return {
        "ec key": (
            [{"kty": "EC", "kid": "k", "crv": "P-256", "x": "AA", "y": "AA"}],
            "key_not_allowed",
        ),
        "oct key": ([{"kty": "oct", "kid": "k", "k": "c2VjcmV0"}], "key_not_allowed"),
        "encryption key": ([{**good, "use": "enc"}], "key_not_allowed"),
        "other alg PS256": ([{**good, "alg": "PS256"}], "key_not_allowed"),
        "alg none": ([{**good, "alg": "none"}], "key_not_allowed"),
        "exponent 1": ([{**good, "e": "AQ"}], "key_unusable"),
        "n not base64url": ([{**good, "n": "!!not+base64/"}], "key_unusable"),
        "n not text": ([{**good, "n": 12345}], "key_unusable"),
        "n missing": ([{k: v for k, v in good.items() if k != "n"}], "key_unusable"),
        "8200-bit modulus": ([{**good, "n": _fake_modulus(8200)}], "key_too_large"),
        "1 MB modulus": ([{**good, "n": "A" * 1_000_000}], "key_too_large"),
        "512-bit modulus": ([{**good, "n": _fake_modulus(512)}], "weak_key"),
        "duplicate kid, different keys": ([good, public_jwk(other, "k")], "duplicate_kid"),
        "missing kid": ([{k: v for k, v in good.items() if k != "kid"}], "unknown_kid"),
        "empty kid": ([{**good, "kid": ""}], "unknown_kid"),
        "kid beyond the entry limit": (
            [public_jwk(other, f"filler-{i}") for i in range(MAX_JWKS_KEYS)] + [good],
            "unknown_kid",
        ),
    }


HOSTILE = [
    "ec key",
    "oct key",
    "encryption key",
    "other alg PS256",
    "alg none",
    "exponent 1",
    "n not base64url",
    "n not text",
    "n missing",
    "8200-bit modulus",
    "1 MB modulus",
    "512-bit modulus",
    "duplicate kid, different keys",
    "missing kid",
    "empty kid",
    "kid beyond the entry limit",
]


@pytest.mark.parametrize("case", HOSTILE)
def test_every_refused_key_gets_a_typed_reason(
    case: str,
    server: KeyServer,
    key_verifier: Callable[[list[Any]], JWSVerifier],
    strong: rsa.RSAPrivateKey,
) -> None:
    other = KEY_POOL[1]  # another party's key (the pool's keys are distinct)
    entries, reason = _hostile_cases(strong, other)[case]
    verifier = key_verifier(entries)
    assert _reason(verifier, sign_rs256(strong, "k", server.url + "/idb", time.time())) == reason
    assert server.hits == {"/idb" + JWKS_PATH: 1}


def test_identical_duplicate_entries_are_one_key(
    server: KeyServer, key_verifier: Callable[[list[Any]], JWSVerifier], strong: rsa.RSAPrivateKey
) -> None:
    good = public_jwk(strong, "k")
    verifier = key_verifier([good, dict(good)])
    token = sign_rs256(strong, "k", server.url + "/idb", time.time())
    assert verifier.verify(token)["sub"] == "callAudioData"


def test_read_jwks_reports_every_refusal(
    strong: rsa.RSAPrivateKey, weak: rsa.RSAPrivateKey
) -> None:
    keyset = read_jwks(
        {
            "keys": [
                public_jwk(strong, "ok", alg="RS256", use="sig"),
                public_jwk(weak, "weak"),
                {**public_jwk(strong, "enc"), "use": "enc"},
                "junk",
                public_jwk(strong, "dup"),
                public_jwk(weak, "dup"),
            ]
        }
    )
    assert sorted(keyset.keys) == ["ok"]
    assert keyset.rejected == {"weak": "weak_key", "enc": "key_not_allowed", "dup": "duplicate_kid"}
