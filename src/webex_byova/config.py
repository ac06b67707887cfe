"""Global SDK configuration (:class:`BYOVAConfig`)."""

from __future__ import annotations

import math
import platform
from dataclasses import dataclass, field

from ._version import __version__

__all__ = ["DEFAULT_USER_AGENT", "REGIONS", "BYOVAConfig"]

REGIONS = ("us", "eu")

DEFAULT_USER_AGENT = (
    f"webex-byova-sdk/{__version__} python/{platform.python_version()} "
    f"({platform.system() or 'unknown'})"
)


@dataclass
class BYOVAConfig:
    """Global SDK configuration for Webex API endpoints and behavior.

    The first seven fields are the documented public contract. The rest tune the HTTP client
    and all have safe defaults.

    Attributes:
        base_url: Base URL for Webex REST API requests.
        authorize_url: OAuth authorization endpoint.
        token_url: OAuth token exchange and refresh endpoint.
        jwk_url_us: JWK verification URL for the US region.
        jwk_url_eu: JWK verification URL for the EU region.
        region: Active region for JWK lookup (``"us"`` or ``"eu"``).
        timeout: HTTP request timeout in seconds.
        max_retries: Retries after the first attempt for retryable failures.
        retry_deadline: Total seconds a request may spend including retries and waits.
        backoff_base: First backoff delay in seconds (doubles per attempt, with jitter).
        backoff_max: Upper bound for one backoff delay in seconds.
        user_agent: ``User-Agent`` sent with every request.
        extra_issuers: Additional JWS issuers to trust (e.g. the local emulator).
    """

    base_url: str = "https://webexapis.com/v1"
    authorize_url: str = "https://webexapis.com/v1/authorize"
    token_url: str = "https://webexapis.com/v1/access_token"
    jwk_url_us: str = "https://idbroker.webex.com/idb/oauth2/v2/keys/verificationjwk"
    jwk_url_eu: str = "https://idbroker-eu.webex.com/idb/oauth2/v2/keys/verificationjwk"
    region: str = "us"
    timeout: float = 30.0
    max_retries: int = 3
    retry_deadline: float = 120.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    user_agent: str = DEFAULT_USER_AGENT
    extra_issuers: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        self.region = str(self.region).strip().lower()
        if self.region not in REGIONS:
            expected = ", ".join(REGIONS)
            raise ValueError(f"unknown region {self.region!r}; expected one of {expected}")
        for name in ("timeout", "retry_deadline", "backoff_max"):
            value = getattr(self, name)
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
        if (
            not isinstance(self.backoff_base, int | float)
            or not math.isfinite(self.backoff_base)
            or self.backoff_base < 0
        ):
            raise ValueError(f"backoff_base must be >= 0, got {self.backoff_base!r}")
        if (
            not isinstance(self.max_retries, int)
            or isinstance(self.max_retries, bool)
            or self.max_retries < 0
        ):
            raise ValueError(f"max_retries must be an integer >= 0, got {self.max_retries!r}")
        for name in ("base_url", "authorize_url", "token_url", "jwk_url_us", "jwk_url_eu"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                raise ValueError(f"{name} must be an http(s) URL, got {value!r}")
        self.base_url = self.base_url.rstrip("/")
        self.extra_issuers = tuple(i.rstrip("/") for i in self.extra_issuers)

    @property
    def jwk_url(self) -> str:
        """Return the JWK URL for the configured region."""
        return self.jwk_url_eu if self.region == "eu" else self.jwk_url_us

    @property
    def hydra_region(self) -> str:
        """Region segment used in Hydra ids (``ciscospark://<region>/...``)."""
        return self.region
