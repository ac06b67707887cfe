"""Signing keys and JWS minting for the emulated Webex identity broker (no I/O)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from joserfc import jwt
from joserfc.jwk import RSAKey

__all__ = ["RSA_ALGORITHMS", "KeyRing"]

RSA_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii").rstrip("=")


def _segment(obj: Mapping[str, Any]) -> str:
    return _b64url(json.dumps(obj, separators=(",", ":")).encode())


class KeyRing:
    """RSA signing keys of the identity broker.

    The newest key signs; the JWKS lists every key still kept (old keys stay published after
    a rotation while ``keep_old`` is true, as a real broker keeps them during a rollover).
    The first key is generated lazily, so emulators that never sign start fast.
    """

    def __init__(self, key_size: int = 2048) -> None:
        self._lock = threading.Lock()
        self._key_size = key_size
        self._keys: list[RSAKey] = []

    def _ensure(self) -> None:
        if not self._keys:
            self._new_key()

    def _new_key(self) -> RSAKey:
        kid = str(uuid.uuid4())
        key = RSAKey.generate_key(
            self._key_size,
            parameters={"kid": kid, "alg": "RS256", "use": "sig"},
            private=True,
        )
        self._keys.append(key)
        return key

    @property
    def current(self) -> RSAKey:
        """The key that signs new tokens."""
        with self._lock:
            self._ensure()
            return self._keys[-1]

    @property
    def current_kid(self) -> str:
        """``kid`` of the signing key."""
        return str(self.current.kid)

    def rotate(self, *, keep_old: bool = True) -> str:
        """Generate a new signing key and return its ``kid``; drop the old ones unless kept."""
        with self._lock:
            self._ensure()
            key = self._new_key()
            if not keep_old:
                self._keys = [key]
            return str(key.kid)

    def drop(self, kids: Iterable[str]) -> None:
        """Stop publishing the given keys (the signing key cannot be dropped)."""
        remove = set(kids)
        with self._lock:
            self._ensure()
            keep = [k for k in self._keys[:-1] if k.kid not in remove]
            self._keys = [*keep, self._keys[-1]]

    def jwks(self) -> dict[str, Any]:
        """Public JWK set ``{"keys": [...]}`` (oldest first)."""
        with self._lock:
            self._ensure()
            return {"keys": [dict(k.as_dict(private=False)) for k in self._keys]}

    def public_pem(self) -> bytes:
        """PEM of the signing key's public half."""
        return self.current.as_pem(private=False)

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        alg: str = "RS256",
        kid: str | None = None,
        include_kid: bool = True,
    ) -> str:
        """Sign ``claims`` as a compact JWS.

        ``alg`` ``RS*``/``PS*`` sign with the current RSA key; ``HS256`` signs with the public
        key PEM as the HMAC secret (the classic algorithm-confusion forgery) and ``none`` gives
        an unsigned token, so verifiers can be tested against both attacks. ``kid`` overrides
        the header ``kid`` (the signature still comes from the current key).
        """
        key = self.current
        header: dict[str, Any] = {}
        if include_kid:
            header["kid"] = kid if kid is not None else str(key.kid)
        header["typ"] = "JWT"
        header["alg"] = alg
        if alg in RSA_ALGORITHMS:
            if alg != key.get("alg"):
                # the published key says RS256; sign other RSA algs with an unlabeled copy
                params = {k: v for k, v in key.as_dict(private=True).items() if k != "alg"}
                key = RSAKey.import_key(params)
            return jwt.encode(header, dict(claims), key, algorithms=[alg])
        signing_input = f"{_segment(header)}.{_segment(claims)}"
        if alg == "none":
            return signing_input + "."
        if alg == "HS256":
            mac = hmac.new(self.public_pem(), signing_input.encode(), hashlib.sha256).digest()
            return f"{signing_input}.{_b64url(mac)}"
        raise ValueError(f"unsupported alg {alg!r}; use one of {RSA_ALGORITHMS}, HS256 or none")
