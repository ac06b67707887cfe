"""Verification of the JWS tokens Webex presents to a BYODS data source.

Webex signs a data-source token with RS256 (see ``docs`` and the REST spec, section 5) and
sends it as the gRPC ``authorization`` metadata (raw or ``Bearer <token>``).
:class:`JWSVerifier` checks it the safe way:

1. the unverified header/payload are read only to learn ``alg``, ``kid`` and ``iss``;
2. ``alg`` must be ``RS256`` (pinned out of band; ``none``/``HS256``/... are refused) and
   ``kid`` must be present;
3. ``iss`` must be in the issuer allow-list **before** any key is fetched (SSRF guard);
4. the issuer's key set (``<iss>/oauth2/v2/keys/verificationjwk``, or the configured
   ``jwk_url_us``/``jwk_url_eu`` for the US/EU Webex issuers) comes from a per-issuer
   cache with a TTL; only RSA signing keys of 2048 to 8192 bits are used, and a token whose
   ``kid`` names a refused key gets that key's reason (``weak_key``, ...). An unknown
   ``kid`` triggers one refetch (at most one per ``refetch_cooldown`` seconds per issuer);
   stale keys are served while the key endpoint rate-limits or fails; concurrent
   verifications share one in-flight fetch;
5. the signature is verified with joserfc, then the claims (``exp``/``nbf``/``iat`` with
   leeway, non-empty ``aud``/``sub``/``jti``, the data-source URL character for character,
   the schema id, the audience and the org).

Verified tokens are cached (bounded LRU keyed by the token and the expectations) until they
expire, so a repeated token costs one dictionary lookup.

Every failure raises :class:`JWSVerificationError` (a :class:`ValueError`) with a
machine-readable :attr:`~JWSVerificationError.reason`.

The decisions (parsing, key-cache planning, claim checks) are plain functions/methods without
I/O; the key fetch is one flow (:func:`jwks_fetch_flow`) run by the sync or async driver.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import math
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Final

from joserfc import jws as _jose_jws
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

from ._flow import Flow, Http, run_async, run_sync
from ._http import HttpClient, RequestSpec, RetryPolicy, build_request
from ._ids import org_uuid
from ._logging import get_logger
from .config import BYOVAConfig
from .errors import (
    APIConnectionError,
    RateLimitError,
    ServerError,
    WebexBYOVAError,
)

__all__ = [
    "BYOVA_SCHEMA_ID",
    "JWKS_PATH",
    "JWKS_RETRY_POLICY",
    "MAX_RSA_BITS",
    "MIN_RSA_BITS",
    "REGION_ISSUERS",
    "WEBEX_ISSUERS",
    "Expectations",
    "FetchFailed",
    "FetchOk",
    "IssuerKeys",
    "JWSVerificationError",
    "JWSVerifier",
    "KeySet",
    "ParsedToken",
    "Plan",
    "check_claims",
    "jwks_fetch_flow",
    "jwks_url_for",
    "parse_jwks",
    "parse_token",
    "read_jwks",
    "strip_bearer",
]

log = get_logger("webex_byova.jws")

#: The Webex identity-broker issuers (production US/EU/B-US/CA and integration US/EU).
WEBEX_ISSUERS: Final[tuple[str, ...]] = (
    "https://idbroker.webex.com/idb",
    "https://idbroker-eu.webex.com/idb",
    "https://idbroker-b-us.webex.com/idb",
    "https://idbroker-ca.webex.com/idb",
    "https://idbrokerbts.webex.com/idb",
    "https://idbrokerbts-eu.webex.com/idb",
)
#: The issuer whose keys ``BYOVAConfig.jwk_url_<region>`` serves, per region.
REGION_ISSUERS: Final[Mapping[str, str]] = {
    "us": "https://idbroker.webex.com/idb",
    "eu": "https://idbroker-eu.webex.com/idb",
}
#: Appended to an issuer to get its key set URL.
JWKS_PATH: Final = "/oauth2/v2/keys/verificationjwk"
#: The BYOVA data-source schema (``com.cisco.datasource.schema.uuid``).
BYOVA_SCHEMA_ID: Final = "5397013b-7920-4ffc-807c-e8a3e0a18f43"
#: Retry policy for key fetches: one quick retry, short waits, so stale keys are served soon
#: when the key endpoint rate-limits or fails (a long ``Retry-After`` fails fast).
JWKS_RETRY_POLICY: Final = RetryPolicy(
    max_retries=1, deadline=5.0, backoff_base=0.2, backoff_max=1.0, rate_limit_default=1.0
)
#: Timeout for one key-set request.
JWKS_TIMEOUT: Final = 10.0
#: The only signature algorithm accepted.
ALGORITHM: Final = "RS256"
#: Longer "tokens" are refused before any parsing.
MAX_TOKEN_LENGTH: Final = 16_384

CLAIM_URL: Final = "com.cisco.datasource.url"
CLAIM_SCHEMA: Final = "com.cisco.datasource.schema.uuid"
CLAIM_ORG: Final = "com.cisco.org.uuid"


class JWSVerificationError(ValueError):
    """A token failed verification.

    Attributes:
        reason: Machine-readable cause, one of ``malformed``, ``alg_not_allowed``,
            ``missing_kid``, ``issuer_not_allowed``, ``unknown_kid``, ``bad_signature``,
            ``expired``, ``not_yet_valid``, ``missing_claim:<claim>``,
            ``invalid_claim:<claim>``, ``claim_mismatch:url|schema|aud|org``,
            ``jwks_unavailable``, or, when the issuer publishes the token's ``kid`` but the
            key is refused (see :class:`KeySet`): ``weak_key`` (RSA under 2048 bits),
            ``key_too_large``, ``key_not_allowed``, ``key_unusable``, ``duplicate_kid``.
    """

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(f"{reason}: {message}" if message else reason)
        self.reason = reason

    def __repr__(self) -> str:
        return f"JWSVerificationError(reason={self.reason!r}, message={str(self)!r})"


# --------------------------------------------------------------------------- sans-IO: tokens


def strip_bearer(token: str) -> str:
    """Return the token without a leading ``Bearer `` (any case) and surrounding blanks."""
    if not isinstance(token, str):
        raise JWSVerificationError("malformed", "the token must be a string")
    text = token.strip()
    if text[:7].lower() == "bearer ":
        text = text[7:].strip()
    return text


def _b64decode(segment: str) -> bytes:
    if not segment:
        return b""
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


@dataclass(frozen=True)
class ParsedToken:
    """A compact JWS split and decoded, **not** verified."""

    token: str
    header: dict[str, Any]
    claims: dict[str, Any]

    @property
    def kid(self) -> str:
        """The header ``kid``."""
        return str(self.header["kid"])

    @property
    def issuer(self) -> str:
        """The ``iss`` claim."""
        return str(self.claims["iss"])


def parse_token(token: str) -> ParsedToken:
    """Split and decode a compact JWS without verifying it; check ``alg``, ``kid``, ``iss``.

    Raises:
        JWSVerificationError: ``malformed``, ``alg_not_allowed``, ``missing_kid`` or
            ``missing_claim:iss``.
    """
    text = strip_bearer(token)
    if not text or len(text) > MAX_TOKEN_LENGTH or not text.isascii():
        raise JWSVerificationError("malformed", "not a compact JWS")
    parts = text.split(".")
    if len(parts) != 3:
        raise JWSVerificationError("malformed", "a compact JWS has three segments")
    try:
        header = json.loads(_b64decode(parts[0]))
        claims = json.loads(_b64decode(parts[1]))
    except (binascii.Error, ValueError, RecursionError):  # RecursionError: absurd nesting
        raise JWSVerificationError("malformed", "undecodable header or payload") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise JWSVerificationError("malformed", "header and payload must be JSON objects")
    alg = header.get("alg")
    if alg != ALGORITHM:
        raise JWSVerificationError("alg_not_allowed", f"alg {alg!r} is not allowed (RS256 only)")
    if "crit" in header:
        raise JWSVerificationError("malformed", "critical header parameters are not supported")
    if not parts[2]:
        raise JWSVerificationError("malformed", "missing signature")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise JWSVerificationError("missing_kid", "the header has no kid")
    iss = claims.get("iss")
    if not isinstance(iss, str) or not iss:
        raise JWSVerificationError("missing_claim:iss", "the token has no issuer")
    return ParsedToken(text, header, claims)


def normalize_issuer(issuer: str) -> str:
    """Issuers compare without a trailing slash."""
    return issuer.strip().rstrip("/")


def jwks_url_for(issuer: str) -> str:
    """The key-set URL of an issuer: ``<iss>/oauth2/v2/keys/verificationjwk``."""
    return normalize_issuer(issuer) + JWKS_PATH


#: RSA moduli shorter than this are refused (``weak_key``): 1024-bit keys are factorable.
MIN_RSA_BITS: Final = 2048
#: RSA moduli longer than this are refused (``key_too_large``): each verification with a huge
#: modulus costs a lot of CPU, and no issuer needs more.
MAX_RSA_BITS: Final = 8192
#: Key-set entries beyond this many are ignored (a hostile key set cannot cost unbounded work).
MAX_JWKS_KEYS: Final = 64


@dataclass(frozen=True)
class KeySet:
    """A parsed JWKS: the usable keys by ``kid``, and why each other ``kid`` was refused.

    ``rejected`` maps a ``kid`` to a :class:`JWSVerificationError` reason: ``weak_key``,
    ``key_too_large``, ``key_not_allowed`` (not RSA, not for signatures, another ``alg``),
    ``key_unusable`` (does not import, e.g. a bad exponent) or ``duplicate_kid`` (two
    different keys share the ``kid``, so neither is trusted).
    """

    keys: dict[str, RSAKey] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)


_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")


def _jwk_problem(item: Mapping[str, Any]) -> str | None:
    """Why a key-set entry cannot verify RS256 tokens (a reason), or ``None``."""
    if item.get("kty") != "RSA":
        return "key_not_allowed"
    if item.get("use", "sig") != "sig" or item.get("alg", ALGORITHM) != ALGORITHM:
        return "key_not_allowed"
    n = item.get("n")
    if not isinstance(n, str) or not _BASE64URL.fullmatch(n):
        return "key_unusable"
    if len(n) > MAX_RSA_BITS // 6 + 4:  # longer text cannot be a MAX_RSA_BITS modulus
        return "key_too_large"
    try:
        bits = int.from_bytes(_b64decode(n), "big").bit_length()
    except (binascii.Error, ValueError):
        return "key_unusable"
    if bits < MIN_RSA_BITS:
        return "weak_key"
    if bits > MAX_RSA_BITS:
        return "key_too_large"
    return None


def read_jwks(body: Any) -> KeySet:
    """Parse a JWKS document into usable RS256 verification keys and refused ``kid`` values.

    An entry is usable when it is an RSA signing key for RS256 (``use``/``alg`` absent or
    ``sig``/``RS256``) with a ``kid`` and a modulus of :data:`MIN_RSA_BITS` to
    :data:`MAX_RSA_BITS` bits that imports. Entries without a ``kid`` cannot be selected by
    any token and are skipped; only the first :data:`MAX_JWKS_KEYS` entries are read.

    Raises:
        ValueError: The document is not a ``{"keys": [...]}`` object.
    """
    if isinstance(body, bytes | str):
        body = json.loads(body)
    if not isinstance(body, Mapping) or not isinstance(body.get("keys"), list):
        raise ValueError("a JWKS is an object with a 'keys' list")
    entries = body["keys"]
    if len(entries) > MAX_JWKS_KEYS:
        log.warning("the key set has %d entries; reading the first %d", len(entries), MAX_JWKS_KEYS)
    seen: dict[str, Mapping[str, Any]] = {}
    result = KeySet()
    for item in entries[:MAX_JWKS_KEYS]:
        if not isinstance(item, Mapping):
            continue
        kid = item.get("kid")
        if not isinstance(kid, str) or not kid:
            continue
        if kid in seen:
            if seen[kid] != item:
                result.keys.pop(kid, None)
                result.rejected[kid] = "duplicate_kid"
            continue
        seen[kid] = item
        problem = _jwk_problem(item)
        if problem is None:
            public = {k: v for k, v in item.items() if k in ("kty", "kid", "n", "e", "use", "alg")}
            try:
                result.keys[kid] = RSAKey.import_key(public)
            except (JoseError, ValueError, TypeError):
                problem = "key_unusable"
        if problem is not None:
            result.rejected[kid] = problem
            log.warning("refusing JWK kid=%r: %s", kid[:64], problem)
    return result


def parse_jwks(body: Any) -> dict[str, RSAKey]:
    """The usable RS256 verification keys of a JWKS document, by ``kid`` (see
    :func:`read_jwks`, which also says why the other entries were refused).

    Raises:
        ValueError: The document is not a ``{"keys": [...]}`` object.
    """
    return read_jwks(body).keys


class _Unset(enum.Enum):
    UNSET = enum.auto()


UNSET: Final = _Unset.UNSET


@dataclass(frozen=True)
class Expectations:
    """Expected claim values; ``None`` skips a comparison."""

    url: str | None = None
    schema_id: str | None = BYOVA_SCHEMA_ID
    audience: str | None = None
    org_id: str | None = None  # normalised bare UUID

    @classmethod
    def build(
        cls,
        *,
        url: str | None,
        schema_id: str | None,
        audience: str | None,
        org_id: str | None,
    ) -> Expectations:
        """Validate and normalise (org ids may be given as UUID or Hydra id)."""
        return cls(
            url=url,
            schema_id=schema_id.strip().lower() if schema_id is not None else None,
            audience=audience,
            org_id=org_uuid(org_id) if org_id is not None else None,
        )


def _is_number(value: Any) -> bool:
    # NaN/inf would defeat the time checks (every comparison with NaN is False).
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _nonempty(claims: Mapping[str, Any], name: str) -> None:
    value = claims.get(name)
    if isinstance(value, str) and value.strip():
        return
    if (
        name == "aud"
        and isinstance(value, list)
        and value
        and all(isinstance(v, str) and v.strip() for v in value)
    ):
        return
    raise JWSVerificationError(f"missing_claim:{name}", f"claim {name!r} is missing or empty")


def check_claims(
    claims: Mapping[str, Any], expect: Expectations, *, now: float, leeway: float
) -> float:
    """Check registered and Webex claims of a verified payload; return ``exp``.

    Raises:
        JWSVerificationError: with the reason of the first failed check.
    """
    exp = claims.get("exp")
    if exp is None:
        raise JWSVerificationError("missing_claim:exp", "the token has no exp")
    if not _is_number(exp):
        raise JWSVerificationError("invalid_claim:exp", "exp must be a number")
    if now >= exp + leeway:
        raise JWSVerificationError("expired", "the token has expired")
    for name in ("nbf", "iat"):
        value = claims.get(name)
        if value is None:
            continue
        if not _is_number(value):
            raise JWSVerificationError(f"invalid_claim:{name}", f"{name} must be a number")
        if value > now + leeway:
            raise JWSVerificationError("not_yet_valid", f"the token is not valid yet ({name})")
    for name in ("aud", "sub", "jti"):
        _nonempty(claims, name)
    if expect.url is not None:
        url = claims.get(CLAIM_URL)
        if url is None:
            raise JWSVerificationError(f"missing_claim:{CLAIM_URL}", "no data-source url claim")
        if url != expect.url:  # character for character: https://h != https://h:443
            raise JWSVerificationError("claim_mismatch:url", "data-source url does not match")
    if expect.schema_id is not None:
        schema = claims.get(CLAIM_SCHEMA)
        if schema is None:
            raise JWSVerificationError(f"missing_claim:{CLAIM_SCHEMA}", "no schema claim")
        if not isinstance(schema, str) or schema.strip().lower() != expect.schema_id:
            raise JWSVerificationError("claim_mismatch:schema", "schema id does not match")
    if expect.audience is not None:
        aud = claims["aud"]
        if not (aud == expect.audience or (isinstance(aud, list) and expect.audience in aud)):
            raise JWSVerificationError("claim_mismatch:aud", "audience does not match")
    if expect.org_id is not None:
        org = claims.get(CLAIM_ORG)
        if org is None:
            raise JWSVerificationError(f"missing_claim:{CLAIM_ORG}", "no org claim")
        try:
            matches = isinstance(org, str) and org_uuid(org) == expect.org_id
        except ValueError:
            matches = False
        if not matches:
            raise JWSVerificationError("claim_mismatch:org", "org does not match")
    return float(exp)


def verify_signature(parsed: ParsedToken, key: RSAKey) -> None:
    """Verify the RS256 signature of ``parsed`` with ``key`` (algorithm pinned)."""
    try:
        _jose_jws.deserialize_compact(parsed.token, key, algorithms=[ALGORITHM])
    except (JoseError, ValueError, TypeError) as exc:
        raise JWSVerificationError(
            "bad_signature", f"signature verification failed ({type(exc).__name__})"
        ) from None


# --------------------------------------------------------------------------- sans-IO: key cache


@dataclass(frozen=True)
class FetchOk:
    """A key set was fetched (``rejected``: refused ``kid`` values and why)."""

    keys: dict[str, RSAKey]
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class FetchFailed:
    """The key fetch failed; ``transient`` failures (429/5xx/network) keep stale keys usable."""

    transient: bool
    detail: str


FetchOutcome = FetchOk | FetchFailed

_TRANSIENT = (RateLimitError, ServerError, APIConnectionError)


def jwks_fetch_flow(spec: RequestSpec) -> Flow[FetchOutcome]:
    """GET one key set and parse it; failures become a :class:`FetchFailed` value.

    An error the HTTP layer does not type (a broken transport, a closed client) is a failed
    fetch too, treated like a network failure: verification then fails closed with
    ``jwks_unavailable`` and the refetch cooldown applies, instead of an untyped exception
    escaping on every token.
    """
    try:
        response = yield Http(spec)
    except _TRANSIENT as exc:
        return FetchFailed(True, f"{type(exc).__name__}: status={exc.status_code}")
    except WebexBYOVAError as exc:
        return FetchFailed(False, f"{type(exc).__name__}: status={exc.status_code}")
    except Exception as exc:
        return FetchFailed(True, f"unexpected {type(exc).__name__}")
    if not response.is_success:
        return FetchFailed(False, f"unexpected status {response.status_code}")
    try:
        keyset = read_jwks(response.content)
    except ValueError as exc:
        return FetchFailed(False, f"invalid key set: {exc}")
    return FetchOk(keyset.keys, keyset.rejected)


class Plan(enum.Enum):
    """What to do for one key lookup."""

    USE = "use"
    FETCH = "fetch"


@dataclass
class IssuerKeys:
    """Key-cache state of one issuer."""

    url: str
    keys: dict[str, RSAKey] = field(default_factory=dict)
    rejected: dict[str, str] = field(default_factory=dict)  # kid -> reason it was refused
    fetched_at: float | None = None  # last successful fetch
    attempted_at: float | None = None  # last fetch attempt, successful or not
    broken: bool = False  # the last attempt failed non-transiently
    last_failed: bool = False
    generation: int = 0
    fetches: int = 0
    sync_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def plan(self, kid: str, now: float, *, ttl: float, cooldown: float) -> Plan:
        """Decide whether the cached keys answer ``kid`` or a fetch is needed.

        Raises:
            JWSVerificationError: ``unknown_kid`` / ``jwks_unavailable`` when a fetch is not
                allowed yet (cooldown) and the cache cannot answer.
        """
        cooling = self.attempted_at is not None and now - self.attempted_at < cooldown
        if self.broken and cooling:
            raise JWSVerificationError("jwks_unavailable", "the key set could not be fetched")
        if kid in self.keys and not self.broken:
            assert self.fetched_at is not None
            if cooling or now - self.fetched_at < ttl:
                return Plan.USE
            return Plan.FETCH
        if cooling:
            if self.fetched_at is None:
                raise JWSVerificationError("jwks_unavailable", "the key set could not be fetched")
            raise self._missing(kid)
        return Plan.FETCH

    def _missing(self, kid: str) -> JWSVerificationError:
        reason = self.rejected.get(kid)
        if reason is not None:
            return JWSVerificationError(reason, "the issuer's key with this kid is refused")
        return JWSVerificationError("unknown_kid", "no key with this kid")

    def apply(self, outcome: FetchOutcome, now: float) -> None:
        """Record a fetch outcome."""
        self.attempted_at = now
        self.generation += 1
        self.fetches += 1
        if isinstance(outcome, FetchOk):
            self.keys = outcome.keys
            self.rejected = outcome.rejected
            self.fetched_at = now
            self.broken = self.last_failed = False
        else:
            self.broken = not outcome.transient
            self.last_failed = True

    def key_after_fetch(self, kid: str) -> RSAKey:
        """The key for ``kid`` once a fetch completed (stale keys after a transient failure)."""
        key = self.keys.get(kid)
        if key is not None and not self.broken:
            return key
        if self.last_failed:
            raise JWSVerificationError("jwks_unavailable", "the key set could not be fetched")
        raise self._missing(kid)


# --------------------------------------------------------------------------- the verifier


class JWSVerifier:
    """Verify Webex data-source JWS tokens (sync and async).

    Args:
        config: SDK configuration; its ``extra_issuers`` are trusted too, ``jwk_url_us`` and
            ``jwk_url_eu`` are where the keys of the US and EU Webex issuers
            (:data:`REGION_ISSUERS`) are fetched, whatever their path, and when the active
            region's ``jwk_url`` ends with :data:`JWKS_PATH` the issuer it names is trusted
            too (the local emulator).
        http: HTTP client for key fetches (not closed by this object). By default a private
            client with :data:`JWKS_RETRY_POLICY` and a 10 s timeout is created.
        extra_issuers: More issuers to trust (e.g. the local emulator).
        issuers: Replaces the default (Webex) issuer list.
        expected_url: Required ``com.cisco.datasource.url`` (exact match); ``None`` skips it.
        expected_schema_id: Required schema uuid; ``None`` skips it.
        expected_audience: Required ``aud``; ``None`` only requires it to be non-empty.
        expected_org_id: Required ``com.cisco.org.uuid`` (UUID or Hydra id).
        leeway: Clock skew tolerated for ``exp``/``nbf``/``iat``, in seconds.
        jwks_ttl: Seconds a fetched key set is fresh.
        refetch_cooldown: Minimum seconds between two fetches for one issuer.
        clock: Wall clock (epoch seconds); inject one in tests.
        token_cache_size: Verified tokens kept (LRU).
    """

    def __init__(
        self,
        config: BYOVAConfig | None = None,
        *,
        http: HttpClient | None = None,
        extra_issuers: Iterable[str] = (),
        issuers: Iterable[str] | None = None,
        expected_url: str | None = None,
        expected_schema_id: str | None = BYOVA_SCHEMA_ID,
        expected_audience: str | None = None,
        expected_org_id: str | None = None,
        leeway: float = 30.0,
        jwks_ttl: float = 3600.0,
        refetch_cooldown: float = 30.0,
        clock: Callable[[], float] = time.time,
        token_cache_size: int = 10_000,
    ) -> None:
        self.config = config or BYOVAConfig()
        if leeway < 0 or jwks_ttl <= 0 or refetch_cooldown < 0 or token_cache_size < 0:
            raise ValueError("leeway, refetch_cooldown, token_cache_size >= 0 and jwks_ttl > 0")
        urls: dict[str, str] = {}
        if issuers is None:
            for issuer in WEBEX_ISSUERS:
                urls[issuer] = jwks_url_for(issuer)
            region_url = self.config.jwk_url
            if region_url.rstrip("/").endswith(JWKS_PATH):  # an issuer-shaped URL: trust it
                urls[normalize_issuer(region_url.rstrip("/")[: -len(JWKS_PATH)])] = region_url
        else:
            for issuer in issuers:
                urls[normalize_issuer(issuer)] = jwks_url_for(issuer)
        for issuer in (*self.config.extra_issuers, *extra_issuers):
            urls.setdefault(normalize_issuer(issuer), jwks_url_for(issuer))
        # The configured region URLs are the key source of their region's issuer, whatever
        # their path (a proxy, a mirror, a test key set).
        for region, url in (("us", self.config.jwk_url_us), ("eu", self.config.jwk_url_eu)):
            if REGION_ISSUERS[region] in urls:
                urls[REGION_ISSUERS[region]] = url
        self._issuers = {issuer: IssuerKeys(url) for issuer, url in urls.items()}
        self._defaults = Expectations.build(
            url=expected_url,
            schema_id=expected_schema_id,
            audience=expected_audience,
            org_id=expected_org_id,
        )
        self.leeway = float(leeway)
        self.jwks_ttl = float(jwks_ttl)
        self.refetch_cooldown = float(refetch_cooldown)
        self._clock = clock
        self._cache_size = token_cache_size
        self._cache: OrderedDict[tuple[str, Expectations], tuple[dict[str, Any], float]] = (
            OrderedDict()
        )
        self._cache_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._inflight: dict[str, tuple[asyncio.AbstractEventLoop, asyncio.Task[None]]] = {}
        if http is None:
            timeout = min(self.config.timeout, JWKS_TIMEOUT)
            self._http = HttpClient(
                replace(self.config, timeout=timeout), retry_policy=JWKS_RETRY_POLICY
            )
            self._owns_http = True
        else:
            self._http = http
            self._owns_http = False

    # -- introspection
    @property
    def issuers(self) -> tuple[str, ...]:
        """The trusted issuers."""
        return tuple(self._issuers)

    def jwks_url(self, issuer: str) -> str:
        """The key-set URL used for a trusted issuer."""
        return self._issuers[normalize_issuer(issuer)].url

    @property
    def jwks_fetches(self) -> int:
        """Key-set fetch attempts made so far (all issuers)."""
        return sum(entry.fetches for entry in self._issuers.values())

    @property
    def cached_tokens(self) -> int:
        """Number of verified tokens currently cached."""
        return len(self._cache)

    def clear_cache(self) -> None:
        """Forget verified tokens (key sets are kept)."""
        with self._cache_lock:
            self._cache.clear()

    # -- sans-IO steps shared by verify/averify
    def _expectations(
        self,
        url: str | _Unset | None,
        schema_id: str | _Unset | None,
        audience: str | _Unset | None,
        org_id: str | _Unset | None,
    ) -> Expectations:
        if url is UNSET and schema_id is UNSET and audience is UNSET and org_id is UNSET:
            return self._defaults
        d = self._defaults
        try:
            return Expectations(
                url=d.url if url is UNSET else url,
                schema_id=(
                    d.schema_id
                    if schema_id is UNSET
                    else (schema_id.strip().lower() if schema_id is not None else None)
                ),
                audience=d.audience if audience is UNSET else audience,
                org_id=(
                    d.org_id
                    if org_id is UNSET
                    else (org_uuid(org_id) if org_id is not None else None)
                ),
            )
        except ValueError as exc:
            raise ValueError(f"invalid expected_org_id: {exc}") from None

    def _cached(self, key: tuple[str, Expectations]) -> dict[str, Any] | None:
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is None:
                return None
            claims, exp = hit
            if self._clock() >= exp + self.leeway:
                del self._cache[key]
                raise JWSVerificationError("expired", "the token has expired")
            self._cache.move_to_end(key)
        return dict(claims)

    def _remember(self, key: tuple[str, Expectations], claims: dict[str, Any], exp: float) -> None:
        if self._cache_size == 0:
            return
        with self._cache_lock:
            self._cache[key] = (claims, exp)
            self._cache.move_to_end(key)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)

    def _start(self, token: str) -> tuple[ParsedToken, IssuerKeys]:
        parsed = parse_token(token)
        entry = self._issuers.get(normalize_issuer(parsed.issuer))
        if entry is None:
            raise JWSVerificationError("issuer_not_allowed", "the issuer is not trusted")
        return parsed, entry

    def _finish(self, parsed: ParsedToken, key: RSAKey, expect: Expectations) -> dict[str, Any]:
        verify_signature(parsed, key)
        exp = check_claims(parsed.claims, expect, now=self._clock(), leeway=self.leeway)
        self._remember((parsed.token, expect), parsed.claims, exp)
        return dict(parsed.claims)

    def _plan(self, entry: IssuerKeys, kid: str) -> tuple[RSAKey | None, int]:
        """The cached key for ``kid``, or ``None`` plus the generation to fetch after."""
        with self._state_lock:
            plan = entry.plan(kid, self._clock(), ttl=self.jwks_ttl, cooldown=self.refetch_cooldown)
            return (entry.keys[kid] if plan is Plan.USE else None), entry.generation

    def _apply(self, entry: IssuerKeys, outcome: FetchOutcome) -> None:
        if isinstance(outcome, FetchFailed):
            log.warning("JWKS fetch from %s failed: %s", entry.url, outcome.detail)
        with self._state_lock:
            entry.apply(outcome, self._clock())

    def _spec(self, entry: IssuerKeys) -> RequestSpec:
        return build_request(self._http.config, "GET", entry.url)

    # -- sync
    def _key_sync(self, entry: IssuerKeys, kid: str) -> RSAKey:
        key, generation = self._plan(entry, kid)
        if key is not None:
            return key
        with entry.sync_lock:  # single flight among threads
            if entry.generation == generation:
                self._apply(entry, run_sync(jwks_fetch_flow(self._spec(entry)), self._http))
        with self._state_lock:
            return entry.key_after_fetch(kid)

    def verify(
        self,
        token: str,
        *,
        expected_url: str | _Unset | None = UNSET,
        expected_schema_id: str | _Unset | None = UNSET,
        expected_audience: str | _Unset | None = UNSET,
        expected_org_id: str | _Unset | None = UNSET,
    ) -> dict[str, Any]:
        """Verify ``token`` (raw or ``Bearer <token>``) and return its claims.

        Keyword arguments override the constructor's expectations for this call (``None``
        disables a comparison). Works inside a running event loop (blocking I/O only).

        Raises:
            JWSVerificationError: The token is invalid (see :attr:`~JWSVerificationError.reason`).
        """
        expect = self._expectations(
            expected_url, expected_schema_id, expected_audience, expected_org_id
        )
        text = strip_bearer(token)
        cached = self._cached((text, expect))
        if cached is not None:
            return cached
        parsed, entry = self._start(text)
        return self._finish(parsed, self._key_sync(entry, parsed.kid), expect)

    # -- async
    async def _afetch(self, entry: IssuerKeys) -> None:
        outcome = await run_async(jwks_fetch_flow(self._spec(entry)), self._http)
        self._apply(entry, outcome)

    async def _key_async(self, issuer: str, entry: IssuerKeys, kid: str) -> RSAKey:
        key, generation = self._plan(entry, kid)
        if key is not None:
            return key
        loop = asyncio.get_running_loop()
        running = self._inflight.get(issuer)
        if entry.generation != generation:  # a fetch completed meanwhile
            pass
        elif running is None or running[0] is not loop or running[1].done():
            task = loop.create_task(self._afetch(entry))
            self._inflight[issuer] = (loop, task)

            def _done(_: asyncio.Task[None], issuer: str = issuer) -> None:
                current = self._inflight.get(issuer)
                if current is not None and current[1] is task:
                    del self._inflight[issuer]

            task.add_done_callback(_done)
            await asyncio.shield(task)
        else:
            await asyncio.shield(running[1])
        with self._state_lock:
            return entry.key_after_fetch(kid)

    async def averify(
        self,
        token: str,
        *,
        expected_url: str | _Unset | None = UNSET,
        expected_schema_id: str | _Unset | None = UNSET,
        expected_audience: str | _Unset | None = UNSET,
        expected_org_id: str | _Unset | None = UNSET,
    ) -> dict[str, Any]:
        """Async :meth:`verify`: key fetches never block the event loop, and concurrent
        verifications needing the same issuer's keys share one fetch."""
        expect = self._expectations(
            expected_url, expected_schema_id, expected_audience, expected_org_id
        )
        text = strip_bearer(token)
        cached = self._cached((text, expect))
        if cached is not None:
            return cached
        parsed, entry = self._start(text)
        issuer = normalize_issuer(parsed.issuer)
        return self._finish(parsed, await self._key_async(issuer, entry, parsed.kid), expect)

    # -- lifecycle
    def close(self) -> None:
        """Close the private HTTP client (a client passed in is left open)."""
        if self._owns_http:
            self._http.close()

    async def aclose(self) -> None:
        """Async :meth:`close`."""
        if self._owns_http:
            await self._http.aclose()

    def __enter__(self) -> JWSVerifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> JWSVerifier:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"JWSVerifier(issuers={len(self._issuers)}, cached_tokens={len(self._cache)})"
