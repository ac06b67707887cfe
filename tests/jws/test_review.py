"""Review findings: hostile JSON (tokens, webhook bodies) fails with the documented error only."""

from __future__ import annotations

import base64
import json
import math

import pytest

from webex_byova.errors import ValidationError
from webex_byova.jws import Expectations, JWSVerificationError, JWSVerifier, check_claims
from webex_byova.models import unverified_jws_claims
from webex_byova.testing import WebexEmulator
from webex_byova.webhooks import read_service_app_delivery

from .helpers import jwks_gets


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


HEADER = _b64(json.dumps({"alg": "RS256", "kid": "k1", "typ": "JWT"}).encode())
#: JSON nested deeper than the interpreter's recursion limit, still under the length cap.
DEEP = b"[" * 5000 + b"]" * 5000


@pytest.mark.parametrize(
    "token",
    [f"{_b64(DEEP)}.{_b64(b'{}')}.c2ln", f"{HEADER}.{_b64(DEEP)}.c2ln"],
    ids=["deep-header", "deep-payload"],
)
async def test_deeply_nested_json_is_malformed_not_recursion_error(
    emu: WebexEmulator, verifier: JWSVerifier, token: str
) -> None:
    with pytest.raises(JWSVerificationError) as info:
        verifier.verify(token)
    assert info.value.reason == "malformed"
    with pytest.raises(JWSVerificationError) as info:
        await verifier.averify(token)
    assert info.value.reason == "malformed"
    assert jwks_gets(emu) == 0


def test_unverified_claims_of_a_deeply_nested_token_are_empty() -> None:
    assert unverified_jws_claims(f"{HEADER}.{_b64(DEEP)}.c2ln") == {}


def test_deeply_nested_webhook_body_is_a_validation_error() -> None:
    with pytest.raises(ValidationError, match="not valid JSON"):
        read_service_app_delivery(None, raw_body=DEEP * 20)


@pytest.mark.parametrize("claim", ["exp", "iat", "nbf"])
@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_times_are_invalid(claim: str, value: float) -> None:
    claims = {"exp": 2_000_000_000, "aud": "a", "sub": "s", "jti": "j", claim: value}
    with pytest.raises(JWSVerificationError) as info:
        check_claims(claims, Expectations(schema_id=None), now=1_900_000_000, leeway=30)
    assert info.value.reason == f"invalid_claim:{claim}"
