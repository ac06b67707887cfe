"""Sans-IO pieces: PKCE, authorize URL, callbacks, token parsing, models, env, Locked effect."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from urllib.parse import parse_qs, urlsplit

import pytest

from webex_byova._env import load_env
from webex_byova._flow import Call, Locked, run_async
from webex_byova._http import HttpClient, Response
from webex_byova._oauth import (
    authorization_code_form,
    callback_page,
    code_challenge,
    is_dead_refresh_error,
    new_authorization_request,
    parse_callback,
    parse_token_response,
    redirect_target,
    refresh_form,
    with_port,
)
from webex_byova.credentials import IntegrationCredentials, ServiceAppCredentials
from webex_byova.errors import AuthenticationError, ValidationError, WebexBYOVAError
from webex_byova.storage import EncryptedTokenStorage, InMemoryTokenStorage, SQLiteTokenStorage
from webex_byova.tokens import OAuthToken

SECRET = "S3CRET-" + "z" * 40


def test_pkce_s256_matches_rfc7636_example() -> None:
    # RFC 7636 appendix B.
    verifier = "dBjftJeZ4CVP-mJ92IZ6ZYoGe1E9LnF5lh3BRkO8ZmLlI"[:43]
    expected = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    assert code_challenge(verifier) == expected.decode()
    assert code_challenge("dBjftJeZ4CVP-mJ92IZ6ZYoGe1E9LnF5lh3BRkO8ZmLlI") != ""


def test_authorize_url_has_state_pkce_and_encoded_scopes() -> None:
    req = new_authorization_request(
        "https://webexapis.com/v1/authorize",
        client_id="cid",
        redirect_uri="http://localhost:8765/callback",
        scopes=("spark:applications_token", "application:webhooks_read"),
    )
    parts = urlsplit(req.url)
    query = parse_qs(parts.query)
    assert parts.path == "/v1/authorize"
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["cid"]
    assert query["scope"] == ["spark:applications_token application:webhooks_read"]
    assert "%20" in parts.query
    assert "+" not in parts.query
    assert query["state"] == [req.state]
    assert query["code_challenge"] == [code_challenge(req.code_verifier)]
    assert query["code_challenge_method"] == ["S256"]
    assert 43 <= len(req.code_verifier) <= 128
    other = new_authorization_request(
        "https://x/authorize", client_id="c", redirect_uri="http://l/cb", scopes=()
    )
    assert other.state != req.state
    assert other.code_verifier != req.code_verifier
    assert req.state not in repr(req)


def test_token_request_bodies() -> None:
    form = authorization_code_form(
        client_id="c", client_secret="s", code="k", redirect_uri="http://l/cb", code_verifier="v"
    )
    assert form == {
        "grant_type": "authorization_code",
        "client_id": "c",
        "client_secret": "s",
        "code": "k",
        "redirect_uri": "http://l/cb",
        "code_verifier": "v",
    }
    assert refresh_form(client_id="c", client_secret="s", refresh_token="r")["grant_type"] == (
        "refresh_token"
    )


def test_parse_callback_outcomes() -> None:
    ok = parse_callback("/cb?code=abc&state=s1", expected_state="s1")
    assert ok.code == "abc"
    assert ok.raise_for_error() == "abc"
    assert callback_page(ok)[0] == 200
    for target, error in [
        ("/cb?code=abc&state=s2", "state_mismatch"),
        ("/cb?code=abc", "state_mismatch"),
        ("/cb?state=s1", "missing_code"),
        ("/cb?error=access_denied&state=s1", "access_denied"),
        ("/cb?error=invalid_scope&error_description=%3Cb%3E&state=s1", "invalid_scope"),
    ]:
        result = parse_callback(target, expected_state="s1")
        assert result.error == error
        with pytest.raises(AuthenticationError, match=error):
            result.raise_for_error()
        status, body = callback_page(result)
        assert status == 400
        assert b"<b>" not in body


def test_redirect_helpers() -> None:
    assert redirect_target("http://localhost:0/callback") == ("localhost", 0, "/callback")
    assert redirect_target("http://127.0.0.1/cb") == ("127.0.0.1", 80, "/cb")
    assert with_port("http://127.0.0.1:0/cb?x=1", 5555) == "http://127.0.0.1:5555/cb?x=1"
    with pytest.raises(ValueError, match="http://"):
        redirect_target("https://example.com/cb")


def test_parse_token_response_keeps_previous_refresh_token() -> None:
    now = 1_000_000.0
    first = parse_token_response(
        {
            "access_token": "a1",
            "expires_in": 100,
            "refresh_token": "r1",
            "refresh_token_expires_in": 1000,
            "token_type": "Bearer",
        },
        now=now,
    )
    assert (first.expires_at, first.refresh_token_expires_at) == (now + 100, now + 1000)
    second = parse_token_response(
        {"access_token": "a2", "expires_in": 50}, now=now + 10, previous=first
    )
    assert second.refresh_token == "r1"
    assert second.refresh_token_expires_at == now + 1000
    response = Response(200, {}, b'{"access_token": "a3"}', "https://x", "POST")
    assert parse_token_response(response, now=now).expires_at == now + 1_209_600
    with pytest.raises(AuthenticationError, match="access_token"):
        parse_token_response({"expires_in": 1}, now=now)


def test_dead_refresh_detection() -> None:
    def err(status: int, body: object, descriptions: list[str] | None = None) -> WebexBYOVAError:
        return ValidationError("x", status_code=status, body=body, descriptions=descriptions)

    assert is_dead_refresh_error(err(400, {"error": "invalid_grant"}))
    assert is_dead_refresh_error(err(400, {"message": "invalid_grant: expired"}))
    assert is_dead_refresh_error(err(400, {}, ["invalid_grant"]))
    assert is_dead_refresh_error(AuthenticationError("x", status_code=401))
    assert not is_dead_refresh_error(err(400, {"error": "invalid_request"}))
    assert not is_dead_refresh_error(AuthenticationError("x", status_code=403))
    assert not is_dead_refresh_error(ValueError("x"))


def test_token_model() -> None:
    token = OAuthToken(
        "A" * 40, expires_at=1000.0, refresh_token=SECRET, obtained_at=0.0, scope="s"
    )
    assert SECRET not in repr(token)
    assert "A" * 10 not in repr(token)
    assert SECRET not in str(token)
    assert OAuthToken.from_json(token.to_json()) == token
    assert token.is_expired(999.0, skew=1.0)
    assert not token.is_expired(998.0, skew=1.0)
    # Margin 300 is capped at half of the 1000 s lifetime... 300 < 500, so refresh at 700.
    assert token.should_refresh(700.0, 300.0)
    assert not token.should_refresh(699.0, 300.0)
    short = OAuthToken("a" * 20, expires_at=60.0, obtained_at=0.0)
    assert not short.should_refresh(29.0, 300.0)
    assert short.should_refresh(30.0, 300.0)
    assert not token.refresh_token_expired(10**9)
    assert OAuthToken("a" * 20, 1.0).refresh_token_expired(0.0)
    with pytest.raises(ValueError, match="access_token"):
        OAuthToken.from_dict({"expires_at": 1})
    with pytest.raises(ValueError, match="access_token"):
        OAuthToken("", 1.0)


def test_credentials_mask_secrets_and_validate() -> None:
    integ = IntegrationCredentials("cid", SECRET, scopes="a b")  # type: ignore[arg-type]
    assert SECRET not in repr(integ)
    assert integ.scopes == ("a", "b")
    assert integ.redirect_uri == "http://localhost:8765/callback"
    sa = ServiceAppCredentials("sid", SECRET)
    assert SECRET not in repr(sa)
    with pytest.raises(ValueError, match="client_secret"):
        ServiceAppCredentials("sid", " ")
    with pytest.raises(ValueError, match="redirect_uri"):
        IntegrationCredentials("c", "s", redirect_uri="ftp://x")


REQUIRED = {
    "WEBEX_INTEGRATION_CLIENT_ID": "iid",
    "WEBEX_INTEGRATION_CLIENT_SECRET": "isecret",
    "WEBEX_SA_CLIENT_ID": "sid",
    "WEBEX_SA_CLIENT_SECRET": "ssecret",
}


def test_env_names_every_missing_variable() -> None:
    with pytest.raises(ValueError) as info:
        load_env({"WEBEX_SA_CLIENT_ID": "x", "WEBEX_INTEGRATION_CLIENT_SECRET": "  "})
    message = str(info.value)
    for name in (
        "WEBEX_INTEGRATION_CLIENT_ID",
        "WEBEX_INTEGRATION_CLIENT_SECRET",
        "WEBEX_SA_CLIENT_SECRET",
    ):
        assert name in message
    assert "WEBEX_SA_CLIENT_ID," not in message
    assert not message.endswith("WEBEX_SA_CLIENT_ID")


def test_env_builds_everything(tmp_path: object) -> None:
    settings = load_env(REQUIRED)
    assert settings.integration.client_id == "iid"
    assert settings.service_app.client_id == "sid"
    assert isinstance(settings.token_storage, InMemoryTokenStorage)
    assert settings.config.base_url == "https://webexapis.com/v1"
    from webex_byova.storage import generate_key

    env = dict(
        REQUIRED,
        WEBEX_INTEGRATION_REDIRECT_URI="http://127.0.0.1:0/cb",
        WEBEX_INTEGRATION_SCOPES="a,b c",
        WEBEX_SA_APPLICATION_ID="APP",
        WEBEX_REGION="eu",
        WEBEX_BASE_URL="http://127.0.0.1:9/v1/",
        WEBEX_TOKEN_STORE=f"sqlite:///{tmp_path}/t.db",
        WEBEX_TOKEN_STORE_KEY=generate_key(),
    )
    full = load_env(env)
    assert full.integration.redirect_uri == "http://127.0.0.1:0/cb"
    assert full.integration.scopes == ("a", "b", "c")
    assert full.service_app.application_id == "APP"
    assert full.config.region == "eu"
    assert full.config.token_url == "http://127.0.0.1:9/v1/access_token"
    assert isinstance(full.token_storage, EncryptedTokenStorage)
    assert isinstance(full.token_storage.inner, SQLiteTokenStorage)
    explicit = InMemoryTokenStorage()
    assert load_env(env, token_storage=explicit).token_storage is explicit
    with pytest.raises(ValueError, match="WEBEX_TOKEN_STORE"):
        load_env(dict(REQUIRED, WEBEX_TOKEN_STORE="ftp://x"))
    with pytest.raises(ValueError, match="WEBEX_REGION"):
        load_env(dict(REQUIRED, WEBEX_REGION="mars"))


async def test_locked_effect_serializes_and_survives_cancellation() -> None:
    http = HttpClient()
    entered: list[int] = []
    gate = asyncio.Event()

    def critical(n: int) -> object:
        entered.append(n)
        yield Call(gate.wait)
        return n

    def outer(n: int) -> object:
        return (yield Locked("test:key", critical(n)))

    first = asyncio.ensure_future(run_async(outer(1), http))  # type: ignore[arg-type]
    second = asyncio.ensure_future(run_async(outer(2), http))  # type: ignore[arg-type]
    for _ in range(5):
        await asyncio.sleep(0)
    assert entered == [1]  # the second flow waits for the lock
    first.cancel()  # cancelled while holding the lock: the driver must release it
    with pytest.raises(asyncio.CancelledError):
        await first
    for _ in range(5):
        await asyncio.sleep(0)
    assert entered == [1, 2]
    gate.set()
    assert await asyncio.wait_for(second, 5) == 2
    await http.aclose()
