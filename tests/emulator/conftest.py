"""Fixtures for the emulator contract tests.

The ``webex_emulator`` fixture comes from the shipped pytest plugin; it is imported here
because ``pytest_plugins`` may only be declared in the rootdir conftest.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from webex_byova.testing import WebexEmulator
from webex_byova.testing.pytest_plugin import webex_emulator  # noqa: F401  (fixture)


@pytest.fixture
def emu(webex_emulator: WebexEmulator) -> WebexEmulator:  # noqa: F811
    return webex_emulator


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=10) as client:
        yield client


@dataclass
class Receiver:
    """A real local webhook receiver recording raw bodies and headers."""

    url: str
    status: int = 200
    received: list[tuple[dict[str, str], bytes]] = field(default_factory=list)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            rec.received.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(rec.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
