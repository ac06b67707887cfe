"""Exception hierarchy of the SDK.

Every error raised by an API call derives from :class:`WebexBYOVAError` and carries the HTTP
status, the parsed body, the Webex tracking id and the Webex error descriptions.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "ConflictError",
    "NotFoundError",
    "OrgNotRegisteredError",
    "RateLimitError",
    "ReauthorizationRequiredError",
    "ServerError",
    "TokenStorageError",
    "ValidationError",
    "WebexBYOVAError",
]


class WebexBYOVAError(Exception):
    """Base exception for all SDK errors.

    Attributes:
        status_code: HTTP status code from the Webex API, if applicable.
        body: Parsed (or raw) response body from the Webex API, if available.
        tracking_id: Webex ``TrackingID`` of the failed request, if known.
        descriptions: ``errors[].description`` values from the Webex error body.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        body: Any = None,
        tracking_id: str | None = None,
        descriptions: list[str] | None = None,
        method: str | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.body = body
        self.tracking_id = tracking_id
        self.descriptions: list[str] = list(descriptions or [])
        self.method = method
        self.url = url

    def __str__(self) -> str:
        parts = [self.message]
        if self.status_code is not None:
            parts.append(f"status={self.status_code}")
        if self.tracking_id:
            parts.append(f"tracking_id={self.tracking_id}")
        return " | ".join(parts)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}({self.message!r}, status_code={self.status_code!r}, "
            f"tracking_id={self.tracking_id!r})"
        )


class AuthenticationError(WebexBYOVAError):
    """The credentials or token were rejected (HTTP 401/403, or an OAuth grant failed)."""


class ReauthorizationRequiredError(AuthenticationError):
    """The refresh token is dead (``invalid_grant`` or 401): re-authorize in a browser."""


class NotFoundError(WebexBYOVAError):
    """The resource does not exist (HTTP 404)."""


class ValidationError(WebexBYOVAError):
    """The request or payload is invalid (HTTP 400/409/415/422, or rejected before sending)."""


class ConflictError(ValidationError):
    """The request conflicts with the resource's state (HTTP 409)."""


class RateLimitError(WebexBYOVAError):
    """Raised when the Webex API rate limit is exceeded (HTTP 429).

    Attributes:
        retry_after: Seconds to wait before retrying, from the ``Retry-After`` header.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = 429,
        body: Any = None,
        retry_after: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(message, status_code=status_code, body=body, **kwargs)
        self.retry_after = retry_after


class ServerError(WebexBYOVAError):
    """Webex answered with a 5xx status."""


class APIConnectionError(WebexBYOVAError):
    """The request could not reach Webex (DNS, refused, reset)."""


class APITimeoutError(APIConnectionError):
    """The request timed out."""


class OrgNotRegisteredError(WebexBYOVAError):
    """No Service App tokens are stored for the organization."""

    def __init__(self, org_id: str, message: str | None = None) -> None:
        super().__init__(
            message
            or f"organization {org_id} has no stored Service App tokens; "
            "authorize the Service App for it first"
        )
        self.org_id = org_id


class TokenStorageError(WebexBYOVAError):
    """The token store cannot be used: the file is not a token database (not SQLite,
    truncated, a foreign ``tokens`` table), a stored value is not a token (junk, not JSON, not
    decryptable), or the store cannot be reached.

    The message names the store (file path or Redis URL, without password) and the problem.

    Attributes:
        store: Where the store lives (file path, Redis URL and prefix), if known.
        key: The entry concerned (``integration``, ``org:<uuid>``, ...), if one.
    """

    def __init__(
        self, message: str, *, store: str | None = None, key: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(message, **kwargs)
        self.store = store
        self.key = key
