"""The emulator registers BYOVA-over-WebSocket data sources (real HTTP) and mints their JWS."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from webex_byova.jws import BYOVA_SCHEMA_ID, JWSVerificationError, JWSVerifier
from webex_byova.media._ws_codec import WS_SCHEMA_ID
from webex_byova.testing import WebexEmulator

from ..emulator.helpers import assert_webex_error, bearer, org_token

ORIGIN = "wss://byova.example.com"


def body(**overrides: Any) -> dict[str, Any]:
    out: dict[str, Any] = {
        "schemaId": WS_SCHEMA_ID,
        "url": ORIGIN,
        "audience": "BYOVAGateway",
        "subject": "callAudioData",
        "nonce": str(uuid.uuid4()),
        "tokenLifetimeMinutes": 60,
    }
    out.update(overrides)
    return out


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


def test_websocket_data_source_and_its_token(
    webex_emulator: WebexEmulator, http: httpx.Client
) -> None:
    emu = webex_emulator
    token = org_token(emu)
    resp = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=body())
    assert resp.status_code == 200, resp.text
    ds = resp.json()
    assert ds["schemaId"] == WS_SCHEMA_ID
    assert ds["url"] == ORIGIN
    with JWSVerifier(emu.config()) as verifier:
        claims = verifier.verify(
            ds["jwsToken"],
            expected_url=ORIGIN,
            expected_schema_id=WS_SCHEMA_ID,
            expected_org_id=emu.org.org_id,
        )
        assert claims["com.cisco.org.uuid"] == emu.org.org_id
        assert claims["com.cisco.datasource.schema.uuid"] == WS_SCHEMA_ID
        # the same token is not a gRPC BYOVA token, and not another org's
        with pytest.raises(JWSVerificationError, match="claim_mismatch:schema"):
            verifier.verify(ds["jwsToken"], expected_schema_id=BYOVA_SCHEMA_ID)
        other = emu.create_org().org_id
        with pytest.raises(JWSVerificationError, match="claim_mismatch:org"):
            verifier.verify(ds["jwsToken"], expected_schema_id=WS_SCHEMA_ID, expected_org_id=other)
    # a port is part of the origin; updates are validated the same way
    url = f"{emu.base_url}/dataSources/{ds['id']}"
    resp = http.put(url, headers=bearer(token), json=body(url="wss://byova.example.com:8443"))
    assert resp.status_code == 200, resp.text
    assert resp.json()["url"] == "wss://byova.example.com:8443"
    assert_webex_error(http.put(url, headers=bearer(token), json=body(url=ORIGIN + "/v1/va")), 400)


@pytest.mark.parametrize(
    "url",
    [
        "https://byova.example.com",
        "ws://byova.example.com",
        "wss://byova.example.com/",
        "wss://byova.example.com/v1/va",
        "wss://byova.example.com?x=1",
        "wss://byova.example.com#frag",
        "wss://user:pw@byova.example.com",
        "wss://byova.example.com:99999",
    ],
)
def test_websocket_url_must_be_a_wss_origin(
    webex_emulator: WebexEmulator, http: httpx.Client, url: str
) -> None:
    token = org_token(webex_emulator)
    resp = http.post(
        webex_emulator.base_url + "/dataSources", headers=bearer(token), json=body(url=url)
    )
    err = assert_webex_error(resp, 400)
    assert "wss://" in str(err) or "port" in str(err)
    assert webex_emulator.data_sources == []


def test_grpc_data_sources_keep_their_url_rules(
    webex_emulator: WebexEmulator, http: httpx.Client
) -> None:
    token = org_token(webex_emulator)
    grpc_body = body(schemaId=BYOVA_SCHEMA_ID, url="https://va.example.com:443/byova")
    resp = http.post(
        webex_emulator.base_url + "/dataSources", headers=bearer(token), json=grpc_body
    )
    assert resp.status_code == 200, resp.text


def test_minted_websocket_token_has_the_org_claim(webex_emulator: WebexEmulator) -> None:
    jws = webex_emulator.mint_data_source_token(url=ORIGIN, schema_id=WS_SCHEMA_ID)
    with JWSVerifier(webex_emulator.config()) as verifier:
        claims = verifier.verify(
            jws,
            expected_url=ORIGIN,
            expected_schema_id=WS_SCHEMA_ID,
            expected_org_id=webex_emulator.org.org_id,
        )
    assert claims["com.cisco.org.uuid"] == webex_emulator.org.org_id
