"""``max_log_entries``: the request and delivery logs keep a bounded window, oldest dropped."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from webex_byova.testing import WebexEmulator

from .conftest import Receiver
from .helpers import bearer

MAX = 4


@pytest.fixture
def small() -> Iterator[WebexEmulator]:
    with WebexEmulator(max_log_entries=MAX) as emu:
        yield emu


def test_request_log_keeps_last_entries(small: WebexEmulator) -> None:
    with httpx.Client() as http:
        for i in range(MAX + 5):
            http.get(small.base_url + f"/webhooks/nope-{i}")
        http.get(small.jwks_url)
    records = small.requests
    assert len(records) == MAX
    # the oldest were dropped; the newest remain, oldest first
    assert [r.path for r in records] == [f"/v1/webhooks/nope-{i}" for i in range(6, MAX + 5)] + [
        "/idb/oauth2/v2/keys/verificationjwk"
    ]
    assert small.count() == MAX
    assert small.count("GET", "/webhooks") == MAX - 1
    assert small.count("GET", "/idb") == 1
    small.clear_requests()
    assert small.requests == []
    assert small.count() == 0


def test_delivery_log_keeps_last_entries(small: WebexEmulator, receiver: Receiver) -> None:
    token = str(small.issue_integration_token()["access_token"])
    with httpx.Client() as http:
        resp = http.post(
            small.base_url + "/webhooks",
            headers=bearer(token),
            json={
                "name": "all",
                "targetUrl": receiver.url,
                "resource": "serviceApp",
                "event": "all",
            },
        )
        assert resp.status_code == 200, resp.text
    orgs = [small.create_org(f"org-{i}") for i in range(MAX + 5)]
    for org in orgs:
        assert len(small.authorize_service_app(org.org_id)) == 1
    assert len(receiver.received) == MAX + 5
    kept = small.deliveries
    assert len(kept) == MAX
    kept_orgs = [d.payload["data"]["orgId"] for d in kept]
    assert kept_orgs == [org.hydra_id for org in orgs[-MAX:]]


def test_unbounded_and_default() -> None:
    assert WebexEmulator().max_log_entries == 10_000
    with WebexEmulator(max_log_entries=None) as emu, httpx.Client() as http:
        for _ in range(30):
            http.get(emu.jwks_url)
        assert len(emu.requests) == 30
        assert emu.count("GET", "/idb") == 30


@pytest.mark.parametrize("bad", [0, -1])
def test_rejects_non_positive(bad: int) -> None:
    with pytest.raises(ValueError):
        WebexEmulator(max_log_entries=bad)
