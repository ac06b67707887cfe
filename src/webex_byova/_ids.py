"""Webex identifiers: Hydra (base64 ``ciscospark://<region>/<TYPE>/<uuid>``) and plain forms.

Data Sources and JWS claims use bare UUIDs; webhooks and most other APIs use Hydra ids.
Everything here accepts either form (standard or URL-safe base64, padded or not).
"""

from __future__ import annotations

import base64
import binascii
import re

__all__ = [
    "application_id",
    "from_hydra",
    "is_uuid",
    "org_hydra_id",
    "org_uuid",
    "to_hydra",
]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_HYDRA = re.compile(r"^ciscospark://([^/]+)/([A-Z_]+)/(.+)$")


def is_uuid(value: str) -> bool:
    """True if ``value`` is a canonical UUID string."""
    return bool(_UUID.match(value))


def from_hydra(value: str) -> tuple[str, str, str] | None:
    """Decode a Hydra id into ``(region, type, id)``; ``None`` if it is not one."""
    text = value.strip()
    if not text or is_uuid(text):
        return None
    padded = text + "=" * (-len(text) % 4)
    for decoder in (base64.urlsafe_b64decode, base64.b64decode):
        try:
            decoded = decoder(padded.encode()).decode("utf-8")
        except (binascii.Error, ValueError, UnicodeDecodeError):
            continue
        match = _HYDRA.match(decoded)
        if match:
            return match.group(1), match.group(2), match.group(3)
    return None


def to_hydra(kind: str, ident: str, *, region: str = "us", padding: bool = False) -> str:
    """Encode ``ciscospark://<region>/<KIND>/<ident>`` as base64 (unpadded by default)."""
    raw = base64.b64encode(f"ciscospark://{region}/{kind.upper()}/{ident}".encode()).decode()
    return raw if padding else raw.rstrip("=")


def org_uuid(org_id: str) -> str:
    """Return the bare UUID of an org given as UUID or Hydra id.

    Raises:
        ValueError: If ``org_id`` is neither a UUID nor an ORGANIZATION Hydra id.
    """
    text = org_id.strip()
    if is_uuid(text):
        return text.lower()
    decoded = from_hydra(text)
    if decoded is None or decoded[1] != "ORGANIZATION" or not is_uuid(decoded[2]):
        raise ValueError(f"not an organization id (UUID or Hydra): {org_id!r}")
    return decoded[2].lower()


def org_hydra_id(org_id: str, *, region: str = "us") -> str:
    """Return the Hydra form of an org id given as UUID or Hydra id."""
    text = org_id.strip()
    if not is_uuid(text):
        decoded = from_hydra(text)
        if decoded is None or decoded[1] != "ORGANIZATION":
            raise ValueError(f"not an organization id (UUID or Hydra): {org_id!r}")
        return text
    return to_hydra("ORGANIZATION", text.lower(), region=region)


def application_id(client_id: str, *, region: str = "us") -> str:
    """Derive a Service App's application id (Hydra) from its client id."""
    return to_hydra("APPLICATION", client_id, region=region)
