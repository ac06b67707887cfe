"""OAuth token model shared by the Integration and the per-org Service App tokens.

Times are POSIX seconds (``time.time()`` scale). ``repr`` masks every secret; the JSON form
(:meth:`OAuthToken.to_json`) is what token stores persist.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any

from ._logging import mask

__all__ = ["OAuthToken"]


def _opt_float(data: dict[str, Any], key: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"token field {key!r} must be a number, got {value!r}")
    return float(value)


@dataclass(frozen=True, repr=False)
class OAuthToken:
    """An access token with its refresh token and their expiry times.

    Attributes:
        access_token: Bearer token sent to Webex.
        expires_at: When the access token expires (POSIX seconds).
        refresh_token: Refresh token, if any.
        refresh_token_expires_at: When the refresh token expires (POSIX seconds), if known.
        token_type: Usually ``"Bearer"``.
        scope: Granted scopes (space separated), if reported.
        obtained_at: When the token was received (POSIX seconds), if known.
    """

    access_token: str
    expires_at: float
    refresh_token: str | None = None
    refresh_token_expires_at: float | None = None
    token_type: str = "Bearer"
    scope: str | None = None
    obtained_at: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.access_token, str) or not self.access_token:
            raise ValueError("access_token must be a non-empty string")

    def is_expired(self, now: float, skew: float = 0.0) -> bool:
        """True when the access token expires within ``skew`` seconds of ``now``."""
        return now + skew >= self.expires_at

    def should_refresh(self, now: float, margin: float) -> bool:
        """True when the access token is within ``margin`` seconds of expiry.

        The margin is capped at half the token's lifetime (when known), so short-lived tokens
        are not refreshed on every use.
        """
        if self.obtained_at is not None and self.expires_at > self.obtained_at:
            margin = min(margin, (self.expires_at - self.obtained_at) / 2)
        return self.is_expired(now, margin)

    def refresh_token_expired(self, now: float, skew: float = 0.0) -> bool:
        """True when there is no refresh token or it expires within ``skew`` seconds."""
        if not self.refresh_token:
            return True
        if self.refresh_token_expires_at is None:
            return False
        return now + skew >= self.refresh_token_expires_at

    def expires_in(self, now: float) -> float:
        """Seconds until the access token expires (negative when expired)."""
        return self.expires_at - now

    @property
    def expires_at_datetime(self) -> datetime:
        """:attr:`expires_at` as an aware UTC ``datetime``."""
        return datetime.fromtimestamp(self.expires_at, UTC)

    @property
    def refresh_token_expires_at_datetime(self) -> datetime | None:
        """:attr:`refresh_token_expires_at` as an aware UTC ``datetime`` (``None`` if unknown)."""
        if self.refresh_token_expires_at is None:
            return None
        return datetime.fromtimestamp(self.refresh_token_expires_at, UTC)

    def with_changes(self, **changes: Any) -> OAuthToken:
        """A copy with some fields replaced."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-compatible ``dict`` (contains the secrets: for storage only)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OAuthToken:
        """Rebuild a token from :meth:`to_dict` output; unknown keys are ignored."""
        if not isinstance(data, dict):
            raise ValueError("token data must be a JSON object")
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token data lacks access_token")
        expires_at = _opt_float(data, "expires_at")
        if expires_at is None:
            raise ValueError("token data lacks expires_at")
        refresh = data.get("refresh_token")
        scope = data.get("scope")
        token_type = data.get("token_type") or "Bearer"
        return cls(
            access_token=access,
            expires_at=expires_at,
            refresh_token=refresh if isinstance(refresh, str) and refresh else None,
            refresh_token_expires_at=_opt_float(data, "refresh_token_expires_at"),
            token_type=str(token_type),
            scope=scope if isinstance(scope, str) else None,
            obtained_at=_opt_float(data, "obtained_at"),
        )

    def to_json(self) -> str:
        """Serialize for a token store (contains the secrets)."""
        return json.dumps(self.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> OAuthToken:
        """Parse :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    def __repr__(self) -> str:
        return (
            f"OAuthToken(access_token={mask(self.access_token)!r}, "
            f"expires_at={self.expires_at_datetime.isoformat()}, "
            f"refresh_token={mask(self.refresh_token)!r}, "
            f"refresh_token_expires_at={self.refresh_token_expires_at!r}, "
            f"token_type={self.token_type!r}, scope={self.scope!r})"
        )

    __str__ = __repr__
