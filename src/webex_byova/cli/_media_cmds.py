"""``byova demo``, ``byova serve`` and ``byova simulate`` (need the ``media`` extra)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from .._optional import require
from ._app import JsonOut, _handles_errors, app
from ._render import Renderer

if TYPE_CHECKING:
    from ._call import CallReport, LoadStats, TurnReport
    from ._demo import DemoResult


def _need_media() -> None:
    require("grpc", "media")
    require("google.protobuf", "media")


def _run(coro: Any) -> Any:
    """Run a coroutine from a typer command (the CLI owns the process: no loop is running)."""
    return asyncio.run(coro)


# --------------------------------------------------------------------------- rendering

LATENCY_NOTE = (
    "latency: from the end of the caller's input (the server's END_OF_INPUT for speech, the "
    "end of the request for DTMF and events) to the server's first reply."
)
LATE_NOTE = (
    "late caller frames: 20 ms audio frames the caller sent more than 20 ms behind their "
    "real-time schedule; when there are any, this machine (the caller, and the server if it "
    "runs here) could not keep up, and the latencies above are pessimistic."
)


def _send_line(sent: str, at: float) -> str:
    return f"[cyan]{at * 1000:7.0f} ms[/cyan]  caller → server  {escape(sent)}"


def _turn_line(turn: TurnReport) -> str:
    at = turn.finished_at * 1000
    parts = [f"[cyan]{at:7.0f} ms[/cyan]  server → caller  reply to {escape(turn.sent)}:"]
    if not turn.ok:
        parts.append(f"[red]{turn.code}: {escape(turn.details)}[/red]")
    if turn.events:
        parts.append(", ".join(turn.events))
    if turn.texts:
        parts.append("[italic]“" + escape(_short(" / ".join(turn.texts), 60)) + "”[/italic]")
    if turn.audio_ms:
        parts.append(f"audio {turn.audio_ms:.0f} ms")
    if turn.latency_ms is not None and turn.kind != "start_of_dtmf":
        parts.append(f"[green]latency {turn.latency_ms:.0f} ms[/green]")
    if len(parts) == 1:
        parts.append("[dim]completed[/dim]")
    return " ".join(parts)


def _short(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _reply_text(turn: TurnReport) -> str:
    events = [e for e in turn.events if e not in ("START_OF_INPUT", "END_OF_INPUT")]
    text = " / ".join(turn.texts)
    if events:
        return f"{', '.join(events)} {text}".strip()
    return text or "-"


def _summary_table(result: DemoResult) -> Table:
    table = Table(title="Demo call summary")
    table.add_column("#", justify="right", min_width=1)
    table.add_column("caller sent", no_wrap=True, min_width=13)
    table.add_column("server reply", no_wrap=True, overflow="ellipsis", max_width=26)
    table.add_column("audio", justify="right", no_wrap=True, min_width=7)
    table.add_column("latency", justify="right", no_wrap=True, min_width=7)
    table.add_column("status", no_wrap=True, min_width=2)
    for t in result.report.turns:
        table.add_row(
            str(t.index),
            t.sent,
            _reply_text(t),
            f"{t.audio_ms:.0f} ms" if t.audio_ms else "-",
            f"{t.latency_ms:.0f} ms"
            if t.latency_ms is not None and t.kind != "start_of_dtmf"
            else "-",
            "[green]OK[/green]" if t.ok else f"[red]{t.code}[/red]",
        )
    return table


def _checks_table(result: DemoResult) -> Table:
    table = Table(title="Expectations")
    table.add_column("check")
    table.add_column("result")
    for c in result.checks:
        table.add_row(c.name, "[green]pass[/green]" if c.ok else f"[red]FAIL[/red] {c.detail}")
    return table


# --------------------------------------------------------------------------- demo


@app.command()
@_handles_errors
def demo(
    output: Annotated[
        Path,
        typer.Option(
            "--output", "-o", help="Where to write the bot's audio (16-bit PCM WAV, 8 kHz)."
        ),
    ] = Path("demo-output") / "bot_audio.wav",
    hangup: Annotated[
        bool, typer.Option("--hangup", help="End with DTMF 9 (goodbye) instead of 5 (agent).")
    ] = False,
    fast: Annotated[
        bool, typer.Option("--fast", help="Send caller audio as fast as possible.")
    ] = False,
    audio_mode: Annotated[
        str, typer.Option("--audio-mode", help="wav (one WAV per reply) or chunk (streamed).")
    ] = "wav",
    serve_only: Annotated[
        bool,
        typer.Option(
            "--serve-only",
            help="Only run the demo agent's server (prints one JSON line: target and token).",
        ),
    ] = False,
    host: Annotated[str, typer.Option(help="Bind address with --serve-only.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port with --serve-only (0 = a free port).")] = 0,
    transport: Annotated[
        str, typer.Option("--transport", help="grpc or websocket (BYOVA over WebSocket).")
    ] = "grpc",
    as_json: JsonOut = False,
) -> None:
    """Place one complete BYOVA call against the bundled demo agent, offline.

    A local Webex emulator registers a data source whose token the media server verifies;
    a simulated Webex caller hears the welcome, speaks, presses 0 (menu) and 5 (agent).
    Exit code 0 only when the call went as expected.
    """
    _need_media()
    if audio_mode not in ("wav", "chunk"):
        raise typer.BadParameter("--audio-mode must be wav or chunk")
    mode: Literal["wav", "chunk"] = "chunk" if audio_mode == "chunk" else "wav"
    wire = _transport(transport)
    if serve_only:
        from ._serve import check_port_free

        check_port_free(host, port)
        _run(_serve_demo(host, port, mode, wire))
        return
    from ._demo import run_demo

    console = Console(highlight=False, stderr=as_json)

    def step(kind: str, text: str) -> None:
        console.print(f"[dim]setup[/dim]  [bold]{kind:<8}[/bold] {text}")

    def turn(t: TurnReport) -> None:
        console.print(_turn_line(t))

    def send(sent: str, at: float) -> None:
        console.print(_send_line(sent, at))

    def server_event(at: float, text: str) -> None:
        console.print(f"[magenta]{at * 1000:7.0f} ms[/magenta]  {text}")

    console.rule("[bold]webex_byova demo call")
    from ._demo_agent import AUDIO_NOTE

    console.print(f"[dim]{AUDIO_NOTE}\n{LATENCY_NOTE}[/dim]")
    result: DemoResult = _run(
        run_demo(
            output=output,
            ending="hangup" if hangup else "transfer",
            realtime=not fast,
            audio_mode=mode,
            transport=wire,
            on_step=step,
            on_turn=turn,
            on_send=send,
            on_server_event=server_event,
        )
    )
    if as_json:
        Renderer(as_json=True).json(result.to_json())
    else:
        console.print(_summary_table(result))
        console.print(_checks_table(result))
        console.print(
            f"bot audio written to [bold]{result.output}[/bold] (16-bit PCM WAV, 8 kHz mono: "
            "the chimes and the echo of the caller's words)"
        )
        verdict = "[bold green]call OK[/bold green]" if result.ok else "[bold red]call FAILED"
        console.print(
            f"{verdict}  outcome={result.report.outcome}  "
            f"call {result.report.duration_s:.1f} s, setup {result.setup_s:.1f} s"
        )
    if not result.ok:
        raise typer.Exit(1)


def _transport(value: str) -> Literal["grpc", "websocket"]:
    if value not in ("grpc", "websocket"):
        raise typer.BadParameter("--transport must be grpc or websocket")
    return "websocket" if value == "websocket" else "grpc"


async def _serve_demo(
    host: str,
    port: int,
    audio_mode: Literal["wav", "chunk"],
    transport: Literal["grpc", "websocket"],
) -> None:
    from ._demo_env import start_demo_environment
    from ._serve import ListenError, bind_address

    try:
        env = await start_demo_environment(
            host=host, port=port, audio_mode=audio_mode, transport=transport
        )
    except (RuntimeError, OSError) as exc:
        if "bind" not in str(exc).lower():
            raise
        raise ListenError(f"cannot listen on {bind_address(host, port)}: {exc}") from None
    try:
        stop = _stop_event()
        sys.stdout.write(json.dumps(env.describe()) + "\n")
        sys.stdout.flush()
        await stop.wait()
    finally:
        await env.aclose()


def _stop_event() -> asyncio.Event:
    """An event set by SIGINT, SIGTERM or SIGHUP (a closed terminal): a graceful stop.

    Install it before announcing the server, so a signal sent as soon as the announcement
    is read is never the default action (KeyboardInterrupt, or death by SIGHUP).
    """
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for name in ("SIGINT", "SIGTERM", "SIGHUP"):
        with contextlib.suppress(NotImplementedError, RuntimeError, AttributeError):  # non-POSIX
            loop.add_signal_handler(getattr(signal, name), stop.set)
    return stop


# --------------------------------------------------------------------------- serve


@app.command()
@_handles_errors
def serve(
    target: Annotated[
        str, typer.Argument(metavar="APP", help="module:attr, module, or path/to/app.py[:attr].")
    ],
    host: Annotated[
        str | None, typer.Option(help="Bind address.", envvar="WEBEX_MEDIA_HOST")
    ] = None,
    port: Annotated[int | None, typer.Option(help="Port.", envvar="WEBEX_MEDIA_PORT")] = None,
    tls_cert: Annotated[
        Path | None,
        typer.Option("--tls-cert", help="PEM cert chain.", envvar="WEBEX_MEDIA_TLS_CERT_FILE"),
    ] = None,
    tls_key: Annotated[
        Path | None,
        typer.Option("--tls-key", help="PEM private key.", envvar="WEBEX_MEDIA_TLS_KEY_FILE"),
    ] = None,
    tls_client_ca: Annotated[
        Path | None,
        typer.Option(
            "--tls-client-ca",
            help="CA bundle for mutual TLS.",
            envvar="WEBEX_MEDIA_TLS_CLIENT_CA_FILE",
        ),
    ] = None,
    transport: Annotated[
        str | None,
        typer.Option(
            "--transport",
            help="grpc, websocket or both (same handlers).",
            envvar="WEBEX_MEDIA_TRANSPORT",
        ),
    ] = None,
    ws_port: Annotated[
        int | None,
        typer.Option("--ws-port", help="WebSocket port.", envvar="WEBEX_MEDIA_WS_PORT"),
    ] = None,
    reload: Annotated[
        bool,
        typer.Option(
            "--reload",
            help="Development: restart the app when a .py file in its directory changes.",
        ),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO).",
            envvar="WEBEX_MEDIA_LOG_LEVEL",
        ),
    ] = None,
    log_format: Annotated[
        str | None,
        typer.Option(
            "--log-format",
            help="text (default) or json: one object per line.",
            envvar="WEBEX_MEDIA_LOG_FORMAT",
        ),
    ] = None,
    metrics_port: Annotated[
        int | None,
        typer.Option(
            "--metrics-port",
            min=0,
            max=65535,
            help="Serve Prometheus /metrics on this port (off when not given).",
            envvar="WEBEX_MEDIA_METRICS_PORT",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Server processes sharing the port (SO_REUSEPORT, Linux).",
            envvar="WEBEX_MEDIA_WORKERS",
        ),
    ] = 1,
    reuse_port: Annotated[bool, typer.Option("--reuse-port", hidden=True)] = False,
) -> None:
    """Run your media server app (its other settings come from WEBEX_MEDIA_* variables)."""
    _need_media()
    from .._logsetup import check_log_options

    check_log_options(log_level, log_format)
    shared = {
        "--host": host,
        "--tls-cert": tls_cert,
        "--tls-key": tls_key,
        "--tls-client-ca": tls_client_ca,
        "--log-level": log_level,
        "--log-format": log_format,
    }
    if reload:
        if workers > 1:
            raise typer.BadParameter("--reload runs one process; drop --workers")
        from ._reload import child_command, run_with_reload, watch_roots

        roots = watch_roots(target)
        options = {
            **shared,
            "--port": port,
            "--metrics-port": metrics_port,
            "--transport": transport,
            "--ws-port": ws_port,
        }
        raise typer.Exit(run_with_reload(child_command(target, options), roots))
    if workers > 1:
        from ._workers import run_workers

        raise typer.Exit(run_workers(target, workers, port, metrics_port, host, shared))
    from ._serve import apply_overrides, check_port_free, load_app

    server = load_app(target)
    config = apply_overrides(
        server,
        {
            "host": host,
            "port": port,
            "tls_cert_file": tls_cert,
            "tls_key_file": tls_key,
            "tls_client_ca_file": tls_client_ca,
            "log_level": log_level,
            "reuse_port": reuse_port or None,
            "transport": transport,
            "ws_port": ws_port,
        },
    )
    if not config.reuse_port:  # workers share the port on purpose: no "in use" probe for them
        check_port_free(config.host, config.port)
    _run(_serve_app(server, target, metrics_port, log_format))


async def _start_listening(server: Any) -> None:
    """``server.start()``; a bind failure becomes one line (gRPC raises a bare RuntimeError)."""
    from ._serve import ListenError, bind_address

    try:
        await server.start()
    except RuntimeError as exc:
        if "bind" not in str(exc).lower():
            raise
        where = bind_address(server.config.host, server.config.port)
        raise ListenError(
            f"cannot listen on {where}: the address is in use or not available here"
        ) from None


async def _serve_app(
    server: Any, target: str, metrics_port: int | None = None, log_format: str | None = None
) -> None:
    exporter = None
    if metrics_port is not None:
        from ..media._metrics import MediaMetrics, start_metrics_server

        # The server's own MediaMetrics once the call core records into it; until then the
        # endpoint serves the (zero) families so scrapers and dashboards can be set up.
        metrics = getattr(server, "metrics", None) or MediaMetrics()
        exporter = start_metrics_server(metrics_port, server.config.host, metrics=metrics)
    try:
        await _serve_started(server, target, log_format, exporter.url if exporter else "")
    finally:
        if exporter is not None:
            exporter.stop()


async def _serve_started(
    server: Any, target: str, log_format: str | None, metrics_url: str
) -> None:
    from .._logsetup import configure_logging
    from ._serve import bind_address, exposure_warning

    await _start_listening(server)
    config = server.config
    try:
        stop = _stop_event()
        err = Console(stderr=True, highlight=False)
        bound = bind_address(config.host, server.port)
        reach = f", connect to {server.address}" if bound != server.address else ""
        # One parseable line on stderr: tools (and our tests) read the bound address from it.
        # gRPC (or both): "on host:port ..."; WebSocket only: "on ws://host:port ..."
        grpc_on = config.transport != "websocket"
        where = bound if grpc_on else server.ws_url
        if config.transport == "both":
            where += f" and {server.ws_url}"
        secure = config.tls if grpc_on else config.ws_tls
        err.print(
            f"serving {target} on {where} "
            f"({'TLS' if secure else 'plaintext'}, tokens "
            f"{'verified' if config.verify_tokens else 'NOT verified'}{reach}); Ctrl-C to stop",
            markup=False,
            soft_wrap=True,
        )
        warning = exposure_warning(
            config.host, server.port, tls=config.tls, verify_tokens=config.verify_tokens
        )
        if warning:
            err.print(warning, style="bold yellow", markup=False, soft_wrap=True)
        if metrics_url:
            err.print(f"metrics on {metrics_url}", markup=False, soft_wrap=True)
        # Logging starts after those lines (the server's own "listening" record duplicates it)
        # and only if the app did not configure logging itself.
        configure_logging(config.log_level, log_format)
        await stop.wait()
        # SIGTERM/SIGINT: the graceful drain (live calls continue up to drain_timeout_s, then
        # are transferred or ended as drain_action says), then the stop.
        await server.stop(drain=True)
    finally:
        await server.stop()


# --------------------------------------------------------------------------- simulate


@app.command()
@_handles_errors
def simulate(
    target: Annotated[
        str,
        typer.Option(
            "--target",
            help="host:port of the BYOVA server (ws://host:port for --transport websocket).",
        ),
    ],
    wav: Annotated[
        Path | None, typer.Option("--wav", help="Caller speech (default: a bundled utterance).")
    ] = None,
    dtmf: Annotated[
        list[str] | None,
        typer.Option("--dtmf", help="Keys to press after speaking; repeat for several entries."),
    ] = None,
    turns: Annotated[int, typer.Option("--turns", help="Spoken turns per call.")] = 1,
    token: Annotated[
        str | None,
        typer.Option("--token", help="Data-source JWS to present.", envvar="BYOVA_TOKEN"),
    ] = None,
    mint_token: Annotated[
        str | None,
        typer.Option(
            "--mint-token",
            metavar="URL",
            help="Register (or refresh) a data source for URL on WEBEX_BASE_URL (e.g. the "
            "emulator) with the WEBEX_* credentials and present its token.",
        ),
    ] = None,
    agent: Annotated[str, typer.Option("--agent", help="virtual_agent_id ('' = default).")] = "",
    org: Annotated[
        str | None,
        typer.Option(
            "--org",
            help="customer_org_id sent (default: the token's org over WebSocket, which "
            "binds the org to the socket; else org-simulated).",
        ),
    ] = None,
    no_hangup: Annotated[
        bool, typer.Option("--no-hangup", help="Do not send SESSION_END at the end.")
    ] = False,
    fast: Annotated[bool, typer.Option("--fast", help="Send audio as fast as possible.")] = False,
    calls: Annotated[
        int, typer.Option("--calls", min=1, help="Number of calls (more than 1: a load test).")
    ] = 1,
    rate: Annotated[float, typer.Option("--rate", help="New calls per second (load test).")] = 1.0,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Webex/emulator base URL for --mint-token.")
    ] = None,
    tls: Annotated[
        bool,
        typer.Option(
            "--tls", help="Call over TLS (implied by --ca-cert, --client-cert, --tls-server-name)."
        ),
    ] = False,
    ca_cert: Annotated[
        Path | None,
        typer.Option(
            "--ca-cert",
            help="PEM CA certificate(s) to trust for the server's certificate (default: the "
            "system's root CAs).",
        ),
    ] = None,
    client_cert: Annotated[
        Path | None,
        typer.Option("--client-cert", help="PEM client certificate chain (mutual TLS)."),
    ] = None,
    client_key: Annotated[
        Path | None,
        typer.Option("--client-key", help="PEM private key of --client-cert (mutual TLS)."),
    ] = None,
    tls_server_name: Annotated[
        str | None,
        typer.Option(
            "--tls-server-name",
            help="Name the server's certificate carries, when it differs from --target's host.",
        ),
    ] = None,
    transport: Annotated[
        str, typer.Option("--transport", help="grpc or websocket (BYOVA over WebSocket).")
    ] = "grpc",
    as_json: JsonOut = False,
) -> None:
    """Place simulated Webex calls against any BYOVA server; with --calls N, a load test.

    Turn latency is the time from the end of the caller's input (the server's END_OF_INPUT
    for speech, the end of the request for DTMF and events) to the server's first reply.
    A load test also counts late caller frames: 20 ms audio frames sent more than 20 ms
    behind their real-time schedule, a sign that this machine could not keep up (not
    measured with --fast).
    """
    _need_media()
    from ..media import assets
    from ._call import CallScript, parse_target, parse_ws_target, tls_credentials, ws_ssl_context

    wire = _transport(transport)
    target = parse_ws_target(target) if wire == "websocket" else parse_target(target)
    if rate <= 0:
        raise typer.BadParameter(f"--rate must be > 0 calls per second, got {rate}")
    wav_bytes = wav.read_bytes() if wav is not None else assets.load("speech_hello.wav")
    script = CallScript(
        wav=wav_bytes, utterances=turns, dtmf=tuple(dtmf or ()), hang_up=not no_hangup
    )
    if token is not None and mint_token is not None:
        raise typer.BadParameter("pass --token or --mint-token, not both")
    secure = bool(tls or tls_server_name or ca_cert or client_cert)
    options: dict[str, Any]
    if wire == "websocket":
        if tls_server_name is not None:
            raise typer.BadParameter("--tls-server-name is for gRPC: a wss:// target names it")
        if secure and target.startswith("ws://"):
            target = "wss://" + target.removeprefix("ws://")
        context = ws_ssl_context(ca_cert=ca_cert, client_cert=client_cert, client_key=client_key)
        options = {"ssl": context} if target.startswith("wss://") else {}
        secure = target.startswith("wss://")
    else:
        credentials = tls_credentials(
            tls=secure, ca_cert=ca_cert, client_cert=client_cert, client_key=client_key
        )
        options = {"credentials": credentials, "tls_server_name": tls_server_name}
    if mint_token is not None:
        token = _mint(mint_token, base_url)
    if org is None:
        org = _token_org(token) if wire == "websocket" else None
    org = org or "org-simulated"
    out = Renderer(as_json=as_json)
    if calls == 1:
        report: CallReport = _run(
            _simulate_one(target, token, agent, org, script, not fast, as_json, options, wire)
        )
        if as_json:
            out.json(report.to_json())
        else:
            _print_call(report, tls=secure)
        if report.interrupted:
            raise typer.Exit(130)
        if not report.ok:
            raise typer.Exit(1)
        return
    stats: LoadStats = _run(
        _simulate_load(
            target, token, agent, org, script, not fast, calls, rate, as_json, options, wire
        )
    )
    data = stats.to_json()
    if as_json:
        out.json(data)
    else:
        _print_load(data, realtime=not fast, tls=secure)
    if stats.interrupted:
        raise typer.Exit(130)
    if stats.failed:
        raise typer.Exit(1)


def _token_org(token: str | None) -> str | None:
    """The (unverified) org claim of ``token``, if it has one."""
    from ..jws import CLAIM_ORG, JWSVerificationError, parse_token

    if not token:
        return None
    try:
        org = parse_token(token).claims.get(CLAIM_ORG)
    except JWSVerificationError:
        return None
    return org if isinstance(org, str) and org else None


def _mint(url: str, base_url: str | None) -> str:
    from . import _admin

    with _admin.build_sdk(base_url) as sdk:
        return _admin.mint_data_source_token(sdk, url)


def _caller(
    target: str,
    token: str | None,
    agent: str,
    org: str,
    realtime: bool,
    n: int = 0,
    options: dict[str, Any] | None = None,
    transport: str = "grpc",
) -> Any:
    """A Webex-side caller of ``transport``; ``options`` are its TLS settings."""
    from ..testing._caller import WebexCaller

    kind: Any = WebexCaller
    if transport == "websocket":
        from ..testing._ws_caller import WebexWsCaller

        kind = WebexWsCaller
    return kind(
        target,
        token=token,
        virtual_agent_id=agent,
        customer_org_id=org,
        realtime=realtime,
        tracking_id=f"BYOVASIM_{n}",
        **(options or {}),
    )


async def _simulate_one(
    target: str,
    token: str | None,
    agent: str,
    org: str,
    script: Any,
    realtime: bool,
    quiet: bool,
    options: dict[str, Any],
    transport: str = "grpc",
) -> CallReport:
    from ._call import run_call

    console = Console(highlight=False, stderr=True)

    def show(turn: TurnReport) -> None:
        if not quiet:
            console.print(_turn_line(turn))

    def send(sent: str, at: float) -> None:
        if not quiet:
            console.print(_send_line(sent, at))

    stop = _stop_event()  # Ctrl-C: hang up (SESSION_END) and report what was done
    async with _caller(target, token, agent, org, realtime, 0, options, transport) as caller:
        return await run_call(caller, script, observe=show, on_send=send, stop=stop)


async def _simulate_load(
    target: str,
    token: str | None,
    agent: str,
    org: str,
    script: Any,
    realtime: bool,
    calls: int,
    rate: float,
    quiet: bool,
    options: dict[str, Any],
    transport: str = "grpc",
) -> LoadStats:
    from ._call import run_load

    progress = Progress(
        TextColumn("[bold]calls"),
        BarColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[detail]}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=quiet,
    )
    task = progress.add_task("calls", total=calls, detail="")

    def update(stats: LoadStats) -> None:
        progress.update(
            task,
            completed=stats.completed,
            detail=f"active {stats.active}  failed {stats.failed}  turns {stats.turns}",
        )

    stop = _stop_event()  # Ctrl-C: place no more calls, hang up the live ones, summarise
    with progress:
        return await run_load(
            lambda n: _caller(target, token, agent, org, realtime, n, options, transport),
            script,
            calls=calls,
            rate=rate,
            on_update=update,
            stop=stop,
        )


def _print_call(report: CallReport, *, tls: bool = False) -> None:
    from ._call import connection_hint

    console = Console(highlight=False)
    table = Table(title=f"Call {report.conversation_id}")
    for col in ("#", "sent", "events", "prompt", "latency", "status"):
        table.add_column(col)
    for t in report.turns:
        table.add_row(
            str(t.index),
            t.sent,
            ", ".join(t.events) or "-",
            (" / ".join(t.texts) or "-")[:60],
            f"{t.latency_ms:.0f} ms" if t.latency_ms is not None else "-",
            "OK" if t.ok else f"{t.code}: {t.details}",
        )
    console.print(table)
    console.print(f"outcome={report.outcome} ok={report.ok} {report.error or ''}")
    console.print(f"[dim]{LATENCY_NOTE}[/dim]")
    hint = connection_hint([t.code for t in report.turns], tls=tls)
    if hint:
        console.print(f"[yellow]hint:[/yellow] {hint}", markup=True)


def load_rows(data: dict[str, Any], *, realtime: bool) -> list[tuple[str, str]]:
    """The load-test summary as (metric, value) rows (pure: JSON of :class:`LoadStats` in)."""
    lat = data["latency_ms"]
    failed, finished = data["failed"], data["completed"]
    succeeded = finished - failed
    calls = f"{data['calls']} placed: {succeeded} succeeded, {failed} failed"
    if finished < data["calls"]:
        calls += f", {data['calls'] - finished} unfinished"
    if data.get("interrupted"):
        calls += " (interrupted: live calls hung up, no more placed)"
    if lat["samples"]:
        latency = f"{lat['p50']} / {lat['p95']} / {lat['p99']} ms ({lat['samples']} turns)"
    else:
        latency = "n/a (no turn was answered)"
    if not realtime:
        late = "not measured (--fast sends audio unpaced)"
    elif data["frames_sent"]:
        late = f"{data['late_frames']} of {data['frames_sent']} frames"
    else:
        late = "n/a (no audio sent)"
    return [
        ("calls", calls),
        ("peak concurrent calls", str(data["peak_concurrency"])),
        ("turns", f"{data['turns']} ({data['turn_errors']} errors)"),
        ("turn latency p50/p95/p99", latency),
        ("late caller frames", late),
        ("outcomes", json.dumps(data["outcomes"])),
        ("duration", f"{data['duration_s']} s"),
    ]


def _print_load(data: dict[str, Any], *, realtime: bool = True, tls: bool = False) -> None:
    from ._call import connection_hint

    console = Console(highlight=False)
    table = Table(title="Load test", show_header=False)
    table.add_column("metric", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    for key, value in load_rows(data, realtime=realtime):
        table.add_row(key, value)
    for err, count in data["errors"].items():
        table.add_row("error", f"{count} x {err}")
    console.print(table)
    console.print(f"[dim]{LATENCY_NOTE}\n{LATE_NOTE}[/dim]")
    hint = connection_hint(list(data["errors"]), tls=tls)
    if hint:
        console.print(f"[yellow]hint:[/yellow] {hint}")
