"""The JWS verifier refuses every near miss and fails closed when something unexpected breaks.

Near misses: the signature changed in its last character, truncated or extended; the payload
or header re-encoded under the right signature; and every compared claim (data-source url,
schema id, audience, org) almost equal to the expected value. ``sub`` and ``jti`` are only
required to be non-empty (Webex's nonce is not replayed against a store), so blank values are
the near misses there. Unexpected failures: the key-set fetch raising something the HTTP layer
does not type, the key set containing a key that cannot be imported, a broken clock.
"""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest

from webex_byova._http import HttpClient
from webex_byova.jws import (
    BYOVA_SCHEMA_ID,
    CLAIM_ORG,
    CLAIM_SCHEMA,
    CLAIM_URL,
    JWKS_RETRY_POLICY,
    JWSVerificationError,
    JWSVerifier,
)
from webex_byova.testing import EmulatorClock, WebexEmulator

from ..jws.helpers import use_key_pool
from .conftest import B64URL, HEX, near_misses

DS_URL = "https://byova.example.com/grpc"
AUDIENCE = "BYOVAGateway"
JWKS = "/idb/oauth2/v2/keys/verificationjwk"
LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


@pytest.fixture(autouse=True)
def _pooled_rsa_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """Emulator signing keys come from a pool made at import (see ``tests/jws/helpers.py``)."""
    use_key_pool(monkeypatch)


@pytest.fixture
def jemu() -> Iterator[WebexEmulator]:
    with WebexEmulator(clock=EmulatorClock(frozen=True)) as emulator:
        yield emulator


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def http(jemu: WebexEmulator) -> AsyncIterator[HttpClient]:
    client = HttpClient(
        jemu.config(), retry_policy=JWKS_RETRY_POLICY, sleep=lambda _: None, asleep=_no_sleep
    )
    yield client
    await client.aclose()


@pytest.fixture
def make(jemu: WebexEmulator, http: HttpClient) -> Iterator[Callable[..., JWSVerifier]]:
    made: list[JWSVerifier] = []

    def factory(**kwargs: Any) -> JWSVerifier:
        kwargs.setdefault("http", http)
        kwargs.setdefault("clock", jemu.clock.now)
        kwargs.setdefault("expected_url", DS_URL)
        kwargs.setdefault("expected_audience", AUDIENCE)
        kwargs.setdefault("expected_org_id", jemu.org.org_id)
        verifier = JWSVerifier(jemu.config(), **kwargs)
        made.append(verifier)
        return verifier

    yield factory
    for verifier in made:
        verifier.close()


def _mint(emu: WebexEmulator, **kwargs: Any) -> str:
    kwargs.setdefault("url", DS_URL)
    kwargs.setdefault("audience", AUDIENCE)
    return emu.mint_data_source_token(**kwargs)


def _segment(data: dict[str, Any]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode(segment: str) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(segment + "=" * 4))
    return decoded


async def _refused_both_ways(verifier: JWSVerifier, token: str) -> set[str]:
    """Verify ``token`` sync and async; both must raise. Returns the reasons seen."""
    reasons = set()
    with pytest.raises(JWSVerificationError) as sync_info:
        verifier.verify(token)
    reasons.add(sync_info.value.reason)
    with pytest.raises(JWSVerificationError) as async_info:
        await verifier.averify(token)
    reasons.add(async_info.value.reason)
    return reasons


async def _refused(verifier: JWSVerifier, token: str, mode: str) -> str:
    """Verify ``token`` one way (``sync``/``async``); it must raise. Returns the reason."""
    try:
        if mode == "sync":
            verifier.verify(token)
        else:
            await verifier.averify(token)
    except JWSVerificationError as exc:
        return exc.reason
    raise AssertionError("the token was accepted")


# --------------------------------------------------------------------------- signature


def _signature_misses(token: str) -> dict[str, str]:
    head, body, signature = token.split(".")
    # 32 steps flips the top bit of the last base64url character, a bit the signature uses
    # (its low bits are padding that decoders may ignore).
    return {
        name: f"{head}.{body}.{bad}"
        for name, bad in near_misses(signature, B64URL, last_step=32).items()
    }


async def test_near_miss_signatures_are_refused(jemu, make) -> None:
    verifier = make()
    token = _mint(jemu)
    assert verifier.verify(token)["sub"]  # the right one passes (and is now cached)
    for name, bad in _signature_misses(token).items():
        reasons = await _refused_both_ways(verifier, bad)
        assert reasons <= {"bad_signature", "malformed"}, (name, reasons)
    assert (await verifier.averify(token))["sub"]


async def test_near_miss_signatures_are_refused_before_anything_is_cached(jemu, make) -> None:
    verifier = make()
    token = _mint(jemu)
    for name, bad in _signature_misses(token).items():
        assert await _refused_both_ways(verifier, bad), name
    assert verifier.cached_tokens == 0
    assert (await verifier.averify(token))["sub"]


async def test_payload_or_header_changed_under_the_right_signature(jemu, make) -> None:
    verifier = make()
    token = _mint(jemu)
    head, body, signature = token.split(".")
    claims = _decode(body)
    header = _decode(head)
    changed_claims = [
        {**claims, "sub": claims["sub"] + "x"},
        {**claims, "exp": claims["exp"] + 1},
        {**claims, "jti": claims["jti"][:-1]},
        # last character changed (to one it is not: a UUID ending in "0" stayed equal before)
        {
            **claims,
            CLAIM_ORG: claims[CLAIM_ORG][:-1] + ("1" if claims[CLAIM_ORG][-1] == "0" else "0"),
        },
    ]
    for forged in changed_claims:
        bad = f"{head}.{_segment(forged)}.{signature}"
        assert await _refused_both_ways(verifier, bad) == {"bad_signature"}
    bad_header = f"{_segment({**header, 'typ': 'JWT2'})}.{body}.{signature}"
    assert await _refused_both_ways(verifier, bad_header) == {"bad_signature"}
    # The original, byte for byte, still verifies.
    assert verifier.verify(token)["jti"] == claims["jti"]


async def test_near_miss_kid_is_an_unknown_key(jemu, make) -> None:
    verifier = make()
    kid = _decode(_mint(jemu).split(".")[0])["kid"]
    for name, bad_kid in near_misses(kid, B64URL + ".").items():
        reasons = await _refused_both_ways(verifier, _mint(jemu, kid=bad_kid))
        assert reasons == {"unknown_kid"}, name


# --------------------------------------------------------------------------- claims


def _url_misses() -> dict[str, str]:
    return {
        **near_misses(DS_URL, "abcdefghijklmnopqrstuvwxyz/"),
        "trailing_slash": DS_URL + "/",
        "default_port": DS_URL.replace(".com/", ".com:443/"),
        "upper_host": DS_URL.replace("byova", "BYOVA"),
        "http": DS_URL.replace("https", "http"),
    }


@pytest.mark.parametrize(
    ("claim", "misses", "reason"),
    [
        ("url", _url_misses(), "claim_mismatch:url"),
        ("schema", near_misses(BYOVA_SCHEMA_ID, HEX + "-"), "claim_mismatch:schema"),
        ("aud", near_misses(AUDIENCE, LETTERS), "claim_mismatch:aud"),
    ],
)
async def test_near_miss_claims_are_refused(jemu, make, claim, misses, reason) -> None:
    verifier = make()
    claim_name = {"url": CLAIM_URL, "schema": CLAIM_SCHEMA, "aud": "aud"}[claim]
    for name, bad in misses.items():
        token = _mint(jemu, extra_claims={claim_name: bad})
        assert await _refused_both_ways(verifier, token) == {reason}, name
    assert verifier.verify(_mint(jemu))[claim_name]


async def test_near_miss_audience_in_a_list_is_refused(jemu, make) -> None:
    verifier = make()
    for name, bad in near_misses(AUDIENCE, LETTERS).items():
        token = _mint(jemu, extra_claims={"aud": ["other", bad]})
        assert await _refused_both_ways(verifier, token) == {"claim_mismatch:aud"}, name
    assert verifier.verify(_mint(jemu, extra_claims={"aud": ["other", AUDIENCE]}))["aud"]


async def test_near_miss_org_is_refused(jemu, make) -> None:
    verifier = make()
    org = jemu.org.org_id
    for name, bad in near_misses(org, HEX + "-").items():
        token = _mint(jemu, extra_claims={CLAIM_ORG: bad})
        assert await _refused_both_ways(verifier, token) == {"claim_mismatch:org"}, name
    assert verifier.verify(_mint(jemu))[CLAIM_ORG] == org


_BLANK: list[Any] = ["", " ", "\t\n", None, 0, []]


@pytest.mark.parametrize(
    ("claim", "value"),
    [(c, v) for c in ("sub", "jti", "aud") for v in _BLANK] + [("aud", [""]), ("aud", ["ok", " "])],
)
async def test_blank_sub_jti_aud_are_refused(jemu, make, claim, value) -> None:
    verifier = make(expected_audience=None)
    token = _mint(jemu, extra_claims={claim: value})
    reasons = await _refused_both_ways(verifier, token)
    assert reasons == {f"missing_claim:{claim}"}


async def test_missing_compared_claims_are_refused(jemu, make) -> None:
    verifier = make()
    for claim in (CLAIM_URL, CLAIM_SCHEMA, CLAIM_ORG, "sub", "jti", "aud", "exp"):
        token = _mint(jemu, omit_claims=[claim])
        assert await _refused_both_ways(verifier, token) == {f"missing_claim:{claim}"}, claim


# --------------------------------------------------------------------------- unexpected failures


class _BrokenTransport(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """An httpx transport that fails with an error the HTTP layer does not expect."""

    def __init__(self) -> None:
        self.calls = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise RuntimeError("transport bug")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls += 1
        raise RuntimeError("transport bug")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_key_fetch_raising_unexpectedly_fails_closed(jemu, make, mode) -> None:
    broken = _BrokenTransport()
    client = HttpClient(jemu.config(), transport=broken, async_transport=broken)
    verifier = make(http=client)
    token = _mint(jemu)
    try:
        for _ in range(3):
            assert await _refused(verifier, token, mode) == "jwks_unavailable"
        # Failed fetches count toward the refetch cooldown like any other failure.
        assert broken.calls == 1
        assert verifier.cached_tokens == 0
    finally:
        await client.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_closed_http_client_fails_closed(jemu, make, http, mode) -> None:
    verifier = make()
    await http.aclose()
    assert await _refused(verifier, _mint(jemu), mode) == "jwks_unavailable"


async def test_unimportable_key_in_the_key_set_is_skipped_not_fatal(jemu, make) -> None:
    """A key set with a junk entry next to the real key: the real key still verifies, and a
    token naming the junk kid is refused (never verified with a half-imported key)."""
    jwks = json.loads(httpx.get(jemu.config().jwk_url).content)
    junk = [
        {"kty": "RSA", "kid": "junk-n-missing", "e": "AQAB"},
        {"kty": "RSA", "kid": "junk-n-not-b64", "n": "!!!", "e": "AQAB"},
        {"kty": "RSA", "kid": "junk-n-tiny", "n": "AA", "e": "AQAB"},
        {"kty": "RSA", "kid": "junk-n-number", "n": 5, "e": "AQAB"},
    ]
    jemu.fail_next(JWKS, status=200, body={"keys": junk + jwks["keys"]}, times=None)
    verifier = make()
    assert (await verifier.averify(_mint(jemu)))["sub"]
    for entry in junk:
        with pytest.raises(JWSVerificationError) as info:
            await verifier.averify(_mint(jemu, kid=entry["kid"]))
        # the key set named that kid but its key was refused: the token says which way
        assert info.value.reason in {"key_unusable", "weak_key"}


async def test_broken_clock_never_yields_claims(jemu, make) -> None:
    def clock() -> float:
        raise RuntimeError("clock source failed")

    verifier = make(clock=clock)
    token = _mint(jemu)
    with pytest.raises(RuntimeError):
        verifier.verify(token)
    with pytest.raises(RuntimeError):
        await verifier.averify(token)
    assert verifier.cached_tokens == 0


async def test_near_miss_issuer_is_not_trusted_and_fetches_nothing(jemu, make) -> None:
    verifier = make()
    issuer = jemu.issuer
    for name, bad in near_misses(issuer, "abcdefghijklmnopqrstuvwxyz:/.").items():
        if bad.rstrip("/") == issuer.rstrip("/"):
            continue  # a trailing slash is the same issuer (issuers compare without it)
        token = _mint(jemu, issuer=bad)
        assert await _refused_both_ways(verifier, token) == {"issuer_not_allowed"}, name
    assert verifier.jwks_fetches == 0
    assert jemu.count("GET", JWKS) == 0
