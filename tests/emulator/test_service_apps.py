"""Contract tests: POST /v1/applications/{applicationId}/token and authorization admin."""

from __future__ import annotations

import base64

import httpx
import pytest

from webex_byova.testing import EmulatorError, WebexEmulator

from .helpers import assert_webex_error, bearer


def app_token(
    http: httpx.Client,
    emu: WebexEmulator,
    token: str | None,
    *,
    app_id: str | None = None,
    body: object = None,
    **fields: str,
) -> httpx.Response:
    payload = {
        "clientId": emu.service_app.client_id,
        "clientSecret": emu.service_app.client_secret,
        "targetOrgId": emu.org.hydra_id,
    }
    payload.update(fields)
    headers = bearer(token) if token else {}
    url = f"{emu.base_url}/applications/{app_id or emu.service_app.application_id}/token"
    return http.post(url, headers=headers, json=payload if body is None else body)


@pytest.fixture
def integ_token(emu: WebexEmulator) -> str:
    return str(emu.issue_integration_token(["spark:applications_token"])["access_token"])


def test_seeded_identities(emu: WebexEmulator) -> None:
    app = emu.service_app
    assert app.application_id == base64.b64encode(
        f"ciscospark://us/APPLICATION/{app.client_id}".encode()
    ).decode().rstrip("=")
    assert "=" not in app.application_id
    assert emu.org.hydra_id == base64.b64encode(
        f"ciscospark://us/ORGANIZATION/{emu.org.org_id}".encode()
    ).decode().rstrip("=")
    assert emu.org.org_id != emu.developer_org.org_id
    assert emu.integration.redirect_uri == "http://localhost:8765/callback"
    assert "spark:applications_token" in emu.integration.scopes
    assert not emu.is_authorized(emu.org.org_id)
    assert "client_secret" not in repr(app)
    assert app.client_secret not in repr(app)
    assert emu.integration.client_secret not in repr(emu.integration)


@pytest.mark.parametrize("org_form", ["uuid", "hydra"])
def test_token_for_authorized_org(
    emu: WebexEmulator, http: httpx.Client, integ_token: str, org_form: str
) -> None:
    emu.authorize_service_app(emu.org.hydra_id)
    target = emu.org.org_id if org_form == "uuid" else emu.org.hydra_id
    resp = app_token(http, emu, integ_token, targetOrgId=target)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 1209600
    assert body["refresh_token_expires_in"] == 7776000
    assert body["access_token"].endswith("_" + emu.org.org_id)
    # the org token works for data sources in that org
    listed = http.get(emu.base_url + "/dataSources", headers=bearer(body["access_token"]))
    assert listed.status_code == 200


@pytest.mark.parametrize("form", ["padded", "urlsafe"])
def test_application_id_forms(
    emu: WebexEmulator, http: httpx.Client, integ_token: str, form: str
) -> None:
    emu.authorize_service_app(emu.org.org_id)
    raw = f"ciscospark://us/APPLICATION/{emu.service_app.client_id}".encode()
    app_id = (
        base64.b64encode(raw).decode()
        if form == "padded"
        else base64.urlsafe_b64encode(raw).decode().rstrip("=")
    )
    assert app_token(http, emu, integ_token, app_id=app_id).status_code == 200


def test_missing_and_bad_bearer(emu: WebexEmulator, http: httpx.Client, integ_token: str) -> None:
    emu.authorize_service_app(emu.org.org_id)
    assert_webex_error(app_token(http, emu, None), 401)
    assert_webex_error(app_token(http, emu, "garbage"), 401)
    emu.expire_tokens("integration")
    assert_webex_error(app_token(http, emu, integ_token), 401)


def test_revoked_bearer(emu: WebexEmulator, http: httpx.Client, integ_token: str) -> None:
    emu.authorize_service_app(emu.org.org_id)
    assert emu.revoke_access_token(integ_token)
    assert_webex_error(app_token(http, emu, integ_token), 401)
    assert emu.revoke_access_token("nope") is False


def test_bearer_without_scope_is_403(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.authorize_service_app(emu.org.org_id)
    token = emu.issue_integration_token(["spark:kms"])["access_token"]
    body = assert_webex_error(app_token(http, emu, token), 403)
    assert "spark:applications_token" in body["message"]


def test_unknown_application_is_404(
    emu: WebexEmulator, http: httpx.Client, integ_token: str
) -> None:
    other = base64.b64encode(b"ciscospark://us/APPLICATION/Cdeadbeef").decode()
    assert_webex_error(app_token(http, emu, integ_token, app_id=other), 404)
    # the plain client id is not an application id
    plain = emu.service_app.client_id
    assert_webex_error(app_token(http, emu, integ_token, app_id=plain), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"clientId": "x"},
        {"clientSecret": "x", "targetOrgId": "y"},
        ["not", "an", "object"],
        {"clientId": 1, "clientSecret": "s", "targetOrgId": "o"},
    ],
)
def test_bad_body_is_400(
    emu: WebexEmulator, http: httpx.Client, integ_token: str, body: object
) -> None:
    assert_webex_error(app_token(http, emu, integ_token, body=body), 400)


def test_invalid_json_and_content_type(
    emu: WebexEmulator, http: httpx.Client, integ_token: str
) -> None:
    url = f"{emu.base_url}/applications/{emu.service_app.application_id}/token"
    headers = {**bearer(integ_token), "Content-Type": "application/json"}
    assert_webex_error(http.post(url, headers=headers, content=b"{not json"), 400)
    form = http.post(url, headers=bearer(integ_token), data={"clientId": "x"})
    assert_webex_error(form, 415)


def test_client_id_mismatch_is_400(
    emu: WebexEmulator, http: httpx.Client, integ_token: str
) -> None:
    other = emu.create_service_app(name="Other")
    resp = app_token(http, emu, integ_token, clientId=other.client_id)
    assert_webex_error(resp, 400)


def test_bad_client_secret_is_401(emu: WebexEmulator, http: httpx.Client, integ_token: str) -> None:
    emu.authorize_service_app(emu.org.org_id)
    assert_webex_error(app_token(http, emu, integ_token, clientSecret="nope"), 401)


def test_not_authorized_unknown_and_bad_org(
    emu: WebexEmulator, http: httpx.Client, integ_token: str
) -> None:
    assert_webex_error(app_token(http, emu, integ_token), 403)
    unknown = "00000000-0000-4000-8000-000000000000"
    assert_webex_error(app_token(http, emu, integ_token, targetOrgId=unknown), 403)
    assert_webex_error(app_token(http, emu, integ_token, targetOrgId="not-an-org"), 400)
    # a Hydra id of another kind is not an org
    people = base64.b64encode(f"ciscospark://us/PEOPLE/{unknown}".encode()).decode()
    assert_webex_error(app_token(http, emu, integ_token, targetOrgId=people), 400)


def test_create_org_and_authorize(emu: WebexEmulator, http: httpx.Client, integ_token: str) -> None:
    org = emu.create_org("Acme")
    assert org.name == "Acme"
    assert_webex_error(app_token(http, emu, integ_token, targetOrgId=org.org_id), 403)
    emu.authorize_service_app(org.org_id)
    assert emu.is_authorized(org.hydra_id)
    assert app_token(http, emu, integ_token, targetOrgId=org.org_id).status_code == 200
    assert emu.create_org().name.startswith("Emulated Org")


def test_deauthorize_revokes_tokens(
    emu: WebexEmulator, http: httpx.Client, integ_token: str
) -> None:
    emu.authorize_service_app(emu.org.org_id)
    pair = app_token(http, emu, integ_token).json()
    url = emu.base_url + "/dataSources"
    assert http.get(url, headers=bearer(pair["access_token"])).status_code == 200
    emu.deauthorize_service_app(emu.org.hydra_id)
    assert http.get(url, headers=bearer(pair["access_token"])).status_code == 401
    assert_webex_error(app_token(http, emu, integ_token), 403)
    resp = http.post(
        emu.token_url,
        data={
            "grant_type": "refresh_token",
            "client_id": emu.service_app.client_id,
            "client_secret": emu.service_app.client_secret,
            "refresh_token": pair["refresh_token"],
        },
    )
    assert resp.status_code == 400
    assert resp.json()["error"] == "invalid_grant"
    assert emu.deauthorize_service_app(emu.org.org_id) == []  # already deauthorized: no-op


def test_admin_methods_validate(emu: WebexEmulator) -> None:
    with pytest.raises(EmulatorError):
        emu.issue_service_app_token(emu.org.org_id)  # not authorized yet
    with pytest.raises(EmulatorError):
        emu.authorize_service_app("nope")
    emu.authorize_service_app(emu.org.org_id)
    assert emu.authorize_service_app(emu.org.org_id) == []  # already authorized: no-op
    assert emu.issue_service_app_token(emu.org.hydra_id)["token_type"] == "Bearer"


def test_service_app_token_as_bearer_needs_scope(emu: WebexEmulator, http: httpx.Client) -> None:
    emu.authorize_service_app(emu.org.org_id)
    sa = emu.issue_service_app_token(emu.org.org_id)["access_token"]
    assert_webex_error(app_token(http, emu, sa), 403)
    manager = emu.create_service_app(name="Token manager", scopes=["spark:applications_token"])
    emu.authorize_service_app(emu.developer_org.org_id, service_app=manager)
    mgr = emu.issue_service_app_token(emu.developer_org.org_id, service_app=manager)
    assert app_token(http, emu, mgr["access_token"]).status_code == 200


async def test_service_app_token_async(emu: WebexEmulator, integ_token: str) -> None:
    await emu.aauthorize_service_app(emu.org.org_id)
    async with httpx.AsyncClient() as client:
        resp = await client.post(
            f"{emu.base_url}/applications/{emu.service_app.application_id}/token",
            headers=bearer(integ_token),
            json={
                "clientId": emu.service_app.client_id,
                "clientSecret": emu.service_app.client_secret,
                "targetOrgId": emu.org.org_id,
            },
        )
        assert resp.status_code == 200
    await emu.adeauthorize_service_app(emu.org.org_id)
    assert not emu.is_authorized(emu.org.org_id)
