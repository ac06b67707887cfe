"""Helpers shared by the emulator tests."""

from __future__ import annotations

from typing import Any

import httpx

from webex_byova.testing import WebexEmulator


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def org_token(emu: WebexEmulator, org_id: str | None = None) -> str:
    """Authorize the service app in the (seeded) org and return an org access token."""
    org = org_id or emu.org.org_id
    emu.authorize_service_app(org)
    return str(emu.issue_service_app_token(org)["access_token"])


def assert_webex_error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert isinstance(body["message"], str)
    assert body["message"]
    assert body["errors"]
    assert all(isinstance(e["description"], str) for e in body["errors"])
    assert body["trackingId"] == resp.headers["TrackingID"]
    assert body["trackingId"].startswith("EMU_")
    return body
