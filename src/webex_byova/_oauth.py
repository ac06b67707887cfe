"""Sans-IO OAuth for Webex: authorize URLs (state + PKCE S256), token request bodies,
token response parsing, callback parsing and dead-refresh-token detection.

Nothing here performs I/O; :mod:`webex_byova.integration` and
:mod:`webex_byova.service_app` build :class:`~webex_byova._http.RequestSpec` objects from
these pieces and run them through the flow drivers.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from ._http import Response
from .errors import AuthenticationError, ReauthorizationRequiredError, WebexBYOVAError
from .tokens import OAuthToken

__all__ = [
    "AuthorizationRequest",
    "CallbackResult",
    "application_token_body",
    "authorization_code_form",
    "authorize_instructions",
    "build_authorize_url",
    "callback_page",
    "code_challenge",
    "generate_code_verifier",
    "generate_state",
    "is_dead_refresh_error",
    "new_authorization_request",
    "parse_callback",
    "parse_token_response",
    "reauthorization_error",
    "redirect_target",
    "refresh_form",
    "with_port",
]


def generate_state() -> str:
    """A fresh unguessable ``state`` value (CSRF protection)."""
    return secrets.token_urlsafe(24)


def generate_code_verifier() -> str:
    """A PKCE ``code_verifier`` (RFC 7636: 43-128 unreserved characters)."""
    return secrets.token_urlsafe(48)


def code_challenge(verifier: str) -> str:
    """The S256 ``code_challenge`` of ``verifier``."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii").rstrip("=")


def build_authorize_url(
    authorize_url: str,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: Iterable[str],
    state: str,
    code_challenge: str | None = None,
) -> str:
    """The browser URL that starts the authorization-code grant."""
    params: list[tuple[str, str]] = [
        ("client_id", client_id),
        ("response_type", "code"),
        ("redirect_uri", redirect_uri),
        ("scope", " ".join(scopes)),
        ("state", state),
    ]
    if code_challenge is not None:
        params += [("code_challenge", code_challenge), ("code_challenge_method", "S256")]
    parts = urlsplit(authorize_url)
    query = parse_qsl(parts.query, keep_blank_values=True) + params
    encoded = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in query)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, encoded, ""))


@dataclass(frozen=True, repr=False)
class AuthorizationRequest:
    """One pending authorization: the URL to open and what is needed to finish it."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str

    def __repr__(self) -> str:
        return f"AuthorizationRequest(redirect_uri={self.redirect_uri!r}, state=***)"


def new_authorization_request(
    authorize_url: str,
    *,
    client_id: str,
    redirect_uri: str,
    scopes: Iterable[str],
    state: str | None = None,
    code_verifier: str | None = None,
) -> AuthorizationRequest:
    """Create state + PKCE verifier and the matching authorize URL."""
    state = state or generate_state()
    verifier = code_verifier or generate_code_verifier()
    url = build_authorize_url(
        authorize_url,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        code_challenge=code_challenge(verifier),
    )
    return AuthorizationRequest(url, state, verifier, redirect_uri)


def authorization_code_form(
    *,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    code_verifier: str | None = None,
) -> dict[str, str]:
    """Form fields of the code exchange (``POST /access_token``)."""
    form = {
        "grant_type": "authorization_code",
        "client_id": client_id,
        "client_secret": client_secret,
        "code": code,
        "redirect_uri": redirect_uri,
    }
    if code_verifier is not None:
        form["code_verifier"] = code_verifier
    return form


def refresh_form(*, client_id: str, client_secret: str, refresh_token: str) -> dict[str, str]:
    """Form fields of a refresh (``POST /access_token``)."""
    return {
        "grant_type": "refresh_token",
        "client_id": client_id,
        "client_secret": client_secret,
        "refresh_token": refresh_token,
    }


def application_token_body(
    *, client_id: str, client_secret: str, target_org_id: str
) -> dict[str, str]:
    """JSON body of ``POST /applications/{id}/token`` (the Service App's own credentials)."""
    return {"clientId": client_id, "clientSecret": client_secret, "targetOrgId": target_org_id}


def _number(body: Mapping[str, Any], key: str) -> float | None:
    value = body.get(key)
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_token_response(
    response: Response | Mapping[str, Any],
    *,
    now: float,
    previous: OAuthToken | None = None,
) -> OAuthToken:
    """Turn a token endpoint response into an :class:`OAuthToken`.

    A refresh response without ``refresh_token`` keeps the previous refresh token (and its
    expiry), as Webex does not always rotate it.

    Raises:
        AuthenticationError: If the body has no ``access_token``.
    """
    body: Any = response.json() if isinstance(response, Response) else response
    if not isinstance(body, Mapping):
        raise AuthenticationError("token endpoint returned no JSON object")
    access = body.get("access_token")
    if not isinstance(access, str) or not access:
        raise AuthenticationError("token endpoint response lacks access_token")
    expires_in = _number(body, "expires_in")
    refresh = body.get("refresh_token")
    refresh_in = _number(body, "refresh_token_expires_in")
    refresh_token: str | None
    refresh_expires_at: float | None
    if isinstance(refresh, str) and refresh:
        refresh_token = refresh
        refresh_expires_at = now + refresh_in if refresh_in is not None else None
    elif previous is not None:
        refresh_token = previous.refresh_token
        refresh_expires_at = (
            now + refresh_in if refresh_in is not None else previous.refresh_token_expires_at
        )
    else:
        refresh_token, refresh_expires_at = None, None
    scope = body.get("scope")
    token_type = body.get("token_type")
    return OAuthToken(
        access_token=access,
        # Without expires_in, assume the documented 14 days.
        expires_at=now + (expires_in if expires_in is not None else 1_209_600.0),
        refresh_token=refresh_token,
        refresh_token_expires_at=refresh_expires_at,
        token_type=token_type if isinstance(token_type, str) and token_type else "Bearer",
        scope=scope if isinstance(scope, str) else None,
        obtained_at=now,
    )


def is_dead_refresh_error(error: BaseException) -> bool:
    """True when a refresh failure means the refresh token is unusable.

    Webex answers ``400 invalid_grant`` for an expired or revoked refresh token; some
    deployments answer 401. Both are terminal for that refresh token.
    """
    if not isinstance(error, WebexBYOVAError):
        return False
    if error.status_code == 401:
        return True
    if error.status_code != 400:
        return False
    body = error.body
    if isinstance(body, Mapping):
        code = body.get("error")
        if isinstance(code, str) and code == "invalid_grant":
            return True
        for key in ("message", "error_description"):
            text = body.get(key)
            if isinstance(text, str) and "invalid_grant" in text:
                return True
    return any("invalid_grant" in d for d in error.descriptions) or (
        isinstance(body, str) and "invalid_grant" in body
    )


def reauthorization_error(
    what: str, cause: WebexBYOVAError | None = None
) -> ReauthorizationRequiredError:
    """The error raised when ``what`` has no usable refresh token left."""
    message = (
        f"{what}: the refresh token is expired or revoked; re-authorization is needed "
        "(run authorize() or `byova auth login`)"
    )
    if cause is None:
        return ReauthorizationRequiredError(message)
    return ReauthorizationRequiredError(
        message,
        status_code=cause.status_code,
        body=cause.body,
        tracking_id=cause.tracking_id,
        descriptions=cause.descriptions,
        method=cause.method,
        url=cause.url,
    )


# --------------------------------------------------------------------------- redirect listener


def with_port(redirect_uri: str, port: int) -> str:
    """``redirect_uri`` with its port replaced (used when listening on port 0)."""
    parts = urlsplit(redirect_uri)
    host = parts.hostname or "localhost"
    if ":" in host:
        host = f"[{host}]"
    return urlunsplit((parts.scheme, f"{host}:{port}", parts.path, parts.query, ""))


def authorize_instructions(
    url: str, *, redirect_uri: str, timeout: float, browser_opened: bool | None
) -> str:
    """What to tell the person authorizing: the URL, whether a browser opened, how long we wait.

    ``browser_opened`` is ``None`` when no browser was asked for, ``False`` when opening one
    failed (e.g. a server without a desktop), ``True`` when one opened.
    """
    if browser_opened is None:
        head = "Open this URL in a browser to authorize the Integration:"
    elif browser_opened:
        head = "A browser was opened to authorize the Integration; if none appeared, open:"
    else:
        head = "Could not open a browser. Open this URL in one to authorize the Integration:"
    return (
        f"{head}\n{url}\nWaiting up to {timeout:g} s for the redirect to {redirect_uri} "
        "(`timeout=` changes this)."
    )


def redirect_target(redirect_uri: str) -> tuple[str, int, str]:
    """``(host, port, path)`` the local listener binds and serves for ``redirect_uri``."""
    parts = urlsplit(redirect_uri)
    if parts.scheme != "http":
        raise ValueError(
            f"authorize() can only listen on a plain http:// loopback redirect URI, got "
            f"{redirect_uri!r}"
        )
    host = parts.hostname or "localhost"
    port = parts.port if parts.port is not None else 80
    return host, port, parts.path or "/"


@dataclass(frozen=True, repr=False)
class CallbackResult:
    """Outcome of one redirect hit: a ``code`` or an ``error`` (with a human description)."""

    code: str | None = None
    error: str | None = None
    description: str | None = None

    def raise_for_error(self) -> str:
        """Return the code or raise :class:`AuthenticationError` describing the failure."""
        if self.code is not None:
            return self.code
        text = self.error or "unknown_error"
        if self.description:
            text = f"{text}: {self.description}"
        raise AuthenticationError(f"authorization failed ({text})")

    def __repr__(self) -> str:
        return f"CallbackResult(code={'***' if self.code else None}, error={self.error!r})"


def parse_callback(target: str, *, expected_state: str) -> CallbackResult:
    """Parse the redirect (a full URL or ``path?query``) and check ``state``.

    ``access_denied`` and other ``error=`` redirects, a ``state`` mismatch and a missing
    ``code`` all become a :class:`CallbackResult` with ``error`` set.
    """
    query = dict(parse_qsl(urlsplit(target).query, keep_blank_values=True))
    state = query.get("state")
    if "error" in query:
        error = query.get("error") or "unknown_error"
        description = query.get("error_description")
        if error == "access_denied" and not description:
            description = "the user or an administrator denied access"
        return CallbackResult(error=error, description=description)
    # Compare bytes: compare_digest() raises TypeError for non-ASCII str (a forged state).
    if state is None or not secrets.compare_digest(state.encode(), expected_state.encode()):
        return CallbackResult(
            error="state_mismatch",
            description="the redirect's state does not match this authorization request "
            "(possible CSRF or a stale browser tab)",
        )
    code = query.get("code")
    if not code:
        return CallbackResult(error="missing_code", description="the redirect carried no code")
    return CallbackResult(code=code)


def callback_page(result: CallbackResult) -> tuple[int, bytes]:
    """HTTP status and HTML body shown in the browser after the redirect."""
    if result.code is not None:
        return 200, (
            b"<!doctype html><title>Authorized</title><h1>Authorization complete</h1>"
            b"<p>You can close this window.</p>"
        )
    detail = html.escape(f"{result.error}: {result.description or ''}")
    return 400, (
        "<!doctype html><title>Authorization failed</title><h1>Authorization failed</h1>"
        f"<p>{detail}</p>"
    ).encode()
