"""Contract tests: fault injection, tracking ids and the request log."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx
import pytest

from webex_byova.testing import EmulatorError, WebexEmulator

from .helpers import assert_webex_error, bearer


def test_429_with_retry_after_seconds(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.fail_next("/v1/access_token", status=429, retry_after=7)
    resp = http.post(emu.token_url, data={"grant_type": "refresh_token"})
    assert_webex_error(resp, 429)
    assert resp.headers["Retry-After"] == "7"
    # only once: the next request reaches the route
    resp = http.post(emu.token_url, data={"grant_type": "refresh_token"})
    assert resp.status_code == 401
    assert resp.json()["error"] == "invalid_client"


def test_429_with_http_date(emu: WebexEmulator, http: httpx.Client) -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    emu.fail_next("/webhooks", status=429, retry_after=when)
    resp = http.get(emu.base_url + "/webhooks")
    assert resp.status_code == 429
    assert parsedate_to_datetime(resp.headers["Retry-After"]) == when
    emu.fail_next("/webhooks", status=423, retry_after="Wed, 21 Oct 2015 07:28:00 GMT")
    resp = http.get(emu.base_url + "/webhooks")
    assert resp.status_code == 423
    assert resp.headers["Retry-After"] == "Wed, 21 Oct 2015 07:28:00 GMT"


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_5xx_times(emu: WebexEmulator, http: httpx.Client, status: int) -> None:
    emu.fail_next("/dataSources/schemas", status=status, times=2)
    token = emu.issue_integration_token()["access_token"]
    url = emu.base_url + "/dataSources/schemas"
    assert_webex_error(http.get(url, headers=bearer(token)), status)
    assert "Retry-After" not in http.get(url, headers=bearer(token)).headers
    assert http.get(url, headers=bearer(token)).status_code == 200


def test_fault_forever_until_cleared(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.fail_next("/idb", status=503, times=None)
    for _ in range(3):
        assert http.get(emu.jwks_url).status_code == 503
    emu.clear_faults()
    assert http.get(emu.jwks_url).status_code == 200


def test_fault_method_filter_and_prefix(emu: WebexEmulator, http: httpx.Client) -> None:
    token = emu.issue_integration_token()["access_token"]
    emu.fail_next("webhooks", status=500, method="post")
    assert http.get(emu.base_url + "/webhooks", headers=bearer(token)).status_code == 200
    resp = http.post(emu.base_url + "/webhooks", headers=bearer(token), json={})
    assert resp.status_code == 500
    # a prefix that does not match is not applied
    emu.fail_next("/v1/dataSources", status=500)
    assert http.get(emu.jwks_url).status_code == 200
    with pytest.raises(EmulatorError):
        emu.fail_next("/x", times=0)


def test_custom_fault_bodies(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.fail_next("/webhooks", status=500, body={"code": 1, "message": "odd shape"})
    resp = http.get(emu.base_url + "/webhooks")
    assert resp.json() == {"code": 1, "message": "odd shape"}
    assert resp.headers["TrackingID"].startswith("EMU_")
    emu.fail_next("/webhooks", status=502, body="<html>bad gateway</html>")
    resp = http.get(emu.base_url + "/webhooks")
    assert resp.status_code == 502
    assert resp.text == "<html>bad gateway</html>"
    assert resp.headers["Content-Type"].startswith("text/plain")
    emu.fail_next("/webhooks", status=500, body=b"\x00raw")
    assert http.get(emu.base_url + "/webhooks").content == b"\x00raw"


def test_drop_connection(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.drop_next("/v1/access_token")
    with pytest.raises(httpx.RemoteProtocolError):
        http.post(emu.token_url, data={"grant_type": "x"})
    assert http.post(emu.token_url, data={"grant_type": "x"}).status_code == 400
    dropped = [r for r in emu.requests if r.fault == "drop"]
    assert len(dropped) == 1
    assert dropped[0].status is None


async def test_drop_connection_async(emu: WebexEmulator) -> None:
    emu.drop_next("/idb", times=2)
    async with httpx.AsyncClient() as client:
        for _ in range(2):
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get(emu.jwks_url)
        assert (await client.get(emu.jwks_url)).status_code == 200


def test_latency(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.add_latency("/idb", 0.05, times=1)
    start = time.monotonic()
    assert http.get(emu.jwks_url).status_code == 200
    assert time.monotonic() - start >= 0.05
    emu.add_latency("/idb", 0.3)
    with pytest.raises(httpx.ReadTimeout):
        http.get(emu.jwks_url, timeout=0.05)
    emu.clear_faults()


def test_latency_combines_with_fault(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.add_latency("/webhooks", 0.02, times=1)
    emu.fail_next("/webhooks", status=503)
    start = time.monotonic()
    assert http.get(emu.base_url + "/webhooks").status_code == 503
    assert time.monotonic() - start >= 0.02


def test_tracking_id_on_every_response(emu: WebexEmulator, http: httpx.Client) -> None:
    token = emu.issue_integration_token()["access_token"]
    responses = [
        http.get(emu.jwks_url),
        http.get(emu.base_url + "/nope"),
        http.get(emu.url + "/elsewhere"),
        http.get(emu.authorize_url, params={"client_id": "x"}),
        http.get(emu.base_url + "/webhooks", headers=bearer(token)),
        http.delete(emu.base_url + "/webhooks/x", headers=bearer(token)),
    ]
    ids = [r.headers["TrackingID"] for r in responses]
    assert all(i.startswith("EMU_") for i in ids)
    assert len(set(ids)) == len(ids)
    assert_webex_error(responses[1], 404)
    assert_webex_error(responses[2], 404)
    assert [r.tracking_id for r in emu.requests] == ids


def test_request_log(emu: WebexEmulator, http: httpx.Client) -> None:
    token = emu.issue_integration_token()["access_token"]
    http.post(
        emu.base_url + "/webhooks?x=1",
        headers=bearer(token),
        json={"name": "n", "targetUrl": "https://e.com", "resource": "rooms", "event": "created"},
    )
    http.post(emu.token_url, data={"grant_type": "refresh_token", "refresh_token": "abc"})
    first, second = emu.requests
    assert first.method == "POST"
    assert first.path == "/v1/webhooks"
    assert first.query == {"x": "1"}
    assert first.headers["authorization"] == f"Bearer {token}"
    assert first.json["name"] == "n"
    assert first.form is None
    assert first.status == 200
    assert first.fault is None
    assert abs(first.at - emu.clock.now()) < 5
    assert second.form == {"grant_type": "refresh_token", "refresh_token": "abc"}
    assert second.json is None
    assert second.status == 401
    assert token not in repr(first)  # secrets stay out of reprs
    assert emu.count("POST", "/v1/webhooks") == 1
    assert emu.count("post", "/webhooks") == 1
    assert emu.count(None, "/v1") == 2
    assert emu.count("GET") == 0
    emu.clear_requests()
    assert emu.requests == []
    assert emu.count() == 0


def test_injected_faults_are_recorded(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.fail_next("/webhooks", status=429, retry_after=1)
    http.get(emu.base_url + "/webhooks")
    (rec,) = emu.requests
    assert rec.status == 429
    assert rec.fault == "status"
