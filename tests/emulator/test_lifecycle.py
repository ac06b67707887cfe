"""Lifecycle, configuration, fixture and packaging of the emulator."""

from __future__ import annotations

import subprocess
import sys

import httpx
import pytest

import webex_byova.testing as testing_pkg
from webex_byova.config import BYOVAConfig
from webex_byova.testing import EmulatorClock, WebexEmulator


def test_fixture_is_started(webex_emulator: WebexEmulator) -> None:
    assert webex_emulator.running
    assert httpx.get(webex_emulator.jwks_url).status_code == 200


def test_context_manager_and_idempotent_stop() -> None:
    emu = WebexEmulator()
    assert not emu.running
    with pytest.raises(ValueError):
        _ = emu.url
    with emu as started:
        assert started is emu
        assert emu.running
        assert emu.start() is emu  # second start is a no-op
        url = emu.jwks_url
        with httpx.Client() as client:
            assert client.get(url).status_code == 200
    assert not emu.running
    emu.stop()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url)
    assert "stopped" in repr(emu)


def test_stop_closes_keep_alive_connections() -> None:
    emu = WebexEmulator().start()
    with httpx.Client() as client:
        assert client.get(emu.jwks_url).status_code == 200
        emu.stop()  # the client still holds a keep-alive connection
        with pytest.raises(httpx.TransportError):
            client.get(emu.jwks_url)


async def test_async_context_manager() -> None:
    async with WebexEmulator() as emu:
        assert emu.running
        async with httpx.AsyncClient() as client:
            assert (await client.get(emu.jwks_url)).status_code == 200
    assert not emu.running
    await emu.astop()  # idempotent


def test_urls_and_config(emu: WebexEmulator) -> None:
    assert emu.url == f"http://127.0.0.1:{emu.port}"
    assert emu.port > 0
    assert emu.base_url == emu.url + "/v1"
    assert emu.authorize_url == emu.base_url + "/authorize"
    assert emu.token_url == emu.base_url + "/access_token"
    cfg = emu.config()
    assert isinstance(cfg, BYOVAConfig)
    assert cfg.base_url == emu.base_url
    assert cfg.authorize_url == emu.authorize_url
    assert cfg.token_url == emu.token_url
    assert cfg.jwk_url_us == cfg.jwk_url_eu == emu.jwks_url
    assert cfg.extra_issuers == (emu.issuer,)
    assert cfg.backoff_base == 0.01
    assert emu.config(max_retries=0, backoff_base=0.0).max_retries == 0


def test_eu_region_hydra_ids() -> None:
    emu = WebexEmulator(region="eu")
    import base64

    decoded = base64.b64decode(emu.org.hydra_id + "=" * (-len(emu.org.hydra_id) % 4))
    assert decoded.decode() == f"ciscospark://eu/ORGANIZATION/{emu.org.org_id}"
    with emu:
        assert emu.config().region == "eu"


def test_two_emulators_are_independent() -> None:
    with WebexEmulator() as a, WebexEmulator() as b:
        assert a.port != b.port
        assert a.integration.client_id != b.integration.client_id
        token = a.issue_integration_token()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert httpx.get(a.base_url + "/webhooks", headers=headers).status_code == 200
        assert httpx.get(b.base_url + "/webhooks", headers=headers).status_code == 401


def test_clock() -> None:
    clock = EmulatorClock(start=1_000_000.0, frozen=True)
    assert clock.now() == 1_000_000.0
    assert clock.advance(5) == 1_000_005.0
    assert clock.now() == 1_000_005.0
    with pytest.raises(ValueError):
        clock.advance(-1)
    clock.unfreeze()
    assert clock.now() >= 1_000_005.0
    clock.freeze()
    frozen = clock.now()
    assert clock.now() == frozen
    emu = WebexEmulator(clock=clock)
    assert emu.clock is clock


def test_shared_clock_controls_token_lifetimes() -> None:
    clock = EmulatorClock(frozen=True)
    with WebexEmulator(clock=clock, access_token_lifetime=100) as emu:
        token = emu.issue_integration_token()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        clock.advance(99)
        assert httpx.get(emu.base_url + "/webhooks", headers=headers).status_code == 200
        clock.advance(1)
        assert httpx.get(emu.base_url + "/webhooks", headers=headers).status_code == 401


def test_secrets_summary_masks(emu: WebexEmulator) -> None:
    summary = emu.secrets_summary()
    assert emu.integration.client_secret not in str(summary)
    assert emu.service_app.client_secret not in str(summary)
    assert summary["service_app.application_id"] == emu.service_app.application_id


def test_lazy_exports() -> None:
    assert "WebexEmulator" in dir(testing_pkg)
    assert testing_pkg.WebexEmulator is WebexEmulator
    with pytest.raises(AttributeError):
        _ = testing_pkg.NoSuchThing  # type: ignore[attr-defined]


def test_import_needs_core_deps_only() -> None:
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('grpc', 'httpx', 'typer', 'rich', 'redis', 'numpy'):\n"
        "            raise ImportError('blocked ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from webex_byova.testing import WebexEmulator\n"
        "e = WebexEmulator().start(); e.stop(); print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_stop_leaves_no_handler_threads_or_sockets() -> None:
    import os
    import socket
    import threading

    threads_before = set(threading.enumerate())
    fds_before = len(os.listdir("/proc/self/fd"))
    emu = WebexEmulator().start()
    with httpx.Client() as client:
        assert client.get(emu.jwks_url).status_code == 200  # an idle keep-alive connection
        idle = socket.create_connection(("127.0.0.1", emu.port))
        partial = socket.create_connection(("127.0.0.1", emu.port))
        partial.sendall(b"GET /v1/webhooks HTTP/1.1\r\nHost: emu\r\n")  # headers never end
        assert emu.count() == 1
        with idle, partial:
            emu.stop()
            # stop() returned: every handler thread has already finished
            leftover = [t for t in threading.enumerate() if t not in threads_before]
            assert leftover == []
    assert len(os.listdir("/proc/self/fd")) <= fds_before
