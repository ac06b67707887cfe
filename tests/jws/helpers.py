"""Constants and small helpers shared by the JWS tests."""

from __future__ import annotations

import base64
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from webex_byova.jws import BYOVA_SCHEMA_ID
from webex_byova.testing import WebexEmulator

#: The data-source URL every test token is minted for (registered value, copied verbatim).
DS_URL = "https://byova.example.com"
JWKS_PREFIX = "/idb/oauth2/v2/keys/verificationjwk"


def jwks_gets(emu: WebexEmulator) -> int:
    """Key-set requests the emulator received."""
    return emu.count("GET", JWKS_PREFIX)


class KeyServer:
    """A tiny loopback HTTP server answering ``GET <path>`` with a JSON document per path.

    ``routes`` maps a path to the document served there (others get 404); ``hits`` counts the
    GETs per path. Used to serve key sets on paths the emulator does not use.
    """

    def __init__(self) -> None:
        self.routes: dict[str, Any] = {}
        self.hits: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server naming
                server.hits[self.path] = server.hits.get(self.path, 0) + 1
                doc = server.routes.get(self.path)
                body = b"{}" if doc is None else json.dumps(doc).encode()
                self.send_response(404 if doc is None else 200)
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
