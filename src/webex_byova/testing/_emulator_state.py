"""In-memory state of :class:`~webex_byova.testing.WebexEmulator` (no I/O).

Everything here is plain data plus small pure helpers. The HTTP shell and the routes hold
``EmulatorState.lock`` while they read or change the state; nothing in this module sleeps,
opens a socket or touches the real clock except :class:`EmulatorClock`.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .._logging import mask

__all__ = [
    "AccessTokenRecord",
    "AuthCode",
    "DataSourceRecord",
    "EmulatorClock",
    "EmulatorError",
    "EmulatorState",
    "Integration",
    "Org",
    "Person",
    "RefreshTokenRecord",
    "SchemaRecord",
    "ServiceApp",
    "WebhookRecord",
    "hydra_decode",
    "hydra_encode",
    "iso_ms",
    "resolve_org_uuid",
]

# The scopes an integration may request. Unknown scopes make /authorize redirect with
# ``error=invalid_scope``.
DEFAULT_INTEGRATION_SCOPES: tuple[str, ...] = (
    "spark:applications_token",
    "application:webhooks_read",
    "application:webhooks_write",
    "spark:all",
    "spark:kms",
    "spark:people_read",
    "spark:datasource_read",
    "spark-admin:datasource_read",
    "spark-admin:datasource_write",
    "openid",
    "email",
    "profile",
)
DEFAULT_SERVICE_APP_SCOPES: tuple[str, ...] = (
    "spark-admin:datasource_read",
    "spark-admin:datasource_write",
)

# Schema ids from the spec (§4 "Known schema ids").
SEED_SCHEMAS: tuple[tuple[str, str, str, str], ...] = (
    (
        "5397013b-7920-4ffc-807c-e8a3e0a18f43",
        "gRPC",
        "Voice Virtual Agent (BYOVA)",
        "VoiceVirtualAgent_5397013b-7920-4ffc-807c-e8a3e0a18f43",
    ),
    (
        "a38a10b7-43e4-4676-a076-a7d6dce9387d",
        "web-socket",
        "Web Socket Voice Virtual Agent",
        "WebSocketVoiceVirtualAgent_a38a10b7-43e4-4676-a076-a7d6dce9387d",
    ),
    (
        "523e1b7f-4693-47bc-b84e-a7b7a505fb0b",
        "gRPC",
        "Conversation Audio Forking",
        "ConversationAudioForking_523e1b7f-4693-47bc-b84e-a7b7a505fb0b",
    ),
    (
        "1b2b7077-dbcd-4732-b2f9-296f9168168a",
        "gRPC",
        "Media Intelligence Forking",
        "MediaIntelligenceForking_1b2b7077-dbcd-4732-b2f9-296f9168168a",
    ),
    (
        "78efc775-dccb-45ca-9acf-989a4a59f788",
        "https",
        "Web service data source",
        "WebService_78efc775-dccb-45ca-9acf-989a4a59f788",
    ),
)


class EmulatorError(ValueError):
    """An emulator admin method was called with bad arguments (unknown org, app not authorized)."""


class EmulatorClock:
    """The emulator's controllable clock.

    ``now()`` is the real wall clock plus an offset (or a frozen instant when ``frozen``);
    ``advance()`` moves it forward. Every lifetime, ``iat``/``exp`` and expiry check in the
    emulator uses this clock, so tests can expire things without sleeping.
    """

    def __init__(self, start: float | None = None, *, frozen: bool = False) -> None:
        self._lock = threading.Lock()
        self._frozen: float | None = None
        self._offset = 0.0
        if frozen:
            self._frozen = float(start) if start is not None else time.time()
        elif start is not None:
            self._offset = float(start) - time.time()

    def now(self) -> float:
        """Current emulated time in epoch seconds."""
        with self._lock:
            if self._frozen is not None:
                return self._frozen
            return time.time() + self._offset

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` (must be >= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("the emulator clock only moves forward")
        with self._lock:
            if self._frozen is not None:
                self._frozen += seconds
                return self._frozen
            self._offset += seconds
            return time.time() + self._offset

    def freeze(self) -> None:
        """Stop the clock at its current time (it then only moves with :meth:`advance`)."""
        now = self.now()
        with self._lock:
            self._frozen = now

    def unfreeze(self) -> None:
        """Let the clock run with the wall clock again, keeping the current offset."""
        with self._lock:
            if self._frozen is not None:
                self._offset = self._frozen - time.time()
                self._frozen = None


def iso_ms(epoch: float) -> str:
    """Format epoch seconds as ISO-8601 UTC with milliseconds, e.g. ``2024-10-31T02:13:25.776Z``."""
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def hydra_encode(region: str, kind: str, ident: str) -> str:
    """Hydra id: unpadded standard base64 of ``ciscospark://<region>/<KIND>/<ident>``."""
    raw = f"ciscospark://{region}/{kind}/{ident}".encode()
    return base64.b64encode(raw).decode("ascii").rstrip("=")


def hydra_decode(value: str) -> tuple[str, str, str] | None:
    """Decode a Hydra id (padded or not, standard or URL-safe) to ``(region, KIND, ident)``."""
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not decoded.startswith("ciscospark://"):
        return None
    parts = decoded[len("ciscospark://") :].split("/")
    if len(parts) != 3 or not all(parts):
        return None
    return parts[0], parts[1], parts[2]


def _as_uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value.strip()))
    except (ValueError, AttributeError):
        return None


def resolve_org_uuid(value: str) -> str | None:
    """Return the org UUID for an org id given as a UUID or a Hydra ``ORGANIZATION`` id."""
    if not isinstance(value, str) or not value.strip():
        return None
    plain = _as_uuid(value)
    if plain is not None:
        return plain
    decoded = hydra_decode(value)
    if decoded is None or decoded[1] != "ORGANIZATION":
        return None
    return _as_uuid(decoded[2])


def _new_id() -> str:
    return str(uuid.uuid4())


def _client_id() -> str:
    return "C" + secrets.token_hex(32)


@dataclass
class Org:
    """An emulated Webex organization."""

    org_id: str
    hydra_id: str
    name: str
    admin_person_id: str = ""


@dataclass
class Person:
    """A user or machine account (owner of tokens and webhooks)."""

    person_id: str  # Hydra PEOPLE id
    org_id: str  # org UUID
    display_name: str = ""


@dataclass
class Integration:
    """An OAuth integration registered on the emulator."""

    client_id: str
    client_secret: str = field(repr=False)
    redirect_uri: str
    scopes: tuple[str, ...]
    name: str = "Emulated Integration"
    application_id: str = ""
    redirect_uris: tuple[str, ...] = ()
    allow_loopback_redirects: bool = True
    user_id: str = ""  # the person who authorizes it (the developer)

    def redirect_allowed(self, uri: str) -> bool:
        """Whether ``uri`` is a registered redirect URI (or a loopback URI when allowed)."""
        if uri in self.redirect_uris or uri == self.redirect_uri:
            return True
        if not self.allow_loopback_redirects:
            return False
        from urllib.parse import urlsplit

        try:
            parts = urlsplit(uri)
            _ = parts.port  # raises on a bad port
        except ValueError:
            return False
        return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


@dataclass
class ServiceApp:
    """A Service App owned by the developer org."""

    client_id: str
    client_secret: str = field(repr=False)
    application_id: str
    name: str = "Emulated Service App"
    scopes: tuple[str, ...] = DEFAULT_SERVICE_APP_SCOPES
    valid_domains: tuple[str, ...] = ()
    authorized_orgs: dict[str, str] = field(default_factory=dict)  # org uuid -> machine person id
    authorization_dates: dict[str, float] = field(default_factory=dict)


@dataclass
class AccessTokenRecord:
    """An issued access token."""

    token: str = field(repr=False)
    kind: str  # "integration" | "service_app"
    client_id: str
    scopes: tuple[str, ...]
    org_id: str  # org UUID the token acts in
    person_id: str  # owner (user or machine account)
    issued_at: float
    expires_at: float
    revoked: bool = False

    def live(self, now: float) -> bool:
        """Whether the token can still be used at ``now``."""
        return not self.revoked and now < self.expires_at


@dataclass
class RefreshTokenRecord:
    """An issued refresh token."""

    token: str = field(repr=False)
    kind: str
    client_id: str
    scopes: tuple[str, ...]
    org_id: str
    person_id: str
    expires_at: float
    revoked: bool = False

    def live(self, now: float) -> bool:
        """Whether the refresh token can still be used at ``now``."""
        return not self.revoked and now < self.expires_at


@dataclass
class AuthCode:
    """A single-use authorization code."""

    code: str = field(repr=False)
    client_id: str
    redirect_uri: str
    scopes: tuple[str, ...]
    expires_at: float
    code_challenge: str | None = None
    code_challenge_method: str | None = None
    used: bool = False


@dataclass
class WebhookRecord:
    """A registered webhook (``to_json`` gives the REST shape)."""

    id: str
    name: str
    target_url: str
    resource: str
    event: str
    filter: str | None
    secret: str | None = field(repr=False)
    status: str
    created: float
    owned_by: str
    org_id: str  # owner org Hydra id
    created_by: str  # owner person Hydra id
    app_id: str
    owner_person_uuid: str = ""
    failures: deque[float] = field(default_factory=deque, repr=False)

    def to_json(self) -> dict[str, Any]:
        """REST representation."""
        out: dict[str, Any] = {
            "id": self.id,
            "name": self.name,
            "targetUrl": self.target_url,
            "resource": self.resource,
            "event": self.event,
        }
        if self.filter:
            out["filter"] = self.filter
        if self.secret:
            out["secret"] = self.secret
        out.update(
            {
                "status": self.status,
                "created": iso_ms(self.created),
                "ownedBy": self.owned_by,
                "orgId": self.org_id,
                "createdBy": self.created_by,
                "appId": self.app_id,
            }
        )
        return out

    def __repr__(self) -> str:
        return (
            f"WebhookRecord(id={self.id!r}, name={self.name!r}, resource={self.resource!r}, "
            f"event={self.event!r}, status={self.status!r}, secret={mask(self.secret)})"
        )


@dataclass
class DataSourceRecord:
    """A registered data source (``to_json`` gives the REST shape)."""

    id: str
    org_id: str  # UUID
    application_id: str  # plain client id
    schema_id: str
    url: str
    audience: str
    subject: str
    nonce: str
    token_lifetime_minutes: int
    status: str
    error_message: str
    jws_token: str = field(repr=False)
    token_expiry: float
    created_by: str
    created_at: float
    updated_by: str
    updated_at: float

    def to_json(self) -> dict[str, Any]:
        """REST representation."""
        return {
            "id": self.id,
            "schemaId": self.schema_id,
            "orgId": self.org_id,
            "applicationId": self.application_id,
            "status": self.status,
            "jwsToken": self.jws_token,
            "createdBy": self.created_by,
            "createdAt": iso_ms(self.created_at),
            "updatedBy": self.updated_by,
            "updatedAt": iso_ms(self.updated_at),
            "errorMessage": self.error_message,
            "url": self.url,
            "audience": self.audience,
            "subject": self.subject,
            "nonce": self.nonce,
            "tokenLifetimeMinutes": self.token_lifetime_minutes,
            "tokenExpiryTime": iso_ms(self.token_expiry),
        }


@dataclass
class SchemaRecord:
    """A data-exchange schema."""

    id: str
    protocol: str
    description: str
    url: str
    created_at: float
    app_type: str = "serviceApp"
    service_type: str = "webService"

    def to_json(self) -> dict[str, Any]:
        """REST representation."""
        return {
            "id": self.id,
            "appType": self.app_type,
            "createdAt": iso_ms(self.created_at),
            "protocol": self.protocol,
            "serviceType": self.service_type,
            "url": self.url,
            "description": self.description,
        }


def _random_token(org_uuid: str) -> str:
    # Webex access tokens end with ``_<cluster>_<orgUUID>``; tools parse the org from it.
    return f"{secrets.token_urlsafe(48).replace('_', 'x')}_PE93_{org_uuid}"


class EmulatorState:
    """All emulator data plus the lock that guards it."""

    def __init__(
        self,
        *,
        clock: EmulatorClock,
        region: str = "us",
        access_token_lifetime: int = 1209600,
        refresh_token_lifetime: int = 7776000,
        service_app_token_lifetime: int = 1209600,
        rotate_refresh_tokens: bool = False,
        code_lifetime: int = 600,
    ) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.region = region
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.service_app_token_lifetime = service_app_token_lifetime
        self.rotate_refresh_tokens = rotate_refresh_tokens
        self.code_lifetime = code_lifetime
        self.orgs: dict[str, Org] = {}
        self.people: dict[str, Person] = {}
        self.integrations: dict[str, Integration] = {}
        self.service_apps: dict[str, ServiceApp] = {}
        self.access_tokens: dict[str, AccessTokenRecord] = {}
        self.refresh_tokens: dict[str, RefreshTokenRecord] = {}
        self.codes: dict[str, AuthCode] = {}
        self.webhooks: dict[str, WebhookRecord] = {}
        self.data_sources: dict[str, DataSourceRecord] = {}
        self.schemas: dict[str, SchemaRecord] = {}
        self.deny_authorize = 0
        now = clock.now()
        for sid, protocol, description, folder in SEED_SCHEMAS:
            self.schemas[sid] = SchemaRecord(
                id=sid,
                protocol=protocol,
                description=description,
                url=f"https://github.com/webex/dataSourceSchemas/tree/main/Services/{folder}",
                created_at=now,
            )

    # -- identities --------------------------------------------------------------------
    def hydra(self, kind: str, ident: str) -> str:
        """Hydra id in this emulator's region."""
        return hydra_encode(self.region, kind, ident)

    def create_org(self, name: str | None = None) -> Org:
        """Create an org with an admin user."""
        with self.lock:
            org_uuid = _new_id()
            org = Org(org_id=org_uuid, hydra_id=self.hydra("ORGANIZATION", org_uuid), name="")
            org.name = name or f"Emulated Org {len(self.orgs) + 1}"
            admin = self.create_person(org_uuid, f"Admin of {org.name}")
            org.admin_person_id = admin.person_id
            self.orgs[org_uuid] = org
            return org

    def create_person(self, org_uuid: str, display_name: str = "") -> Person:
        """Create a user or machine account in an org."""
        with self.lock:
            person = Person(
                person_id=self.hydra("PEOPLE", _new_id()),
                org_id=org_uuid,
                display_name=display_name,
            )
            self.people[person.person_id] = person
            return person

    def create_integration(
        self,
        *,
        owner_org: Org,
        redirect_uri: str = "http://localhost:8765/callback",
        scopes: tuple[str, ...] = DEFAULT_INTEGRATION_SCOPES,
        name: str = "Emulated Integration",
    ) -> Integration:
        """Register an integration whose authorizing user lives in ``owner_org``."""
        with self.lock:
            client_id = _client_id()
            user = self.create_person(owner_org.org_id, "Developer")
            integ = Integration(
                client_id=client_id,
                client_secret=secrets.token_hex(32),
                redirect_uri=redirect_uri,
                scopes=tuple(scopes),
                name=name,
                application_id=self.hydra("APPLICATION", client_id),
                user_id=user.person_id,
            )
            self.integrations[client_id] = integ
            return integ

    def create_service_app(
        self,
        *,
        name: str = "Emulated Service App",
        scopes: tuple[str, ...] = DEFAULT_SERVICE_APP_SCOPES,
        valid_domains: tuple[str, ...] = (),
    ) -> ServiceApp:
        """Register a Service App (owned by the developer)."""
        with self.lock:
            client_id = _client_id()
            app = ServiceApp(
                client_id=client_id,
                client_secret=secrets.token_hex(32),
                application_id=self.hydra("APPLICATION", client_id),
                name=name,
                scopes=tuple(scopes),
                valid_domains=tuple(valid_domains),
            )
            self.service_apps[client_id] = app
            return app

    def find_service_app(self, application_id: str) -> ServiceApp | None:
        """Find a Service App by its Hydra application id (any base64 flavour)."""
        decoded = hydra_decode(application_id)
        if decoded is None or decoded[1] != "APPLICATION":
            return None
        return self.service_apps.get(decoded[2])

    # -- tokens -------------------------------------------------------------------------
    def issue_tokens(
        self,
        *,
        kind: str,
        client_id: str,
        scopes: tuple[str, ...],
        org_id: str,
        person_id: str,
        refresh: RefreshTokenRecord | None = None,
    ) -> dict[str, Any]:
        """Mint an access token (and a refresh token unless ``refresh`` is reused)."""
        with self.lock:
            now = self.clock.now()
            lifetime = (
                self.service_app_token_lifetime
                if kind == "service_app"
                else self.access_token_lifetime
            )
            access = AccessTokenRecord(
                token=_random_token(org_id),
                kind=kind,
                client_id=client_id,
                scopes=scopes,
                org_id=org_id,
                person_id=person_id,
                issued_at=now,
                expires_at=now + lifetime,
            )
            self.access_tokens[access.token] = access
            if refresh is None:
                refresh = RefreshTokenRecord(
                    token=_random_token(org_id),
                    kind=kind,
                    client_id=client_id,
                    scopes=scopes,
                    org_id=org_id,
                    person_id=person_id,
                    expires_at=now + self.refresh_token_lifetime,
                )
                self.refresh_tokens[refresh.token] = refresh
            else:
                # Sliding window: a refresh token used regularly never expires.
                refresh.expires_at = now + self.refresh_token_lifetime
            return {
                "access_token": access.token,
                "expires_in": int(lifetime),
                "refresh_token": refresh.token,
                "refresh_token_expires_in": int(self.refresh_token_lifetime),
                "token_type": "Bearer",
                "scope": " ".join(scopes),
            }

    def live_token(self, token: str) -> AccessTokenRecord | None:
        """The access token record if it exists and is live now."""
        with self.lock:
            rec = self.access_tokens.get(token)
            if rec is None or not rec.live(self.clock.now()):
                return None
            return rec

    def revoke_service_app_tokens(self, client_id: str, org_uuid: str) -> None:
        """Revoke every access and refresh token of a Service App in one org."""
        with self.lock:
            for a in self.access_tokens.values():
                if a.kind == "service_app" and a.client_id == client_id and a.org_id == org_uuid:
                    a.revoked = True
            for r in self.refresh_tokens.values():
                if r.kind == "service_app" and r.client_id == client_id and r.org_id == org_uuid:
                    r.revoked = True

    def expire_tokens(self, kind: str) -> int:
        """Make live access tokens of ``kind`` (or ``"all"``) expire now; return how many."""
        if kind not in ("integration", "service_app", "all"):
            raise EmulatorError("kind must be 'integration', 'service_app' or 'all'")
        with self.lock:
            now = self.clock.now()
            count = 0
            for rec in self.access_tokens.values():
                if (kind == "all" or rec.kind == kind) and rec.live(now):
                    rec.expires_at = now
                    count += 1
            return count
