"""Webex BYOVA / BYODS Python SDK.

Administration (REST): :class:`BYOVA` wires Integration OAuth, Service App per-org tokens,
token storage, webhooks, data sources and JWS verification.

Media (gRPC, ``pip install 'webex-byova-sdk[media]'``): :class:`BYOVAMediaServer` answers Webex
Contact Center's ``VoiceVirtualAgent`` calls.

Public names are imported lazily, so ``import webex_byova`` needs only the core dependencies;
touching a name whose extra is not installed raises
:class:`~webex_byova._optional.MissingExtraError` naming the extra to install.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._optional import MissingExtraError
from ._version import __version__
from .config import BYOVAConfig
from .errors import (
    APIConnectionError,
    APITimeoutError,
    AuthenticationError,
    ConflictError,
    NotFoundError,
    OrgNotRegisteredError,
    RateLimitError,
    ReauthorizationRequiredError,
    ServerError,
    TokenStorageError,
    ValidationError,
    WebexBYOVAError,
)

#: public name -> (module, extra needed or None)
_LAZY: dict[str, tuple[str, str | None]] = {
    "BYOVA": ("webex_byova.client", None),
    "IntegrationCredentials": ("webex_byova.credentials", None),
    "ServiceAppCredentials": ("webex_byova.credentials", None),
    "IntegrationTokenManager": ("webex_byova.integration", None),
    "ServiceAppTokenManager": ("webex_byova.service_app", None),
    "TokenStorage": ("webex_byova.storage", None),
    "InMemoryTokenStorage": ("webex_byova.storage", None),
    "SQLiteTokenStorage": ("webex_byova.storage", None),
    "RedisTokenStorage": ("webex_byova.storage", "redis"),
    "EncryptedTokenStorage": ("webex_byova.storage", None),
    "WebhookManager": ("webex_byova.webhooks", None),
    "WebhookSignatureError": ("webex_byova.webhooks", None),
    "verify_webhook_signature": ("webex_byova.webhooks", None),
    "parse_service_app_event": ("webex_byova.webhooks", None),
    "OrgClient": ("webex_byova.data_sources", None),
    "DataSourceKeeper": ("webex_byova.keeper", None),
    "DataSourceState": ("webex_byova.keeper", None),
    "OAuthToken": ("webex_byova.tokens", None),
    "JWSVerifier": ("webex_byova.jws", None),
    "JWSVerificationError": ("webex_byova.jws", None),
    "DataSource": ("webex_byova.models", None),
    "Schema": ("webex_byova.models", None),
    "Webhook": ("webex_byova.models", None),
    "ServiceAppAuthorizedResult": ("webex_byova.models", None),
    "ServiceAppDeauthorizedResult": ("webex_byova.models", None),
    "ServiceAppEvent": ("webex_byova.models", None),
    "BYOVAMediaServer": ("webex_byova.media", "media"),
    "MediaServerConfig": ("webex_byova.media", "media"),
    "VirtualAgent": ("webex_byova.media", "media"),
    "WebSocketProxyConnector": ("webex_byova.media", "media"),
    "ProxyFallback": ("webex_byova.media", "media"),
    "Session": ("webex_byova.media", "media"),
    "Turn": ("webex_byova.media", "media"),
    "Utterance": ("webex_byova.media", "media"),
    "DtmfInput": ("webex_byova.media", "media"),
}

__all__ = [
    "BYOVA",
    "APIConnectionError",
    "APITimeoutError",
    "AuthenticationError",
    "BYOVAConfig",
    "BYOVAMediaServer",
    "ConflictError",
    "DataSource",
    "DataSourceKeeper",
    "DataSourceState",
    "DtmfInput",
    "EncryptedTokenStorage",
    "InMemoryTokenStorage",
    "IntegrationCredentials",
    "IntegrationTokenManager",
    "JWSVerificationError",
    "JWSVerifier",
    "MediaServerConfig",
    "MissingExtraError",
    "NotFoundError",
    "OAuthToken",
    "OrgClient",
    "OrgNotRegisteredError",
    "ProxyFallback",
    "RateLimitError",
    "ReauthorizationRequiredError",
    "RedisTokenStorage",
    "SQLiteTokenStorage",
    "Schema",
    "ServerError",
    "ServiceAppAuthorizedResult",
    "ServiceAppCredentials",
    "ServiceAppDeauthorizedResult",
    "ServiceAppEvent",
    "ServiceAppTokenManager",
    "Session",
    "TokenStorage",
    "TokenStorageError",
    "Turn",
    "Utterance",
    "ValidationError",
    "VirtualAgent",
    "WebSocketProxyConnector",
    "WebexBYOVAError",
    "Webhook",
    "WebhookManager",
    "WebhookSignatureError",
    "__version__",
    "parse_service_app_event",
    "verify_webhook_signature",
]

_EXTRA_MODULES = {
    "media": ("grpc", "google.protobuf", "grpc_health", "websockets"),
    "redis": ("redis",),
    "cli": ("typer", "rich"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, extra = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'webex_byova' has no attribute {name!r}") from None
    try:
        module = importlib.import_module(module_name)
    except MissingExtraError:
        raise
    except ImportError as exc:
        missing = exc.name or ""
        if extra is not None and missing.split(".")[0] in {
            m.split(".")[0] for m in _EXTRA_MODULES.get(extra, ())
        }:
            raise MissingExtraError(missing, extra) from exc
        raise
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from .client import BYOVA
    from .credentials import IntegrationCredentials, ServiceAppCredentials
    from .data_sources import OrgClient
    from .integration import IntegrationTokenManager
    from .jws import JWSVerificationError, JWSVerifier
    from .keeper import DataSourceKeeper, DataSourceState
    from .media import (
        BYOVAMediaServer,
        DtmfInput,
        MediaServerConfig,
        ProxyFallback,
        Session,
        Turn,
        Utterance,
        VirtualAgent,
        WebSocketProxyConnector,
    )
    from .models import (
        DataSource,
        Schema,
        ServiceAppAuthorizedResult,
        ServiceAppDeauthorizedResult,
        ServiceAppEvent,
        Webhook,
    )
    from .service_app import ServiceAppTokenManager
    from .storage import (
        EncryptedTokenStorage,
        InMemoryTokenStorage,
        RedisTokenStorage,
        SQLiteTokenStorage,
        TokenStorage,
    )
    from .tokens import OAuthToken
    from .webhooks import (
        WebhookManager,
        WebhookSignatureError,
        parse_service_app_event,
        verify_webhook_signature,
    )
