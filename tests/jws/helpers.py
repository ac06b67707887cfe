"""Constants and small helpers shared by the JWS tests."""

from __future__ import annotations

import base64
import itertools
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from joserfc.jwk import RSAKey

from webex_byova.jws import BYOVA_SCHEMA_ID
from webex_byova.testing import WebexEmulator

#: The data-source URL every test token is minted for (registered value, copied verbatim).
DS_URL = "https://byova.example.com"
JWKS_PREFIX = "/idb/oauth2/v2/keys/verificationjwk"


#: 2048-bit RSA keys made once, at import. Generating one costs 50-350 ms, and most JWS tests
#: start an emulator that generates its signing key; a mutation run repeats those tests for
#: every mutant, after forking its workers from a process that imported this module, so with
#: the pool each worker reuses these keys instead. Consecutive draws are distinct keys, so the
#: keys of one test (rotations, a second emulator, another party's key) still all differ.
KEY_POOL: tuple[rsa.RSAPrivateKey, ...] = tuple(
    rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(8)
)
_draws = itertools.count()


def _pooled_private_key(size: int) -> rsa.RSAPrivateKey:
    if size != 2048:
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    return KEY_POOL[next(_draws) % len(KEY_POOL)]


def use_key_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make joserfc's RSA key generation (the emulator's key ring) draw from :data:`KEY_POOL`
    for the current test."""
    monkeypatch.setattr(RSAKey.binding, "generate_private_key", staticmethod(_pooled_private_key))


def jwks_gets(emu: WebexEmulator) -> int:
    """Key-set requests the emulator received."""
    return emu.count("GET", JWKS_PREFIX)


class KeyServer:
    """A tiny loopback HTTP server answering ``GET <path>`` with a JSON document per path.

    ``routes`` maps a path to the document served there (others get 404); ``statuses`` maps a
    path to the status answered instead of 200 (the document, if any, is the body; bytes are
    sent as they are); ``hits`` counts the GETs per path, ``user_agents`` lists each request's
    ``User-Agent``. Used to serve key sets on paths the emulator does not use. While ``hold``
    is set to an unset event, each request waits for it (10 s at most) before it is answered;
    ``arrived`` is released once per request received.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.statuses: dict[str, int] = {}
        self.hits: dict[str, int] = {}
        self.hold: threading.Event | None = None
        self.user_agents: list[str | None] = []
        self.arrived = threading.Semaphore(0)
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                server.user_agents.append(self.headers.get("User-Agent"))
                server.arrived.release()
                if server.hold is not None:
                    server.hold.wait(timeout=10)
                doc = server.routes.get(self.path)
                if isinstance(doc, bytes):
                    body = doc
                else:
                    body = b"{}" if doc is None else json.dumps(doc).encode()
                status = server.statuses.get(self.path, 404 if doc is None else 200)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> KeyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)


def b64url(data: bytes) -> str:
    """Unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def public_jwk(key: rsa.RSAPrivateKey, kid: str, **extra: Any) -> dict[str, Any]:
    """The public JWK of ``key`` (built with ``cryptography`` directly, so any size works)."""
    numbers = key.public_key().public_numbers()
    n = numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")
    e = numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")
    return {"kty": "RSA", "kid": kid, "n": b64url(n), "e": b64url(e), **extra}


def sign_rs256(key: rsa.RSAPrivateKey, kid: str, issuer: str, now: float) -> str:
    """A data-source token for :data:`DS_URL` signed RS256 by ``key`` (any size)."""
    header = {"alg": "RS256", "typ": "JWT", "kid": kid}
    claims = {
        "iss": issuer,
        "aud": "byova-test",
        "sub": "callAudioData",
        "jti": f"jti-{kid}",
        "iat": int(now),
        "exp": int(now) + 600,
        "com.cisco.datasource.url": DS_URL,
        "com.cisco.datasource.schema.uuid": BYOVA_SCHEMA_ID,
    }
    signing_input = (
        b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(claims).encode())
    ).encode()
    signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return signing_input.decode() + "." + b64url(signature)
