"""Contract tests: /v1/dataSources and /v1/dataSources/schemas."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet

from webex_byova.testing import WebexEmulator

from .helpers import assert_webex_error, bearer, org_token

BYOVA = "5397013b-7920-4ffc-807c-e8a3e0a18f43"
KNOWN_SCHEMAS = {
    BYOVA,
    "a38a10b7-43e4-4676-a076-a7d6dce9387d",
    "523e1b7f-4693-47bc-b84e-a7b7a505fb0b",
    "1b2b7077-dbcd-4732-b2f9-296f9168168a",
    "78efc775-dccb-45ca-9acf-989a4a59f788",
}


def ds_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "schemaId": BYOVA,
        "url": "https://va.example.com:443/byova",
        "audience": "BYOVAGateway",
        "subject": "callAudioData",
        "nonce": str(uuid.uuid4()),
        "tokenLifetimeMinutes": 120,
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


@pytest.fixture
def token(emu: WebexEmulator) -> str:
    return org_token(emu)


def verify(emu: WebexEmulator, http: httpx.Client, jws: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(http.get(emu.jwks_url).json())
    return dict(jwt.decode(jws, keys, algorithms=["RS256"]).claims)


def parse_iso(value: str) -> float:
    assert value.endswith("Z")
    assert len(value.split(".")[-1]) == 4
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def test_register_and_read_back(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    body = ds_body()
    resp = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=body)
    assert resp.status_code == 200, resp.text
    ds = resp.json()
    for key in ("schemaId", "url", "audience", "subject", "nonce", "tokenLifetimeMinutes"):
        assert ds[key] == body[key]
    assert ds["orgId"] == emu.org.org_id
    assert ds["applicationId"] == emu.service_app.client_id
    assert ds["status"] == "active"
    assert ds["errorMessage"] == ""
    assert ds["createdBy"] == ds["updatedBy"]
    assert ds["createdAt"] == ds["updatedAt"]
    claims = verify(emu, http, ds["jwsToken"])
    assert claims["iss"] == emu.issuer
    assert claims["aud"] == "BYOVAGateway"
    assert claims["sub"] == "callAudioData"
    assert claims["exp"] - claims["iat"] == 120 * 60
    assert abs(claims["iat"] - emu.clock.now()) < 5
    assert claims["jti"]
    assert claims["com.cisco.datasource.url"] == body["url"]
    assert claims["com.cisco.datasource.schema.uuid"] == BYOVA
    assert claims["com.cisco.org.uuid"] == emu.org.org_id
    assert parse_iso(ds["tokenExpiryTime"]) == claims["exp"]
    parse_iso(ds["createdAt"])
    url = f"{emu.base_url}/dataSources/{ds['id']}"
    assert http.get(url, headers=bearer(token)).json() == ds
    for path in ("/dataSources", "/dataSources/"):
        listed = http.get(emu.base_url + path, headers=bearer(token))
        assert listed.json() == {"items": [ds]}
    assert emu.data_sources[0].id == ds["id"]


def test_update_is_full_replacement_and_remints(
    emu: WebexEmulator, http: httpx.Client, token: str
) -> None:
    ds = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=ds_body()).json()
    url = f"{emu.base_url}/dataSources/{ds['id']}"
    emu.clock.advance(3600)
    new = ds_body(tokenLifetimeMinutes=1440, audience="other", url="https://b.example.com/x")
    resp = http.put(url, headers=bearer(token), json=new)
    assert resp.status_code == 200, resp.text
    updated = resp.json()
    assert updated["id"] == ds["id"]
    assert updated["createdAt"] == ds["createdAt"]
    assert updated["updatedAt"] != ds["updatedAt"]
    assert updated["nonce"] == new["nonce"]
    assert updated["audience"] == "other"
    assert updated["jwsToken"] != ds["jwsToken"]
    claims = verify(emu, http, updated["jwsToken"])
    assert claims["exp"] - claims["iat"] == 1440 * 60
    assert claims["aud"] == "other"
    assert claims["com.cisco.datasource.url"] == "https://b.example.com/x"
    assert parse_iso(updated["tokenExpiryTime"]) > parse_iso(ds["tokenExpiryTime"])


@pytest.mark.parametrize(
    "missing", ["schemaId", "url", "audience", "subject", "nonce", "tokenLifetimeMinutes"]
)
def test_put_missing_field_is_400(
    emu: WebexEmulator, http: httpx.Client, token: str, missing: str
) -> None:
    ds = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=ds_body()).json()
    body = ds_body()
    del body[missing]
    resp = http.put(f"{emu.base_url}/dataSources/{ds['id']}", headers=bearer(token), json=body)
    assert missing in " ".join(e["description"] for e in assert_webex_error(resp, 400)["errors"])


@pytest.mark.parametrize(
    "overrides",
    [
        {"tokenLifetimeMinutes": 0},
        {"tokenLifetimeMinutes": 1441},
        {"tokenLifetimeMinutes": "60"},
        {"tokenLifetimeMinutes": True},
        {"tokenLifetimeMinutes": 60.5},
        {"schemaId": "00000000-0000-4000-8000-000000000000"},
        {"url": "not a url"},
        {"audience": ""},
        {"subject": 7},
        {"nonce": None},
    ],
)
def test_register_validation(
    emu: WebexEmulator, http: httpx.Client, token: str, overrides: dict[str, Any]
) -> None:
    resp = http.post(
        emu.base_url + "/dataSources", headers=bearer(token), json=ds_body(**overrides)
    )
    assert_webex_error(resp, 400)
    assert emu.data_sources == []


@pytest.mark.parametrize("minutes", [1, 1440])
def test_lifetime_bounds_accepted(
    emu: WebexEmulator, http: httpx.Client, token: str, minutes: int
) -> None:
    resp = http.post(
        emu.base_url + "/dataSources",
        headers=bearer(token),
        json=ds_body(tokenLifetimeMinutes=minutes),
    )
    assert resp.status_code == 200


def test_status_rules(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    ds = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=ds_body()).json()
    url = f"{emu.base_url}/dataSources/{ds['id']}"
    resp = http.put(url, headers=bearer(token), json=ds_body(status="disabled"))
    assert_webex_error(resp, 400)
    body = ds_body(status="disabled", errorMessage="   ")
    assert_webex_error(http.put(url, headers=bearer(token), json=body), 400)
    assert_webex_error(http.put(url, headers=bearer(token), json=ds_body(status="paused")), 400)
    body = ds_body(status="active", errorMessage=5)
    assert_webex_error(http.put(url, headers=bearer(token), json=body), 400)
    body = ds_body(status="disabled", errorMessage="maintenance")
    disabled = http.put(url, headers=bearer(token), json=body).json()
    assert disabled["status"] == "disabled"
    assert disabled["errorMessage"] == "maintenance"
    kept = http.put(url, headers=bearer(token), json=ds_body(errorMessage="still")).json()
    assert kept["status"] == "disabled"  # status absent: kept
    enabled = http.put(url, headers=bearer(token), json=ds_body(status="active", errorMessage=""))
    assert enabled.json()["status"] == "active"
    assert enabled.json()["errorMessage"] == ""


def test_same_nonce_is_409(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    body = ds_body()
    ds = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=body).json()
    url = f"{emu.base_url}/dataSources/{ds['id']}"
    assert_webex_error(http.put(url, headers=bearer(token), json=body), 409)
    assert http.put(url, headers=bearer(token), json=ds_body()).status_code == 200


def test_delete(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    ds = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=ds_body()).json()
    url = f"{emu.base_url}/dataSources/{ds['id']}"
    assert http.delete(url, headers=bearer(token)).status_code == 204
    assert_webex_error(http.get(url, headers=bearer(token)), 404)
    assert_webex_error(http.delete(url, headers=bearer(token)), 404)
    assert_webex_error(http.put(url, headers=bearer(token), json=ds_body()), 404)


def test_auth_errors(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    url = emu.base_url + "/dataSources"
    assert_webex_error(http.get(url), 401)
    assert_webex_error(http.get(url, headers=bearer("nope")), 401)
    integ = emu.issue_integration_token()["access_token"]
    assert_webex_error(http.get(url, headers=bearer(integ)), 403)
    assert_webex_error(http.post(url, headers=bearer(integ), json=ds_body()), 403)
    emu.expire_tokens("service_app")
    assert_webex_error(http.get(url, headers=bearer(token)), 401)


def test_scopes_enforced(emu: WebexEmulator, http: httpx.Client) -> None:
    reader = emu.create_service_app(name="reader", scopes=["spark-admin:datasource_read"])
    writer = emu.create_service_app(name="writer", scopes=["spark-admin:datasource_write"])
    for app in (reader, writer):
        emu.authorize_service_app(emu.org.org_id, service_app=app)
    r = emu.issue_service_app_token(emu.org.org_id, service_app=reader)["access_token"]
    w = emu.issue_service_app_token(emu.org.org_id, service_app=writer)["access_token"]
    url = emu.base_url + "/dataSources"
    assert http.get(url, headers=bearer(r)).status_code == 200
    assert_webex_error(http.post(url, headers=bearer(r), json=ds_body()), 403)
    created = http.post(url, headers=bearer(w), json=ds_body())
    assert created.status_code == 200
    item = f"{url}/{created.json()['id']}"
    assert_webex_error(http.get(url, headers=bearer(w)), 403)
    assert_webex_error(http.get(item, headers=bearer(w)), 403)
    assert http.put(item, headers=bearer(w), json=ds_body()).status_code == 200
    assert http.delete(item, headers=bearer(w)).status_code == 204


def test_org_and_app_isolation(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    ds = http.post(emu.base_url + "/dataSources", headers=bearer(token), json=ds_body()).json()
    other_org = emu.create_org()
    other = org_token(emu, other_org.org_id)
    assert http.get(emu.base_url + "/dataSources", headers=bearer(other)).json() == {"items": []}
    item = f"{emu.base_url}/dataSources/{ds['id']}"
    assert_webex_error(http.get(item, headers=bearer(other)), 404)
    claims_org = http.post(
        emu.base_url + "/dataSources", headers=bearer(other), json=ds_body()
    ).json()["orgId"]
    assert claims_org == other_org.org_id


def test_list_pagination(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    ids = [
        http.post(emu.base_url + "/dataSources", headers=bearer(token), json=ds_body()).json()["id"]
        for _ in range(3)
    ]
    first = http.get(emu.base_url + "/dataSources", headers=bearer(token), params={"max": 2})
    assert [d["id"] for d in first.json()["items"]] == ids[:2]
    second = http.get(first.links["next"]["url"], headers=bearer(token))
    assert [d["id"] for d in second.json()["items"]] == ids[2:]
    assert "next" not in second.links


def test_valid_domains(emu: WebexEmulator, http: httpx.Client) -> None:
    app = emu.create_service_app(valid_domains=["example.com"])
    emu.authorize_service_app(emu.org.org_id, service_app=app)
    tok = emu.issue_service_app_token(emu.org.org_id, service_app=app)["access_token"]
    url = emu.base_url + "/dataSources"
    ok = ds_body(url="https://va.example.com/x")
    assert http.post(url, headers=bearer(tok), json=ok).status_code == 200
    assert (
        http.post(url, headers=bearer(tok), json=ds_body(url="https://example.com")).status_code
        == 200
    )
    bad = http.post(url, headers=bearer(tok), json=ds_body(url="https://example.org/x"))
    assert_webex_error(bad, 400)
    bad = http.post(url, headers=bearer(tok), json=ds_body(url="https://notexample.com/x"))
    assert_webex_error(bad, 400)


def test_non_json_body(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    url = emu.base_url + "/dataSources"
    assert_webex_error(http.post(url, headers=bearer(token), data={"schemaId": BYOVA}), 415)
    resp = http.post(
        url, headers={**bearer(token), "Content-Type": "application/json"}, content=b"nope"
    )
    assert_webex_error(resp, 400)


def test_schemas(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    integ = emu.issue_integration_token(["spark:kms"])["access_token"]
    for tok in (token, integ):  # any valid token
        listed = http.get(emu.base_url + "/dataSources/schemas", headers=bearer(tok))
        assert listed.status_code == 200
        assert {s["id"] for s in listed.json()["items"]} == KNOWN_SCHEMAS
    one = http.get(f"{emu.base_url}/dataSources/schemas/{BYOVA}", headers=bearer(token)).json()
    assert one["id"] == BYOVA
    assert one["protocol"] == "gRPC"
    assert one["appType"] == "serviceApp"
    assert {"serviceType", "url", "createdAt", "description"} <= one.keys()
    missing = http.get(f"{emu.base_url}/dataSources/schemas/nope", headers=bearer(token))
    assert_webex_error(missing, 404)
    assert_webex_error(http.get(emu.base_url + "/dataSources/schemas"), 401)
    assert_webex_error(http.post(emu.base_url + "/dataSources/schemas", headers=bearer(token)), 405)


async def test_data_sources_async(emu: WebexEmulator, token: str) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            emu.base_url + "/dataSources", headers=bearer(token), json=ds_body()
        )
        assert resp.status_code == 200
        ds = resp.json()
        resp = await client.put(
            f"{emu.base_url}/dataSources/{ds['id']}", headers=bearer(token), json=ds_body()
        )
        assert resp.status_code == 200
        listed = await client.get(emu.base_url + "/dataSources/", headers=bearer(token))
        assert [d["id"] for d in listed.json()["items"]] == [ds["id"]]
