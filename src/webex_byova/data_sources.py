"""Per-org Data Sources and Schemas API (:class:`OrgClient`).

Every call uses the Service App's token for the org. A 401 forces one token refresh and one
retry (:func:`webex_byova._authed.authed_request`). Each operation is written once as a flow
and exposed as a sync method (``get``) and an async one (``aget``).

Input is validated before any request: ``token_lifetime_minutes`` must be an integer in
1..1440, ``url`` an absolute http(s)/grpc(s)/ws(s) URL, and ``status="disabled"`` needs an
``error_message``. PUT is a **full replacement** (Webex ignores nothing: every sample sends the
whole object), so :meth:`DataSourcesResource.update` always sends every field and a fresh
nonce, and :meth:`DataSourcesResource.extend` GETs the data source first.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any
from urllib.parse import urlsplit

from ._authed import TokenFlow, authed_request, iterate_async, iterate_sync, page_flow
from ._flow import Call, Flow, Portal, run_async, run_sync
from ._http import HttpClient, RequestSpec
from ._ids import org_uuid
from ._logging import get_logger
from .errors import ConflictError, ValidationError
from .models import DataSource, Schema

__all__ = [
    "BYOVA_SCHEMA_ID",
    "MAX_TOKEN_LIFETIME_MINUTES",
    "DataSourcesResource",
    "OrgClient",
    "SchemasResource",
    "build_data_source_body",
    "new_nonce",
    "service_app_token_flow",
]

log = get_logger("webex_byova.data_sources")

#: Schema id of the Voice Virtual Agent (BYOVA, gRPC) data exchange schema.
BYOVA_SCHEMA_ID = "5397013b-7920-4ffc-807c-e8a3e0a18f43"
MIN_TOKEN_LIFETIME_MINUTES = 1
MAX_TOKEN_LIFETIME_MINUTES = 1440
DEFAULT_TOKEN_LIFETIME_MINUTES = 1440
_URL_SCHEMES = ("https", "http", "grpc", "grpcs", "wss", "ws")


def new_nonce() -> str:
    """A fresh nonce (random UUID); Webex needs a new one on every PUT to mint a new token."""
    return str(uuid.uuid4())


def _check_lifetime(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValidationError(
            f"token_lifetime_minutes must be an integer, got {type(value).__name__}"
        )
    if not MIN_TOKEN_LIFETIME_MINUTES <= value <= MAX_TOKEN_LIFETIME_MINUTES:
        raise ValidationError(
            f"token_lifetime_minutes must be between {MIN_TOKEN_LIFETIME_MINUTES} and "
            f"{MAX_TOKEN_LIFETIME_MINUTES}, got {value}"
        )
    return value


def _check_text(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValidationError(f"{name} must be a non-empty string")
    return value


def _check_url(value: Any) -> str:
    text = _check_text("url", value)
    try:
        parts = urlsplit(text)
        ok = parts.scheme.lower() in _URL_SCHEMES and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ValidationError(f"url must be an absolute URL ({', '.join(_URL_SCHEMES)})")
    # Webex compares the URL claim character for character: never normalise it.
    return text


def _check_id(name: str, value: Any) -> str:
    text = _check_text(name, value).strip()
    if "/" in text or "?" in text or "#" in text:
        raise ValidationError(f"invalid {name} {value!r}")
    return text


def build_data_source_body(
    *,
    schema_id: str,
    url: str,
    audience: str,
    subject: str,
    token_lifetime_minutes: int,
    nonce: str | None = None,
    status: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """Validate and build a POST/PUT ``/dataSources`` body (raises ``ValidationError``)."""
    body: dict[str, Any] = {
        "schemaId": _check_text("schema_id", schema_id).strip(),
        "url": _check_url(url),
        "audience": _check_text("audience", audience),
        "subject": _check_text("subject", subject),
        "nonce": _check_text("nonce", nonce) if nonce is not None else new_nonce(),
        "tokenLifetimeMinutes": _check_lifetime(token_lifetime_minutes),
    }
    if status is not None:
        if status not in ("active", "disabled"):
            raise ValidationError(f"status must be 'active' or 'disabled', got {status!r}")
        if status == "disabled" and not (error_message or "").strip():
            raise ValidationError("error_message is required when disabling a data source")
        body["status"] = status
    if error_message is not None:
        body["errorMessage"] = error_message
    return body


def service_app_token_flow(service_app: Any, org_id: str) -> TokenFlow:
    """Adapt a Service App token manager to a token flow for one org."""
    flow_fn = getattr(service_app, "org_token_flow", None)
    if flow_fn is not None:

        def _flow(force: bool) -> Flow[str]:
            token: Any = yield from flow_fn(org_id, force_refresh=force)
            return _token_text(token)

        return _flow

    def _call_flow(force: bool) -> Flow[str]:
        if force:
            token: Any = yield Call(lambda: service_app.afetch_org_token(org_id))
        else:
            token = yield Call(lambda: service_app.aget_org_token(org_id))
        return _token_text(token)

    return _call_flow


def _token_text(token: Any) -> str:
    if isinstance(token, str):
        return token
    value = getattr(token, "access_token", None)
    if isinstance(value, str):
        return value
    raise TypeError("token source returned no access token")


class DataSourcesResource:
    """``/dataSources`` for one org (reach it as ``OrgClient.data_sources``)."""

    def __init__(self, http: HttpClient, token_flow: TokenFlow, portal: Portal | None) -> None:
        self._http = http
        self._token_flow = token_flow
        self._portal = portal

    # -- flows (written once)
    def _one(self, spec: RequestSpec) -> Flow[DataSource]:
        response = yield from authed_request(spec, self._token_flow)
        return DataSource.model_validate(response.json())

    def get_flow(self, data_source_id: str) -> Flow[DataSource]:
        """Flow: ``GET /dataSources/{id}``."""
        ds_id = _check_id("data_source_id", data_source_id)
        return self._one(self._http.build("GET", f"dataSources/{ds_id}"))

    def create_flow(
        self,
        *,
        schema_id: str = BYOVA_SCHEMA_ID,
        url: str,
        audience: str,
        subject: str,
        token_lifetime_minutes: int = DEFAULT_TOKEN_LIFETIME_MINUTES,
        nonce: str | None = None,
    ) -> Flow[DataSource]:
        """Flow: ``POST /dataSources``."""
        body = build_data_source_body(
            schema_id=schema_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
            nonce=nonce,
        )
        return self._one(self._http.build("POST", "dataSources", json_body=body))

    def update_flow(
        self,
        data_source_id: str,
        *,
        schema_id: str,
        url: str,
        audience: str,
        subject: str,
        token_lifetime_minutes: int,
        nonce: str | None = None,
        status: str | None = None,
        error_message: str | None = None,
    ) -> Flow[DataSource]:
        """Flow: ``PUT /dataSources/{id}`` (full replacement, fresh nonce by default)."""
        ds_id = _check_id("data_source_id", data_source_id)
        body = build_data_source_body(
            schema_id=schema_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
            nonce=nonce,
            status=status,
            error_message=error_message,
        )
        return self._one(self._http.build("PUT", f"dataSources/{ds_id}", json_body=body))

    def delete_flow(self, data_source_id: str) -> Flow[None]:
        """Flow: ``DELETE /dataSources/{id}``."""
        spec = self._http.build(
            "DELETE", f"dataSources/{_check_id('data_source_id', data_source_id)}"
        )
        yield from authed_request(spec, self._token_flow)
        return None

    def _replace_flow(
        self, current: DataSource, token_lifetime_minutes: int | None, **changes: Any
    ) -> Flow[DataSource]:
        lifetime = token_lifetime_minutes
        if lifetime is None:
            lifetime = current.token_lifetime_minutes or DEFAULT_TOKEN_LIFETIME_MINUTES
        missing = [
            name
            for name in ("schema_id", "url", "audience", "subject")
            if not (changes.get(name) or getattr(current, name))
        ]
        if missing:
            raise ValidationError(
                f"data source {current.id} lacks {', '.join(missing)}; cannot PUT it back"
            )
        status = changes.get("status", current.status)
        if status == "inactive":  # older docs' name for a disabled source
            status = "disabled"
        error_message = changes.get(
            "error_message", current.error_message if status == "disabled" else None
        )
        result = yield from self.update_flow(
            current.id,
            schema_id=changes.get("schema_id") or current.schema_id or "",
            url=changes.get("url") or current.url or "",
            audience=changes.get("audience") or current.audience or "",
            subject=changes.get("subject") or current.subject or "",
            token_lifetime_minutes=lifetime,
            nonce=new_nonce(),
            status=status if status in ("active", "disabled") else None,
            error_message=error_message,
        )
        return result

    def extend_flow(
        self, data_source_id: str, *, token_lifetime_minutes: int | None = None
    ) -> Flow[DataSource]:
        """Flow behind :meth:`extend`: GET, then PUT everything back with a fresh nonce."""
        if token_lifetime_minutes is not None:
            _check_lifetime(token_lifetime_minutes)
        current = yield from self.get_flow(data_source_id)
        updated = yield from self._replace_flow(current, token_lifetime_minutes)
        log.info("extended data source %s; token now expires at %s", updated.id, updated.expires_at)
        return updated

    def _all_flow(self) -> Flow[builtins.list[DataSource]]:
        found: builtins.list[DataSource] = []
        current: RequestSpec | None = self._http.build("GET", "dataSources")
        while current is not None:
            items, current = yield from page_flow(current, self._token_flow)
            found.extend(DataSource.model_validate(item) for item in items)
        return found

    def register_or_update_flow(
        self,
        url: str,
        schema_id: str = BYOVA_SCHEMA_ID,
        *,
        audience: str,
        subject: str,
        token_lifetime_minutes: int = DEFAULT_TOKEN_LIFETIME_MINUTES,
    ) -> Flow[DataSource]:
        """Flow behind :meth:`register_or_update`."""
        build_data_source_body(  # validate everything before the first request
            schema_id=schema_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
        )
        existing = yield from self._all_flow()
        matches = [d for d in existing if d.url == url and d.schema_id == schema_id]
        if not matches:
            created = yield from self.create_flow(
                schema_id=schema_id,
                url=url,
                audience=audience,
                subject=subject,
                token_lifetime_minutes=token_lifetime_minutes,
            )
            log.info("registered data source %s for %s", created.id, url)
            return created
        if len(matches) > 1:
            ids = ", ".join(d.id for d in matches)
            raise ConflictError(
                f"{len(matches)} data sources exist for url {url!r} and schema {schema_id}: "
                f"{ids}; update one by id instead"
            )
        updated = yield from self._replace_flow(
            matches[0],
            token_lifetime_minutes,
            audience=audience,
            subject=subject,
            status="active",
            error_message="",
        )
        log.info("updated existing data source %s for %s", updated.id, url)
        return updated

    # -- shells
    def list(self) -> Iterator[DataSource]:
        """Iterate over the org's data sources (follows ``Link`` pagination lazily)."""
        spec = self._http.build("GET", "dataSources")
        for item in iterate_sync(spec, self._token_flow, self._http, self._portal):
            yield DataSource.model_validate(item)

    async def alist(self) -> AsyncIterator[DataSource]:
        """Async :meth:`list`."""
        spec = self._http.build("GET", "dataSources")
        async for item in iterate_async(spec, self._token_flow, self._http):
            yield DataSource.model_validate(item)

    def get(self, data_source_id: str) -> DataSource:
        """Return one data source."""
        return run_sync(self.get_flow(data_source_id), self._http, self._portal)

    async def aget(self, data_source_id: str) -> DataSource:
        """Async :meth:`get`."""
        return await run_async(self.get_flow(data_source_id), self._http)

    def create(
        self,
        *,
        schema_id: str = BYOVA_SCHEMA_ID,
        url: str,
        audience: str,
        subject: str,
        token_lifetime_minutes: int = DEFAULT_TOKEN_LIFETIME_MINUTES,
        nonce: str | None = None,
    ) -> DataSource:
        """Register a data source (``nonce`` defaults to a fresh UUID).

        ``schema_id`` defaults to the BYOVA schema, as in :meth:`register_or_update`. Webex
        accepts several data sources for one URL; :meth:`register_or_update` then refuses to
        pick one, so prefer it unless you want a second registration.
        """
        flow = self.create_flow(
            schema_id=schema_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
            nonce=nonce,
        )
        return run_sync(flow, self._http, self._portal)

    async def acreate(
        self,
        *,
        schema_id: str = BYOVA_SCHEMA_ID,
        url: str,
        audience: str,
        subject: str,
        token_lifetime_minutes: int = DEFAULT_TOKEN_LIFETIME_MINUTES,
        nonce: str | None = None,
    ) -> DataSource:
        """Async :meth:`create`."""
        flow = self.create_flow(
            schema_id=schema_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
            nonce=nonce,
        )
        return await run_async(flow, self._http)

    def update(
        self,
        data_source_id: str,
        *,
        schema_id: str,
        url: str,
        audience: str,
        subject: str,
        token_lifetime_minutes: int,
        nonce: str | None = None,
        status: str | None = None,
        error_message: str | None = None,
    ) -> DataSource:
        """Replace a data source (every field is sent; ``nonce`` defaults to a fresh one)."""
        flow = self.update_flow(
            data_source_id,
            schema_id=schema_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
            nonce=nonce,
            status=status,
            error_message=error_message,
        )
        return run_sync(flow, self._http, self._portal)

    async def aupdate(
        self,
        data_source_id: str,
        *,
        schema_id: str,
        url: str,
        audience: str,
        subject: str,
        token_lifetime_minutes: int,
        nonce: str | None = None,
        status: str | None = None,
        error_message: str | None = None,
    ) -> DataSource:
        """Async :meth:`update`."""
        flow = self.update_flow(
            data_source_id,
            schema_id=schema_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
            nonce=nonce,
            status=status,
            error_message=error_message,
        )
        return await run_async(flow, self._http)

    def delete(self, data_source_id: str) -> None:
        """Delete a data source."""
        run_sync(self.delete_flow(data_source_id), self._http, self._portal)

    async def adelete(self, data_source_id: str) -> None:
        """Async :meth:`delete`."""
        await run_async(self.delete_flow(data_source_id), self._http)

    def extend(self, data_source_id: str, token_lifetime_minutes: int | None = None) -> DataSource:
        """Renew a data source's token: GET it, then PUT it back with a fresh nonce.

        Args:
            data_source_id: The data source.
            token_lifetime_minutes: New lifetime (1..1440); default: keep the current one.

        Returns:
            The data source with its new ``jwsToken`` and ``tokenExpiryTime``.
        """
        flow = self.extend_flow(data_source_id, token_lifetime_minutes=token_lifetime_minutes)
        return run_sync(flow, self._http, self._portal)

    async def aextend(
        self, data_source_id: str, token_lifetime_minutes: int | None = None
    ) -> DataSource:
        """Async :meth:`extend`."""
        flow = self.extend_flow(data_source_id, token_lifetime_minutes=token_lifetime_minutes)
        return await run_async(flow, self._http)

    def register_or_update(
        self,
        url: str,
        schema_id: str = BYOVA_SCHEMA_ID,
        *,
        audience: str,
        subject: str,
        token_lifetime_minutes: int = DEFAULT_TOKEN_LIFETIME_MINUTES,
    ) -> DataSource:
        """Create the data source for (``url``, ``schema_id``) or update the existing one.

        The URL is matched character for character (``https://h`` and ``https://h:443``
        differ, as in the JWS claim). An existing match is PUT back with the given
        audience/subject/lifetime, ``status: active`` and a fresh nonce.

        Raises:
            ConflictError: If several data sources already match (refuses to guess).
        """
        flow = self.register_or_update_flow(
            url,
            schema_id,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
        )
        return run_sync(flow, self._http, self._portal)

    async def aregister_or_update(
        self,
        url: str,
        schema_id: str = BYOVA_SCHEMA_ID,
        *,
        audience: str,
        subject: str,
        token_lifetime_minutes: int = DEFAULT_TOKEN_LIFETIME_MINUTES,
    ) -> DataSource:
        """Async :meth:`register_or_update`."""
        flow = self.register_or_update_flow(
            url,
            schema_id,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
        )
        return await run_async(flow, self._http)


class SchemasResource:
    """``/dataSources/schemas`` (reach it as ``OrgClient.schemas``)."""

    def __init__(self, http: HttpClient, token_flow: TokenFlow, portal: Portal | None) -> None:
        self._http = http
        self._token_flow = token_flow
        self._portal = portal

    def get_flow(self, schema_id: str) -> Flow[Schema]:
        """Flow: ``GET /dataSources/schemas/{id}``."""
        spec = self._http.build("GET", f"dataSources/schemas/{_check_id('schema_id', schema_id)}")
        response = yield from authed_request(spec, self._token_flow)
        return Schema.model_validate(response.json())

    def list(self) -> Iterator[Schema]:
        """Iterate over every schema available to the Service App."""
        spec = self._http.build("GET", "dataSources/schemas")
        for item in iterate_sync(spec, self._token_flow, self._http, self._portal):
            yield Schema.model_validate(item)

    async def alist(self) -> AsyncIterator[Schema]:
        """Async :meth:`list`."""
        spec = self._http.build("GET", "dataSources/schemas")
        async for item in iterate_async(spec, self._token_flow, self._http):
            yield Schema.model_validate(item)

    def get(self, schema_id: str) -> Schema:
        """Return one schema."""
        return run_sync(self.get_flow(schema_id), self._http, self._portal)

    async def aget(self, schema_id: str) -> Schema:
        """Async :meth:`get`."""
        return await run_async(self.get_flow(schema_id), self._http)


class OrgClient:
    """Data Sources and Schemas for one customer org, with the Service App's token.

    Obtain it from ``BYOVA.get_client_for_org`` / ``aget_client_for_org``, or build one
    directly from a :class:`~webex_byova.service_app.ServiceAppTokenManager`.

    Attributes:
        org_id: The org UUID.
        data_sources: :class:`DataSourcesResource`.
        schemas: :class:`SchemasResource`.
    """

    def __init__(
        self,
        org_id: str,
        service_app: Any,
        http: HttpClient,
        *,
        portal: Portal | None = None,
    ) -> None:
        try:
            self.org_id = org_uuid(org_id)
        except ValueError as exc:
            raise ValidationError(str(exc)) from exc
        self._http = http
        self._portal = portal
        self._token_flow = service_app_token_flow(service_app, self.org_id)
        self.data_sources = DataSourcesResource(http, self._token_flow, portal)
        self.schemas = SchemasResource(http, self._token_flow, portal)

    def __repr__(self) -> str:
        return f"OrgClient(org_id={self.org_id!r})"
