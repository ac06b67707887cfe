"""``BYOVA.from_env()`` with the emulator's printed exports trusts the emulator's tokens.

The env loader and the CLI build their config with one function (``config_for_base_url``): a
non-Webex base URL moves the REST URLs *and* the JWS key set and issuer to that origin.
"""

from __future__ import annotations

import pytest

from webex_byova import BYOVA, BYOVAConfig
from webex_byova._env import config_for_base_url, load_env
from webex_byova.cli._emulator_cmd import emulator_info
from webex_byova.jws import JWSVerificationError
from webex_byova.testing import WebexEmulator

DS_URL = "https://va.example.com/byova"


@pytest.fixture
def emulator_exports(
    webex_emulator: WebexEmulator, monkeypatch: pytest.MonkeyPatch
) -> WebexEmulator:
    """What a user pastes from `byova emulator` (plus an in-memory token store)."""
    for name, value in emulator_info(webex_emulator)["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("WEBEX_TOKEN_STORE", "memory")
    return webex_emulator


def test_from_env_verifies_the_emulators_data_source_tokens(
    emulator_exports: WebexEmulator,
) -> None:
    emu = emulator_exports
    token = emu.mint_data_source_token(url=DS_URL)
    with BYOVA.from_env() as sdk:
        assert sdk.config.jwk_url == emu.jwks_url
        assert emu.issuer in sdk.jws.issuers
        claims = sdk.verify_jws_token(token)
        assert claims["iss"] == emu.issuer
        assert sdk.verify_jws_token(token, expected_url=DS_URL)["sub"] == "callAudioData"
        with pytest.raises(JWSVerificationError) as info:
            sdk.verify_jws_token(token, expected_url=DS_URL + "/other")
        assert info.value.reason == "claim_mismatch:url"
        with pytest.raises(JWSVerificationError) as info:
            sdk.verify_jws_token(token, expected_org_id="0" * 8 + "-0000-0000-0000-" + "0" * 12)
        assert info.value.reason.startswith("claim_mismatch:")


async def test_from_env_verifies_the_emulators_tokens_async(
    emulator_exports: WebexEmulator,
) -> None:
    emu = emulator_exports
    token = emu.mint_data_source_token(url=DS_URL)
    async with BYOVA.from_env() as sdk:
        claims = await sdk.averify_jws_token(token, expected_url=DS_URL)
        assert claims["com.cisco.datasource.url"] == DS_URL
        with pytest.raises(JWSVerificationError) as info:
            await sdk.averify_jws_token(token, expected_url="https://elsewhere.example.com")
        assert info.value.reason == "claim_mismatch:url"


def test_from_env_still_rejects_a_foreign_issuer(emulator_exports: WebexEmulator) -> None:
    forged = emulator_exports.mint_data_source_token(
        url=DS_URL, issuer="https://evil.example.com/idb"
    )
    with BYOVA.from_env() as sdk, pytest.raises(JWSVerificationError) as info:
        sdk.verify_jws_token(forged)
    assert info.value.reason == "issuer_not_allowed"


def test_load_env_and_the_cli_share_one_config_rule() -> None:
    env = {
        "WEBEX_INTEGRATION_CLIENT_ID": "i",
        "WEBEX_INTEGRATION_CLIENT_SECRET": "s",
        "WEBEX_SA_CLIENT_ID": "a",
        "WEBEX_SA_CLIENT_SECRET": "b",
        "WEBEX_BASE_URL": "http://127.0.0.1:8900/v1/",
        "WEBEX_REGION": "EU",
    }
    config = load_env(env).config
    assert config == config_for_base_url("http://127.0.0.1:8900/v1", region="eu")
    assert config.token_url == "http://127.0.0.1:8900/v1/access_token"
    assert config.jwk_url == "http://127.0.0.1:8900/idb/oauth2/v2/keys/verificationjwk"
    assert config.extra_issuers == ("http://127.0.0.1:8900/idb",)
    # real Webex keeps every default (no extra issuer is trusted)
    real = load_env({**env, "WEBEX_BASE_URL": "https://webexapis.com/v1/"}).config
    assert real == BYOVAConfig(region="eu")
    with pytest.raises(ValueError, match="WEBEX_REGION/WEBEX_BASE_URL"):
        load_env({**env, "WEBEX_BASE_URL": "ftp://x"})
