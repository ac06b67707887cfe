"""Exact outcomes of the verifier's pieces, found unpinned by the mutation run (issue 17).

These run without the emulator: tokens are signed here with one RSA key made at import, key
sets are plain documents or served by a loopback :class:`KeyServer`. Covered: the token
parser's every refusal (including ``crit`` and the length bound), the key-entry policy at its
boundaries, which JWK members are imported, the key-set entry limit, the transient flag of
each kind of fetch failure, issuer normalisation and the key-cache plan at its edges.
"""

from __future__ import annotations

import asyncio
import base64
import gc
import json
import logging
import threading
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from webex_byova._flow import run_async, run_sync
from webex_byova._http import HttpClient, build_request
from webex_byova.config import BYOVAConfig
from webex_byova.jws import (
    JWKS_PATH,
    JWKS_RETRY_POLICY,
    MAX_JWKS_KEYS,
    MAX_TOKEN_LENGTH,
    Expectations,
    FetchFailed,
    FetchOk,
    IssuerKeys,
    JWSVerificationError,
    JWSVerifier,
    Plan,
    jwks_fetch_flow,
    jwks_url_for,
    normalize_issuer,
    parse_jwks,
    parse_token,
    read_jwks,
    strip_bearer,
    verify_signature,
)

from .helpers import DS_URL, KeyServer, b64url, public_jwk, sign_rs256

KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
NOW = 1_800_000_000.0


def _segment(obj: Any) -> str:
    return b64url(json.dumps(obj).encode())


def _token(header: Any, claims: Any, signature: str = "c2ln") -> str:
    return f"{_segment(header)}.{_segment(claims)}.{signature}"


GOOD_HEADER = {"alg": "RS256", "kid": "k1"}
GOOD_CLAIMS = {"iss": "https://issuer.example/idb"}


def _refusal(token: Any) -> str:
    with pytest.raises(JWSVerificationError) as info:
        parse_token(token)
    return str(info.value)


# --------------------------------------------------------------------------- parse_token


def test_a_well_formed_token_parses_to_its_parts() -> None:
    token = _token(GOOD_HEADER, {**GOOD_CLAIMS, "sub": "x"})
    parsed = parse_token(f"  Bearer {token} ")
    assert parsed.token == token
    assert parsed.header == GOOD_HEADER
    assert parsed.claims == {**GOOD_CLAIMS, "sub": "x"}
    assert parsed.kid == "k1"
    assert parsed.issuer == "https://issuer.example/idb"


@pytest.mark.parametrize(
    ("token", "message"),
    [
        ("", "malformed: not a compact JWS"),
        ("   ", "malformed: not a compact JWS"),
        ("Bearer ", "malformed: a compact JWS has three segments"),
        ("a.b.c\u00e9", "malformed: not a compact JWS"),
        ("a.b", "malformed: a compact JWS has three segments"),
        ("a.b.c.d", "malformed: a compact JWS has three segments"),
        ("!.!.sig", "malformed: undecodable header or payload"),
        (f"{_segment(GOOD_HEADER)}.e30x.sig", "malformed: undecodable header or payload"),
        (_token([GOOD_HEADER], GOOD_CLAIMS), "malformed: header and payload must be JSON objects"),
        (_token(GOOD_HEADER, [GOOD_CLAIMS]), "malformed: header and payload must be JSON objects"),
        (
            _token({"kid": "k1"}, GOOD_CLAIMS),
            "alg_not_allowed: alg None is not allowed (RS256 only)",
        ),
        (
            _token({**GOOD_HEADER, "alg": "rs256"}, GOOD_CLAIMS),
            "alg_not_allowed: alg 'rs256' is not allowed (RS256 only)",
        ),
        (
            _token({**GOOD_HEADER, "crit": ["exp"]}, GOOD_CLAIMS),
            "malformed: critical header parameters are not supported",
        ),
        (
            _token({**GOOD_HEADER, "crit": []}, GOOD_CLAIMS),
            "malformed: critical header parameters are not supported",
        ),
        (_token(GOOD_HEADER, GOOD_CLAIMS, ""), "malformed: missing signature"),
        (_token({"alg": "RS256"}, GOOD_CLAIMS), "missing_kid: the header has no kid"),
        (_token({"alg": "RS256", "kid": ""}, GOOD_CLAIMS), "missing_kid: the header has no kid"),
        (_token({"alg": "RS256", "kid": 7}, GOOD_CLAIMS), "missing_kid: the header has no kid"),
        (_token(GOOD_HEADER, {}), "missing_claim:iss: the token has no issuer"),
        (_token(GOOD_HEADER, {"iss": ""}), "missing_claim:iss: the token has no issuer"),
        (_token(GOOD_HEADER, {"iss": ["x"]}), "missing_claim:iss: the token has no issuer"),
    ],
)
def test_each_refusal_of_the_parser(token: str, message: str) -> None:
    assert _refusal(token) == message


def test_crit_is_refused_even_for_an_otherwise_valid_signed_token() -> None:
    """``crit`` asks the verifier to understand extensions it does not know: refused."""
    header = _segment({"alg": "RS256", "kid": "k1", "crit": ["b64"], "b64": True})
    payload = _segment(GOOD_CLAIMS)
    signature = KEY.sign(f"{header}.{payload}".encode(), padding.PKCS1v15(), hashes.SHA256())
    token = f"{header}.{payload}.{b64url(signature)}"
    with pytest.raises(JWSVerificationError) as info:
        parse_token(token)
    assert info.value.reason == "malformed"


def test_the_length_bound_is_inclusive_and_counts_the_bare_token() -> None:
    base = _token(GOOD_HEADER, GOOD_CLAIMS, "")
    longest = base + "s" * (MAX_TOKEN_LENGTH - len(base))
    assert len(longest) == MAX_TOKEN_LENGTH
    assert parse_token(longest).token == longest
    assert parse_token("Bearer " + longest).token == longest  # the prefix does not count
    assert _refusal(longest + "s") == "malformed: not a compact JWS"


def test_non_string_tokens_are_malformed() -> None:
    for value in (None, b"a.b.c", 3):
        assert _refusal(value) == "malformed: the token must be a string"


def test_strip_bearer_edges() -> None:
    assert strip_bearer("bearer\tx") == "bearer\tx"  # only "Bearer " with a space is a prefix
    assert strip_bearer("Bearerx") == "Bearerx"
    assert strip_bearer("Bearer") == "Bearer"
    assert strip_bearer("bEaReR   abc  ") == "abc"
    assert strip_bearer("Bearer Bearer x") == "Bearer x"  # one prefix only


def test_error_repr_and_reason() -> None:
    err = JWSVerificationError("expired")
    assert str(err) == "expired"
    assert err.reason == "expired"
    assert isinstance(err, ValueError)
    text = "JWSVerificationError(reason='a', message='a: b')"
    assert repr(JWSVerificationError("a", "b")) == text


# --------------------------------------------------------------------------- issuers


def test_issuer_normalisation() -> None:
    assert normalize_issuer(" https://x/idb/ ") == "https://x/idb"
    assert normalize_issuer("https://x/idb//") == "https://x/idb"
    assert jwks_url_for("https://x/idb/") == "https://x/idb" + JWKS_PATH


def test_verifier_issuers_are_normalised_and_extended() -> None:
    config = BYOVAConfig(extra_issuers=("https://conf.example/idb/",))
    with JWSVerifier(
        config, issuers=["https://a.example/idb/"], extra_issuers=["https://b.example/idb/"]
    ) as verifier:
        assert verifier.issuers == (
            "https://a.example/idb",
            "https://conf.example/idb",
            "https://b.example/idb",
        )
        assert verifier.jwks_url("https://a.example/idb/") == "https://a.example/idb" + JWKS_PATH
        assert verifier.jwks_url("https://b.example/idb") == "https://b.example/idb" + JWKS_PATH
        assert verifier.jwks_fetches == 0
        assert verifier.cached_tokens == 0
        assert repr(verifier) == "JWSVerifier(issuers=3, cached_tokens=0)"


def test_an_issuer_shaped_region_url_is_trusted() -> None:
    config = BYOVAConfig(region="us", jwk_url_us="http://127.0.0.1:9/idb" + JWKS_PATH + "/")
    with JWSVerifier(config) as verifier:
        assert "http://127.0.0.1:9/idb" in verifier.issuers
        assert verifier.jwks_url("http://127.0.0.1:9/idb") == config.jwk_url


@pytest.mark.parametrize(
    "kwargs",
    [{"leeway": -1}, {"jwks_ttl": 0}, {"refetch_cooldown": -0.5}, {"token_cache_size": -1}],
)
def test_invalid_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError) as info:
        JWSVerifier(**kwargs)  # type: ignore[arg-type]
    assert str(info.value) == "leeway, refetch_cooldown, token_cache_size >= 0 and jwks_ttl > 0"


def test_zero_settings_that_are_allowed() -> None:
    with JWSVerifier(leeway=0, refetch_cooldown=0, token_cache_size=0) as verifier:
        assert verifier.leeway == 0.0
        assert verifier.refetch_cooldown == 0.0


# --------------------------------------------------------------------------- key entries


def _n_text(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _entry(kid: str, n: str, **extra: Any) -> dict[str, Any]:
    return {"kty": "RSA", "kid": kid, "n": n, "e": "AQAB", **extra}


def test_modulus_size_boundaries() -> None:
    """2048 and 8192 bits are accepted, one bit less/more refused (moduli need not be prime
    for the size policy, so they are built directly)."""
    doc = {
        "keys": [
            _entry("min", _n_text(2**2047 + 1)),
            _entry("under", _n_text(2**2046 + 1)),
            _entry("max", _n_text(2**8191 + 1)),
            _entry("over", _n_text(2**8192 + 1)),
        ]
    }
    result = read_jwks(doc)
    assert sorted(result.keys) == ["max", "min"]
    assert result.rejected == {"under": "weak_key", "over": "key_too_large"}


def test_modulus_text_length_bound() -> None:
    """A modulus text longer than an 8192-bit modulus can be is refused unread; leading zero
    characters below that bound are read as the number they encode."""
    small = _n_text(2**2047 + 1)  # 344 characters
    doc = {
        "keys": [
            _entry("padded-ok", "A" * (1368 - len(small)) + small),
            _entry("undecodable", "A" * (1369 - len(small)) + small),
            _entry("too-long", "A" * (1370 - len(small)) + small),
        ]
    }
    result = read_jwks(doc)
    assert sorted(result.keys) == ["padded-ok"]
    assert result.rejected == {"undecodable": "key_unusable", "too-long": "key_too_large"}


@pytest.mark.parametrize(
    ("extra", "reason"),
    [
        ({"kty": "EC"}, "key_not_allowed"),
        ({"kty": "rsa"}, "key_not_allowed"),
        ({"use": "enc"}, "key_not_allowed"),
        ({"use": None}, "key_not_allowed"),
        ({"alg": "RS384"}, "key_not_allowed"),
        ({"alg": "PS256"}, "key_not_allowed"),
        ({"n": 12345}, "key_unusable"),
        ({"n": ""}, "key_unusable"),
        ({"n": "AQAB="}, "key_unusable"),
        ({"n": "AQ+B"}, "key_unusable"),
        ({"n": "AQAB\n"}, "key_unusable"),
        ({"e": "AAAA"}, "key_unusable"),
        ({"e": 3}, "key_unusable"),
    ],
)
def test_each_refused_entry_has_its_reason(extra: dict[str, Any], reason: str) -> None:
    entry = {**public_jwk(KEY, "k"), **extra}
    assert read_jwks({"keys": [entry]}).rejected == {"k": reason}
    assert parse_jwks({"keys": [entry]}) == {}


def test_use_and_alg_are_optional_and_may_say_sig_rs256() -> None:
    doc = {
        "keys": [
            public_jwk(KEY, "bare"),
            public_jwk(KEY, "sig", use="sig"),
            public_jwk(KEY, "alg", alg="RS256"),
            public_jwk(KEY, "both", use="sig", alg="RS256"),
        ]
    }
    assert sorted(parse_jwks(doc)) == ["alg", "bare", "both", "sig"]


def test_only_public_members_of_an_entry_are_imported() -> None:
    """A key set that (wrongly) publishes private members, or carries other members, yields a
    public key with exactly the published public members."""
    numbers = KEY.private_numbers()
    private = {
        "d": b64url(numbers.d.to_bytes(256, "big")),
        "p": b64url(numbers.p.to_bytes(128, "big")),
        "q": b64url(numbers.q.to_bytes(128, "big")),
    }
    entry = public_jwk(KEY, "k", use="sig", alg="RS256", x5c="not a certificate", key_ops=7)
    key = parse_jwks({"keys": [{**entry, **private}]})["k"]
    assert not key.is_private
    assert key.as_dict(private=False) == {
        k: entry[k] for k in ("kty", "kid", "n", "e", "use", "alg")
    }


def test_entries_without_a_usable_kid_are_skipped_silently() -> None:
    good = public_jwk(KEY, "k")
    entries = [
        {k: v for k, v in good.items() if k != "kid"},
        {**good, "kid": ""},
        {**good, "kid": 5},
        "junk",
        ["list"],
        good,
    ]
    result = read_jwks({"keys": entries})
    assert sorted(result.keys) == ["k"]
    assert result.rejected == {}


def test_duplicate_kids() -> None:
    a = public_jwk(KEY, "dup")
    b = {**a, "use": "sig"}
    assert read_jwks({"keys": [a, a]}).rejected == {}
    assert sorted(read_jwks({"keys": [a, a]}).keys) == ["dup"]
    for entries in ([a, b], [b, a], [a, a, b], [a, b, a]):
        result = read_jwks({"keys": entries})
        assert result.keys == {}
        assert result.rejected == {"dup": "duplicate_kid"}
    weak = {**a, "n": _n_text(2**1023 + 1)}
    assert read_jwks({"keys": [weak, a]}).rejected == {"dup": "duplicate_kid"}
    assert read_jwks({"keys": [a, weak, public_jwk(KEY, "other")]}).keys.keys() == {"other"}


def test_only_the_first_entries_are_read(caplog: pytest.LogCaptureFixture) -> None:
    entry = public_jwk(KEY, "k")
    full = [{**entry, "kid": f"k{i}"} for i in range(MAX_JWKS_KEYS)]
    with caplog.at_level(logging.WARNING, logger="webex_byova.jws"):
        assert len(read_jwks({"keys": full}).keys) == MAX_JWKS_KEYS
    assert caplog.records == []
    with caplog.at_level(logging.WARNING, logger="webex_byova.jws"):
        result = read_jwks({"keys": [*full, {**entry, "kid": "late"}]})
    assert "late" not in result.keys
    assert len(result.keys) == MAX_JWKS_KEYS
    assert [r.getMessage() for r in caplog.records] == [
        f"the key set has {MAX_JWKS_KEYS + 1} entries; reading the first {MAX_JWKS_KEYS}"
    ]


def test_a_refused_entry_is_logged_with_a_bounded_kid(caplog: pytest.LogCaptureFixture) -> None:
    kid = "x" * 100
    with caplog.at_level(logging.WARNING, logger="webex_byova.jws"):
        read_jwks({"keys": [{**public_jwk(KEY, kid), "use": "enc"}]})
    assert [r.getMessage() for r in caplog.records] == [
        f"refusing JWK kid={'x' * 64!r}: key_not_allowed"
    ]


@pytest.mark.parametrize("body", [b'{"keys": []}', '{"keys": []}', {"keys": []}])
def test_a_key_set_may_be_text_bytes_or_a_mapping(body: Any) -> None:
    result = read_jwks(body)
    assert result.keys == {}
    assert result.rejected == {}


@pytest.mark.parametrize("body", [[], {}, {"keys": {}}, {"keys": "x"}, "null", b"[1]"])
def test_not_a_key_set(body: Any) -> None:
    with pytest.raises(ValueError) as info:
        read_jwks(body)
    assert str(info.value) == "a JWKS is an object with a 'keys' list"


# --------------------------------------------------------------------------- fetch outcomes


@pytest.fixture
def server() -> Iterator[KeyServer]:
    with KeyServer() as srv:
        yield srv


async def _no_sleep(_: float) -> None:
    return None


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(
        BYOVAConfig(timeout=10.0),
        retry_policy=JWKS_RETRY_POLICY,
        sleep=lambda _: None,
        asleep=_no_sleep,
    )
    yield client
    await client.aclose()


PATH = "/idb" + JWKS_PATH


async def _fetch(http: HttpClient, url: str, mode: str) -> Any:
    spec = build_request(http.config, "GET", url)
    if mode == "sync":
        return await asyncio.to_thread(run_sync, jwks_fetch_flow(spec), http)
    return await run_async(jwks_fetch_flow(spec), http)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (500, FetchFailed(True, "ServerError: status=500")),
        (503, FetchFailed(True, "ServerError: status=503")),
        (429, FetchFailed(True, "RateLimitError: status=429")),
        (404, FetchFailed(False, "NotFoundError: status=404")),
        (401, FetchFailed(False, "AuthenticationError: status=401")),
        (400, FetchFailed(False, "ValidationError: status=400")),
        (302, FetchFailed(False, "unexpected status 302")),
    ],
)
async def test_fetch_failures_and_whether_they_are_transient(
    server: KeyServer, http: HttpClient, mode: str, status: int, outcome: FetchFailed
) -> None:
    server.routes[PATH] = {"keys": []}
    server.statuses[PATH] = status
    assert await _fetch(http, server.url + PATH, mode) == outcome


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_fetch_outcomes_of_bodies(server: KeyServer, http: HttpClient, mode: str) -> None:
    entry = public_jwk(KEY, "k")
    server.routes[PATH] = {"keys": [entry, {**entry, "kid": "w", "n": _n_text(2**1023 + 1)}]}
    ok = await _fetch(http, server.url + PATH, mode)
    assert isinstance(ok, FetchOk)
    assert sorted(ok.keys) == ["k"]
    assert ok.rejected == {"w": "weak_key"}
    server.routes[PATH] = b"not json"
    assert await _fetch(http, server.url + PATH, mode) == FetchFailed(
        False, "invalid key set: Expecting value: line 1 column 1 (char 0)"
    )
    server.routes[PATH] = {"keys": 1}
    assert await _fetch(http, server.url + PATH, mode) == FetchFailed(
        False, "invalid key set: a JWKS is an object with a 'keys' list"
    )


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_unreachable_or_closed_is_transient(http: HttpClient, mode: str) -> None:
    with KeyServer() as gone:
        url = gone.url + PATH
    outcome = await _fetch(http, url, mode)
    assert outcome == FetchFailed(True, "APIConnectionError: status=None")
    await http.aclose()
    http.close()
    assert await _fetch(http, url, mode) == FetchFailed(True, "unexpected RuntimeError")


# --------------------------------------------------------------------------- verification


def _signed(kid: str = "k1", issuer: str = "", now: float = NOW) -> str:
    return sign_rs256(KEY, kid, issuer, now)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_stale_keys_survive_transient_failures_only(
    server: KeyServer, http: HttpClient, mode: str
) -> None:
    """503 keeps the stale key usable, 404 does not; each kind counts one fetch attempt."""
    issuer = server.url + "/idb"
    clock = [NOW]
    server.routes[PATH] = {"keys": [public_jwk(KEY, "k1")]}

    async def verify(verifier: JWSVerifier, token: str) -> dict[str, Any]:
        if mode == "sync":
            return await asyncio.to_thread(verifier.verify, token)
        return await verifier.averify(token)

    with JWSVerifier(
        issuers=[issuer], http=http, expected_url=DS_URL, clock=lambda: clock[0], jwks_ttl=100
    ) as verifier:
        assert (await verify(verifier, _signed(issuer=issuer)))["iss"] == issuer
        clock[0] += 101
        server.statuses[PATH] = 503
        assert (await verify(verifier, _signed(issuer=issuer, now=clock[0])))["iss"] == issuer
        assert server.hits[PATH] == 3  # one retry of the 503
        clock[0] += 31
        server.statuses[PATH] = 404
        with pytest.raises(JWSVerificationError) as info:
            await verify(verifier, _signed(issuer=issuer, now=clock[0]))
        assert info.value.reason == "jwks_unavailable"
        assert server.hits[PATH] == 4
        assert verifier.jwks_fetches == 3


# --------------------------------------------------------------------------- key-cache plan


def _key() -> Any:
    return parse_jwks({"keys": [public_jwk(KEY, "a")]})["a"]


def test_plan_edges() -> None:
    entry = IssuerKeys("u")
    key = _key()
    entry.apply(FetchOk({"a": key}, {"weak": "weak_key"}), 100.0)
    assert (entry.generation, entry.fetches, entry.attempted_at, entry.fetched_at) == (
        1,
        1,
        100.0,
        100.0,
    )
    assert entry.plan("a", 100.0 + 50 - 0.001, ttl=50, cooldown=10) is Plan.USE
    assert entry.plan("a", 150.0, ttl=50, cooldown=10) is Plan.FETCH  # ttl boundary: stale
    assert entry.plan("a", 150.0, ttl=50, cooldown=60) is Plan.USE  # cooling: stale is used
    with pytest.raises(JWSVerificationError) as info:
        entry.plan("weak", 109.999, ttl=50, cooldown=10)
    assert str(info.value) == "weak_key: the issuer's key with this kid is refused"
    with pytest.raises(JWSVerificationError) as info:
        entry.plan("b", 100.0, ttl=50, cooldown=10)
    assert str(info.value) == "unknown_kid: no key with this kid"
    assert entry.plan("b", 110.0, ttl=50, cooldown=10) is Plan.FETCH  # cooldown boundary
    assert entry.key_after_fetch("a") is key
    with pytest.raises(JWSVerificationError, match="^weak_key"):
        entry.key_after_fetch("weak")


def test_plan_after_failures() -> None:
    cold = IssuerKeys("u")
    assert cold.plan("a", 0.0, ttl=50, cooldown=10) is Plan.FETCH
    cold.apply(FetchFailed(True, "503"), 0.0)
    assert (cold.fetched_at, cold.broken, cold.last_failed) == (None, False, True)
    with pytest.raises(JWSVerificationError) as info:
        cold.plan("a", 5.0, ttl=50, cooldown=10)
    assert str(info.value) == "jwks_unavailable: the key set could not be fetched"
    with pytest.raises(JWSVerificationError) as info:
        cold.key_after_fetch("a")
    assert str(info.value) == "jwks_unavailable: the key set could not be fetched"
    assert cold.plan("a", 10.0, ttl=50, cooldown=10) is Plan.FETCH

    entry = IssuerKeys("u")
    key = _key()
    entry.apply(FetchOk({"a": key}), 0.0)
    entry.apply(FetchFailed(False, "404"), 100.0)
    assert (entry.broken, entry.last_failed, entry.fetched_at) == (True, True, 0.0)
    with pytest.raises(JWSVerificationError) as info:
        entry.plan("a", 105.0, ttl=50, cooldown=10)
    assert str(info.value) == "jwks_unavailable: the key set could not be fetched"
    with pytest.raises(JWSVerificationError, match="^jwks_unavailable"):
        entry.key_after_fetch("a")
    assert entry.plan("a", 110.0, ttl=50, cooldown=10) is Plan.FETCH  # broken: never USE
    assert entry.plan("a", 110.0, ttl=1000, cooldown=10) is Plan.FETCH
    entry.apply(FetchOk({"a": key}), 120.0)
    assert (entry.broken, entry.last_failed) == (False, False)
    assert entry.plan("a", 120.0, ttl=50, cooldown=10) is Plan.USE
    entry.apply(FetchFailed(True, "503"), 200.0)
    assert (entry.broken, entry.last_failed, entry.fetched_at) == (False, True, 120.0)
    assert entry.key_after_fetch("a") is key
    with pytest.raises(JWSVerificationError, match="^jwks_unavailable"):
        entry.key_after_fetch("b")
    assert entry.fetches == 4
    assert entry.generation == 4


# --------------------------------------------------------------------------- event loops


def _run_in_thread(coro_factory: Any, results: dict[str, Any], name: str) -> threading.Thread:
    def run() -> None:
        try:
            results[name] = asyncio.run(coro_factory())
        except Exception as exc:  # reported through results
            results[name] = exc

    thread = threading.Thread(target=run, name=name)
    thread.start()
    return thread


def _arrived_or_done(server: KeyServer, thread: threading.Thread) -> bool:
    """Wait for the next request at ``server`` (True) or for ``thread`` to end (False)."""
    for _ in range(1000):
        if server.arrived.acquire(timeout=0.01):
            return True
        if not thread.is_alive():
            return server.arrived.acquire(blocking=False)
    return False


def test_verifications_on_two_event_loops_each_fetch_on_their_own_loop(
    server: KeyServer,
) -> None:
    """A fetch in flight on one loop cannot be awaited from another: the second loop fetches
    too, and both verifications succeed."""
    issuer = server.url + "/idb"
    server.routes[PATH] = {"keys": [public_jwk(KEY, "k1")]}
    server.hold = threading.Event()
    token = _signed(issuer=issuer)
    results: dict[str, Any] = {}
    with JWSVerifier(issuers=[issuer], expected_url=DS_URL, clock=lambda: NOW) as verifier:
        first = _run_in_thread(lambda: verifier.averify(token), results, "first")
        try:
            assert _arrived_or_done(server, first)
            second = _run_in_thread(lambda: verifier.averify(token), results, "second")
            arrived = _arrived_or_done(server, second)
        finally:
            server.hold.set()
            first.join(timeout=10)
        second.join(timeout=10)
        assert arrived
        assert {name: claims["iss"] for name, claims in results.items()} == {
            "first": issuer,
            "second": issuer,
        }
    assert server.hits[PATH] == 2


def test_a_finished_event_loop_is_not_kept_alive(server: KeyServer) -> None:
    """After an async verification on a loop that then ends, the verifier holds no reference
    to that loop (nor to its finished fetch task)."""
    issuer = server.url + "/idb"
    server.routes[PATH] = {"keys": [public_jwk(KEY, "k1")]}
    verifier = JWSVerifier(issuers=[issuer], expected_url=DS_URL, clock=lambda: NOW)
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def verify_once() -> dict[str, Any]:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        try:
            return await verifier.averify(_signed(issuer=issuer))
        finally:
            await verifier.aclose()

    assert asyncio.run(verify_once())["iss"] == issuer
    gc.collect()
    assert loops[0]() is None


def test_a_bad_signature_names_the_failure_without_the_token() -> None:
    token = _signed(issuer="https://issuer.example/idb")
    head, payload, signature = token.split(".")
    other = b64url(KEY.sign(b"something else", padding.PKCS1v15(), hashes.SHA256()))
    assert other != signature
    with pytest.raises(JWSVerificationError) as info:
        verify_signature(parse_token(f"{head}.{payload}.{other}"), _key())
    assert str(info.value) == "bad_signature: signature verification failed (BadSignatureError)"
    verify_signature(parse_token(token), _key())  # the untouched token verifies


def test_a_failed_fetch_is_logged_with_the_url_and_cause(
    server: KeyServer, caplog: pytest.LogCaptureFixture
) -> None:
    issuer = server.url + "/idb"
    with (
        JWSVerifier(issuers=[issuer], expected_url=DS_URL, clock=lambda: NOW) as verifier,
        caplog.at_level(logging.WARNING, logger="webex_byova.jws"),
        pytest.raises(JWSVerificationError, match="^jwks_unavailable"),
    ):
        verifier.verify(_signed(issuer=issuer))
    assert [r.getMessage() for r in caplog.records] == [
        f"JWKS fetch from {issuer}{JWKS_PATH} failed: NotFoundError: status=404"
    ]


@pytest.fixture
def loopback(server: KeyServer) -> Iterator[tuple[JWSVerifier, str, list[float]]]:
    """A verifier trusting the loopback issuer (keys: ``KEY`` as ``k1``), its issuer and its
    settable clock."""
    issuer = server.url + "/idb"
    server.routes[PATH] = {"keys": [public_jwk(KEY, "k1")]}
    clock = [NOW]
    with JWSVerifier(
        issuers=[issuer], expected_url=DS_URL, clock=lambda: clock[0], leeway=30
    ) as verifier:
        yield verifier, issuer, clock


def _reason_of(verifier: JWSVerifier, token: str, **overrides: Any) -> str:
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(token, **overrides)
    return str(info.value)


def test_per_call_expectations_replace_the_defaults(
    loopback: tuple[JWSVerifier, str, list[float]],
) -> None:
    verifier, issuer, _ = loopback
    token = _signed(issuer=issuer)
    assert verifier.verify(token)["aud"] == "byova-test"
    assert verifier.verify(token, expected_audience="byova-test")["aud"] == "byova-test"
    assert _reason_of(verifier, token, expected_audience="other") == (
        "claim_mismatch:aud: audience does not match"
    )
    assert _reason_of(verifier, token, expected_url=DS_URL + "/") == (
        "claim_mismatch:url: data-source url does not match"
    )
    assert verifier.verify(token, expected_url=None)["iss"] == issuer
    loose = f"  {verifier.verify(token)['com.cisco.datasource.schema.uuid'].upper()} "
    assert verifier.verify(token, expected_schema_id=loose)["iss"] == issuer
    assert _reason_of(verifier, token, expected_schema_id="other-schema") == (
        "claim_mismatch:schema: schema id does not match"
    )
    assert _reason_of(verifier, token, expected_org_id="0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10") == (
        "missing_claim:com.cisco.org.uuid: no org claim"
    )
    assert verifier.verify(token, expected_org_id=None)["iss"] == issuer
    with pytest.raises(ValueError, match="^invalid expected_org_id: "):
        verifier.verify(token, expected_org_id="not an org")


def test_a_cached_token_expires_at_exp_plus_leeway(
    loopback: tuple[JWSVerifier, str, list[float]],
) -> None:
    verifier, issuer, clock = loopback
    token = _signed(issuer=issuer)
    exp = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))["exp"]
    assert verifier.verify(token)["exp"] == exp
    clock[0] = exp + 30 - 0.001
    assert verifier.verify(token)["exp"] == exp  # from the cache
    assert verifier.cached_tokens == 1
    clock[0] = exp + 30
    assert _reason_of(verifier, token) == "expired: the token has expired"
    assert verifier.cached_tokens == 0


def test_an_untrusted_issuer_is_named_in_the_refusal(
    loopback: tuple[JWSVerifier, str, list[float]],
) -> None:
    verifier, issuer, _ = loopback
    assert _reason_of(verifier, _signed(issuer=issuer + "x")) == (
        "issuer_not_allowed: the issuer is not trusted"
    )
    assert verifier.verify(_signed(issuer=issuer + "/"))["iss"] == issuer + "/"


# --------------------------------------------------------------------------- construction


def test_documented_defaults() -> None:
    with JWSVerifier() as verifier:
        assert (verifier.leeway, verifier.jwks_ttl, verifier.refetch_cooldown) == (
            30.0,
            3600.0,
            30.0,
        )


def test_a_sub_second_key_ttl_is_allowed() -> None:
    with JWSVerifier(jwks_ttl=0.5) as verifier:
        assert verifier.jwks_ttl == 0.5


def test_expectations_build_normalises() -> None:
    built = Expectations.build(url="u", schema_id="  ABC ", audience="a", org_id=None)
    assert built == Expectations(url="u", schema_id="abc", audience="a", org_id=None)
    assert Expectations.build(url=None, schema_id=None, audience=None, org_id=None) == (
        Expectations(url=None, schema_id=None, audience=None, org_id=None)
    )


def test_issuer_normalisation_strips_only_slashes() -> None:
    assert normalize_issuer("https://x/IDX/") == "https://x/IDX"
    assert normalize_issuer("https://x/idb/X") == "https://x/idb/X"


def test_region_url_shapes() -> None:
    base = "http://127.0.0.1:9/idb"
    doubled = BYOVAConfig(jwk_url_us=base + JWKS_PATH + "//")
    with JWSVerifier(doubled) as verifier:
        assert base in verifier.issuers
        assert base + "/o" not in verifier.issuers
    tail = BYOVAConfig(jwk_url_us=base + JWKS_PATH + "X")
    with JWSVerifier(tail) as verifier:
        assert base not in verifier.issuers


def test_the_private_client_uses_the_config_and_the_jwks_retry_policy(
    server: KeyServer,
) -> None:
    """One retry of a 503 (the JWKS policy, not the REST one), with the configured
    ``User-Agent``; the failure then fails closed."""
    issuer = server.url + "/idb"
    server.routes[PATH] = {"keys": []}
    server.statuses[PATH] = 503
    config = BYOVAConfig(user_agent="jws-probe/1")
    verifier = JWSVerifier(config, issuers=[issuer], expected_url=DS_URL, clock=lambda: NOW)
    with verifier, pytest.raises(JWSVerificationError, match="^jwks_unavailable"):
        verifier.verify(_signed(issuer=issuer))
    assert server.hits == {PATH: 2}
    assert server.user_agents == ["jws-probe/1", "jws-probe/1"]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_closing_closes_only_the_private_client(
    server: KeyServer, http: HttpClient, mode: str
) -> None:
    issuer = server.url + "/idb"
    server.routes[PATH] = {"keys": [public_jwk(KEY, "k1")]}
    own = JWSVerifier(issuers=[issuer], expected_url=DS_URL, clock=lambda: NOW)
    shared = JWSVerifier(issuers=[issuer], expected_url=DS_URL, clock=lambda: NOW, http=http)
    if mode == "sync":
        own.close()
        shared.close()
    else:
        await own.aclose()
        await shared.aclose()
    with pytest.raises(JWSVerificationError, match="^jwks_unavailable"):
        await own.averify(_signed(issuer=issuer))
    assert server.hits == {}
    assert (await shared.averify(_signed(issuer=issuer)))["iss"] == issuer
    assert server.hits == {PATH: 1}
