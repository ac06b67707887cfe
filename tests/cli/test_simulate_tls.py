"""`byova simulate` against a real TLS (and mutual TLS) `byova serve`, certificates made here."""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from webex_byova.cli import app
from webex_byova.testing import WebexCaller

from .conftest import BYOVA
from .test_serve_reload import APP, Lines

SERVER_NAME = "bot.example.test"


def _issue(
    name: str, issuer: tuple[Any, x509.Name] | None, *, ca: bool = False, san: bool = True
) -> tuple[bytes, bytes, Any, x509.Name]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[1] if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName(SERVER_NAME), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), key, subject


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A private CA, a server certificate for bot.example.test and 127.0.0.1, a client one."""
    root = tmp_path_factory.mktemp("pki")
    _, ca_pem, ca_key, ca_name = _issue("test CA", None, ca=True, san=False)
    (root / "ca.pem").write_bytes(ca_pem)
    for name in ("server", "client"):
        key_pem, cert_pem, _, _ = _issue(name, (ca_key, ca_name), san=name == "server")
        (root / f"{name}.key").write_bytes(key_pem)
        (root / f"{name}.pem").write_bytes(cert_pem)
    (root / "app.py").write_text(APP.format(text="secure hello"))
    return root


@contextlib.contextmanager
def tls_server(pki: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """`byova serve app.py` with TLS on 127.0.0.1; yields its host:port."""
    args = ["serve", "app.py", "--host", "127.0.0.1", "--port", "0"]
    args += ["--tls-cert", str(pki / "server.pem"), "--tls-key", str(pki / "server.key"), *extra]
    proc = subprocess.Popen(
        [str(BYOVA), *args],
        cwd=pki,
        env={**os.environ, "WEBEX_MEDIA_VERIFY_TOKENS": "false", **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = Lines(proc.stderr)
    try:
        yield lines.wait_for(r"^serving app\.py on (127\.0\.0\.1:\d+) \(TLS,").group(1)
    finally:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(timeout=20)
        lines.thread.join(timeout=20)
        assert proc.stderr is not None
        proc.stderr.close()
        assert code == 0, lines.seen


def simulate(runner: CliRunner, target: str, *args: str) -> Any:
    base = ["simulate", "--target", target, "--turns", "0", "--fast"]
    return runner.invoke(app, [*base, *args], env={"COLUMNS": "250"})


def welcome_texts(result: Any) -> list[str]:
    assert result.exit_code == 0, result.output
    call = json.loads(result.stdout)
    assert call["ok"] is True
    return [t for turn in call["turns"] for t in turn["texts"]]


def test_simulate_over_tls(runner: CliRunner, pki: Path) -> None:
    ca = str(pki / "ca.pem")
    with tls_server(pki) as target:
        # the CA signed a certificate naming 127.0.0.1: --ca-cert is enough (implies --tls)
        assert welcome_texts(simulate(runner, target, "--ca-cert", ca, "--json")) == [
            "secure hello"
        ]
        by_name = simulate(runner, target, "--ca-cert", ca, "--tls-server-name", SERVER_NAME)
        assert by_name.exit_code == 0, by_name.output
        assert "secure hello" in by_name.output

        wrong_name = simulate(runner, target, "--ca-cert", ca, "--tls-server-name", "other.test")
        assert wrong_name.exit_code == 1
        assert "UNAVAILABLE" in wrong_name.output
        assert "hint: the server is unreachable or the TLS handshake failed" in wrong_name.output

        # the system's roots do not know this private CA
        untrusted = simulate(runner, target, "--tls")
        assert untrusted.exit_code == 1
        assert "UNAVAILABLE" in untrusted.output

        # what users hit first: a plaintext call to a TLS server, now with a hint
        plain = simulate(runner, target)
        assert plain.exit_code == 1
        assert "hint: the server is unreachable, or it expects TLS" in plain.output
        assert "add --tls (and --ca-cert for a private CA)" in plain.output


def test_simulate_with_mutual_tls(runner: CliRunner, pki: Path) -> None:
    ca = str(pki / "ca.pem")
    client = ["--client-cert", str(pki / "client.pem"), "--client-key", str(pki / "client.key")]
    env = {  # what the app's from_env() validates, before the CLI's --tls-* options apply
        "WEBEX_MEDIA_TLS_CERT_FILE": str(pki / "server.pem"),
        "WEBEX_MEDIA_TLS_KEY_FILE": str(pki / "server.key"),
        "WEBEX_MEDIA_TLS_CLIENT_CA_FILE": ca,
        "WEBEX_MEDIA_TLS_REQUIRE_CLIENT_CERT": "true",
    }
    with tls_server(pki, env=env) as target:
        assert welcome_texts(simulate(runner, target, "--ca-cert", ca, *client, "--json")) == [
            "secure hello"
        ]
        no_client_cert = simulate(runner, target, "--ca-cert", ca)
        assert no_client_cert.exit_code == 1
        assert "UNAVAILABLE" in no_client_cert.output


def test_tls_options_are_checked_before_calling(runner: CliRunner, pki: Path) -> None:
    half = simulate(runner, "127.0.0.1:9", "--client-cert", str(pki / "client.pem"))
    assert half.exit_code == 1
    assert "--client-cert and --client-key go together (mutual TLS)" in half.output
    missing = simulate(runner, "127.0.0.1:9", "--ca-cert", str(pki / "nope.pem"))
    assert missing.exit_code == 1
    assert "nope.pem" in missing.output


async def test_webex_caller_tls_options(pki: Path) -> None:
    with pytest.raises(ValueError, match="tls_server_name needs TLS"):
        WebexCaller("127.0.0.1:9", tls_server_name=SERVER_NAME)
    with tls_server(pki) as target:
        # tls=True trusts the system's roots only: this private CA is refused
        async with WebexCaller(target, tls=True, realtime=False, rpc_timeout=5) as caller:
            refused = await caller.start_session()
        assert refused.code == grpc.StatusCode.UNAVAILABLE
        creds = grpc.ssl_channel_credentials((pki / "ca.pem").read_bytes())
        async with WebexCaller(
            target, credentials=creds, tls_server_name=SERVER_NAME, realtime=False
        ) as caller:
            assert (await caller.start_session()).texts == ["secure hello"]
