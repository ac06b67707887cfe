"""The token endpoint authenticates clients as RFC 6749 2.3.1 says: HTTP Basic or the form.

Third-party OAuth clients default to ``client_secret_basic``; a wrong client gets 401 with
``WWW-Authenticate``. A caller's own ``TrackingID`` is echoed, as Webex does.
"""

from __future__ import annotations

import base64
from urllib.parse import quote_plus

import httpx
import pytest

from webex_byova.testing import WebexEmulator
from webex_byova.testing._emulator_routes import client_credentials, tracking_id_for

from .helpers import assert_webex_error
from .test_oauth import REDIRECT, authorize, pkce_pair


def _code(http: httpx.Client, emu: WebexEmulator) -> tuple[str, str]:
    verifier, challenge = pkce_pair()
    _, params = authorize(
        http, emu, code_challenge=challenge, code_challenge_method="S256", state="s"
    )
    return params["code"], verifier


def _grant(code: str, verifier: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        **extra,
    }


def test_client_secret_basic(emu: WebexEmulator, http: httpx.Client) -> None:
    code, verifier = _code(http, emu)
    creds = emu.integration
    resp = http.post(
        emu.token_url, data=_grant(code, verifier), auth=(creds.client_id, creds.client_secret)
    )
    assert resp.status_code == 200, resp.text
    token = resp.json()
    assert token["token_type"].lower() == "bearer"
    # the refresh grant with Basic too (the body may repeat the same client_id)
    resp = http.post(
        emu.token_url,
        data={
            "grant_type": "refresh_token",
            "refresh_token": token["refresh_token"],
            "client_id": creds.client_id,
        },
        auth=(creds.client_id, creds.client_secret),
    )
    assert resp.status_code == 200, resp.text


def test_client_secret_post_still_works(emu: WebexEmulator, http: httpx.Client) -> None:
    code, verifier = _code(http, emu)
    creds = emu.integration
    form = _grant(code, verifier, client_id=creds.client_id, client_secret=creds.client_secret)
    assert http.post(emu.token_url, data=form).status_code == 200


@pytest.mark.parametrize("method", ["basic", "post"])
def test_a_wrong_client_gets_401_with_www_authenticate(
    emu: WebexEmulator, http: httpx.Client, method: str
) -> None:
    code, verifier = _code(http, emu)
    creds = emu.integration
    if method == "basic":
        resp = http.post(emu.token_url, data=_grant(code, verifier), auth=(creds.client_id, "x"))
    else:
        form = _grant(code, verifier, client_id=creds.client_id, client_secret="x")
        resp = http.post(emu.token_url, data=form)
    body = assert_webex_error(resp, 401)
    assert body["error"] == "invalid_client"
    assert resp.headers["WWW-Authenticate"] == 'Basic realm="webex-emulator"'


def test_two_authentication_methods_are_refused(emu: WebexEmulator, http: httpx.Client) -> None:
    code, verifier = _code(http, emu)
    creds = emu.integration
    form = _grant(code, verifier, client_secret=creds.client_secret)
    resp = http.post(emu.token_url, data=form, auth=(creds.client_id, creds.client_secret))
    assert assert_webex_error(resp, 400)["error"] == "invalid_request"


def test_basic_credentials_are_form_urlencoded_first() -> None:
    raw = f"{quote_plus('id:with space')}:{quote_plus('s3cr:t+/=')}"
    header = "Basic " + base64.b64encode(raw.encode()).decode()
    assert client_credentials(header, {}) == ("id:with space", "s3cr:t+/=")
    assert client_credentials(None, {"client_id": "a", "client_secret": "b"}) == ("a", "b")
    assert "one client authentication" in str(client_credentials(header, {"client_secret": "b"}))
    assert "differs" in str(client_credentials(header, {"client_id": "other"}))
    for bad in ("Basic !!!", "Basic " + base64.b64encode(b"no-colon").decode()):
        assert "not valid base64" in str(client_credentials(bad, {}))


def test_a_callers_tracking_id_is_echoed(emu: WebexEmulator, http: httpx.Client) -> None:
    mine = "ROUTER_1a2b3c4d-0000-4000-8000-000000000001"
    resp = http.get(emu.base_url + "/dataSources", headers={"TrackingID": mine})
    assert resp.status_code == 401
    assert resp.headers["TrackingID"] == mine
    assert resp.json()["trackingId"] == mine
    assert emu.requests[-1].tracking_id == mine
    # an unsafe value is not echoed: a fresh one is made
    resp = http.get(emu.base_url + "/dataSources", headers={"TrackingID": "a b;<x>"})
    assert resp.headers["TrackingID"].startswith("EMU_")
    # none given: the emulator's own
    assert http.get(emu.base_url + "/dataSources").headers["TrackingID"].startswith("EMU_")


def test_tracking_id_for_bounds_what_it_echoes() -> None:
    assert tracking_id_for("abc_123") == "abc_123"
    assert tracking_id_for(" abc ") == "abc"
    for bad in (None, "", "a\r\nSet-Cookie: x", "x" * 201, "ü"):
        assert tracking_id_for(bad).startswith("EMU_")
