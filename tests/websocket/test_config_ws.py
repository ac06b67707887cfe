"""The WebSocket settings of MediaServerConfig and their WEBEX_MEDIA_WS_* variables."""

from __future__ import annotations

from pathlib import Path

import pytest

from webex_byova.media._ws_codec import WS_SCHEMA_ID
from webex_byova.media.config import DEFAULT_WS_SCHEMA_ID, MediaServerConfig


def test_defaults() -> None:
    cfg = MediaServerConfig()
    assert cfg.transport == "grpc"
    assert (cfg.ws_host, cfg.ws_port, cfg.ws_tls) == ("0.0.0.0", 8765, False)
    assert cfg.ws_expected_schema_id == DEFAULT_WS_SCHEMA_ID == WS_SCHEMA_ID
    assert cfg.ws_max_message_bytes == 128 * 1024
    assert cfg.ws_max_audio_bytes == 64 * 1024
    assert cfg.ws_reply_chunk_bytes == 8000


def test_from_env() -> None:
    env = {
        "WEBEX_MEDIA_TRANSPORT": "both",
        "WEBEX_MEDIA_WS_HOST": "127.0.0.1",
        "WEBEX_MEDIA_WS_PORT": "9443",
        "WEBEX_MEDIA_WS_TLS_CERT_FILE": "/certs/cert.pem",
        "WEBEX_MEDIA_WS_TLS_KEY_FILE": "/certs/key.pem",
        "WEBEX_MEDIA_WS_EXPECTED_URL": "wss://byova.example.com",
        "WEBEX_MEDIA_WS_SESSION_START_TIMEOUT_S": "5",
        "WEBEX_MEDIA_WS_REPLY_CHUNK_BYTES": "16000",
    }
    cfg = MediaServerConfig.from_env(env)
    assert cfg.transport == "both"
    assert (cfg.ws_host, cfg.ws_port) == ("127.0.0.1", 9443)
    assert cfg.ws_tls
    assert cfg.ws_tls_cert_file == Path("/certs/cert.pem")
    assert cfg.ws_expected_url == "wss://byova.example.com"
    assert cfg.ws_session_start_timeout_s == 5.0
    assert cfg.ws_reply_chunk_bytes == 16000
    blank = MediaServerConfig.from_env({"WEBEX_MEDIA_WS_EXPECTED_URL": ""})
    assert blank.ws_expected_url is None


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"WEBEX_MEDIA_TRANSPORT": "carrier-pigeon"}, "WEBEX_MEDIA_TRANSPORT"),
        ({"WEBEX_MEDIA_WS_PORT": "70000"}, "WEBEX_MEDIA_WS_PORT"),
        ({"WEBEX_MEDIA_WS_EXPECTED_URL": "https://h"}, "WEBEX_MEDIA_WS_EXPECTED_URL"),
        ({"WEBEX_MEDIA_WS_EXPECTED_URL": "wss://h/v1/va"}, "WEBEX_MEDIA_WS_EXPECTED_URL"),
        ({"WEBEX_MEDIA_WS_REPLY_CHUNK_BYTES": "100"}, "WEBEX_MEDIA_WS_REPLY_CHUNK_BYTES"),
        ({"WEBEX_MEDIA_WS_REPLY_CHUNK_BYTES": "40000"}, "WEBEX_MEDIA_WS_REPLY_CHUNK_BYTES"),
        ({"WEBEX_MEDIA_WS_SESSION_START_TIMEOUT_S": "0"}, "WEBEX_MEDIA_WS_SESSION_START"),
    ],
)
def test_bad_values_name_their_variable(env: dict[str, str], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        MediaServerConfig.from_env(env)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"ws_tls_cert_file": "/c.pem"}, "must be set together"),
        ({"transport": "websocket", "sample_rate": 16000}, "8 kHz"),
        ({"transport": "both", "sample_rate": 16000}, "8 kHz"),
    ],
)
def test_inconsistent_settings(values: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        MediaServerConfig(**values)  # type: ignore[arg-type]


def test_grpc_only_may_keep_16_khz() -> None:
    assert MediaServerConfig(sample_rate=16000).transport == "grpc"
