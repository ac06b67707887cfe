"""OAuth credentials of the Integration and the Service App (secrets masked in ``repr``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ._ids import application_id as derive_application_id
from ._logging import mask

__all__ = [
    "DEFAULT_INTEGRATION_SCOPES",
    "DEFAULT_REDIRECT_URI",
    "IntegrationCredentials",
    "ServiceAppCredentials",
]

DEFAULT_REDIRECT_URI = "http://localhost:8765/callback"

#: Scopes an Integration needs to fetch Service App tokens and manage ``serviceApp`` webhooks.
DEFAULT_INTEGRATION_SCOPES: tuple[str, ...] = (
    "spark:applications_token",
    "application:webhooks_read",
    "application:webhooks_write",
)


def _require_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a non-empty string")
    return value.strip()


@dataclass(frozen=True, repr=False)
class IntegrationCredentials:
    """Credentials of a Webex Integration (OAuth authorization-code grant).

    Attributes:
        client_id: The Integration's client id.
        client_secret: The Integration's client secret (never shown in ``repr``).
        redirect_uri: A redirect URI registered on the Integration. ``authorize()`` listens on
            its host and port; port ``0`` picks a free port.
        scopes: Scopes requested at authorization.
    """

    client_id: str
    client_secret: str
    redirect_uri: str = DEFAULT_REDIRECT_URI
    scopes: tuple[str, ...] = field(default=DEFAULT_INTEGRATION_SCOPES)

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_id", _require_text("client_id", self.client_id))
        object.__setattr__(
            self, "client_secret", _require_text("client_secret", self.client_secret)
        )
        redirect = _require_text("redirect_uri", self.redirect_uri)
        if not redirect.startswith(("http://", "https://")):
            raise ValueError(f"redirect_uri must be an http(s) URL, got {redirect!r}")
        object.__setattr__(self, "redirect_uri", redirect)
        scopes = self.scopes
        if isinstance(scopes, str):
            scopes = tuple(scopes.split())
        object.__setattr__(self, "scopes", tuple(s for s in scopes if s))

    def __repr__(self) -> str:
        return (
            f"IntegrationCredentials(client_id={self.client_id!r}, "
            f"client_secret={mask(self.client_secret)!r}, redirect_uri={self.redirect_uri!r}, "
            f"scopes={self.scopes!r})"
        )


@dataclass(frozen=True, repr=False)
class ServiceAppCredentials:
    """Credentials of a Webex Service App.

    Attributes:
        client_id: The Service App's client id.
        client_secret: The Service App's client secret (never shown in ``repr``).
        application_id: The application id shown in the developer portal. When ``None`` it is
            derived from ``client_id`` for the configured region.
    """

    client_id: str
    client_secret: str
    application_id: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "client_id", _require_text("client_id", self.client_id))
        object.__setattr__(
            self, "client_secret", _require_text("client_secret", self.client_secret)
        )
        if self.application_id is not None:
            object.__setattr__(
                self, "application_id", _require_text("application_id", self.application_id)
            )

    def resolve_application_id(self, region: str = "us") -> str:
        """The explicit application id, or the one derived from ``client_id`` for ``region``."""
        if self.application_id is not None:
            return self.application_id
        return derive_application_id(self.client_id, region=region)

    def __repr__(self) -> str:
        return (
            f"ServiceAppCredentials(client_id={self.client_id!r}, "
            f"client_secret={mask(self.client_secret)!r}, "
            f"application_id={self.application_id!r})"
        )
