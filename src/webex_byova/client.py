"""The :class:`BYOVA` facade: one object wiring every administration-side component.

Example::

    sdk = BYOVA(integration=IntegrationCredentials(...), service_app=ServiceAppCredentials(...),
                webhook_secret="s3cret")
    await sdk.integration.aauthorize()
    await sdk.webhooks.aensure_service_app_webhooks("https://me.example/webhooks",
                                                    secret="s3cret")
    # in the webhook receiver:
    result = await sdk.ahandle_service_app_webhook(None, raw_body=body, headers=headers)
    client = await sdk.aget_client_for_org(result.org_id)
    ds = await client.data_sources.acreate(schema_id=..., url=..., audience=..., subject=...)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from ._flow import Call, Flow, Portal, run_async, run_sync
from ._http import HttpClient
from ._ids import org_uuid
from ._logging import get_logger
from .config import BYOVAConfig
from .credentials import IntegrationCredentials, ServiceAppCredentials
from .data_sources import OrgClient
from .errors import OrgNotRegisteredError, ValidationError
from .integration import IntegrationTokenManager
from .jws import JWSVerifier
from .models import ServiceAppEvent
from .service_app import ServiceAppTokenManager, WebhookResult
from .storage import InMemoryTokenStorage, TokenStorage
from .webhooks import WebhookManager, read_service_app_delivery, same_application

__all__ = ["BYOVA", "WEBHOOK_SECRET_ENV"]

log = get_logger("webex_byova.client")

#: Environment variable read by :meth:`BYOVA.from_env` for the webhook secret.
WEBHOOK_SECRET_ENV = "WEBEX_WEBHOOK_SECRET"


class BYOVA:
    """Webex BYOVA / BYODS Python SDK facade.

    Central entry point that wires Integration OAuth, Service App token management, webhook
    registration, per-org API clients, and JWS verification.

    Args:
        integration: Integration OAuth credentials.
        service_app: Service App OAuth credentials.
        config: Optional global SDK configuration.
        token_storage: Token persistence backend; defaults to in-memory storage.
        webhook_secret: Secret of the ``serviceApp`` webhooks. When set, every inbound
            delivery must be passed with ``raw_body`` and ``headers`` and carry a valid
            signature.
    """

    def __init__(
        self,
        integration: IntegrationCredentials,
        service_app: ServiceAppCredentials,
        *,
        config: BYOVAConfig | None = None,
        token_storage: TokenStorage | None = None,
        webhook_secret: str | None = None,
    ) -> None:
        self._config = config or BYOVAConfig()
        self._owns_storage = token_storage is None
        self._storage: TokenStorage = token_storage or InMemoryTokenStorage()
        self._http = HttpClient(self._config)
        self._integration = IntegrationTokenManager(
            integration, self._http, self._storage, self._config
        )
        self._service_app = ServiceAppTokenManager(
            service_app, self._integration, self._http, self._storage
        )
        self._webhooks = WebhookManager(
            self._integration, self._http, portal=self._integration.portal
        )
        self._jws = JWSVerifier(self._config)
        self._service_app_credentials = service_app
        self._webhook_secret = webhook_secret or None
        self._portal: Portal = self._integration.portal

    @classmethod
    def from_env(cls, *, config: BYOVAConfig | None = None) -> BYOVA:
        """Construct a client from ``WEBEX_*`` environment variables.

        Required: ``WEBEX_INTEGRATION_CLIENT_ID``, ``WEBEX_INTEGRATION_CLIENT_SECRET``,
        ``WEBEX_SA_CLIENT_ID``, ``WEBEX_SA_CLIENT_SECRET``. Optional: the redirect URI,
        scopes, application id, region, base URL and token store (see
        :mod:`webex_byova._env`) and ``WEBEX_WEBHOOK_SECRET``.

        Raises:
            ValueError: If required environment variables are missing (all are named).
        """
        from ._env import load_env

        settings = load_env(config=config)
        secret = os.environ.get(WEBHOOK_SECRET_ENV, "").strip() or None
        client = cls(
            settings.integration,
            settings.service_app,
            config=settings.config,
            token_storage=settings.token_storage,
            webhook_secret=secret,
        )
        client._owns_storage = True
        return client

    # -- components
    @property
    def config(self) -> BYOVAConfig:
        """Global SDK configuration."""
        return self._config

    @property
    def integration(self) -> IntegrationTokenManager:
        """Integration OAuth token manager."""
        return self._integration

    @property
    def service_app(self) -> ServiceAppTokenManager:
        """Service App token manager for per-org tokens."""
        return self._service_app

    @property
    def webhooks(self) -> WebhookManager:
        """Webhook registration and management."""
        return self._webhooks

    @property
    def storage(self) -> TokenStorage:
        """The token store."""
        return self._storage

    @property
    def jws(self) -> JWSVerifier:
        """The JWS verifier used by :meth:`verify_jws_token`."""
        return self._jws

    # -- per-org clients
    def _client_flow(self, org_id: str) -> Flow[OrgClient]:
        try:
            uuid = org_uuid(org_id)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        registered = yield Call(lambda: self._service_app.ahas_org(uuid))
        if not registered:
            raise OrgNotRegisteredError(uuid)
        return OrgClient(uuid, self._service_app, self._http, portal=self._portal)

    def get_client_for_org(self, org_id: str) -> OrgClient:
        """Return a per-org client for DataSource operations (sync).

        Args:
            org_id: Organization UUID (a Hydra org id is accepted too).

        Raises:
            OrgNotRegisteredError: If no Service App tokens exist for the org.
        """
        return run_sync(self._client_flow(org_id), self._http, self._portal)

    async def aget_client_for_org(self, org_id: str) -> OrgClient:
        """Return a per-org client for DataSource and Schema operations.

        Raises:
            OrgNotRegisteredError: If no Service App tokens exist for the org.
        """
        return await run_async(self._client_flow(org_id), self._http)

    # -- inbound serviceApp webhooks
    def _webhook_flow(
        self,
        payload: Mapping[str, Any] | None,
        raw_body: bytes | None,
        headers: Any,
    ) -> Flow[WebhookResult]:
        event = read_service_app_delivery(
            payload, raw_body=raw_body, headers=headers, secret=self._webhook_secret
        )
        self._check_application(event)
        result: WebhookResult = yield from self._service_app.handle_event_flow(event)
        if not (result.duplicate or result.stale):
            log.info("serviceApp %s handled for org %s", event.event, event.org_id)
        return result

    def _check_application(self, event: ServiceAppEvent) -> None:
        if event.application_id is None:
            return
        creds = self._service_app_credentials
        ours = (getattr(creds, "application_id", None), creds.client_id)
        if not any(same_application(event.application_id, mine) for mine in ours if mine):
            raise ValidationError(
                f"serviceApp {event.event} event is for another Service App "
                f"({event.application_id}); check the webhook filter"
            )

    def handle_service_app_webhook(
        self,
        payload: dict[str, Any] | None,
        *,
        raw_body: bytes | None = None,
        headers: Any = None,
    ) -> WebhookResult:
        """Process a serviceApp webhook (sync wrapper of :meth:`ahandle_service_app_webhook`).

        Returns:
            Authorization or deauthorization result.
        """
        return run_sync(self._webhook_flow(payload, raw_body, headers), self._http, self._portal)

    async def ahandle_service_app_webhook(
        self,
        payload: dict[str, Any] | None,
        *,
        raw_body: bytes | None = None,
        headers: Any = None,
    ) -> WebhookResult:
        """Process a serviceApp authorized or deauthorized webhook.

        On authorization, fetches and stores Service App tokens for the org. On
        deauthorization, removes stored tokens. Redeliveries (same app, org, event and
        authorization date) are answered with ``duplicate=True`` without repeating the work,
        and an event older than the org's last handled one (a ``deauthorized`` delivered late
        after the org authorized again) with ``stale=True``, changing nothing. Both are
        remembered in the token store, so they hold across restarts (see
        :meth:`ServiceAppTokenManager.handle_event_flow`).

        When a webhook secret is configured, pass ``raw_body`` (the exact request bytes) and
        ``headers``; the signature is checked before anything else and the event is read from
        the verified bytes (``payload`` may then be ``None``).

        Args:
            payload: Raw webhook JSON from Webex.
            raw_body: The exact request body (required when a secret is configured).
            headers: The request headers (any mapping or ``(name, value)`` pairs).

        Raises:
            WebhookSignatureError: The signature is missing or wrong (an
                ``AuthenticationError``; answer 401).
            ValidationError: If the payload is not a valid serviceApp event for this Service
                App, or ``raw_body`` is missing while a secret is configured.
        """
        return await run_async(self._webhook_flow(payload, raw_body, headers), self._http)

    # -- JWS
    def verify_jws_token(
        self,
        jws_token: str,
        *,
        expected_url: str | None = None,
        expected_org_id: str | None = None,
    ) -> dict[str, Any]:
        """Verify an inbound BYODS JWS token (sync).

        Args:
            jws_token: The token (raw or ``Bearer <token>``).
            expected_url: Require this ``com.cisco.datasource.url`` claim, character for
                character (your data source's registered URL); ``None`` skips the check.
            expected_org_id: Require this org (UUID or Hydra id); ``None`` skips the check.

        Raises:
            ValueError: If the token is invalid or no matching JWK is found
                (:class:`~webex_byova.jws.JWSVerificationError` with a ``reason``).
        """
        return self._jws.verify(
            jws_token, expected_url=expected_url, expected_org_id=expected_org_id
        )

    async def averify_jws_token(
        self,
        jws_token: str,
        *,
        expected_url: str | None = None,
        expected_org_id: str | None = None,
    ) -> dict[str, Any]:
        """Verify an inbound BYODS JWS token (see :meth:`verify_jws_token` for the keywords).

        Raises:
            ValueError: If the token is invalid or no matching JWK is found.
        """
        return await self._jws.averify(
            jws_token, expected_url=expected_url, expected_org_id=expected_org_id
        )

    # -- lifecycle
    def close(self) -> None:
        """Close the underlying HTTP client and release connections.

        A token store the facade created itself (the default, or ``from_env``) is closed too.
        """
        self._http.close()
        self._jws.close()
        closer = getattr(self._storage, "close", None)
        if self._owns_storage and closer is not None:
            closer()

    async def aclose(self) -> None:
        """Close the underlying HTTP client asynchronously."""
        await self._http.aclose()
        await self._jws.aclose()
        closer = getattr(self._storage, "aclose", None)
        if self._owns_storage and closer is not None:
            await closer()

    def __enter__(self) -> BYOVA:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> BYOVA:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return (
            f"BYOVA(base_url={self._config.base_url!r}, "
            f"service_app={self._service_app_credentials.client_id!r}, "
            f"webhook_secret={'set' if self._webhook_secret else 'unset'})"
        )
