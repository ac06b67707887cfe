"""Contract tests: /v1/webhooks CRUD, pagination and serviceApp webhook delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from webex_byova.testing import WebexEmulator

from .conftest import Receiver
from .helpers import assert_webex_error, bearer


@pytest.fixture
def token(emu: WebexEmulator) -> str:
    return str(emu.issue_integration_token()["access_token"])


def create(http: httpx.Client, emu: WebexEmulator, token: str, **fields: Any) -> httpx.Response:
    body: dict[str, Any] = {
        "name": "svc app events",
        "targetUrl": "https://example.com/hook",
        "resource": "serviceApp",
        "event": "authorized",
    }
    body.update(fields)
    body = {k: v for k, v in body.items() if v is not None}
    return http.post(emu.base_url + "/webhooks", headers=bearer(token), json=body)


def free_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook"


# -- CRUD ----------------------------------------------------------------------------------


def test_create_get_update_delete(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    resp = create(http, emu, token, filter=f"id={emu.service_app.application_id}", secret="s3")
    assert resp.status_code == 200, resp.text
    hook = resp.json()
    assert hook["name"] == "svc app events"
    assert hook["targetUrl"] == "https://example.com/hook"
    assert hook["resource"] == "serviceApp"
    assert hook["event"] == "authorized"
    assert hook["filter"] == f"id={emu.service_app.application_id}"
    assert hook["secret"] == "s3"
    assert hook["status"] == "active"
    assert hook["ownedBy"] == "creator"
    assert hook["orgId"] == emu.developer_org.hydra_id
    assert hook["appId"] == emu.integration.application_id
    assert hook["createdBy"]
    assert hook["created"].endswith("Z")
    url = f"{emu.base_url}/webhooks/{hook['id']}"
    assert http.get(url, headers=bearer(token)).json() == hook

    put = http.put(
        url,
        headers=bearer(token),
        json={"name": "renamed", "targetUrl": "https://example.com/v2", "resource": "rooms"},
    )
    assert put.status_code == 200, put.text
    updated = put.json()
    assert updated["name"] == "renamed"
    assert updated["targetUrl"] == "https://example.com/v2"
    assert updated["resource"] == "serviceApp"  # other fields are ignored
    assert updated["secret"] == "s3"  # kept when absent
    put = http.put(
        url,
        headers=bearer(token),
        json={"name": "renamed", "targetUrl": "https://example.com/v2", "secret": "new"},
    )
    assert put.json()["secret"] == "new"
    assert emu.webhooks[0].secret == "new"

    assert http.delete(url, headers=bearer(token)).status_code == 204
    assert_webex_error(http.get(url, headers=bearer(token)), 404)
    assert_webex_error(http.delete(url, headers=bearer(token)), 404)
    assert emu.webhooks == []


@pytest.mark.parametrize(
    "fields",
    [
        {"name": None},
        {"targetUrl": None},
        {"resource": None},
        {"event": None},
        {"name": "  "},
        {"targetUrl": "ftp://example.com"},
        {"targetUrl": "not a url"},
        {"resource": "nope"},
        {"event": "exploded"},
        {"filter": 5},
        {"secret": ["x"]},
        {"ownedBy": "everyone"},
    ],
)
def test_create_validation(
    emu: WebexEmulator, http: httpx.Client, token: str, fields: dict[str, Any]
) -> None:
    assert_webex_error(create(http, emu, token, **fields), 400)


def test_create_rejects_non_json(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    resp = http.post(emu.base_url + "/webhooks", headers=bearer(token), data={"name": "x"})
    assert_webex_error(resp, 415)
    resp = http.post(
        emu.base_url + "/webhooks",
        headers={**bearer(token), "Content-Type": "application/json"},
        content=b"[1,2",
    )
    assert_webex_error(resp, 400)


def test_requires_live_bearer(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    assert_webex_error(http.get(emu.base_url + "/webhooks"), 401)
    assert_webex_error(create(http, emu, "bogus"), 401)
    emu.expire_tokens()
    assert_webex_error(create(http, emu, token), 401)


def test_put_validation_and_status(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    hook = create(http, emu, token).json()
    url = f"{emu.base_url}/webhooks/{hook['id']}"
    base = {"name": "n", "targetUrl": "https://example.com/h"}
    assert_webex_error(http.put(url, headers=bearer(token), json={"name": "n"}), 400)
    assert_webex_error(http.put(url, headers=bearer(token), json={"targetUrl": "x"}), 400)
    bad = {**base, "targetUrl": "mailto:x@example.com"}
    assert_webex_error(http.put(url, headers=bearer(token), json=bad), 400)
    deactivate = {**base, "status": "inactive"}
    assert_webex_error(http.put(url, headers=bearer(token), json=deactivate), 400)
    assert_webex_error(http.put(url, headers=bearer(token), json={**base, "secret": 3}), 400)
    emu.set_webhook_status(hook["id"], "inactive")
    assert http.get(url, headers=bearer(token)).json()["status"] == "inactive"
    resp = http.put(url, headers=bearer(token), json={**base, "status": "active"})
    assert resp.json()["status"] == "active"
    missing = f"{emu.base_url}/webhooks/nope"
    assert_webex_error(http.put(missing, headers=bearer(token), json=base), 404)


def test_webhooks_are_private_to_their_owner(
    emu: WebexEmulator, http: httpx.Client, token: str
) -> None:
    hook = create(http, emu, token).json()
    other = emu.create_integration()
    other_token = emu.issue_integration_token(integration=other)["access_token"]
    listed = http.get(emu.base_url + "/webhooks", headers=bearer(other_token)).json()
    assert listed["items"] == []
    url = f"{emu.base_url}/webhooks/{hook['id']}"
    assert_webex_error(http.get(url, headers=bearer(other_token)), 404)


def test_org_owned_webhooks(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    create(http, emu, token, name="mine")
    org_hook = create(http, emu, token, name="org", ownedBy="org", resource="dataSources")
    assert org_hook.status_code == 200
    assert org_hook.json()["ownedBy"] == "org"
    dup = create(http, emu, token, name="org2", ownedBy="org", resource="dataSources")
    assert_webex_error(dup, 409)
    other_filter = create(
        http, emu, token, ownedBy="org", resource="dataSources", filter="schemaId=x"
    )
    assert other_filter.status_code == 200
    listed = http.get(emu.base_url + "/webhooks", headers=bearer(token), params={"ownedBy": "org"})
    assert {h["name"] for h in listed.json()["items"]} == {"org", "svc app events"}
    assert all(h["ownedBy"] == "org" for h in listed.json()["items"])
    creator = http.get(
        emu.base_url + "/webhooks", headers=bearer(token), params={"ownedBy": "creator"}
    )
    assert [h["name"] for h in creator.json()["items"]] == ["mine"]
    bad = http.get(emu.base_url + "/webhooks", headers=bearer(token), params={"ownedBy": "x"})
    assert_webex_error(bad, 400)
    # another user of the same org sees org-owned webhooks
    colleague = emu.create_integration()
    theirs = emu.issue_integration_token(integration=colleague)["access_token"]
    seen = http.get(emu.base_url + "/webhooks", headers=bearer(theirs)).json()["items"]
    assert {h["name"] for h in seen} == {"org", "svc app events"}


def test_list_pagination_keeps_params(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    for i in range(5):
        assert create(http, emu, token, name=f"h{i}").status_code == 200
    create(http, emu, token, name="org-wide", ownedBy="org")
    names: list[str] = []
    url: str | None = emu.base_url + "/webhooks?max=2&ownedBy=creator"
    pages = 0
    while url:
        resp = http.get(url, headers=bearer(token))
        assert resp.status_code == 200
        names += [h["name"] for h in resp.json()["items"]]
        pages += 1
        nxt = resp.links.get("next")
        url = nxt["url"] if nxt else None
        if url:
            query = parse_qs(urlsplit(url).query)
            assert query["ownedBy"] == ["creator"]
            assert query["max"] == ["2"]
            assert url.startswith(emu.base_url + "/webhooks?")
    assert names == [f"h{i}" for i in range(5)]
    assert pages == 3
    full = http.get(emu.base_url + "/webhooks", headers=bearer(token))
    assert len(full.json()["items"]) == 6
    assert "Link" not in full.headers


@pytest.mark.parametrize("params", [{"max": "0"}, {"max": "abc"}, {"cursor": "!!!"}])
def test_list_bad_params(
    emu: WebexEmulator, http: httpx.Client, token: str, params: dict[str, str]
) -> None:
    assert_webex_error(
        http.get(emu.base_url + "/webhooks", headers=bearer(token), params=params), 400
    )


def test_method_not_allowed(emu: WebexEmulator, http: httpx.Client, token: str) -> None:
    resp = http.delete(emu.base_url + "/webhooks", headers=bearer(token))
    assert_webex_error(resp, 405)
    assert resp.headers["Allow"] == "GET, POST"


# -- delivery ------------------------------------------------------------------------------


def test_authorized_delivery_signed(
    emu: WebexEmulator, http: httpx.Client, token: str, receiver: Receiver
) -> None:
    hook = create(
        http,
        emu,
        token,
        targetUrl=receiver.url,
        secret="topsecret",
        filter=f"id={emu.service_app.application_id}",
    ).json()
    deliveries = emu.authorize_service_app(emu.org.org_id)
    assert len(deliveries) == 1
    d = deliveries[0]
    assert d.ok
    assert d.status_code == 200
    assert d.error is None
    assert d.webhook_id == hook["id"]
    assert d.event == "authorized"
    assert len(receiver.received) == 1
    headers, raw = receiver.received[0]
    expected = hmac.new(b"topsecret", raw, hashlib.sha1).hexdigest()
    assert hmac.compare_digest(headers["x-spark-signature"], expected)
    assert headers["content-type"] == "application/json"
    wrong = hmac.new(b"not-the-secret", raw, hashlib.sha1).hexdigest()
    assert headers["x-spark-signature"] != wrong
    # re-serialised JSON is not what was signed
    reserialised = json.dumps(json.loads(raw), indent=2).encode()
    assert hmac.new(b"topsecret", reserialised, hashlib.sha1).hexdigest() != expected
    envelope = json.loads(raw)
    assert envelope["id"] == hook["id"]
    assert envelope["name"] == hook["name"]
    assert envelope["resource"] == "serviceApp"
    assert envelope["event"] == "authorized"
    assert envelope["filter"] == hook["filter"]
    assert envelope["orgId"] == emu.developer_org.hydra_id
    assert envelope["createdBy"] == hook["createdBy"]
    assert envelope["appId"] == hook["appId"]
    assert envelope["ownedBy"] == "creator"
    assert envelope["status"] == "active"
    assert envelope["actorId"]
    assert envelope["created"] == hook["created"]
    data = envelope["data"]
    assert data["id"] == emu.service_app.application_id
    assert data["authorizerOrgId"] == emu.org.hydra_id
    assert data["orgId"] == emu.org.hydra_id
    assert data["authorizationDate"].endswith("Z")
    assert emu.deliveries == deliveries
    assert d.payload == envelope


def test_unsigned_delivery_has_no_signature(
    emu: WebexEmulator, http: httpx.Client, token: str, receiver: Receiver
) -> None:
    create(http, emu, token, targetUrl=receiver.url)
    emu.authorize_service_app(emu.org.org_id)
    headers, _ = receiver.received[0]
    assert "x-spark-signature" not in headers


def test_delivery_matching(
    emu: WebexEmulator, http: httpx.Client, token: str, receiver: Receiver
) -> None:
    app = emu.service_app
    padded = app.application_id + "=" * (-len(app.application_id) % 4)
    create(http, emu, token, name="all-events", targetUrl=receiver.url, event="all")
    create(http, emu, token, name="padded-filter", targetUrl=receiver.url, filter=f"id={padded}")
    create(
        http, emu, token, name="friendly", targetUrl=receiver.url, filter=f"friendlyName={app.name}"
    )
    create(http, emu, token, name="other-app", targetUrl=receiver.url, filter="id=Cnot-this-app")
    create(http, emu, token, name="deauth-only", targetUrl=receiver.url, event="deauthorized")
    create(
        http, emu, token, name="rooms", targetUrl=receiver.url, resource="rooms", event="created"
    )
    deliveries = emu.authorize_service_app(emu.org.org_id)
    names = sorted(json.loads(body)["name"] for _, body in receiver.received)
    assert names == ["all-events", "friendly", "padded-filter"]
    assert len(deliveries) == 3
    receiver.received.clear()
    deliveries = emu.deauthorize_service_app(emu.org.org_id)
    names = sorted(json.loads(body)["name"] for _, body in receiver.received)
    assert names == ["all-events", "deauth-only"]
    assert {json.loads(b)["event"] for _, b in receiver.received} == {"deauthorized"}


def test_other_owner_webhooks_get_no_service_app_events(
    emu: WebexEmulator, http: httpx.Client, receiver: Receiver
) -> None:
    emu.authorize_service_app(emu.org.org_id)
    customer = emu.issue_service_app_token(emu.org.org_id)["access_token"]
    create(http, emu, customer, targetUrl=receiver.url)
    other = emu.create_org()
    assert emu.authorize_service_app(other.org_id) == []
    assert receiver.received == []


def test_failing_receiver_counts_and_disables(
    emu: WebexEmulator, http: httpx.Client, token: str, receiver: Receiver
) -> None:
    receiver.status = 500
    hook = create(http, emu, token, targetUrl=receiver.url, event="all").json()
    org = emu.create_org()
    first = emu.authorize_service_app(org.org_id)
    assert first[0].status_code == 500
    assert not first[0].ok
    for _ in range(49):
        emu.deauthorize_service_app(org.org_id)
        emu.authorize_service_app(org.org_id)
    # 99 failures so far within 5 minutes: still active
    assert emu.webhooks[0].status == "active"
    emu.deauthorize_service_app(org.org_id)
    assert emu.webhooks[0].status == "inactive"
    assert emu.authorize_service_app(org.org_id) == []  # inactive hooks get nothing
    # re-enable within 5 minutes: the next failure disables it again
    url = f"{emu.base_url}/webhooks/{hook['id']}"
    body = {"name": hook["name"], "targetUrl": receiver.url, "status": "active"}
    assert http.put(url, headers=bearer(token), json=body).json()["status"] == "active"
    emu.deauthorize_service_app(org.org_id)
    assert emu.webhooks[0].status == "inactive"


def test_failures_outside_window_do_not_disable(
    emu: WebexEmulator, http: httpx.Client, token: str
) -> None:
    create(http, emu, token, targetUrl=free_port_url(), event="all")
    org = emu.create_org()
    for i in range(60):
        deliveries = (
            emu.authorize_service_app(org.org_id)
            if i % 2 == 0
            else emu.deauthorize_service_app(org.org_id)
        )
        assert deliveries[0].status_code is None
        assert deliveries[0].error
    emu.clock.advance(301)
    for i in range(60):
        if i % 2 == 0:
            emu.deauthorize_service_app(org.org_id)
        else:
            emu.authorize_service_app(org.org_id)
    assert emu.webhooks[0].status == "active"


async def test_async_delivery_to_receiver(
    emu: WebexEmulator, token: str, receiver: Receiver
) -> None:
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            emu.base_url + "/webhooks",
            headers=bearer(token),
            json={
                "name": "async",
                "targetUrl": receiver.url,
                "resource": "serviceApp",
                "event": "authorized",
                "secret": "k",
            },
        )
        assert resp.status_code == 200
        deliveries = await emu.aauthorize_service_app(emu.org.org_id)
        assert deliveries[0].ok
        headers, raw = receiver.received[0]
        assert headers["x-spark-signature"] == hmac.new(b"k", raw, hashlib.sha1).hexdigest()
        listed = await client.get(emu.base_url + "/webhooks", headers=bearer(token))
        assert [h["name"] for h in listed.json()["items"]] == ["async"]
