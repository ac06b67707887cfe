"""Contract tests: identity broker JWKS, key rotation and minted data-source tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.errors import BadSignatureError, JoseError
from joserfc.jwk import KeySet, RSAKey

from webex_byova.testing import WebexEmulator


def served_keys(emu: WebexEmulator, http: httpx.Client) -> KeySet:
    resp = http.get(emu.jwks_url)
    assert resp.status_code == 200
    return KeySet.import_key_set(resp.json())


def header_of(token: str) -> dict[str, Any]:
    seg = token.split(".")[0]
    return dict(json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))))


def claims_of(token: str) -> dict[str, Any]:
    seg = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(seg + "=" * (-len(seg) % 4))))


def test_jwks_shape_and_urls(emu: WebexEmulator, http: httpx.Client) -> None:
    assert emu.issuer == emu.url + "/idb"
    assert emu.jwks_url == emu.issuer + "/oauth2/v2/keys/verificationjwk"
    body = http.get(emu.jwks_url).json()
    assert body == http.get(emu.jwks_url + "/").json() == emu.jwks()
    (key,) = body["keys"]
    assert key["kty"] == "RSA"
    assert key["alg"] == "RS256"
    assert key["use"] == "sig"
    assert key["kid"] == emu.current_kid
    assert {"n", "e"} <= key.keys()
    assert "d" not in key
    resp = http.post(emu.jwks_url)
    assert resp.status_code == 405
    assert resp.headers["TrackingID"]


def test_minted_token_verifies(emu: WebexEmulator, http: httpx.Client) -> None:
    token = emu.mint_data_source_token(url="https://va.example.com")
    header = header_of(token)
    assert header["alg"] == "RS256"
    assert header["typ"] == "JWT"
    assert header["kid"] == emu.current_kid
    claims = jwt.decode(token, served_keys(emu, http), algorithms=["RS256"]).claims
    assert claims["iss"] == emu.issuer
    assert claims["aud"] == "BYOVAGateway"
    assert claims["sub"] == "callAudioData"
    assert claims["exp"] - claims["iat"] == 3600
    assert claims["com.cisco.datasource.url"] == "https://va.example.com"
    assert claims["com.cisco.datasource.schema.uuid"] == "5397013b-7920-4ffc-807c-e8a3e0a18f43"
    assert claims["com.cisco.org.uuid"] == emu.org.org_id
    assert claims["jti"]


def test_rotation_keep_old(emu: WebexEmulator, http: httpx.Client) -> None:
    old_token = emu.mint_data_source_token(url="https://a.example.com")
    old_kid = emu.current_kid
    new_kid = emu.rotate_keys()
    assert new_kid != old_kid
    assert emu.current_kid == new_kid
    keys = served_keys(emu, http)
    assert [k["kid"] for k in http.get(emu.jwks_url).json()["keys"]] == [old_kid, new_kid]
    new_token = emu.mint_data_source_token(url="https://a.example.com")
    assert header_of(new_token)["kid"] == new_kid
    jwt.decode(old_token, keys, algorithms=["RS256"])
    jwt.decode(new_token, keys, algorithms=["RS256"])
    # data sources registered after the rotation are signed with the new key
    emu.drop_old_keys()
    only_new = served_keys(emu, http)
    assert [k["kid"] for k in http.get(emu.jwks_url).json()["keys"]] == [new_kid]
    jwt.decode(new_token, only_new, algorithms=["RS256"])
    with pytest.raises(JoseError):
        jwt.decode(old_token, only_new, algorithms=["RS256"])


def test_rotation_without_keeping(emu: WebexEmulator, http: httpx.Client) -> None:
    before = served_keys(emu, http)
    old_token = emu.mint_data_source_token(url="https://a.example.com")
    new_kid = emu.rotate_keys(keep_old=False)
    assert [k["kid"] for k in emu.jwks()["keys"]] == [new_kid]
    after = served_keys(emu, http)
    new_token = emu.mint_data_source_token(url="https://a.example.com")
    jwt.decode(new_token, after, algorithms=["RS256"])
    with pytest.raises(JoseError):
        jwt.decode(old_token, after, algorithms=["RS256"])
    with pytest.raises(JoseError):  # the cached pre-rotation set cannot verify new tokens
        jwt.decode(new_token, before, algorithms=["RS256"])


def test_mint_options(emu: WebexEmulator, http: httpx.Client) -> None:
    other = emu.create_org()
    token = emu.mint_data_source_token(
        url="https://x.example.com",
        schema_id="523e1b7f-4693-47bc-b84e-a7b7a505fb0b",
        org_id=other.hydra_id,
        audience="aud",
        subject="sub",
        lifetime_minutes=5,
        issuer="https://idbroker.webex.com/idb",
        extra_claims={"custom": 1, "jti": "123456"},
        omit_claims=("sub",),
    )
    claims = jwt.decode(token, served_keys(emu, http), algorithms=["RS256"]).claims
    assert claims["com.cisco.org.uuid"] == other.org_id
    assert claims["com.cisco.datasource.schema.uuid"] == "523e1b7f-4693-47bc-b84e-a7b7a505fb0b"
    assert claims["iss"] == "https://idbroker.webex.com/idb"
    assert claims["aud"] == "aud"
    assert "sub" not in claims
    assert claims["exp"] - claims["iat"] == 300
    assert claims["custom"] == 1
    assert claims["jti"] == "123456"


def test_mint_expiry_follows_clock(emu: WebexEmulator) -> None:
    t0 = emu.clock.now()
    emu.clock.advance(10_000)
    claims = claims_of(emu.mint_data_source_token(url="https://x", lifetime_minutes=1))
    assert claims["iat"] == int(t0 + 10_000) or claims["iat"] == int(t0 + 10_000) + 1
    expired = claims_of(emu.mint_data_source_token(url="https://x", lifetime_minutes=-1))
    assert expired["exp"] < expired["iat"]
    fixed = claims_of(emu.mint_data_source_token(url="https://x", issued_at=1000))
    assert fixed["iat"] == 1000
    assert fixed["exp"] == 4600


def test_forged_tokens_fail_rs256_verification(emu: WebexEmulator, http: httpx.Client) -> None:
    keys = served_keys(emu, http)
    forged = emu.mint_data_source_token(url="https://x", alg="HS256")
    assert header_of(forged)["alg"] == "HS256"
    # the forgery really is an HMAC keyed with the public PEM (what a confused verifier uses)
    signing_input, _, sig = forged.rpartition(".")
    mac = hmac.new(emu.public_key_pem(), signing_input.encode(), hashlib.sha256).digest()
    assert base64.urlsafe_b64encode(mac).decode().rstrip("=") == sig
    assert emu.public_key_pem().startswith(b"-----BEGIN PUBLIC KEY-----")
    with pytest.raises(JoseError):
        jwt.decode(forged, keys, algorithms=["RS256"])
    unsigned = emu.mint_data_source_token(url="https://x", alg="none")
    assert unsigned.endswith(".")
    assert header_of(unsigned)["alg"] == "none"
    with pytest.raises(JoseError):
        jwt.decode(unsigned, keys, algorithms=["RS256"])
    ps = emu.mint_data_source_token(url="https://x", alg="PS256")
    with pytest.raises(JoseError):
        jwt.decode(ps, keys, algorithms=["RS256"])
    unlabeled = {k: v for k, v in emu.jwks()["keys"][0].items() if k != "alg"}
    jwt.decode(ps, RSAKey.import_key(unlabeled), algorithms=["PS256"])  # really RSA-signed
    with pytest.raises(ValueError):
        emu.mint_data_source_token(url="https://x", alg="ES256")


def test_kid_override_and_omission(emu: WebexEmulator, http: httpx.Client) -> None:
    token = emu.mint_data_source_token(url="https://x", kid="unknown-kid")
    assert header_of(token)["kid"] == "unknown-kid"
    keys = served_keys(emu, http)
    with pytest.raises(JoseError):
        jwt.decode(token, keys, algorithms=["RS256"])
    no_kid = emu.mint_data_source_token(url="https://x", kid="")
    assert "kid" not in header_of(no_kid)
    # tampering breaks the signature
    good = emu.mint_data_source_token(url="https://x")
    head, _, sig = good.split(".")
    evil = base64.urlsafe_b64encode(json.dumps({"aud": "x"}).encode()).decode().rstrip("=")
    with pytest.raises(BadSignatureError):
        jwt.decode(f"{head}.{evil}.{sig}", keys, algorithms=["RS256"])


def test_bad_org_id_rejected(emu: WebexEmulator) -> None:
    with pytest.raises(ValueError):
        emu.mint_data_source_token(url="https://x", org_id="nope")


async def test_jwks_async(emu: WebexEmulator) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.get(emu.jwks_url)
    keys = KeySet.import_key_set(resp.json())
    jwt.decode(emu.mint_data_source_token(url="https://x"), keys, algorithms=["RS256"])
