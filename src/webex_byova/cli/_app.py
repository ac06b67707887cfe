"""The typer layer: parse options, call a function that returns data, render it. No logic here."""

from __future__ import annotations

import functools
import json
import signal
import sys
import threading
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from .._version import __version__
from ..errors import WebexBYOVAError
from ._render import Renderer

__all__ = ["app", "main"]

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="byova",
    help="Webex BYOVA / BYODS toolkit: offline demo call, media server, call simulator, "
    "Webex emulator and administration commands.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)
auth_app = typer.Typer(help="Integration OAuth: login, status, refresh.", no_args_is_help=True)
orgs_app = typer.Typer(help="Customer orgs with Service App tokens.", no_args_is_help=True)
ds_app = typer.Typer(help="BYODS data sources of one org.", no_args_is_help=True)
schemas_app = typer.Typer(help="Data-exchange schemas.", no_args_is_help=True)
webhooks_app = typer.Typer(help="serviceApp webhooks.", no_args_is_help=True)
jws_app = typer.Typer(help="Data-source JWS tokens.", no_args_is_help=True)
app.add_typer(auth_app, name="auth")
app.add_typer(orgs_app, name="orgs")
app.add_typer(ds_app, name="datasources")
app.add_typer(schemas_app, name="schemas")
app.add_typer(webhooks_app, name="webhooks")
app.add_typer(jws_app, name="jws")

# -- shared options ---------------------------------------------------------------------------
BaseUrl = Annotated[
    str | None,
    typer.Option(
        "--base-url",
        help="Webex REST base URL (default: WEBEX_BASE_URL, else https://webexapis.com/v1).",
    ),
]
JsonOut = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
ShowTokens = Annotated[
    bool, typer.Option("--show-tokens", help="Print tokens and secrets instead of masking them.")
]
Org = Annotated[str | None, typer.Option("--org", help="Customer org id (default: WEBEX_ORG_ID).")]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"byova {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """Webex BYOVA / BYODS toolkit."""


def _handles_errors(func: F) -> F:
    """Turn SDK/settings errors into a one-line message and exit code 1 (no traceback)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (WebexBYOVAError, ValueError, OSError) as exc:
            Renderer().error(f"{type(exc).__name__}: {exc}")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def _wait_for_interrupt(ready: Callable[[], None] | None = None) -> None:
    """Block until Ctrl-C or SIGTERM; ``ready`` runs once the handlers are installed (so a
    signal sent as soon as it has printed something is not lost)."""
    stop = threading.Event()
    # Handle SIGINT explicitly too: a background job of a script inherits SIGINT ignored, so
    # Python's KeyboardInterrupt never comes and `kill -INT` would not stop the command.
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    try:
        if ready is not None:
            ready()
        while not stop.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# -- emulator ---------------------------------------------------------------------------------
@app.command()
@_handles_errors
def emulator(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0 = a free port).")] = 8900,
    authorize: Annotated[
        bool,
        typer.Option(help="Authorize the Service App in the seeded customer org at start."),
    ] = True,
    as_json: JsonOut = False,
) -> None:
    """Run the local Webex emulator and print its URLs and seeded (fake) credentials."""
    from ._emulator_cmd import emulator_info, start_emulator

    emu = start_emulator(host, port, authorize=authorize)
    try:
        info = emulator_info(emu)
        # The seeded credentials are random per run and only work against this emulator:
        # printing them is the point of the command.
        out = Renderer(as_json=as_json, show_tokens=True)

        def announce() -> None:
            if as_json:
                sys.stdout.write(json.dumps(info) + "\n")
                sys.stdout.flush()
                return
            env = info.pop("env")
            out.record(info, title="Webex emulator")
            out.message("[bold]Point the SDK and CLI at it:[/bold]")
            for key, value in env.items():
                out.console.print(f"export {key}={value}", markup=False)
            out.message("[dim]Ctrl-C to stop.[/dim]")

        _wait_for_interrupt(announce)
    finally:
        emu.stop()


# -- auth -------------------------------------------------------------------------------------
@auth_app.command("login")
@_handles_errors
def auth_login(
    base_url: BaseUrl = None,
    browser: Annotated[bool, typer.Option(help="Open the authorize URL in a browser.")] = True,
    auto_consent: Annotated[
        bool,
        typer.Option(
            "--auto-consent",
            help="Follow the authorize URL with an HTTP client (emulator only: it consents "
            "without a login page).",
        ),
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the redirect.")] = 300.0,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """Authorize the Integration in a browser and store its tokens."""
    from . import _admin

    out = Renderer(as_json=as_json, show_tokens=show_tokens)
    with _admin.build_sdk(base_url) as sdk:
        result = _admin.auth_login(
            sdk,
            open_browser=browser,
            auto_consent=auto_consent,
            timeout=timeout,
            on_url=lambda url: out.message(f"Open this URL to authorize:\n{url}"),
        )
    out.record(result, title="Integration authorized")


@auth_app.command("status")
@_handles_errors
def auth_status(
    base_url: BaseUrl = None, as_json: JsonOut = False, show_tokens: ShowTokens = False
) -> None:
    """Show the stored Integration token and the orgs with Service App tokens."""
    from . import _admin

    out = Renderer(as_json=as_json, show_tokens=show_tokens)
    with _admin.build_sdk(base_url) as sdk:
        status = _admin.auth_status(sdk)
    if as_json:
        out.json(status)
        return
    out.record({"base_url": status["base_url"], **status["integration"]}, title="Integration")
    out.table(status["orgs"], title="Org tokens")


@auth_app.command("refresh")
@_handles_errors
def auth_refresh(
    base_url: BaseUrl = None,
    org: Annotated[
        str | None,
        typer.Option("--org", help="Refresh (or first fetch) this org's Service App token."),
    ] = None,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """Refresh the Integration token (or an org's Service App token)."""
    from . import _admin

    out = Renderer(as_json=as_json, show_tokens=show_tokens)
    with _admin.build_sdk(base_url) as sdk:
        out.record(_admin.auth_refresh(sdk, org=org), title="Refreshed")


# -- orgs -------------------------------------------------------------------------------------
@orgs_app.command("list")
@_handles_errors
def orgs_list(base_url: BaseUrl = None, as_json: JsonOut = False) -> None:
    """List orgs with stored Service App tokens."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        Renderer(as_json=as_json).table(_admin.orgs_list(sdk), title="Orgs")


# -- data sources -----------------------------------------------------------------------------
_DS_COLUMNS = ["id", "url", "status", "token_lifetime_minutes", "token_expires_at"]


@ds_app.command("list")
@_handles_errors
def ds_list(
    org: Org = None,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """List the Service App's data sources in an org."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        rows = _admin.datasources_list(sdk, _admin.resolve_org(org))
    Renderer(as_json=as_json, show_tokens=show_tokens).table(
        rows, _DS_COLUMNS, title="Data sources"
    )


@ds_app.command("get")
@_handles_errors
def ds_get(
    data_source_id: Annotated[str, typer.Argument(help="Data source id.")],
    org: Org = None,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """Show one data source."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        row = _admin.datasources_get(sdk, _admin.resolve_org(org), data_source_id)
    Renderer(as_json=as_json, show_tokens=show_tokens).record(row, title="Data source")


@ds_app.command("create")
@_handles_errors
def ds_create(
    url: Annotated[str, typer.Option("--url", help="URL Webex calls (your media server).")],
    org: Org = None,
    schema_id: Annotated[str | None, typer.Option(help="Schema id (default: BYOVA).")] = None,
    audience: Annotated[str, typer.Option(help="JWS audience.")] = "BYOVAGateway",
    subject: Annotated[str, typer.Option(help="JWS subject.")] = "callAudioData",
    token_lifetime_minutes: Annotated[
        int, typer.Option("--token-lifetime", help="Minutes, 1..1440.")
    ] = 1440,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """Register a data source."""
    from ..data_sources import BYOVA_SCHEMA_ID
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        row = _admin.datasources_create(
            sdk,
            _admin.resolve_org(org),
            url=url,
            schema_id=schema_id or BYOVA_SCHEMA_ID,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
        )
    Renderer(as_json=as_json, show_tokens=show_tokens).record(row, title="Data source created")


@ds_app.command("update")
@_handles_errors
def ds_update(
    data_source_id: Annotated[str, typer.Argument(help="Data source id.")],
    org: Org = None,
    url: Annotated[str | None, typer.Option(help="New URL.")] = None,
    audience: Annotated[str | None, typer.Option(help="New audience.")] = None,
    subject: Annotated[str | None, typer.Option(help="New subject.")] = None,
    token_lifetime_minutes: Annotated[
        int | None, typer.Option("--token-lifetime", help="Minutes, 1..1440.")
    ] = None,
    status: Annotated[str | None, typer.Option(help="active or disabled.")] = None,
    error_message: Annotated[
        str | None, typer.Option(help="Reason (required with --status disabled).")
    ] = None,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """Update a data source (unchanged fields are kept; a fresh token is minted)."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        row = _admin.datasources_update(
            sdk,
            _admin.resolve_org(org),
            data_source_id,
            url=url,
            audience=audience,
            subject=subject,
            token_lifetime_minutes=token_lifetime_minutes,
            status=status,
            error_message=error_message,
        )
    Renderer(as_json=as_json, show_tokens=show_tokens).record(row, title="Data source updated")


@ds_app.command("extend")
@_handles_errors
def ds_extend(
    data_source_id: Annotated[str, typer.Argument(help="Data source id.")],
    org: Org = None,
    token_lifetime_minutes: Annotated[
        int | None, typer.Option("--token-lifetime", help="Minutes, 1..1440.")
    ] = None,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """Mint a fresh token for a data source before the current one expires."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        row = _admin.datasources_extend(
            sdk, _admin.resolve_org(org), data_source_id, token_lifetime_minutes
        )
    Renderer(as_json=as_json, show_tokens=show_tokens).record(row, title="Token extended")


@ds_app.command("delete")
@_handles_errors
def ds_delete(
    data_source_id: Annotated[str, typer.Argument(help="Data source id.")],
    org: Org = None,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Delete a data source."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        row = _admin.datasources_delete(sdk, _admin.resolve_org(org), data_source_id)
    Renderer(as_json=as_json).record(row, title="Deleted")


# -- schemas ----------------------------------------------------------------------------------
@schemas_app.command("list")
@_handles_errors
def schemas_list(org: Org = None, base_url: BaseUrl = None, as_json: JsonOut = False) -> None:
    """List data-exchange schemas."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        rows = _admin.schemas_list(sdk, _admin.resolve_org(org))
    Renderer(as_json=as_json).table(rows, title="Schemas")


# -- webhooks ---------------------------------------------------------------------------------
_HOOK_COLUMNS = ["id", "name", "resource", "event", "target_url", "status"]


@webhooks_app.command("list")
@_handles_errors
def webhooks_list(
    base_url: BaseUrl = None, as_json: JsonOut = False, show_tokens: ShowTokens = False
) -> None:
    """List webhooks owned by the Integration's user."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        rows = _admin.webhooks_list(sdk)
    Renderer(as_json=as_json, show_tokens=show_tokens).table(rows, _HOOK_COLUMNS, title="Webhooks")


@webhooks_app.command("ensure")
@_handles_errors
def webhooks_ensure(
    target_url: Annotated[str, typer.Argument(help="Your webhook receiver's public URL.")],
    secret: Annotated[
        str | None,
        typer.Option(
            help="Signing secret (default: WEBEX_WEBHOOK_SECRET).", envvar="WEBEX_WEBHOOK_SECRET"
        ),
    ] = None,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
    show_tokens: ShowTokens = False,
) -> None:
    """Create or re-enable the serviceApp authorized/deauthorized webhooks (idempotent)."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        rows = _admin.webhooks_ensure(sdk, target_url, secret=secret)
    Renderer(as_json=as_json, show_tokens=show_tokens).table(rows, _HOOK_COLUMNS, title="Webhooks")


@webhooks_app.command("delete")
@_handles_errors
def webhooks_delete(
    webhook_id: Annotated[str, typer.Argument(help="Webhook id.")],
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Delete a webhook."""
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        Renderer(as_json=as_json).record(_admin.webhooks_delete(sdk, webhook_id), title="Deleted")


# -- jws / doctor -----------------------------------------------------------------------------
@jws_app.command("verify")
@_handles_errors
def jws_verify(
    token: Annotated[str, typer.Argument(help="The JWS (raw or 'Bearer …'); '-' reads stdin.")],
    expected_url: Annotated[
        str | None, typer.Option("--url", help="Require this com.cisco.datasource.url.")
    ] = None,
    expected_org: Annotated[str | None, typer.Option("--org", help="Require this org.")] = None,
    base_url: BaseUrl = None,
    as_json: JsonOut = False,
) -> None:
    """Verify a data-source token's signature and claims (exit 1 when invalid)."""
    from . import _admin

    text = sys.stdin.read().strip() if token == "-" else token
    result = _admin.jws_verify(
        text,
        config=_admin.resolve_config(base_url),
        expected_url=expected_url,
        expected_org_id=expected_org,
    )
    out = Renderer(as_json=as_json)
    if as_json:
        out.json(result)
    elif result["valid"]:
        out.record(
            {"valid": True, "expires_at": result["expires_at"], **result["claims"]}, title="JWS"
        )
    else:
        out.record(result, title="JWS")
    if not result["valid"]:
        raise typer.Exit(1)


@app.command()
@_handles_errors
def doctor(base_url: BaseUrl = None, as_json: JsonOut = False) -> None:
    """Check env vars, token storage, TLS files and the data source for WEBEX_DATA_SOURCE_URL."""
    from . import _admin

    rows = _admin.doctor(base_url)
    Renderer(as_json=as_json).table(rows, ["check", "status", "detail"], title="byova doctor")
    if any(r["status"] == "fail" for r in rows):
        raise typer.Exit(1)


def _register_media_commands() -> None:
    from . import _media_cmds  # noqa: F401  (registers demo/serve/simulate on ``app``)


_register_media_commands()


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point (``byova``)."""
    app(args=argv, prog_name="byova")
