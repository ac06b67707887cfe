"""Contract tests: GET /v1/authorize and POST /v1/access_token."""

from __future__ import annotations

import base64
import hashlib
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from webex_byova.testing import WebexEmulator

from .helpers import assert_webex_error, bearer

REDIRECT = "http://localhost:8765/callback"


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    return verifier, challenge.decode().rstrip("=")


def authorize(
    http: httpx.Client, emu: WebexEmulator, **params: str
) -> tuple[httpx.Response, dict[str, str]]:
    query = {
        "client_id": emu.integration.client_id,
        "response_type": "code",
        "redirect_uri": REDIRECT,
        "scope": "spark:applications_token spark:kms",
        "state": "st-123",
    }
    query.update(params)
    query = {k: v for k, v in query.items() if v != "<omit>"}
    resp = http.get(emu.authorize_url, params=query, follow_redirects=False)
    if resp.status_code != 302:
        return resp, {}
    location = resp.headers["Location"]
    return resp, {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(http: httpx.Client, emu: WebexEmulator, code: str, **extra: str) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "client_id": emu.integration.client_id,
        "client_secret": emu.integration.client_secret,
        "code": code,
        "redirect_uri": REDIRECT,
    }
    form.update(extra)
    return http.post(emu.token_url, data=form)


def refresh(
    http: httpx.Client, emu: WebexEmulator, token: str, client: Any = None
) -> httpx.Response:
    client = client or emu.integration
    return http.post(
        emu.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "refresh_token": token,
        },
    )


def assert_oauth_error(resp: httpx.Response, status: int, error: str) -> None:
    body = assert_webex_error(resp, status)
    assert body["error"] == error
    assert body["error_description"] == body["message"]


# -- authorize --------------------------------------------------------------------------


def test_authorize_redirects_with_code_and_state(emu: WebexEmulator, http: httpx.Client) -> None:
    resp, params = authorize(http, emu)
    assert resp.status_code == 302
    assert resp.headers["Location"].startswith(REDIRECT + "?")
    assert params["state"] == "st-123"
    assert params["code"]
    assert resp.headers["TrackingID"].startswith("EMU_")


def test_authorize_without_state_omits_it(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu, state="<omit>")
    assert "code" in params
    assert "state" not in params


def test_authorize_accepts_any_loopback_redirect(emu: WebexEmulator, http: httpx.Client) -> None:
    for uri in ("http://127.0.0.1:51234/cb", "http://localhost:9/x?keep=1"):
        resp, params = authorize(http, emu, redirect_uri=uri)
        assert resp.status_code == 302
        assert resp.headers["Location"].startswith(uri)
        assert params["code"]
    _, params = authorize(http, emu, redirect_uri="http://localhost:9/x?keep=1")
    assert params["keep"] == "1"


def test_authorize_unknown_client_is_400_page(emu: WebexEmulator, http: httpx.Client) -> None:
    resp, _ = authorize(http, emu, client_id="Cnope")
    assert resp.status_code == 400
    assert "client_id" in resp.text
    assert "Location" not in resp.headers


@pytest.mark.parametrize(
    "uri", ["https://evil.example.com/cb", "http://evil.example.com:8765/callback", "nonsense"]
)
def test_authorize_bad_redirect_is_400_page(
    emu: WebexEmulator, http: httpx.Client, uri: str
) -> None:
    resp, _ = authorize(http, emu, redirect_uri=uri)
    assert resp.status_code == 400
    assert "redirect_uri" in resp.text


def test_authorize_denied_once(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.deny_next_authorize()
    resp, params = authorize(http, emu)
    assert resp.status_code == 302
    assert params["error"] == "access_denied"
    assert params["state"] == "st-123"
    assert "code" not in params
    _, params = authorize(http, emu)
    assert "code" in params


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "spark:all not:a:scope"}, "invalid_scope"),
        ({"code_challenge": "a" * 43, "code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge": "short", "code_challenge_method": "S256"}, "invalid_request"),
        ({"code_challenge_method": "S256"}, "invalid_request"),
    ],
)
def test_authorize_error_redirects(
    emu: WebexEmulator, http: httpx.Client, params: dict[str, str], error: str
) -> None:
    resp, got = authorize(http, emu, **params)
    assert resp.status_code == 302
    assert got["error"] == error
    assert got["state"] == "st-123"


def test_authorize_requires_get(emu: WebexEmulator, http: httpx.Client) -> None:
    resp = http.post(emu.authorize_url)
    assert_webex_error(resp, 405)
    assert resp.headers["Allow"] == "GET"


# -- authorization_code grant -----------------------------------------------------------


def test_code_exchange_returns_token_pair(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu)
    resp = exchange(http, emu, params["code"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1209600
    assert body["refresh_token_expires_in"] == 7776000
    assert body["scope"] == "spark:applications_token spark:kms"
    assert body["access_token"] != body["refresh_token"]
    assert body["access_token"].endswith("_" + emu.developer_org.org_id)
    assert resp.headers["Cache-Control"] == "no-store"
    # the token works as a bearer
    hooks = http.get(emu.base_url + "/webhooks", headers=bearer(body["access_token"]))
    assert hooks.status_code == 200


def test_code_without_scope_grants_registered_scopes(
    emu: WebexEmulator, http: httpx.Client
) -> None:
    _, params = authorize(http, emu, scope="<omit>")
    body = exchange(http, emu, params["code"]).json()
    assert set(body["scope"].split()) == set(emu.integration.scopes)


def test_configured_lifetimes() -> None:
    with (
        WebexEmulator(access_token_lifetime=60, refresh_token_lifetime=120) as emu,
        httpx.Client() as http,
    ):
        _, params = authorize(http, emu)
        body = exchange(http, emu, params["code"]).json()
        assert body["expires_in"] == 60
        assert body["refresh_token_expires_in"] == 120


def test_code_is_single_use(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu)
    assert exchange(http, emu, params["code"]).status_code == 200
    assert_oauth_error(exchange(http, emu, params["code"]), 400, "invalid_grant")


def test_code_expires_after_ten_minutes(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu)
    emu.clock.advance(601)
    resp = exchange(http, emu, params["code"])
    assert_oauth_error(resp, 400, "invalid_grant")
    assert "expired" in resp.json()["message"]


def test_code_still_valid_before_expiry(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu)
    emu.clock.advance(590)
    assert exchange(http, emu, params["code"]).status_code == 200


def test_unknown_code(emu: WebexEmulator, http: httpx.Client) -> None:
    assert_oauth_error(exchange(http, emu, "nope"), 400, "invalid_grant")


def test_code_of_other_client_is_invalid(emu: WebexEmulator, http: httpx.Client) -> None:
    other = emu.create_integration()
    _, params = authorize(http, emu)
    resp = exchange(
        http, emu, params["code"], client_id=other.client_id, client_secret=other.client_secret
    )
    assert_oauth_error(resp, 400, "invalid_grant")


def test_redirect_uri_must_match(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu)
    resp = exchange(http, emu, params["code"], redirect_uri="http://localhost:1/other")
    assert_oauth_error(resp, 400, "invalid_grant")


def test_bad_client_secret_is_401(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu)
    resp = exchange(http, emu, params["code"], client_secret="wrong")
    assert_oauth_error(resp, 401, "invalid_client")
    resp = exchange(http, emu, params["code"], client_id="Cunknown")
    assert_oauth_error(resp, 401, "invalid_client")


def test_token_endpoint_requires_form_encoding(emu: WebexEmulator, http: httpx.Client) -> None:
    resp = http.post(
        emu.token_url,
        json={
            "grant_type": "refresh_token",
            "client_id": emu.integration.client_id,
            "client_secret": emu.integration.client_secret,
            "refresh_token": "x",
        },
    )
    assert_oauth_error(resp, 400, "invalid_request")


def test_missing_and_unsupported_grant_type(emu: WebexEmulator, http: httpx.Client) -> None:
    creds = {"client_id": emu.integration.client_id, "client_secret": "x"}
    assert_oauth_error(http.post(emu.token_url, data=creds), 400, "invalid_request")
    resp = http.post(emu.token_url, data={**creds, "grant_type": "client_credentials"})
    assert_oauth_error(resp, 400, "unsupported_grant_type")


def test_service_app_cannot_use_authorization_code(emu: WebexEmulator, http: httpx.Client) -> None:
    _, params = authorize(http, emu)
    resp = exchange(
        http,
        emu,
        params["code"],
        client_id=emu.service_app.client_id,
        client_secret=emu.service_app.client_secret,
    )
    assert_oauth_error(resp, 400, "unauthorized_client")


# -- PKCE -------------------------------------------------------------------------------


def test_pkce_success(emu: WebexEmulator, http: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    _, params = authorize(http, emu, code_challenge=challenge, code_challenge_method="S256")
    resp = exchange(http, emu, params["code"], code_verifier=verifier)
    assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("verifier", [None, "x" * 43, "bad verifier with spaces" * 3, "short"])
def test_pkce_failures(emu: WebexEmulator, http: httpx.Client, verifier: str | None) -> None:
    _, challenge = pkce_pair()
    _, params = authorize(http, emu, code_challenge=challenge, code_challenge_method="S256")
    extra = {} if verifier is None else {"code_verifier": verifier}
    assert_oauth_error(exchange(http, emu, params["code"], **extra), 400, "invalid_grant")


def test_verifier_without_challenge_is_rejected(emu: WebexEmulator, http: httpx.Client) -> None:
    verifier, _ = pkce_pair()
    _, params = authorize(http, emu)
    resp = exchange(http, emu, params["code"], code_verifier=verifier)
    assert_oauth_error(resp, 400, "invalid_grant")


def test_failed_pkce_consumes_the_code(emu: WebexEmulator, http: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    _, params = authorize(http, emu, code_challenge=challenge, code_challenge_method="S256")
    assert exchange(http, emu, params["code"], code_verifier="y" * 43).status_code == 400
    resp = exchange(http, emu, params["code"], code_verifier=verifier)
    assert_oauth_error(resp, 400, "invalid_grant")
    assert "already used" in resp.json()["message"]


# -- refresh_token grant ----------------------------------------------------------------


def test_refresh_keeps_refresh_token_and_slides_expiry(
    emu: WebexEmulator, http: httpx.Client
) -> None:
    pair = emu.issue_integration_token()
    emu.clock.advance(7776000 - 10)
    resp = refresh(http, emu, pair["refresh_token"])
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["refresh_token"] == pair["refresh_token"]
    assert body["access_token"] != pair["access_token"]
    assert body["scope"] == pair["scope"]
    # the window slid: still valid 89 days later
    emu.clock.advance(7776000 - 10)
    assert refresh(http, emu, pair["refresh_token"]).status_code == 200


def test_refresh_token_expires_without_use(emu: WebexEmulator, http: httpx.Client) -> None:
    pair = emu.issue_integration_token()
    emu.clock.advance(7776000)
    resp = refresh(http, emu, pair["refresh_token"])
    assert_oauth_error(resp, 400, "invalid_grant")
    assert "expired" in resp.json()["message"]


def test_refresh_rotation() -> None:
    with WebexEmulator(rotate_refresh_tokens=True) as emu, httpx.Client() as http:
        pair = emu.issue_integration_token()
        body = refresh(http, emu, pair["refresh_token"]).json()
        assert body["refresh_token"] != pair["refresh_token"]
        assert_oauth_error(refresh(http, emu, pair["refresh_token"]), 400, "invalid_grant")
        assert refresh(http, emu, body["refresh_token"]).status_code == 200


def test_revoked_and_unknown_refresh_tokens(emu: WebexEmulator, http: httpx.Client) -> None:
    pair = emu.issue_integration_token()
    assert emu.revoke_refresh_token(pair["refresh_token"]) is True
    resp = refresh(http, emu, pair["refresh_token"])
    assert_oauth_error(resp, 400, "invalid_grant")
    assert "revoked" in resp.json()["message"]
    assert_oauth_error(refresh(http, emu, "unknown"), 400, "invalid_grant")
    assert emu.revoke_refresh_token("unknown") is False


def test_refresh_with_other_client_is_invalid_grant(emu: WebexEmulator, http: httpx.Client) -> None:
    pair = emu.issue_integration_token()
    resp = refresh(http, emu, pair["refresh_token"], client=emu.service_app)
    assert_oauth_error(resp, 400, "invalid_grant")


def test_refresh_bad_client_secret(emu: WebexEmulator, http: httpx.Client) -> None:
    pair = emu.issue_integration_token()
    resp = http.post(
        emu.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": emu.integration.client_id,
            "client_secret": "nope",
            "refresh_token": pair["refresh_token"],
        },
    )
    assert_oauth_error(resp, 401, "invalid_client")


def test_service_app_refresh(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.authorize_service_app(emu.org.org_id)
    pair = emu.issue_service_app_token(emu.org.org_id)
    resp = refresh(http, emu, pair["refresh_token"], client=emu.service_app)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["scope"] == "spark-admin:datasource_read spark-admin:datasource_write"
    listed = http.get(emu.base_url + "/dataSources", headers=bearer(body["access_token"]))
    assert listed.status_code == 200


def test_service_app_lifetime_is_separate() -> None:
    with WebexEmulator(service_app_token_lifetime=3600) as emu:
        emu.authorize_service_app(emu.org.org_id)
        assert emu.issue_service_app_token(emu.org.org_id)["expires_in"] == 3600
        assert emu.issue_integration_token()["expires_in"] == 1209600


def test_access_token_expiry_by_clock(emu: WebexEmulator, http: httpx.Client) -> None:
    pair = emu.issue_integration_token()
    url = emu.base_url + "/webhooks"
    emu.clock.advance(1209600 - 1)
    assert http.get(url, headers=bearer(pair["access_token"])).status_code == 200
    emu.clock.advance(1)
    resp = http.get(url, headers=bearer(pair["access_token"]))
    assert "expired" in assert_webex_error(resp, 401)["message"]


def test_expire_tokens_by_kind(emu: WebexEmulator, http: httpx.Client) -> None:
    integ = emu.issue_integration_token()
    emu.authorize_service_app(emu.org.org_id)
    sa = emu.issue_service_app_token(emu.org.org_id)
    assert emu.expire_tokens("integration") == 1
    url = emu.base_url + "/dataSources/schemas"
    assert http.get(url, headers=bearer(integ["access_token"])).status_code == 401
    assert http.get(url, headers=bearer(sa["access_token"])).status_code == 200
    assert emu.expire_tokens("all") == 1
    assert http.get(url, headers=bearer(sa["access_token"])).status_code == 401
    # a refresh brings a live token back
    body = refresh(http, emu, integ["refresh_token"]).json()
    assert http.get(url, headers=bearer(body["access_token"])).status_code == 200
    with pytest.raises(ValueError):
        emu.expire_tokens("bots")


async def test_full_flow_async(emu: WebexEmulator) -> None:
    verifier, challenge = pkce_pair()
    async with httpx.AsyncClient() as client:
        resp = await client.get(
            emu.authorize_url,
            params={
                "client_id": emu.integration.client_id,
                "response_type": "code",
                "redirect_uri": "http://127.0.0.1:4242/cb",
                "scope": "spark:applications_token",
                "state": "s",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            },
        )
        assert resp.status_code == 302
        code = parse_qs(urlsplit(resp.headers["Location"]).query)["code"][0]
        token = await client.post(
            emu.token_url,
            data={
                "grant_type": "authorization_code",
                "client_id": emu.integration.client_id,
                "client_secret": emu.integration.client_secret,
                "code": code,
                "redirect_uri": "http://127.0.0.1:4242/cb",
                "code_verifier": verifier,
            },
        )
        assert token.status_code == 200
        assert token.json()["scope"] == "spark:applications_token"
