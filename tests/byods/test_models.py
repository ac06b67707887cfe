"""Lenient parsing of Webex payloads (real shapes, drift, sparse list items)."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime

from webex_byova.models import DataSource, Schema, Webhook, unverified_jws_claims


def _jws(claims: dict[str, object]) -> str:
    seg = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
    return f"eyJhbGciOiJSUzI1NiJ9.{seg}.c2ln"


SPEC_ITEM = {
    "id": "6d3b2f2f-8a53-4a8e-9a4b-3c6e1f0e2b11",
    "schemaId": "5397013b-7920-4ffc-807c-e8a3e0a18f43",
    "orgId": "0e3e6a1f-9a1b-4c1c-8f51-6f8a2f7b9c10",
    "applicationId": "Cf2e0000",
    "status": "active",
    "jwsToken": _jws({"exp": 1730340805}),
    "createdBy": "machine",
    "createdAt": "2024-10-30T02:13:25.776Z",
    "updatedBy": "machine",
    "updatedAt": "2024-10-30T02:13:25.776Z",
    "errorMessage": "",
    "url": "https://dap.example.com:443/grpc",
    "audience": "BYOVAGateway",
    "subject": "callAudioData",
    "nonce": "n-1",
    "tokenLifetimeMinutes": 1440,
    "tokenExpiryTime": "2024-10-31T02:13:25.776Z",
    "DataSource": "",
    "futureField": {"x": 1},
}


def test_full_item_parses_and_keeps_extras() -> None:
    ds = DataSource.model_validate(SPEC_ITEM)
    assert ds.schema_id == SPEC_ITEM["schemaId"]
    assert ds.url == "https://dap.example.com:443/grpc"  # never normalised
    assert ds.token_expiry_time == datetime(2024, 10, 31, 2, 13, 25, 776000, tzinfo=UTC)
    assert ds.expires_at == ds.token_expiry_time  # tokenExpiryTime wins over the JWS exp
    assert ds.model_extra == {"DataSource": "", "futureField": {"x": 1}}
    wire = ds.to_wire()
    assert wire["futureField"] == {"x": 1}
    assert wire["tokenLifetimeMinutes"] == 1440
    assert ds.is_active


def test_secret_fields_not_in_repr() -> None:
    ds = DataSource.model_validate(SPEC_ITEM)
    assert "jwsToken" not in repr(ds)
    assert SPEC_ITEM["jwsToken"] not in repr(ds)
    hook = Webhook.model_validate({"id": "w", "secret": "topsecret-123456"})
    assert "topsecret" not in repr(hook)


def test_sparse_list_item_filled_from_jws_claims() -> None:
    claims = {
        "aud": "aud-1",
        "sub": "sub-1",
        "exp": 1700000000,
        "com.cisco.datasource.url": "https://h/x",
        "com.cisco.datasource.schema.uuid": "schema-1",
        "com.cisco.org.uuid": "org-1",
    }
    ds = DataSource.model_validate({"id": "1", "jwsToken": _jws(claims), "status": "inactive"})
    assert (ds.audience, ds.subject, ds.url, ds.schema_id, ds.org_id) == (
        "aud-1",
        "sub-1",
        "https://h/x",
        "schema-1",
        "org-1",
    )
    assert ds.status == "inactive"
    assert not ds.is_active
    assert ds.expires_at == datetime.fromtimestamp(1700000000, tz=UTC)
    # explicit values are never overwritten by claims
    ds2 = DataSource.model_validate({"id": "1", "jwsToken": _jws(claims), "url": "https://o"})
    assert ds2.url == "https://o"


def test_field_name_drift() -> None:
    ds = DataSource.model_validate(
        {"id": "1", "tokenLifeMinutes": "60", "schemaId": ["s-1", "s-2"]}
    )
    assert ds.token_lifetime_minutes == 60
    assert ds.schema_id == "s-1"
    assert DataSource.model_validate({"id": "1"}).expires_at is None


def test_snake_case_construction() -> None:
    ds = DataSource(id="1", schema_id="s", token_lifetime_minutes=5)
    assert ds.to_wire() == {"id": "1", "schemaId": "s", "tokenLifetimeMinutes": 5}


def test_unverified_claims_tolerates_garbage() -> None:
    assert unverified_jws_claims(None) == {}
    assert unverified_jws_claims("a.b") == {}
    assert unverified_jws_claims("a.!!!.c") == {}
    assert unverified_jws_claims("a." + base64.urlsafe_b64encode(b"[1]").decode() + ".c") == {}


def test_schema_and_webhook() -> None:
    schema = Schema.model_validate(
        {
            "id": "5397013b-7920-4ffc-807c-e8a3e0a18f43",
            "appType": "serviceApp",
            "protocol": "gRPC",
            "serviceType": "webService",
            "url": "https://github.com/webex/dataSourceSchemas",
            "createdAt": "2024-01-01T00:00:00.000Z",
        }
    )
    assert schema.protocol == "gRPC"
    assert schema.app_type == "serviceApp"
    hook = Webhook.model_validate(
        {"id": "w", "targetUrl": "https://t", "status": "inactive", "ownedBy": "org"}
    )
    assert hook.target_url == "https://t"
    assert not hook.is_active
    assert hook.owned_by == "org"
    assert Webhook.model_validate({"id": "w"}).is_active
