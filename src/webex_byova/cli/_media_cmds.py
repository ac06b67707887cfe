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


def _send_line(sent: str, at: float) -> str:
    return f"[cyan]{at * 1000:7.0f} ms[/cyan]  caller → {sent}"


def _turn_line(turn: TurnReport) -> str:
    at = turn.started_at * 1000 + turn.duration_ms
    parts = [f"[cyan]{at:7.0f} ms[/cyan]  server ← {turn.sent}:"]
    if not turn.ok:
        parts.append(f"[red]{turn.code}: {turn.details}[/red]")
    if turn.events:
        parts.append(", ".join(turn.events))
    if turn.texts:
        parts.append("[italic]“" + _short(" / ".join(turn.texts), 60) + "”[/italic]")
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
        Path, typer.Option("--output", "-o", help="Where to write the bot's audio (WAV).")
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
        console.print(f"bot audio written to [bold]{result.output}[/bold]")
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

    env = await start_demo_environment(
        host=host, port=port, audio_mode=audio_mode, transport=transport
    )
    try:
        sys.stdout.write(json.dumps(env.describe()) + "\n")
        sys.stdout.flush()
        await _until_signalled(env.server)
    finally:
        await env.aclose()


async def _until_signalled(server: Any) -> None:
    import signal

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # non-POSIX
            loop.add_signal_handler(sig, stop.set)
    await stop.wait()


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
) -> None:
    """Run your media server app (its other settings come from WEBEX_MEDIA_* variables)."""
    _need_media()
    if reload:
        from ._reload import child_command, run_with_reload, watch_roots

        roots = watch_roots(target)
        options = {
            "--host": host,
            "--port": port,
            "--tls-cert": tls_cert,
            "--tls-key": tls_key,
            "--tls-client-ca": tls_client_ca,
            "--transport": transport,
            "--ws-port": ws_port,
        }
        raise typer.Exit(run_with_reload(child_command(target, options), roots))
    from ._serve import apply_overrides, load_app

    server = load_app(target)
    apply_overrides(
        server,
        {
            "host": host,
            "port": port,
            "tls_cert_file": tls_cert,
            "tls_key_file": tls_key,
            "tls_client_ca_file": tls_client_ca,
            "transport": transport,
            "ws_port": ws_port,
        },
    )
    _run(_serve_app(server, target))


async def _serve_app(server: Any, target: str) -> None:
    await server.start()
    config = server.config
    try:
        # One parseable line on stderr: tools (and our tests) read the bound address from it.
        # gRPC (or both): "on host:port ..."; WebSocket only: "on ws://host:port ..."
        grpc_on = config.transport != "websocket"
        where = server.address if grpc_on else server.ws_url
        if config.transport == "both":
            where += f" and {server.ws_url}"
        secure = config.tls if grpc_on else config.ws_tls
        Console(stderr=True, highlight=False).print(
            f"serving {target} on {where} "
            f"({'TLS' if secure else 'plaintext'}, tokens "
            f"{'verified' if config.verify_tokens else 'NOT verified'}); Ctrl-C to stop",
            markup=False,
            soft_wrap=True,
        )
        await _until_signalled(server)
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
    calls: Annotated[int, typer.Option("--calls", help="Number of calls (load test).")] = 1,
    rate: Annotated[float, typer.Option("--rate", help="New calls per second (load test).")] = 1.0,
    base_url: Annotated[
        str | None, typer.Option("--base-url", help="Webex/emulator base URL for --mint-token.")
    ] = None,
    transport: Annotated[
        str, typer.Option("--transport", help="grpc or websocket (BYOVA over WebSocket).")
    ] = "grpc",
    as_json: JsonOut = False,
) -> None:
    """Place simulated Webex calls against any BYOVA server; with --calls N, a load test."""
    _need_media()
    from ..media import assets
    from ._call import CallScript, parse_target, parse_ws_target

    wire = _transport(transport)
    target = parse_ws_target(target) if wire == "websocket" else parse_target(target)
    wav_bytes = wav.read_bytes() if wav is not None else assets.load("speech_hello.wav")
    script = CallScript(
        wav=wav_bytes, utterances=turns, dtmf=tuple(dtmf or ()), hang_up=not no_hangup
    )
    if token is not None and mint_token is not None:
        raise typer.BadParameter("pass --token or --mint-token, not both")
    if mint_token is not None:
        token = _mint(mint_token, base_url)
    if org is None:
        org = _token_org(token) if wire == "websocket" else None
    org = org or "org-simulated"
    out = Renderer(as_json=as_json)
    if calls <= 1:
        report: CallReport = _run(
            _simulate_one(target, token, agent, org, script, not fast, as_json, wire)
        )
        if as_json:
            out.json(report.to_json())
        else:
            _print_call(report)
        if not report.ok:
            raise typer.Exit(1)
        return
    stats: LoadStats = _run(
        _simulate_load(target, token, agent, org, script, not fast, calls, rate, as_json, wire)
    )
    data = stats.to_json()
    if as_json:
        out.json(data)
    else:
        _print_load(data)
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
    transport: str = "grpc",
) -> Any:
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
    )


async def _simulate_one(
    target: str,
    token: str | None,
    agent: str,
    org: str,
    script: Any,
    realtime: bool,
    quiet: bool,
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

    async with _caller(target, token, agent, org, realtime, transport=transport) as caller:
        return await run_call(caller, script, observe=show, on_send=send)


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

    with progress:
        return await run_load(
            lambda n: _caller(target, token, agent, org, realtime, n, transport),
            script,
            calls=calls,
            rate=rate,
            on_update=update,
        )


def _print_call(report: CallReport) -> None:
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


def _print_load(data: dict[str, Any]) -> None:
    console = Console(highlight=False)
    lat = data["latency_ms"]
    table = Table(title="Load test", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value")
    rows = [
        ("calls", f"{data['completed']}/{data['calls']} completed, {data['failed']} failed"),
        ("peak concurrent calls", str(data["peak_concurrency"])),
        ("turns", f"{data['turns']} ({data['turn_errors']} errors)"),
        ("turn latency p50/p95/p99", f"{lat['p50']} / {lat['p95']} / {lat['p99']} ms"),
        ("late caller frames", f"{data['late_frames']} of {data['frames_sent']}"),
        ("outcomes", json.dumps(data["outcomes"])),
        ("duration", f"{data['duration_s']} s"),
    ]
    for key, value in rows:
        table.add_row(key, value)
    for err, count in data["errors"].items():
        table.add_row("error", f"{count} x {err}")
    console.print(table)
