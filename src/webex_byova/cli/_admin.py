"""Administration commands as plain functions returning data (rendered by ``_app``).

Every function takes a :class:`~webex_byova.client.BYOVA` (built by :func:`build_sdk` from
``WEBEX_*`` variables and ``--base-url``) and returns dicts/lists; nothing here prints.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .._env import load_env
from .._ids import org_uuid
from .._logging import get_logger
from ..client import BYOVA
from ..config import BYOVAConfig
from ..data_sources import BYOVA_SCHEMA_ID, DEFAULT_TOKEN_LIFETIME_MINUTES, OrgClient
from ..errors import APIConnectionError, AuthenticationError, TokenStorageError
from ..jws import JWSVerifier
from ..models import DataSource, Webhook
from ..storage import default_sqlite_path, from_url
from ..tokens import OAuthToken
from ._env import ENV_VARS, REQUIRED_VARS, config_for_base_url, env_base_url

__all__ = [
    "NO_WEBHOOK_SECRET_WARNING",
    "SettingsError",
    "auth_login",
    "auth_refresh",
    "auth_status",
    "build_sdk",
    "consent_automatically",
    "data_source_row",
    "datasources_create",
    "datasources_delete",
    "datasources_extend",
    "datasources_get",
    "datasources_list",
    "datasources_update",
    "default_store_path",
    "doctor",
    "duplicate_url_warning",
    "follow_authorize_url",
    "jws_verify",
    "legacy_store_path",
    "mint_data_source_token",
    "orgs_list",
    "resolve_org",
    "schemas_list",
    "webhooks_delete",
    "webhooks_ensure",
    "webhooks_list",
]


def default_store_path(base_url: str, client_id: str) -> Path:
    """The CLI's default token store for one environment: base URL and Integration client id.

    ``<user data dir>/environments/<host>-<hash>.db``; the hash covers both, so two
    Integrations on one Webex, real Webex and the emulator, or two emulator runs (fresh
    client ids) each get their own file. The host part only helps a person find the file.
    """
    digest = hashlib.sha256(f"{base_url.rstrip('/')}\n{client_id}".encode()).hexdigest()[:16]
    host = re.sub(r"[^A-Za-z0-9.-]", "_", urlsplit(base_url).netloc or "webex")
    return default_sqlite_path().parent / "environments" / f"{host}-{digest}.db"


def legacy_store_path() -> Path:
    """The single file earlier versions used for every environment (no longer read)."""
    return default_sqlite_path()


log = get_logger("webex_byova.cli")


class SettingsError(ValueError):
    """The environment lacks settings a command needs (the message names them)."""


def _env(environ: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if environ is None else environ


def resolve_config(base_url: str | None, environ: Mapping[str, str] | None = None) -> BYOVAConfig:
    """Config for ``--base-url`` (else ``WEBEX_BASE_URL``, else real Webex)."""
    env = _env(environ)
    return config_for_base_url(
        base_url or env_base_url(env), region=env.get("WEBEX_REGION", "").strip() or None
    )


def build_sdk(base_url: str | None = None, environ: Mapping[str, str] | None = None) -> BYOVA:
    """A :class:`BYOVA` from ``WEBEX_*`` variables (see :mod:`webex_byova._env`).

    ``--base-url`` wins over ``WEBEX_BASE_URL``. Unlike the library, whose default token store
    is in memory, the CLI defaults to SQLite so ``auth login`` survives the process: one file
    per environment (:func:`default_store_path`), so the tokens and orgs of one Webex (or
    emulator run, or Integration) are never reported for another.

    Raises:
        SettingsError: naming every missing variable or the bad value.
    """
    env = _env(environ)
    store = None
    config = resolve_config(base_url, env)
    client_id = env.get("WEBEX_INTEGRATION_CLIENT_ID", "").strip()
    if not env.get("WEBEX_TOKEN_STORE", "").strip() and client_id:
        keys = [k.strip() for k in env.get("WEBEX_TOKEN_STORE_KEY", "").split(",") if k.strip()]
        path = default_store_path(config.base_url, client_id)
        store = from_url(f"sqlite:///{path}", encryption_key=keys or None)
    try:
        settings = load_env(env, config=config, token_storage=store)
    except ValueError as exc:
        raise SettingsError(
            f"{exc}; see `byova doctor` (`byova emulator` prints a working set for local use)"
        ) from None
    return BYOVA(
        settings.integration,
        settings.service_app,
        config=settings.config,
        token_storage=settings.token_storage,
    )


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _token_row(token: OAuthToken, now: float) -> dict[str, Any]:
    return {
        "access_token": token.access_token,
        "expires_at": _iso(token.expires_at),
        "expires_in_s": int(token.expires_at - now),
        "refresh_token_expires_at": _iso(token.refresh_token_expires_at),
        "scope": token.scope,
    }


# ----------------------------------------------------------------------------- auth


def follow_authorize_url(url: str, *, timeout: float = 30.0) -> None:
    """Act as the user's browser against the emulator: GET ``url`` and follow its redirect.

    The emulator consents without a login page and redirects to the SDK's local listener,
    which records the outcome. Only the listener's own answer is left to it (an error page
    there means the authorization was denied; ``authorize()`` reports that).

    Raises:
        APIConnectionError: The authorize URL cannot be reached (e.g. the emulator is down).
        AuthenticationError: The authorize endpoint refused the request.
    """
    authorize = urlsplit(url)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            failed = urlsplit(exc.url or url)
            if (failed.netloc, failed.path) != (authorize.netloc, authorize.path):
                return  # the listener's answer: authorize() raises with its description
            body = exc.read(2000).decode("utf-8", "replace")
        raise AuthenticationError(
            f"the authorize endpoint {authorize.scheme}://{authorize.netloc}{authorize.path} "
            f"answered HTTP {exc.code}: {body.strip()[:300]}"
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise APIConnectionError(
            f"cannot reach the authorize URL {authorize.scheme}://{authorize.netloc}"
            f"{authorize.path}: {reason} (is the emulator running? `byova emulator`)"
        ) from None


def consent_automatically(url: str) -> None:
    """:func:`follow_authorize_url` on a daemon thread, for callers inside an event loop.

    Failures are only logged: the caller's ``aauthorize()`` times out. Sync callers use
    :func:`follow_authorize_url`, which fails at once.
    """

    def _go() -> None:
        try:
            follow_authorize_url(url)
        except (APIConnectionError, AuthenticationError) as exc:
            log.warning("automatic consent failed: %s", exc)

    threading.Thread(target=_go, daemon=True).start()


def auth_login(
    sdk: BYOVA,
    *,
    open_browser: bool = True,
    auto_consent: bool = False,
    timeout: float = 300.0,
    on_url: Any = None,
) -> dict[str, Any]:
    """Run the Integration's browser authorization and store the tokens.

    ``auto_consent`` makes an HTTP client follow the authorize URL instead of a browser
    (only meaningful against the emulator, which consents without a login page); when that
    fails (the emulator is down) this raises at once instead of waiting ``timeout``.
    """

    def _url(url: str) -> None:
        if on_url is not None:
            on_url(url)
        if auto_consent:
            # the sync listener runs on its own thread, so following here cannot deadlock
            follow_authorize_url(url, timeout=min(timeout, 30.0))

    token = sdk.integration.authorize(
        open_browser=open_browser and not auto_consent, timeout=timeout, on_url=_url
    )
    return {"status": "authorized", **_token_row(token, time.time())}


def auth_status(sdk: BYOVA) -> dict[str, Any]:
    """Stored Integration token and the orgs with Service App tokens (no network)."""
    now = time.time()
    token = sdk.integration.get_stored_token()
    orgs = []
    for org in sdk.service_app.list_orgs():
        orgs.append({"org_id": org, **_org_token_summary(sdk, org, now)})
    return {
        "base_url": sdk.config.base_url,
        "integration": (
            {"authorized": True, **_token_row(token, now)}
            if token is not None
            else {"authorized": False}
        ),
        "orgs": orgs,
    }


def _org_token_summary(sdk: BYOVA, org: str, now: float) -> dict[str, Any]:
    token = sdk.service_app.get_org_token_info(org)
    return {"expires_at": _iso(token.expires_at), "expires_in_s": int(token.expires_at - now)}


def auth_refresh(sdk: BYOVA, *, org: str | None = None) -> dict[str, Any]:
    """Refresh the Integration token, or with ``org`` that org's Service App token."""
    now = time.time()
    if org is None:
        return {"refreshed": "integration", **_token_row(sdk.integration.refresh(), now)}
    uuid = org_uuid(org)
    if sdk.service_app.has_org(uuid):
        token = sdk.service_app.refresh_org_token(uuid)
    else:
        token = sdk.service_app.fetch_org_token(uuid)
    return {"refreshed": "org", "org_id": uuid, **_token_row(token, now)}


def orgs_list(sdk: BYOVA) -> list[dict[str, Any]]:
    """Orgs with stored Service App tokens."""
    now = time.time()
    return [
        {"org_id": org, **_org_token_summary(sdk, org, now)} for org in sdk.service_app.list_orgs()
    ]


# ----------------------------------------------------------------------------- data sources


def resolve_org(org: str | None, environ: Mapping[str, str] | None = None) -> str:
    """``--org``, else ``WEBEX_ORG_ID``; raises :class:`SettingsError` when neither is set."""
    value = org or _env(environ).get("WEBEX_ORG_ID", "").strip()
    if not value:
        raise SettingsError("no org: pass --org or set WEBEX_ORG_ID")
    return org_uuid(value)


def org_client(sdk: BYOVA, org: str) -> OrgClient:
    """The org's client, fetching the Service App's org token first when none is stored."""
    uuid = org_uuid(org)
    if not sdk.service_app.has_org(uuid):
        sdk.service_app.fetch_org_token(uuid)
    return sdk.get_client_for_org(uuid)


def data_source_row(ds: DataSource) -> dict[str, Any]:
    """One data source as a flat row (the JWS is included; the renderer masks it)."""
    expires = ds.expires_at
    return {
        "id": ds.id,
        "url": ds.url,
        "status": ds.status,
        "schema_id": ds.schema_id,
        "audience": ds.audience,
        "subject": ds.subject,
        "token_lifetime_minutes": ds.token_lifetime_minutes,
        "token_expires_at": expires.isoformat(timespec="seconds") if expires else None,
        "jws_token": ds.jws_token,
    }


def datasources_list(sdk: BYOVA, org: str) -> list[dict[str, Any]]:
    """Every data source of the Service App in ``org``."""
    return [data_source_row(ds) for ds in org_client(sdk, org).data_sources.list()]


def mint_data_source_token(
    sdk: BYOVA, url: str, *, org: str | None = None, environ: Mapping[str, str] | None = None
) -> str:
    """Register (or refresh) the BYOVA data source for ``url`` and return its JWS.

    Uses the stored Integration token; without one it authorizes with
    :func:`follow_authorize_url` (works against the emulator only; fails at once when it is
    unreachable).
    """
    if not sdk.integration.has_token():
        sdk.integration.authorize(open_browser=False, on_url=follow_authorize_url, timeout=30)
    ds = org_client(sdk, resolve_org(org, environ)).data_sources.register_or_update(
        url, audience="BYOVAGateway", subject="callAudioData"
    )
    if not ds.jws_token:
        raise SettingsError(f"data source {ds.id} came back without a jwsToken")
    return ds.jws_token


def datasources_get(sdk: BYOVA, org: str, data_source_id: str) -> dict[str, Any]:
    """One data source."""
    return data_source_row(org_client(sdk, org).data_sources.get(data_source_id))


def duplicate_url_warning(url: str, schema_id: str, ids: list[str]) -> str:
    """What to tell a user who registers a second data source for the same URL and schema."""
    return (
        f"a data source for {url} (schema {schema_id}) already exists: {', '.join(ids)}. "
        "Another one makes `register_or_update` (and `byova simulate --mint-token`) refuse "
        "with a ConflictError; to refresh the existing one use "
        f"`byova datasources update {ids[0]}` or `byova datasources extend {ids[0]}`."
    )


def datasources_create(
    sdk: BYOVA,
    org: str,
    *,
    url: str,
    schema_id: str = BYOVA_SCHEMA_ID,
    audience: str = "BYOVAGateway",
    subject: str = "callAudioData",
    token_lifetime_minutes: int = DEFAULT_TOKEN_LIFETIME_MINUTES,
    on_warning: Callable[[str], Any] | None = None,
) -> dict[str, Any]:
    """Register a data source; ``on_warning`` hears when one exists for the URL already."""
    resource = org_client(sdk, org).data_sources
    if on_warning is not None:
        same = [ds.id for ds in resource.list() if ds.url == url and ds.schema_id == schema_id]
        if same:
            on_warning(duplicate_url_warning(url, schema_id, same))
    ds = resource.create(
        schema_id=schema_id,
        url=url,
        audience=audience,
        subject=subject,
        token_lifetime_minutes=token_lifetime_minutes,
    )
    return data_source_row(ds)


def datasources_update(
    sdk: BYOVA,
    org: str,
    data_source_id: str,
    *,
    url: str | None = None,
    audience: str | None = None,
    subject: str | None = None,
    token_lifetime_minutes: int | None = None,
    status: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    """Update some fields (the rest are read first: Webex's PUT is a full replacement)."""
    resource = org_client(sdk, org).data_sources
    current = resource.get(data_source_id)
    ds = resource.update(
        data_source_id,
        schema_id=current.schema_id or BYOVA_SCHEMA_ID,
        url=url or current.url or "",
        audience=audience or current.audience or "",
        subject=subject or current.subject or "",
        token_lifetime_minutes=token_lifetime_minutes
        or current.token_lifetime_minutes
        or DEFAULT_TOKEN_LIFETIME_MINUTES,
        status=status,
        error_message=error_message,
    )
    return data_source_row(ds)


def datasources_extend(
    sdk: BYOVA, org: str, data_source_id: str, token_lifetime_minutes: int | None = None
) -> dict[str, Any]:
    """Mint a fresh token for a data source (new nonce)."""
    ds = org_client(sdk, org).data_sources.extend(data_source_id, token_lifetime_minutes)
    return data_source_row(ds)


def datasources_delete(sdk: BYOVA, org: str, data_source_id: str) -> dict[str, Any]:
    """Delete a data source."""
    org_client(sdk, org).data_sources.delete(data_source_id)
    return {"deleted": data_source_id}


def schemas_list(sdk: BYOVA, org: str) -> list[dict[str, Any]]:
    """Every data-exchange schema."""
    return [
        {
            "id": s.id,
            "service_type": s.service_type,
            "protocol": s.protocol,
            "description": s.description,
        }
        for s in org_client(sdk, org).schemas.list()
    ]


# ----------------------------------------------------------------------------- webhooks


def _webhook_row(hook: Webhook) -> dict[str, Any]:
    return {
        "id": hook.id,
        "name": hook.name,
        "resource": hook.resource,
        "event": hook.event,
        "target_url": hook.target_url,
        "status": hook.status,
        "filter": hook.filter,
        "secret": hook.secret,
    }


def webhooks_list(sdk: BYOVA) -> list[dict[str, Any]]:
    """Every webhook the Integration's user owns."""
    return [_webhook_row(h) for h in sdk.webhooks.list()]


#: Said when ``webhooks ensure`` runs without a signing secret.
NO_WEBHOOK_SECRET_WARNING = (
    "no webhook secret: Webex will not sign the serviceApp events, so your receiver cannot "
    "tell them from forged ones. Pass --secret or set WEBEX_WEBHOOK_SECRET (the receiver's "
    "BYOVA.from_env() reads the same variable)."
)


def webhooks_ensure(
    sdk: BYOVA,
    target_url: str,
    *,
    secret: str | None = None,
    on_warning: Callable[[str], Any] | None = None,
) -> list[dict[str, Any]]:
    """Make sure ``serviceApp`` authorized/deauthorized webhooks target ``target_url``.

    ``on_warning`` hears when there is no ``secret`` (unsigned events).
    """
    if not (secret or "").strip():
        secret = None
        if on_warning is not None:
            on_warning(NO_WEBHOOK_SECRET_WARNING)
    return [
        _webhook_row(h) for h in sdk.webhooks.ensure_service_app_webhooks(target_url, secret=secret)
    ]


def webhooks_delete(sdk: BYOVA, webhook_id: str) -> dict[str, Any]:
    """Delete a webhook."""
    sdk.webhooks.delete(webhook_id)
    return {"deleted": webhook_id}


# ----------------------------------------------------------------------------- jws / doctor


def jws_verify(
    token: str,
    *,
    config: BYOVAConfig,
    expected_url: str | None = None,
    expected_org_id: str | None = None,
) -> dict[str, Any]:
    """Verify a data-source JWS; return ``{"valid": bool, "claims"|"reason": ...}``."""
    from ..jws import JWSVerificationError

    verifier = JWSVerifier(config, expected_url=expected_url, expected_org_id=expected_org_id)
    try:
        claims = verifier.verify(token)
    except JWSVerificationError as exc:
        return {"valid": False, "reason": exc.reason, "message": str(exc)}
    finally:
        verifier.close()
    exp = claims.get("exp")
    return {
        "valid": True,
        "expires_at": _iso(float(exp)) if isinstance(exp, int | float) else None,
        "claims": claims,
    }


def doctor(
    base_url: str | None = None, environ: Mapping[str, str] | None = None
) -> list[dict[str, Any]]:
    """Checks: environment, token store, TLS files, stored tokens, data source for the URL.

    Returns rows ``{check, status (ok|warn|fail|info), detail}``; never raises for a check.
    """
    env = _env(environ)
    rows: list[dict[str, Any]] = []

    def add(check: str, status: str, detail: str) -> None:
        rows.append({"check": check, "status": status, "detail": detail})

    config = resolve_config(base_url, env)
    add("base_url", "info", config.base_url)
    for name in ENV_VARS:
        value = env.get(name, "").strip()
        required = name in REQUIRED_VARS
        if value:
            add(f"env {name}", "ok", "set")
        else:
            add(f"env {name}", "fail" if required else "info", "missing" if required else "unset")
    for name in ("WEBEX_MEDIA_TLS_CERT_FILE", "WEBEX_MEDIA_TLS_KEY_FILE"):
        path = env.get(name, "").strip()
        if not path:
            continue
        ok = Path(path).is_file()
        add(f"tls {name}", "ok" if ok else "fail", path if ok else f"{path} does not exist")
    _doctor_media_auth(env, add)
    _doctor_expected_url(env, add)
    legacy = legacy_store_path()
    if not env.get("WEBEX_TOKEN_STORE", "").strip() and legacy.is_file():
        add(
            "legacy token store",
            "info",
            f"{legacy} (one file for every environment, from an earlier version) is no longer "
            "read: tokens are kept per environment now; log in again, then delete it",
        )
    try:
        sdk = build_sdk(base_url, env)
    except (SettingsError, ValueError) as exc:
        add("sdk", "fail", str(exc))
        return rows
    try:
        if not _doctor_token_store(sdk, add):
            return rows
        token = sdk.integration.get_stored_token()
        if token is None:
            add("integration token", "warn", "none stored: run `byova auth login`")
        else:
            left = token.expires_at - time.time()
            add(
                "integration token",
                "ok" if left > 0 else "warn",
                f"expires {_iso(token.expires_at)} ({int(left)} s)",
            )
        orgs = sdk.service_app.list_orgs()
        add("org tokens", "ok" if orgs else "warn", ", ".join(orgs) or "none stored")
        url = env.get("WEBEX_DATA_SOURCE_URL", "").strip()
        org = env.get("WEBEX_ORG_ID", "").strip()
        if url and org and token is not None:
            _doctor_data_source(sdk, org, url, add)
        elif url:
            add("data source", "info", "set WEBEX_ORG_ID and log in to check the data source")
    except Exception as exc:  # doctor reports, it does not crash
        add("sdk", "fail", f"{type(exc).__name__}: {exc}")
    finally:
        sdk.close()
    return rows


def _doctor_token_store(sdk: BYOVA, add: Any) -> bool:
    """Read every stored token once (bundled stores); ``False`` when the store is unusable."""
    store = sdk.storage
    check = getattr(store, "check", None)
    if check is None:  # a custom TokenStorage: nothing to check beyond using it
        add("token store", "ok", type(store).__name__)
        return True
    try:
        count = sdk.integration.portal.call(check)
    except TokenStorageError as exc:
        add("token store", "fail", str(exc))
        return False
    where = getattr(store, "location", type(store).__name__)
    add("token store", "ok", f"{where} ({count} token{'s' if count != 1 else ''})")
    return True


def _doctor_media_auth(env: Mapping[str, str], add: Any) -> None:
    """Media-server token checks as ``byova serve`` would configure them."""
    from ..media.config import MediaServerConfig

    try:
        media = MediaServerConfig.from_env(env)
    except ValueError as exc:
        add("media config", "fail", str(exc))
        return
    if not media.verify_tokens:
        add("media token checks", "warn", "off (WEBEX_MEDIA_VERIFY_TOKENS): any caller is served")
    elif media.expected_url is None:
        add(
            "media token checks",
            "warn",
            "WEBEX_MEDIA_EXPECTED_URL is unset: any data-source token of a trusted issuer is "
            "accepted; set it to the URL your data source is registered under",
        )
    else:
        add("media token checks", "ok", f"expected data-source URL {media.expected_url}")


def _doctor_expected_url(env: Mapping[str, str], add: Callable[[str, str, str], None]) -> None:
    """The media server's required URL claim must be the URL the data source is registered for."""
    expected = env.get("WEBEX_MEDIA_EXPECTED_URL", "").strip()
    registered = env.get("WEBEX_DATA_SOURCE_URL", "").strip()
    if not expected and not registered:
        return
    if expected and registered:
        if expected == registered:
            add("expected url", "ok", "WEBEX_MEDIA_EXPECTED_URL matches WEBEX_DATA_SOURCE_URL")
        else:
            add(
                "expected url",
                "fail",
                f"WEBEX_MEDIA_EXPECTED_URL {expected!r} differs from WEBEX_DATA_SOURCE_URL "
                f"{registered!r}: the media server will reject every token of that data source "
                "(claim_mismatch:url; compared character for character)",
            )
    elif registered:
        add(
            "expected url",
            "warn",
            "WEBEX_MEDIA_EXPECTED_URL is unset: the media server accepts tokens of any data "
            f"source; set it to {registered!r}",
        )
    else:
        add(
            "expected url",
            "info",
            "WEBEX_DATA_SOURCE_URL is unset: set it to the registered URL to check the data source",
        )


def _doctor_data_source(sdk: BYOVA, org: str, url: str, add: Any) -> None:
    matches = [ds for ds in org_client(sdk, org).data_sources.list() if ds.url == url]
    if not matches:
        add("data source", "fail", f"no data source registered for {url}")
        return
    ds = matches[0]
    expires = ds.expires_at
    if expires is None:
        add("data source", "warn", f"{ds.id} ({ds.status}); token expiry unknown")
        return
    left = (expires - datetime.now(UTC)).total_seconds()
    status = "ok" if left > 3600 else "warn" if left > 0 else "fail"
    add(
        "data source",
        status if ds.is_active else "fail",
        f"{ds.id} ({ds.status}); token expires {expires.isoformat(timespec='seconds')} "
        f"({int(left)} s)",
    )
