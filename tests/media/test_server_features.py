"""TLS and mutual TLS, reflection, proxy connectors, serve() signals and log context."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import signal
import threading
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from webex_byova.media.assets import load
from webex_byova.media.config import MediaServerConfig
from webex_byova.media.events import MediaEvent
from webex_byova.media.server import BYOVAMediaServer
from webex_byova.testing import WebexCaller


def make_config(**overrides: Any) -> MediaServerConfig:
    return MediaServerConfig(host="127.0.0.1", port=0, verify_tokens=False, **overrides)


def _cert(name: str, issuer: tuple[Any, x509.Name] | None, *, ca: bool = False) -> tuple[Any, Any]:
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
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
        )
    cert = builder.sign(issuer[0] if issuer else key, hashes.SHA256())
    return key, cert


def _pem(key: Any, cert: Any) -> tuple[bytes, bytes]:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("pki")
    ca_key, ca_cert = _cert("test-ca", None, ca=True)
    out: dict[str, Any] = {"dir": root}
    for name in ("server", "client"):
        key, cert = _cert(name if name == "client" else "localhost", (ca_key, ca_cert.subject))
        key_pem, cert_pem = _pem(key, cert)
        (root / f"{name}.key").write_bytes(key_pem)
        (root / f"{name}.pem").write_bytes(cert_pem)
        out[name] = (key_pem, cert_pem)
    out["ca"] = ca_cert.public_bytes(serialization.Encoding.PEM)
    (root / "ca.pem").write_bytes(out["ca"])
    return out


async def _welcome_server(**config: Any) -> BYOVAMediaServer:
    server = BYOVAMediaServer(make_config(**config))

    @server.on("session_start")
    def welcome(event: Any) -> None:
        event.turn.say("secure hello")

    await server.start()
    return server


async def test_tls_and_mutual_tls(pki: dict[str, Any]) -> None:
    root: Path = pki["dir"]
    tls = {"tls_cert_file": root / "server.pem", "tls_key_file": root / "server.key"}
    options = (("grpc.ssl_target_name_override", "localhost"),)
    server = await _welcome_server(**tls)
    try:
        creds = grpc.ssl_channel_credentials(root_certificates=pki["ca"])
        channel = grpc.aio.secure_channel(server.address, creds, options=options)
        async with WebexCaller(channel=channel, realtime=False) as caller:
            assert (await caller.start_session()).texts == ["secure hello"]
        await channel.close()
        async with WebexCaller(server.address, realtime=False, rpc_timeout=2) as plain:
            assert not (await plain.start_session()).ok  # plaintext client refused
    finally:
        await server.stop(0.2)

    server = await _welcome_server(
        **tls, tls_client_ca_file=root / "ca.pem", tls_require_client_cert=True
    )
    try:
        key, cert = pki["client"]
        creds = grpc.ssl_channel_credentials(pki["ca"], private_key=key, certificate_chain=cert)
        channel = grpc.aio.secure_channel(server.address, creds, options=options)
        async with WebexCaller(channel=channel, realtime=False) as caller:
            assert (await caller.start_session()).texts == ["secure hello"]
        await channel.close()
        no_cert = grpc.ssl_channel_credentials(root_certificates=pki["ca"])
        channel = grpc.aio.secure_channel(server.address, no_cert, options=options)
        async with WebexCaller(channel=channel, realtime=False, rpc_timeout=2) as caller:
            result = await caller.start_session()
        await channel.close()
        assert result.code == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(0.2)


async def test_reflection_lists_services() -> None:
    from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

    server = await _welcome_server(reflection=True)
    try:
        async with grpc.aio.insecure_channel(server.address) as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in stub.ServerReflectionInfo(iter([request])):
                names = {s.name for s in reply.list_services_response.service}
                break
        assert "com.cisco.wcc.ccai.media.v1.VoiceVirtualAgent" in names
        assert "grpc.health.v1.Health" in names
    finally:
        await server.stop(0.2)


class RecordingConnector:
    """A proxy connector: sees every event after the handlers and answers the utterance."""

    def __init__(self) -> None:
        self.events: list[str] = []
        self.frames = 0
        self.closed = False

    async def on_event(self, event: MediaEvent) -> None:
        if event.name == "audio_input":
            self.frames += 1
            return
        self.events.append(event.name)
        if event.name == "utterance":
            assert event.turn is not None
            event.turn.say("from the backend")

    async def aclose(self) -> None:
        self.closed = True


async def test_proxy_connector_receives_events_alongside_handlers(media_server, caller_factory):
    server = await media_server()
    local: list[str] = []
    server.on("session_start")(lambda event: local.append(event.name))
    connector = RecordingConnector()
    server.use_proxy(connector)
    with pytest.raises(TypeError):
        server.use_proxy(object())
    await server.start()
    caller = caller_factory(server)
    await caller.start_session()
    reply = await caller.say(wav=load("speech_yes.wav"))
    await caller.end_session()
    await server.stop(1.0)
    assert reply.texts == ["from the backend"]
    assert local == ["session_start"]
    for name in ("session_start", "turn_started", "start_of_input", "utterance", "session_end"):
        assert name in connector.events
    assert connector.frames > 10
    assert connector.closed


def test_serve_outside_the_main_thread_runs_without_signals_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A loop in a worker thread cannot take signal handlers (asyncio raises RuntimeError):
    # serve() still serves, says why in the log, and returns when the server is stopped.
    caplog.set_level(logging.INFO, logger="webex_byova.media")
    server = BYOVAMediaServer(make_config(drain_timeout_s=0))
    server.on("session_start")(lambda event: event.turn.say("hi"))
    outcome: list[object] = []

    async def main() -> None:
        task = asyncio.ensure_future(server.serve())
        while not server.port and not task.done():
            await asyncio.sleep(0.01)
        async with WebexCaller(server.address, realtime=False) as caller:
            outcome.append((await caller.start_session()).texts)
        await server.stop()
        await asyncio.wait_for(task, 10)
        outcome.append("returned")

    thread = threading.Thread(target=asyncio.run, args=(main(),))
    thread.start()
    thread.join(30)
    assert outcome == [["hi"], "returned"]
    refused = [r.getMessage() for r in caplog.records if "not handled here" in r.getMessage()]
    names = [m.split(" not handled here (", 1)[0] for m in refused]
    assert names == ["SIGINT", "SIGTERM"]
    assert all("main thread" in m and m.endswith("): stop() ends serve()") for m in refused)


async def test_serve_stops_on_sigterm(caplog: pytest.LogCaptureFixture) -> None:
    # serve() drains on SIGTERM: the call below stays live (no SESSION_END) and has no open
    # turn, so with no drain time it is dropped at once, and that is logged.
    server = BYOVAMediaServer(make_config(drain_timeout_s=0))
    server.on("session_start")(lambda event: event.turn.say("hi"))
    caplog.set_level(logging.INFO, logger="webex_byova.media")
    task = asyncio.ensure_future(server.serve())
    while not server.port:
        await asyncio.sleep(0.01)
    async with WebexCaller(server.address, realtime=False, tracking_id="TRACK") as caller:
        assert (await caller.start_session()).ok
    os.kill(os.getpid(), signal.SIGTERM)
    await asyncio.wait_for(task, 30)
    assert any("stopped" in r.getMessage() for r in caplog.records)
    messages = [r.getMessage() for r in caplog.records]
    assert any(
        m.startswith("draining: 1 live conversations continue for up to 0s") for m in messages
    )
    assert any("dropped without a transfer" in m for m in messages)
    keyed = [r for r in caplog.records if getattr(r, "conversation_id", None)]
    assert keyed, "logs carry conversation_id"
