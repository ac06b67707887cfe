"""Pydantic v2 models for the administration side (data sources, schemas, webhooks, events).

The models parse Webex's real payloads leniently:

* field names are camelCase on the wire (``schemaId``) and snake_case in Python
  (``schema_id``); both are accepted when constructing a model;
* unknown fields are kept (``model.model_extra``) and survive :meth:`BaseModel.model_dump`;
* ``tokenExpiryTime`` (observed, not in the spec) is parsed as an aware ``datetime``;
* ``status`` is a plain string so ``active``, ``disabled`` and the older ``inactive`` all parse;
* a data source whose list item lacks ``audience``/``subject``/``url``/``schemaId``/``orgId``
  gets them from the (unverified) claims of its ``jwsToken``.

Secrets (``jwsToken``, a webhook ``secret``) are excluded from ``repr``.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "DataSource",
    "Schema",
    "ServiceAppAuthorizedResult",
    "ServiceAppDeauthorizedResult",
    "ServiceAppEvent",
    "Webhook",
    "unverified_jws_claims",
]

CLAIM_URL = "com.cisco.datasource.url"
CLAIM_SCHEMA = "com.cisco.datasource.schema.uuid"
CLAIM_ORG = "com.cisco.org.uuid"


def unverified_jws_claims(token: str | None) -> dict[str, Any]:
    """Decode the payload of a compact JWS **without verifying it** (``{}`` if unreadable).

    Only for reading metadata (expiry, URL) of a token the SDK itself received from the
    Data Sources API; never use it to authorize anything (use ``JWSVerifier``).
    """
    if not token or not isinstance(token, str):
        return {}
    parts = token.split(".")
    if len(parts) != 3:
        return {}
    segment = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(segment.encode("ascii")))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


class _WebexModel(BaseModel):
    """Base: camelCase aliases, populate by name, extra fields kept."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="allow",
        str_strip_whitespace=False,
    )

    def to_wire(self) -> dict[str, Any]:
        """The camelCase JSON representation (``None`` fields dropped)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class DataSource(_WebexModel):
    """A registered BYODS data source (``/dataSources``)."""

    id: str
    schema_id: str | None = None
    org_id: str | None = None
    application_id: str | None = None
    url: str | None = None
    audience: str | None = None
    subject: str | None = None
    nonce: str | None = None
    token_lifetime_minutes: int | None = None
    status: str | None = None
    error_message: str | None = None
    jws_token: str | None = Field(default=None, repr=False)
    token_expiry_time: datetime | None = None
    created_by: str | None = None
    created_at: datetime | None = None
    updated_by: str | None = None
    updated_at: datetime | None = None

    @model_validator(mode="before")
    @classmethod
    def _normalise(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        # Drift seen in samples: ``tokenLifeMinutes`` (as a string) and ``schemaId`` as an array.
        if "tokenLifeMinutes" in data and not (
            "tokenLifetimeMinutes" in data or "token_lifetime_minutes" in data
        ):
            data["tokenLifetimeMinutes"] = data.pop("tokenLifeMinutes")
        schema = data.get("schemaId", data.get("schema_id"))
        if isinstance(schema, list):
            data["schemaId" if "schemaId" in data else "schema_id"] = (
                str(schema[0]) if schema else None
            )
        # Fill missing fields from the JWS claims (list items may be sparse).
        claims = unverified_jws_claims(data.get("jwsToken", data.get("jws_token")))
        if claims:
            fill = {
                ("audience", "audience"): claims.get("aud"),
                ("subject", "subject"): claims.get("sub"),
                ("url", "url"): claims.get(CLAIM_URL),
                ("schemaId", "schema_id"): claims.get(CLAIM_SCHEMA),
                ("orgId", "org_id"): claims.get(CLAIM_ORG),
            }
            for (alias, name), value in fill.items():
                if isinstance(value, list):
                    value = value[0] if value else None
                if value is None or not isinstance(value, str):
                    continue
                if data.get(alias) in (None, "") and data.get(name) in (None, ""):
                    data[alias] = value
        return data

    @field_validator("token_lifetime_minutes", mode="before")
    @classmethod
    def _lifetime(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            return int(text) if text else None
        return value

    @property
    def jws_claims(self) -> dict[str, Any]:
        """Unverified claims of :attr:`jws_token` (``{}`` when absent)."""
        return unverified_jws_claims(self.jws_token)

    @property
    def expires_at(self) -> datetime | None:
        """When the data source's token expires: ``tokenExpiryTime``, else the JWS ``exp``."""
        if self.token_expiry_time is not None:
            value = self.token_expiry_time
            return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        exp = self.jws_claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            return datetime.fromtimestamp(float(exp), tz=UTC)
        return None

    @property
    def is_active(self) -> bool:
        """True when ``status`` is ``active``."""
        return (self.status or "").lower() == "active"


class Schema(_WebexModel):
    """A data-exchange schema (``/dataSources/schemas``)."""

    id: str
    app_type: str | None = None
    created_at: datetime | None = None
    protocol: str | None = None
    service_type: str | None = None
    url: str | None = None
    description: str | None = None


class Webhook(_WebexModel):
    """A registered webhook (``/webhooks``)."""

    id: str
    name: str | None = None
    target_url: str | None = None
    resource: str | None = None
    event: str | None = None
    filter: str | None = None
    secret: str | None = Field(default=None, repr=False)
    status: str | None = None
    created: datetime | None = None
    owned_by: str | None = None
    org_id: str | None = None
    created_by: str | None = None
    app_id: str | None = None

    @property
    def is_active(self) -> bool:
        """True unless Webex disabled the webhook (``status`` ``inactive``)."""
        return (self.status or "active").lower() == "active"


class ServiceAppEvent(BaseModel):
    """A parsed ``serviceApp`` ``authorized``/``deauthorized`` webhook delivery."""

    model_config = ConfigDict(frozen=True)

    event: Literal["authorized", "deauthorized"]
    org_id: str = Field(description="Customer org UUID")
    org_hydra_id: str = Field(description="Customer org Hydra id")
    org_id_source: str = Field(description="Payload field the org was read from")
    application_id: str | None = Field(
        default=None, description="The Service App the event is about (data.id), if present"
    )
    webhook_id: str | None = None
    authorization_date: str | None = None
    idempotency_key: str
    raw: dict[str, Any] = Field(default_factory=dict, repr=False)


class ServiceAppAuthorizedResult(BaseModel):
    """Outcome of handling an ``authorized`` event: the org's tokens are stored."""

    event: Literal["authorized"] = "authorized"
    org_id: str
    org_hydra_id: str
    idempotency_key: str
    duplicate: bool = Field(
        default=False, description="True when this delivery was already handled"
    )
    stale: bool = Field(
        default=False,
        description="True when a newer event for the org was already handled, so this "
        "older one was ignored (nothing changed)",
    )
    token_expires_at: datetime | None = None


class ServiceAppDeauthorizedResult(BaseModel):
    """Outcome of handling a ``deauthorized`` event: the org's tokens are deleted."""

    event: Literal["deauthorized"] = "deauthorized"
    org_id: str
    org_hydra_id: str
    idempotency_key: str
    duplicate: bool = Field(
        default=False, description="True when this delivery was already handled"
    )
    stale: bool = Field(
        default=False,
        description="True when a newer event for the org was already handled, so this "
        "older one was ignored (nothing changed)",
    )
    tokens_removed: bool = Field(
        default=False, description="True when stored tokens existed and were deleted"
    )
