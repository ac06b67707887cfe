"""Request routing of the Webex emulator: plain functions from a request to a response.

No sockets and no sleeping here; the HTTP shell in ``_emulator.py`` parses the request,
applies fault injection, calls :func:`route` and writes the :class:`EmuResponse`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlencode, urlsplit

from ._emulator_jws import KeyRing
from ._emulator_state import (
    AccessTokenRecord,
    AuthCode,
    DataSourceRecord,
    EmulatorState,
    Integration,
    RefreshTokenRecord,
    ServiceApp,
    WebhookRecord,
    resolve_org_uuid,
)

__all__ = [
    "DATA_SOURCE_READ",
    "DATA_SOURCE_WRITE",
    "JWKS_PATH",
    "WEBHOOK_EVENTS",
    "WEBHOOK_RESOURCES",
    "EmuRequest",
    "EmuResponse",
    "RouteContext",
    "client_credentials",
    "error_response",
    "mint_data_source_claims",
    "route",
    "tracking_id_for",
]

JWKS_PATH = "/idb/oauth2/v2/keys/verificationjwk"
APPLICATIONS_TOKEN_SCOPE = "spark:applications_token"
DATA_SOURCE_READ = "spark-admin:datasource_read"
DATA_SOURCE_WRITE = "spark-admin:datasource_write"

WEBHOOK_RESOURCES = frozenset(
    {
        "attachmentActions",
        "memberships",
        "messages",
        "rooms",
        "meetings",
        "recordings",
        "convergedRecordings",
        "meetingParticipants",
        "meetingTranscripts",
        "telephony_calls",
        "telephony_conference",
        "telephony_mwi",
        "uc_counters",
        "serviceApp",
        "adminBatchJobs",
        "dataSources",
        "all",
    }
)
WEBHOOK_EVENTS = frozenset(
    {
        "created",
        "updated",
        "deleted",
        "started",
        "ended",
        "joined",
        "left",
        "migrated",
        "authorized",
        "deauthorized",
        "statusChanged",
        "all",
    }
)
_PKCE_CHARS = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
_CHALLENGE = re.compile(r"^[A-Za-z0-9_-]{43}$")


@dataclass
class EmuRequest:
    """A parsed HTTP request."""

    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-case names
    body: bytes
    tracking_id: str

    def q(self, name: str) -> str | None:
        """First value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None


@dataclass
class EmuResponse:
    """An HTTP response to write."""

    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class RouteContext:
    """What the routes need besides the request: state, keys and public URLs."""

    state: EmulatorState
    keys: KeyRing
    base_url: str
    issuer: str


# -- response helpers -------------------------------------------------------------------

#: What a caller-supplied ``TrackingID`` may contain to be echoed (no CR/LF, bounded).
_TRACKING_ID = re.compile(r"[A-Za-z0-9_.:/+=-]{1,200}")


def tracking_id_for(supplied: str | None) -> str:
    """The response's ``TrackingID``: the caller's own (as Webex echoes it), else ``EMU_<uuid>``.

    Only a plain token-like value is echoed, so a header cannot inject CR/LF or grow a log.
    """
    value = (supplied or "").strip()
    if _TRACKING_ID.fullmatch(value):
        return value
    return f"EMU_{uuid.uuid4()}"


def json_response(
    status: int, payload: Any, headers: list[tuple[str, str]] | None = None
) -> EmuResponse:
    """A JSON response."""
    body = json.dumps(payload).encode()
    return EmuResponse(
        status, body, [("Content-Type", "application/json;charset=UTF-8"), *(headers or [])]
    )


def error_response(
    status: int,
    message: str,
    tracking_id: str,
    *,
    descriptions: list[str] | None = None,
    oauth_error: str | None = None,
    headers: list[tuple[str, str]] | None = None,
) -> EmuResponse:
    """Webex error body ``{message, errors:[{description}], trackingId}`` (plus OAuth fields)."""
    payload: dict[str, Any] = {}
    if oauth_error is not None:
        payload["error"] = oauth_error
        payload["error_description"] = message
    payload["message"] = message
    payload["errors"] = [{"description": d} for d in (descriptions or [message])]
    payload["trackingId"] = tracking_id
    return json_response(status, payload, headers)


def _html(status: int, text: str) -> EmuResponse:
    import html

    page = f"<html><body><h1>Webex emulator</h1><p>{html.escape(text)}</p></body></html>"
    return EmuResponse(status, page.encode(), [("Content-Type", "text/html;charset=UTF-8")])


class _Fail(Exception):
    """Raised inside a route to answer with an error response."""

    def __init__(self, status: int, message: str, *, descriptions: list[str] | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.descriptions = descriptions


def _json_body(req: EmuRequest) -> dict[str, Any]:
    ctype = req.headers.get("content-type", "")
    if ctype and "json" not in ctype.lower():
        raise _Fail(415, f"Unsupported Content-Type {ctype!r}; send application/json")
    try:
        body = json.loads(req.body.decode("utf-8") or "null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise _Fail(400, "The request body is not valid JSON.") from exc
    if not isinstance(body, dict):
        raise _Fail(400, "The request body must be a JSON object.")
    return body


def _bearer(ctx: RouteContext, req: EmuRequest) -> AccessTokenRecord:
    header = req.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise _Fail(
            401, "The request requires a valid access token set in the Authorization header."
        )
    rec = ctx.state.access_tokens.get(token.strip())
    if rec is None or rec.revoked:
        raise _Fail(401, "The access token is invalid or has been revoked.")
    if not rec.live(ctx.state.clock.now()):
        raise _Fail(401, "The access token has expired.")
    return rec


def _require_scope(rec: AccessTokenRecord, scope: str) -> None:
    if scope not in rec.scopes:
        raise _Fail(403, f"The access token is missing the required scope {scope}.")


def _max_param(req: EmuRequest) -> int:
    raw = req.q("max")
    if raw is None:
        return 100
    try:
        value = int(raw)
    except ValueError:
        raise _Fail(400, "max must be a positive integer.") from None
    if value < 1:
        raise _Fail(400, "max must be a positive integer.")
    return value


def _paginate(
    ctx: RouteContext, req: EmuRequest, items: list[dict[str, Any]], path: str
) -> EmuResponse:
    limit = _max_param(req)
    cursor = req.q("cursor")
    offset = 0
    if cursor:
        try:
            offset = int(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode())
        except (ValueError, UnicodeDecodeError):
            raise _Fail(400, "Invalid pagination cursor.") from None
        if offset < 0:
            raise _Fail(400, "Invalid pagination cursor.")
    page = items[offset : offset + limit]
    headers: list[tuple[str, str]] = []
    if offset + limit < len(items):
        params = {k: v[0] for k, v in req.query.items() if k not in ("cursor", "max") and v}
        params["max"] = str(limit)
        params["cursor"] = (
            base64.urlsafe_b64encode(str(offset + limit).encode()).decode().rstrip("=")
        )
        headers.append(("Link", f'<{ctx.base_url}{path}?{urlencode(params)}>; rel="next"'))
    return json_response(200, {"items": page}, headers)


# -- OAuth -------------------------------------------------------------------------------


def _authorize(ctx: RouteContext, req: EmuRequest) -> EmuResponse:
    st = ctx.state
    client_id = req.q("client_id") or ""
    integ = st.integrations.get(client_id)
    if integ is None:
        return _html(400, "Invalid client_id: no such integration.")
    redirect_uri = req.q("redirect_uri") or integ.redirect_uri
    if not integ.redirect_allowed(redirect_uri):
        return _html(400, "Invalid redirect_uri: it is not registered for this integration.")
    state_param = req.q("state")

    def redirect(params: dict[str, str]) -> EmuResponse:
        if state_param is not None:
            params["state"] = state_param
        sep = "&" if "?" in redirect_uri else "?"
        return EmuResponse(302, b"", [("Location", f"{redirect_uri}{sep}{urlencode(params)}")])

    if req.q("response_type") != "code":
        return redirect(
            {"error": "unsupported_response_type", "error_description": "use response_type=code"}
        )
    requested = tuple((req.q("scope") or "").split())
    scopes = requested or integ.scopes
    unknown = [s for s in scopes if s not in integ.scopes]
    if unknown:
        return redirect(
            {"error": "invalid_scope", "error_description": "unknown scope " + " ".join(unknown)}
        )
    challenge = req.q("code_challenge")
    method = req.q("code_challenge_method")
    if (challenge is not None or method is not None) and (
        method != "S256" or challenge is None or not _CHALLENGE.match(challenge)
    ):
        return redirect(
            {
                "error": "invalid_request",
                "error_description": "PKCE needs code_challenge_method=S256 and a "
                "43-character base64url code_challenge",
            }
        )
    if st.deny_authorize > 0:
        st.deny_authorize -= 1
        return redirect(
            {"error": "access_denied", "error_description": "The user denied the request."}
        )
    code = secrets.token_urlsafe(32)
    st.codes[code] = AuthCode(
        code=code,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scopes=tuple(dict.fromkeys(scopes)),
        expires_at=st.clock.now() + st.code_lifetime,
        code_challenge=challenge,
        code_challenge_method=method,
    )
    return redirect({"code": code})


def _oauth_fail(status: int, error: str, message: str, tracking_id: str) -> EmuResponse:
    return error_response(status, message, tracking_id, oauth_error=error)


def client_credentials(authorization: str | None, form: dict[str, str]) -> tuple[str, str] | str:
    """``(client_id, client_secret)`` from HTTP Basic or the form body (RFC 6749 2.3.1).

    ``client_secret_basic`` is ``Basic base64(urlencode(id) ":" urlencode(secret))``;
    ``client_secret_post`` puts both in the form. A client must use one method only. Returns
    an error description (for ``invalid_request``) when the request is malformed.
    """
    header = (authorization or "").strip()
    if not header.lower().startswith("basic "):
        return form.get("client_id", ""), form.get("client_secret", "")
    if "client_secret" in form:
        return "Use one client authentication method: HTTP Basic or client_secret in the body."
    try:
        decoded = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return "The Basic authorization header is not valid base64 of 'id:secret'."
    raw_id, sep, raw_secret = decoded.partition(":")
    if not sep:
        return "The Basic authorization header is not valid base64 of 'id:secret'."
    client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    if form.get("client_id", client_id) != client_id:
        return "client_id in the body differs from the Basic authorization header."
    return client_id, secret


def _access_token(ctx: RouteContext, req: EmuRequest) -> EmuResponse:
    st = ctx.state
    tid = req.tracking_id
    ctype = req.headers.get("content-type", "").lower()
    if not ctype.startswith("application/x-www-form-urlencoded"):
        return _oauth_fail(400, "invalid_request", "The token request must be form-encoded.", tid)
    form = {k: v[0] for k, v in parse_qs(req.body.decode("utf-8", "replace")).items()}
    grant = form.get("grant_type")
    if grant is None:
        return _oauth_fail(400, "invalid_request", "grant_type is required.", tid)
    if grant not in ("authorization_code", "refresh_token"):
        return _oauth_fail(400, "unsupported_grant_type", f"Unsupported grant_type {grant!r}.", tid)
    credentials = client_credentials(req.headers.get("authorization"), form)
    if isinstance(credentials, str):
        return _oauth_fail(400, "invalid_request", credentials, tid)
    client_id, secret = credentials
    client: Integration | ServiceApp | None = st.integrations.get(client_id) or (
        st.service_apps.get(client_id)
    )
    if client is None or not hmac.compare_digest(client.client_secret.encode(), secret.encode()):
        resp = _oauth_fail(401, "invalid_client", "Invalid client_id or client_secret.", tid)
        resp.headers.append(("WWW-Authenticate", 'Basic realm="webex-emulator"'))
        return resp
    now = st.clock.now()
    if grant == "authorization_code":
        if not isinstance(client, Integration):
            return _oauth_fail(
                400, "unauthorized_client", "Service apps cannot use authorization_code.", tid
            )
        code = st.codes.get(form.get("code", ""))
        if code is None or code.client_id != client_id:
            return _oauth_fail(400, "invalid_grant", "The authorization code is invalid.", tid)
        if code.used:
            return _oauth_fail(
                400, "invalid_grant", "The authorization code was already used.", tid
            )
        code.used = True  # consumed by any attempt, successful or not
        if now >= code.expires_at:
            return _oauth_fail(400, "invalid_grant", "The authorization code has expired.", tid)
        if form.get("redirect_uri") != code.redirect_uri:
            return _oauth_fail(
                400, "invalid_grant", "redirect_uri does not match the authorize request.", tid
            )
        verifier = form.get("code_verifier")
        if code.code_challenge is not None:
            if not verifier or not _PKCE_CHARS.match(verifier):
                return _oauth_fail(
                    400, "invalid_grant", "A valid code_verifier is required (PKCE).", tid
                )
            digest = hashlib.sha256(verifier.encode("ascii")).digest()
            computed = base64.urlsafe_b64encode(digest).decode().rstrip("=")
            if not hmac.compare_digest(computed, code.code_challenge):
                return _oauth_fail(
                    400, "invalid_grant", "code_verifier does not match code_challenge.", tid
                )
        elif verifier is not None:
            return _oauth_fail(
                400, "invalid_grant", "code_verifier sent but no code_challenge was.", tid
            )
        person = st.people[client.user_id]
        payload = st.issue_tokens(
            kind="integration",
            client_id=client_id,
            scopes=code.scopes,
            org_id=person.org_id,
            person_id=person.person_id,
        )
        return json_response(200, payload, [("Cache-Control", "no-store")])
    # refresh_token grant
    rec = st.refresh_tokens.get(form.get("refresh_token", ""))
    if rec is None or rec.client_id != client_id:
        return _oauth_fail(400, "invalid_grant", "The refresh token is invalid.", tid)
    if rec.revoked:
        return _oauth_fail(400, "invalid_grant", "The refresh token has been revoked.", tid)
    if not rec.live(now):
        return _oauth_fail(400, "invalid_grant", "The refresh token has expired.", tid)
    reuse: RefreshTokenRecord | None = rec
    if st.rotate_refresh_tokens:
        rec.revoked = True
        reuse = None
    payload = st.issue_tokens(
        kind=rec.kind,
        client_id=client_id,
        scopes=rec.scopes,
        org_id=rec.org_id,
        person_id=rec.person_id,
        refresh=reuse,
    )
    return json_response(200, payload, [("Cache-Control", "no-store")])


# -- service apps ------------------------------------------------------------------------


def _service_app_token(ctx: RouteContext, req: EmuRequest, application_id: str) -> EmuResponse:
    st = ctx.state
    bearer = _bearer(ctx, req)
    _require_scope(bearer, APPLICATIONS_TOKEN_SCOPE)
    app = st.find_service_app(application_id)
    if app is None:
        raise _Fail(404, "The requested application was not found.")
    body = _json_body(req)
    missing = [
        k for k in ("clientId", "clientSecret", "targetOrgId") if not isinstance(body.get(k), str)
    ]
    if missing:
        raise _Fail(
            400,
            "Invalid request body.",
            descriptions=[f"{k} is required and must be a string." for k in missing],
        )
    if body["clientId"] != app.client_id:
        raise _Fail(400, "clientId does not match the applicationId in the path.")
    if not hmac.compare_digest(body["clientSecret"].encode(), app.client_secret.encode()):
        raise _Fail(401, "Invalid clientSecret for this application.")
    org_uuid = resolve_org_uuid(body["targetOrgId"])
    if org_uuid is None:
        raise _Fail(400, "targetOrgId must be an org UUID or a Hydra ORGANIZATION id.")
    machine = app.authorized_orgs.get(org_uuid)
    if machine is None:
        raise _Fail(403, "The application is not authorized in the target organization.")
    payload = st.issue_tokens(
        kind="service_app",
        client_id=app.client_id,
        scopes=app.scopes,
        org_id=org_uuid,
        person_id=machine,
    )
    return json_response(200, payload, [("Cache-Control", "no-store")])


# -- webhooks ----------------------------------------------------------------------------


def _visible_webhooks(ctx: RouteContext, bearer: AccessTokenRecord) -> list[WebhookRecord]:
    org_hydra = ctx.state.hydra("ORGANIZATION", bearer.org_id)
    return [
        w
        for w in ctx.state.webhooks.values()
        if w.created_by == bearer.person_id or (w.owned_by == "org" and w.org_id == org_hydra)
    ]


def _app_id_for(ctx: RouteContext, bearer: AccessTokenRecord) -> str:
    return ctx.state.hydra("APPLICATION", bearer.client_id)


def _valid_target(url: Any) -> bool:
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _webhooks_collection(ctx: RouteContext, req: EmuRequest) -> EmuResponse:
    bearer = _bearer(ctx, req)
    if req.method == "GET":
        owned_by = req.q("ownedBy")
        hooks = _visible_webhooks(ctx, bearer)
        if owned_by is not None:
            if owned_by not in ("org", "creator"):
                raise _Fail(400, "ownedBy must be 'org' or 'creator'.")
            hooks = [w for w in hooks if w.owned_by == owned_by]
        return _paginate(ctx, req, [w.to_json() for w in hooks], "/webhooks")
    body = _json_body(req)
    problems = [
        f"{k} is required."
        for k in ("name", "targetUrl", "resource", "event")
        if not isinstance(body.get(k), str) or not body[k].strip()
    ]
    if not problems:
        if not _valid_target(body["targetUrl"]):
            problems.append("targetUrl must be an http(s) URL.")
        if body["resource"] not in WEBHOOK_RESOURCES:
            problems.append(f"Unknown resource {body['resource']!r}.")
        if body["event"] not in WEBHOOK_EVENTS:
            problems.append(f"Unknown event {body['event']!r}.")
    for k in ("filter", "secret"):
        if body.get(k) is not None and not isinstance(body[k], str):
            problems.append(f"{k} must be a string.")
    owned_by = body.get("ownedBy") or "creator"
    if owned_by not in ("creator", "org"):
        problems.append("ownedBy must be 'creator' or 'org'.")
    if problems:
        raise _Fail(400, "Invalid webhook.", descriptions=problems)
    st = ctx.state
    org_hydra = st.hydra("ORGANIZATION", bearer.org_id)
    if owned_by == "org":
        for w in st.webhooks.values():
            if (
                w.owned_by == "org"
                and w.org_id == org_hydra
                and w.resource == body["resource"]
                and (w.filter or None) == (body.get("filter") or None)
            ):
                raise _Fail(409, "An org-wide webhook already exists for this resource/filter.")
    hook = WebhookRecord(
        id=st.hydra("WEBHOOK", str(uuid.uuid4())),
        name=body["name"],
        target_url=body["targetUrl"],
        resource=body["resource"],
        event=body["event"],
        filter=body.get("filter") or None,
        secret=body.get("secret") or None,
        status="active",
        created=st.clock.now(),
        owned_by=owned_by,
        org_id=org_hydra,
        created_by=bearer.person_id,
        app_id=_app_id_for(ctx, bearer),
    )
    st.webhooks[hook.id] = hook
    return json_response(200, hook.to_json())


def _webhook_item(ctx: RouteContext, req: EmuRequest, webhook_id: str) -> EmuResponse:
    bearer = _bearer(ctx, req)
    hook = next((w for w in _visible_webhooks(ctx, bearer) if w.id == webhook_id), None)
    if hook is None:
        raise _Fail(404, "The requested webhook was not found.")
    if req.method == "GET":
        return json_response(200, hook.to_json())
    if req.method == "DELETE":
        del ctx.state.webhooks[hook.id]
        return EmuResponse(204)
    body = _json_body(req)
    problems = [
        f"{k} is required."
        for k in ("name", "targetUrl")
        if not isinstance(body.get(k), str) or not body[k].strip()
    ]
    if not problems and not _valid_target(body["targetUrl"]):
        problems.append("targetUrl must be an http(s) URL.")
    secret = body.get("secret")
    if secret is not None and not isinstance(secret, str):
        problems.append("secret must be a string.")
    status = body.get("status")
    if status is not None and status != "active":
        problems.append("status can only be set to 'active'.")
    if problems:
        raise _Fail(400, "Invalid webhook update.", descriptions=problems)
    hook.name = body["name"]
    hook.target_url = body["targetUrl"]
    if secret is not None:
        hook.secret = secret or None
    if status == "active":
        hook.status = "active"
    return json_response(200, hook.to_json())


# -- data sources ------------------------------------------------------------------------


def mint_data_source_claims(
    *,
    issuer: str,
    audience: str,
    subject: str,
    url: str,
    schema_id: str,
    org_id: str,
    issued_at: int,
    lifetime_minutes: int,
) -> dict[str, Any]:
    """The claim set Webex puts in a data-source JWS."""
    return {
        "iss": issuer,
        "aud": audience,
        "sub": subject,
        "iat": issued_at,
        "exp": issued_at + lifetime_minutes * 60,
        "jti": str(uuid.uuid4()),
        "com.cisco.datasource.url": url,
        "com.cisco.datasource.schema.uuid": schema_id,
        "com.cisco.org.uuid": org_id,
    }


def _ds_auth(
    ctx: RouteContext, req: EmuRequest, scope: str
) -> tuple[AccessTokenRecord, ServiceApp]:
    bearer = _bearer(ctx, req)
    app = ctx.state.service_apps.get(bearer.client_id)
    if bearer.kind != "service_app" or app is None:
        raise _Fail(403, "Data sources require a Service App token for the organization.")
    _require_scope(bearer, scope)
    return bearer, app


def _url_in_domains(url: str, domains: tuple[str, ...]) -> bool:
    if not domains:
        return True
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains)


#: BYOVA over WebSocket: its data sources register the ``wss://`` origin only.
WEBSOCKET_SCHEMA_ID = "a38a10b7-43e4-4676-a076-a7d6dce9387d"


def _websocket_url_problems(url: str) -> list[str]:
    """Webex appends ``/v1/va`` and ``/v1/listVirtualAgents`` to a WebSocket data source's URL,
    so it must be a bare ``wss://host[:port]`` origin (no path, query, fragment or user info)."""
    parts = urlsplit(url)
    if parts.scheme != "wss":
        return ["A WebSocket data source url must use wss://."]
    try:
        parts.port  # noqa: B018 - raises for a malformed port
    except ValueError:
        return ["url has an invalid port."]
    if parts.path or parts.query or parts.fragment or "@" in parts.netloc:
        return [
            "A WebSocket data source url is the wss:// origin only (no path, query, fragment "
            "or credentials); Webex appends /v1/va and /v1/listVirtualAgents."
        ]
    return []


def _ds_fields(ctx: RouteContext, body: dict[str, Any], app: ServiceApp) -> dict[str, Any]:
    problems: list[str] = []
    for k in ("schemaId", "url", "audience", "subject", "nonce"):
        if not isinstance(body.get(k), str) or not body[k].strip():
            problems.append(f"{k} is required and must be a non-empty string.")
    lifetime = body.get("tokenLifetimeMinutes")
    if not isinstance(lifetime, int) or isinstance(lifetime, bool):
        problems.append("tokenLifetimeMinutes is required and must be an integer.")
    elif not 1 <= lifetime <= 1440:
        problems.append("tokenLifetimeMinutes must be between 1 and 1440.")
    if not problems:
        if body["schemaId"] not in ctx.state.schemas:
            problems.append(f"Unknown schemaId {body['schemaId']!r}.")
        try:
            parts = urlsplit(body["url"])
            ok_url = bool(parts.scheme and parts.hostname)
        except ValueError:
            ok_url = False
        if not ok_url:
            problems.append("url must be an absolute URL.")
        elif not _url_in_domains(body["url"], app.valid_domains):
            problems.append("url is not within the Service App's valid domains.")
        elif body["schemaId"] == WEBSOCKET_SCHEMA_ID:
            problems += _websocket_url_problems(body["url"])
    if problems:
        raise _Fail(400, "Invalid data source.", descriptions=problems)
    return body


def _mint_into(ctx: RouteContext, ds: DataSourceRecord) -> None:
    now = int(ctx.state.clock.now())
    claims = mint_data_source_claims(
        issuer=ctx.issuer,
        audience=ds.audience,
        subject=ds.subject,
        url=ds.url,
        schema_id=ds.schema_id,
        org_id=ds.org_id,
        issued_at=now,
        lifetime_minutes=ds.token_lifetime_minutes,
    )
    ds.jws_token = ctx.keys.sign(claims)
    ds.token_expiry = float(claims["exp"])


def _data_sources_collection(ctx: RouteContext, req: EmuRequest) -> EmuResponse:
    st = ctx.state
    if req.method == "GET":
        bearer, app = _ds_auth(ctx, req, DATA_SOURCE_READ)
        items = [
            d.to_json()
            for d in st.data_sources.values()
            if d.org_id == bearer.org_id and d.application_id == app.client_id
        ]
        return _paginate(ctx, req, items, "/dataSources")
    bearer, app = _ds_auth(ctx, req, DATA_SOURCE_WRITE)
    body = _ds_fields(ctx, _json_body(req), app)
    now = st.clock.now()
    ds = DataSourceRecord(
        id=str(uuid.uuid4()),
        org_id=bearer.org_id,
        application_id=app.client_id,
        schema_id=body["schemaId"],
        url=body["url"],
        audience=body["audience"],
        subject=body["subject"],
        nonce=body["nonce"],
        token_lifetime_minutes=body["tokenLifetimeMinutes"],
        status="active",
        error_message="",
        jws_token="",
        token_expiry=0.0,
        created_by=bearer.person_id,
        created_at=now,
        updated_by=bearer.person_id,
        updated_at=now,
    )
    _mint_into(ctx, ds)
    st.data_sources[ds.id] = ds
    return json_response(200, ds.to_json())


def _data_source_item(ctx: RouteContext, req: EmuRequest, ds_id: str) -> EmuResponse:
    st = ctx.state
    scope = DATA_SOURCE_READ if req.method == "GET" else DATA_SOURCE_WRITE
    bearer, app = _ds_auth(ctx, req, scope)
    ds = st.data_sources.get(ds_id)
    if ds is None or ds.org_id != bearer.org_id or ds.application_id != app.client_id:
        raise _Fail(404, "The requested data source was not found.")
    if req.method == "GET":
        return json_response(200, ds.to_json())
    if req.method == "DELETE":
        del st.data_sources[ds_id]
        return EmuResponse(204)
    body = _ds_fields(ctx, _json_body(req), app)
    status = body.get("status", ds.status)
    error_message = body.get("errorMessage")
    if status not in ("active", "disabled"):
        raise _Fail(400, "status must be 'active' or 'disabled'.")
    if error_message is not None and not isinstance(error_message, str):
        raise _Fail(400, "errorMessage must be a string.")
    if status == "disabled" and not (error_message or "").strip():
        raise _Fail(400, "errorMessage is required when status is 'disabled'.")
    if body["nonce"] == ds.nonce:
        raise _Fail(409, "The nonce was already used for this data source; send a new nonce.")
    ds.schema_id = body["schemaId"]
    ds.url = body["url"]
    ds.audience = body["audience"]
    ds.subject = body["subject"]
    ds.nonce = body["nonce"]
    ds.token_lifetime_minutes = body["tokenLifetimeMinutes"]
    ds.status = status
    ds.error_message = error_message or ""
    ds.updated_by = bearer.person_id
    ds.updated_at = st.clock.now()
    _mint_into(ctx, ds)
    return json_response(200, ds.to_json())


def _schemas(ctx: RouteContext, req: EmuRequest, schema_id: str | None) -> EmuResponse:
    _bearer(ctx, req)
    if schema_id is None:
        return json_response(200, {"items": [s.to_json() for s in ctx.state.schemas.values()]})
    schema = ctx.state.schemas.get(schema_id)
    if schema is None:
        raise _Fail(404, "The requested schema was not found.")
    return json_response(200, schema.to_json())


# -- router ------------------------------------------------------------------------------


def _match(
    segments: list[str],
) -> tuple[tuple[str, ...], Callable[..., EmuResponse], list[str | None]]:
    """Find ``(allowed methods, handler, path args)`` for the path below ``/v1``."""
    n = len(segments)
    head = segments[0] if segments else ""
    if n == 1 and head == "authorize":
        return ("GET",), _authorize, []
    if n == 1 and head == "access_token":
        return ("POST",), _access_token, []
    if n == 3 and head == "applications" and segments[2] == "token":
        return ("POST",), _service_app_token, [segments[1]]
    if head == "webhooks" and n == 1:
        return ("GET", "POST"), _webhooks_collection, []
    if head == "webhooks" and n == 2:
        return ("GET", "PUT", "DELETE"), _webhook_item, [segments[1]]
    if head == "dataSources":
        if n == 1:
            return ("GET", "POST"), _data_sources_collection, []
        if segments[1] == "schemas" and n in (2, 3):
            return ("GET",), _schemas, [segments[2] if n == 3 else None]
        if n == 2:
            return ("GET", "PUT", "DELETE"), _data_source_item, [segments[1]]
    raise LookupError


def route(ctx: RouteContext, req: EmuRequest) -> EmuResponse:
    """Answer one request (the caller holds ``ctx.state.lock``)."""
    path = req.path
    if path.rstrip("/") == JWKS_PATH:
        if req.method != "GET":
            return error_response(
                405, "Method not allowed.", req.tracking_id, headers=[("Allow", "GET")]
            )
        return json_response(200, ctx.keys.jwks(), [("Cache-Control", "max-age=3600")])
    if not path.startswith("/v1/"):
        return error_response(404, "The requested resource was not found.", req.tracking_id)
    segments = [s for s in path[len("/v1/") :].split("/") if s]
    try:
        methods, handler, args = _match(segments)
    except LookupError:
        return error_response(404, "The requested resource was not found.", req.tracking_id)
    if req.method not in methods:
        return error_response(
            405, "Method not allowed.", req.tracking_id, headers=[("Allow", ", ".join(methods))]
        )
    try:
        return handler(ctx, req, *args)
    except _Fail as exc:
        return error_response(
            exc.status, exc.message, req.tracking_id, descriptions=exc.descriptions
        )
