"""Config validation, id helpers, secret masking and the no-extras import."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap

import pytest

import webex_byova
from webex_byova import _ids
from webex_byova._logging import get_logger, mask, redact, redact_mapping
from webex_byova.config import BYOVAConfig


def test_config_defaults_match_reference() -> None:
    cfg = BYOVAConfig()
    assert cfg.base_url == "https://webexapis.com/v1"
    assert cfg.authorize_url == "https://webexapis.com/v1/authorize"
    assert cfg.token_url == "https://webexapis.com/v1/access_token"
    assert cfg.jwk_url_us == "https://idbroker.webex.com/idb/oauth2/v2/keys/verificationjwk"
    assert cfg.jwk_url_eu == "https://idbroker-eu.webex.com/idb/oauth2/v2/keys/verificationjwk"
    assert cfg.region == "us"
    assert cfg.timeout == 30.0
    assert cfg.jwk_url == cfg.jwk_url_us
    assert BYOVAConfig(region="EU").jwk_url == cfg.jwk_url_eu
    assert cfg.max_retries >= 1
    assert cfg.user_agent.startswith(f"webex-byova-sdk/{webex_byova.__version__} python/")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"region": "apac"},
        {"timeout": 0},
        {"timeout": -1.5},
        {"max_retries": -1},
        {"retry_deadline": 0},
        {"base_url": "ftp://x"},
        {"backoff_base": -1},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"retry_deadline": float("nan")},
        {"backoff_base": float("nan")},
    ],
)
def test_config_rejects_invalid_values(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BYOVAConfig(**kwargs)  # type: ignore[arg-type]


ORG = "2b0c8f0c-7ef6-4c9a-9d2e-1f0e3c4b5a69"


def test_org_ids_round_trip_between_uuid_and_hydra() -> None:
    hydra = _ids.org_hydra_id(ORG)
    assert _ids.from_hydra(hydra) == ("us", "ORGANIZATION", ORG)
    assert _ids.org_uuid(hydra) == ORG
    assert _ids.org_uuid(ORG.upper()) == ORG
    padded = _ids.to_hydra("ORGANIZATION", ORG, padding=True)
    assert _ids.org_uuid(padded) == ORG
    assert _ids.org_hydra_id(hydra) == hydra
    with pytest.raises(ValueError):
        _ids.org_uuid("not-an-org")
    with pytest.raises(ValueError):
        _ids.org_uuid(_ids.to_hydra("PEOPLE", ORG))


def test_application_id_matches_spec_example_and_region() -> None:
    expected = "Y2lzY29zcGFyazovL3VzL0FQUExJQ0FUSU9OL0MyNzljYjMwYWI0OTQ3MGFhM2ViYTgwY2Q4MmYxMTc1"
    assert _ids.application_id("C279cb30ab49470aa3eba80cd82f1175") == expected
    eu = _ids.application_id("C279cb30ab49470aa3eba80cd82f1175", region="eu")
    assert _ids.from_hydra(eu) == ("eu", "APPLICATION", "C279cb30ab49470aa3eba80cd82f1175")


def test_mask_and_redact_hide_secrets() -> None:
    token = "ZDI3MGEyYzQtNmFlNS00NDNhLWFmNzktMjkxODU5MWM0NjQ2ZmY3_PF84_org"
    assert token not in mask(token)
    assert mask("short") == "***"
    assert mask(None) == "None"
    text = f"Authorization: Bearer {token} refresh_token={token}&x=1 eyJhbGciOi.eyJzdWIi.sig"
    cleaned = redact(text)
    assert token not in cleaned
    assert "eyJzdWIi" not in cleaned
    data = redact_mapping({"client_secret": token, "nested": {"refresh_token": token}, "n": 1})
    assert token not in repr(data)
    assert data["n"] == 1


def test_package_logger_has_null_handler() -> None:
    handlers = logging.getLogger("webex_byova").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)
    assert get_logger("x").name == "webex_byova.x"


def test_import_without_any_extra_and_clear_error_for_missing_extra() -> None:
    """With grpc/typer/rich/redis/numpy/websockets unimportable, the core still works and a
    media name raises MissingExtraError naming the extra (never a silent ``None``)."""
    script = textwrap.dedent(
        """
        import sys
        BLOCKED = {"grpc", "grpc_health", "grpc_reflection", "google", "typer", "rich",
                   "redis", "numpy", "websockets", "webrtcvad"}

        class Blocker:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in BLOCKED:
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None

        sys.meta_path.insert(0, Blocker())
        import webex_byova
        from webex_byova import BYOVAConfig, WebexBYOVAError, MissingExtraError
        assert BYOVAConfig().region == "us"
        try:
            webex_byova.BYOVAMediaServer
        except MissingExtraError as exc:
            assert exc.extra == "media", exc
            assert "webex-byova-sdk[media]" in str(exc)
            print("OK")
        else:
            raise SystemExit("media name resolved without the extra")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "OK"


def test_unknown_attribute_raises_attribute_error() -> None:
    with pytest.raises(AttributeError):
        _ = webex_byova.DoesNotExist  # type: ignore[attr-defined]
