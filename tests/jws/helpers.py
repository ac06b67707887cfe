"""Constants and small helpers shared by the JWS tests."""

from __future__ import annotations

from webex_byova.testing import WebexEmulator

#: The data-source URL every test token is minted for (registered value, copied verbatim).
DS_URL = "https://byova.example.com"
JWKS_PREFIX = "/idb/oauth2/v2/keys/verificationjwk"


def jwks_gets(emu: WebexEmulator) -> int:
    """Key-set requests the emulator received."""
    return emu.count("GET", JWKS_PREFIX)
