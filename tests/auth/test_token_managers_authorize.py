"""The browser authorization of the Integration manager, sync and async, pinned by the mutation
run (issue 17): what the timeout says, which scopes and which pending request are used, that
no browser is opened when told so, which loop the sync path stores on, where the redirect
listener listens, what it answers before the authorization request exists and to a request
line without a target when the redirect path is ``/``.

Real listeners on 127.0.0.1 and the in-process Webex emulator; the "browser" is an HTTP
client following the authorize URL to the listener.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
import webbrowser
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from webex_byova._flow import Portal
from webex_byova._http import HttpClient
from webex_byova._oauth import authorize_instructions
from webex_byova.credentials import IntegrationCredentials
from webex_byova.errors import AuthenticationError
from webex_byova.integration import IntegrationTokenManager
from webex_byova.storage import InMemoryTokenStorage
from webex_byova.testing import WebexEmulator
from webex_byova.tokens import OAuthToken

from .conftest import AuthRig
from .test_token_managers_mutation import PlainStore, _managers

AUTHORIZE_PATH = "/v1/authorize"
TOKEN_PATH = "/v1/access_token"


def _redirect_of(url: str) -> str:
    return parse_qs(urlsplit(url).query)["redirect_uri"][0]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening_on(port: int) -> set[str]:
    """The local addresses with a TCP socket listening on ``port`` (Linux ``/proc/net``)."""
    found: set[str] = set()
    for table, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].split(":")
            if fields[3] != "0A" or int(hex_port, 16) != port:  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            # /proc/net prints each 32-bit word in host (little-endian) order.
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            found.add(socket.inet_ntop(family, words))
    return found


def _browse(url: str) -> httpx.Response:
    """What a browser does: open the authorize URL and follow the redirect to the listener."""
    return httpx.get(url, follow_redirects=True, timeout=10)


async def _abrowse(url: str) -> httpx.Response:
    async with httpx.AsyncClient(follow_redirects=True, timeout=10) as client:
        return await client.get(url)


async def _aauthorize(
    integration: IntegrationTokenManager,
    browse: Callable[[str], Awaitable[httpx.Response]],
    **options: object,
) -> tuple[OAuthToken, httpx.Response]:
    """``aauthorize`` with ``browse`` as the browser; a browser that fails ends the
    authorization at once (instead of it waiting for its timeout) with the browser's error."""
    loop = asyncio.get_running_loop()
    browsers: list[asyncio.Task[httpx.Response]] = []

    async def guarded(url: str) -> httpx.Response:
        try:
            return await browse(url)
        except Exception:
            authorization.cancel()
            raise

    def on_url(url: str) -> None:
        browsers.append(loop.create_task(guarded(url)))

    authorization = loop.create_task(
        integration.aauthorize(open_browser=False, on_url=on_url, **options)  # type: ignore[arg-type]
    )
    try:
        token = await authorization
    except asyncio.CancelledError:
        await browsers[0]  # raises the browser's error
        raise
    return token, await browsers[0]


@pytest.fixture
def no_browser(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The machine's browser, recording each URL it is asked to open."""
    opened: list[str] = []

    def browser(url: str, *args: object, **kwargs: object) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", browser)
    return opened


# ----------------------------------------------------------------------------- timeout


def test_sync_authorize_times_out_naming_the_redirect(rig: AuthRig) -> None:
    urls: list[str] = []
    with pytest.raises(AuthenticationError) as info:
        rig.integration.authorize(open_browser=False, timeout=0.2, on_url=urls.append)
    assert str(info.value) == (
        f"authorization timed out: no redirect reached {_redirect_of(urls[0])} within 0.2s"
    )


async def test_async_authorize_times_out_naming_the_redirect(rig: AuthRig) -> None:
    urls: list[str] = []
    with pytest.raises(AuthenticationError) as info:
        await rig.integration.aauthorize(open_browser=False, timeout=0.2, on_url=urls.append)
    assert str(info.value) == (
        f"authorization timed out: no redirect reached {_redirect_of(urls[0])} within 0.2s"
    )


# ----------------------------------------------------------------------------- scopes, state,
# browser and portal


def test_sync_authorize_passes_scopes_keeps_its_request_and_uses_the_portal(
    emu: WebexEmulator, no_browser: list[str]
) -> None:
    """Scopes reach the authorize URL; the code is exchanged with the listener's own pending
    request even when another one was started meanwhile; ``open_browser=False`` opens none;
    the token is stored on the manager's portal."""
    http = HttpClient(emu.config())
    portal = Portal("test-authorize-portal")
    store = PlainStore()
    try:
        integration, _ = _managers(emu, http, store, portal)
        pages: list[httpx.Response] = []
        browsers: list[threading.Thread] = []

        def on_url(url: str) -> None:
            # A second authorization started meanwhile: the newest pending request.
            integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/other")
            thread = threading.Thread(target=lambda: pages.append(_browse(url)))
            browsers.append(thread)
            thread.start()

        token = integration.authorize(
            open_browser=False, timeout=30, scopes=["spark:kms"], on_url=on_url
        )
        for thread in browsers:
            thread.join(10)
        assert no_browser == []
        assert [page.status_code for page in pages] == [200]
        authorize = next(r for r in emu.requests if r.path == AUTHORIZE_PATH)
        assert authorize.query["scope"] == "spark:kms"
        assert store.tokens["integration"] == token
        assert store.names() == ["set_integration_token"]
        assert {loop for _, loop in store.calls} == {portal.loop}
    finally:
        portal.close()
        http.close()


async def test_async_authorize_passes_scopes_and_keeps_its_request(
    rig: AuthRig, no_browser: list[str]
) -> None:
    async def browse(url: str) -> httpx.Response:
        rig.integration.create_authorization_request(redirect_uri="http://127.0.0.1:9/other")
        return await _abrowse(url)

    token, page = await _aauthorize(
        rig.integration, browse, timeout=30, scopes=["spark:kms", "spark:all"]
    )
    assert page.status_code == 200
    assert no_browser == []
    authorize = next(r for r in rig.emu.requests if r.path == AUTHORIZE_PATH)
    assert authorize.query["scope"] == "spark:kms spark:all"
    assert await rig.storage.get_integration_token() == token


# ----------------------------------------------------------------------------- the listener


def test_sync_listener_on_a_fixed_port_answers_early_hits_not_found(emu: WebexEmulator) -> None:
    """With a fixed redirect port the listener takes that port as is; a request that reaches
    it before the authorization request exists (here: while the scopes are being read) gets
    the 404 page, and the authorization still completes."""
    port = _free_port()
    http = HttpClient(emu.config())
    try:
        creds = IntegrationCredentials(
            emu.integration.client_id,
            emu.integration.client_secret,
            redirect_uri=f"http://127.0.0.1:{port}/callback",
        )
        store = InMemoryTokenStorage()
        integration = IntegrationTokenManager(creds, http, store, clock=emu.clock.now)
        early: list[httpx.Response] = []

        def scopes() -> Iterator[str]:
            early.append(httpx.get(f"http://127.0.0.1:{port}/callback?code=c&state=s", timeout=10))
            yield "spark:kms"

        pages: list[httpx.Response] = []
        browsers: list[threading.Thread] = []
        listening: list[set[str]] = []

        def on_url(url: str) -> None:
            listening.append(_listening_on(port))
            thread = threading.Thread(target=lambda: pages.append(_browse(url)))
            browsers.append(thread)
            thread.start()

        token = integration.authorize(
            open_browser=False, timeout=30, scopes=scopes(), on_url=on_url
        )
        for thread in browsers:
            thread.join(10)
        assert [(r.status_code, r.content) for r in early] == [(404, b"not found")]
        assert [page.status_code for page in pages] == [200]
        authorize = next(r for r in emu.requests if r.path == AUTHORIZE_PATH)
        assert authorize.query["redirect_uri"] == f"http://127.0.0.1:{port}/callback"
        assert listening == [{"127.0.0.1"}]
        assert integration.get_stored_token() == token
    finally:
        http.close()


async def test_async_listener_on_a_fixed_port_listens_on_loopback_only(
    emu: WebexEmulator,
) -> None:
    port = _free_port()
    http = HttpClient(emu.config())
    try:
        creds = IntegrationCredentials(
            emu.integration.client_id,
            emu.integration.client_secret,
            redirect_uri=f"http://localhost:{port}/callback",
        )
        integration = IntegrationTokenManager(
            creds, http, InMemoryTokenStorage(), clock=emu.clock.now
        )
        listening: list[set[str]] = []

        async def browse(url: str) -> httpx.Response:
            listening.append(_listening_on(port))
            return await _abrowse(url)

        token, page = await _aauthorize(integration, browse, timeout=30)
        assert page.status_code == 200
        assert listening == [{"127.0.0.1"}]
        authorize = next(r for r in emu.requests if r.path == AUTHORIZE_PATH)
        assert authorize.query["redirect_uri"] == f"http://localhost:{port}/callback"
        assert await integration.aget_stored_token() == token
    finally:
        await http.aclose()


def test_sync_listener_with_port_zero_listens_on_loopback_only(rig: AuthRig) -> None:
    listening: list[set[str]] = []
    pages: list[httpx.Response] = []
    browsers: list[threading.Thread] = []

    def on_url(url: str) -> None:
        port = urlsplit(_redirect_of(url)).port
        assert port is not None
        listening.append(_listening_on(port))
        thread = threading.Thread(target=lambda: pages.append(_browse(url)))
        browsers.append(thread)
        thread.start()

    rig.integration.authorize(open_browser=False, timeout=30, on_url=on_url)
    for thread in browsers:
        thread.join(10)
    assert listening == [{"127.0.0.1"}]
    assert [page.status_code for page in pages] == [200]


async def test_async_listener_with_port_zero_listens_on_loopback_only(rig: AuthRig) -> None:
    listening: list[set[str]] = []

    async def browse(url: str) -> httpx.Response:
        port = urlsplit(_redirect_of(url)).port
        assert port is not None
        listening.append(_listening_on(port))
        return await _abrowse(url)

    _, page = await _aauthorize(rig.integration, browse, timeout=30)
    assert listening == [{"127.0.0.1"}]
    assert page.status_code == 200


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_without_a_browser_or_on_url_the_instructions_say_open_the_url(
    rig: AuthRig,
    mode: str,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """No browser was asked for: the printed instructions say to open the URL (not that
    opening a browser failed), and nothing is logged as a warning."""
    caplog.set_level(logging.INFO, logger="webex_byova.auth")
    if mode == "sync":
        with pytest.raises(AuthenticationError):
            rig.integration.authorize(open_browser=False, timeout=0.2)
    else:
        with pytest.raises(AuthenticationError):
            await rig.integration.aauthorize(open_browser=False, timeout=0.2)
    (record,) = [r for r in caplog.records if r.name == "webex_byova.auth"]
    assert record.levelname == "INFO"
    url, _, redirect = record.args  # type: ignore[misc]
    printed = capsys.readouterr().err
    assert printed == (
        authorize_instructions(url, redirect_uri=redirect, timeout=0.2, browser_opened=None) + "\n"
    )
    assert printed.startswith("Open this URL in a browser to authorize the Integration:\n")


# ----------------------------------------------------------------------------- a redirect to "/"

_NO_TARGET = b"GET\r\n\r\n"
_EMPTY_TARGET = b"GET  HTTP/1.1\r\n\r\n"


def _root_redirect_manager(emu: WebexEmulator, http: HttpClient) -> IntegrationTokenManager:
    creds = IntegrationCredentials(
        emu.integration.client_id,
        emu.integration.client_secret,
        redirect_uri="http://127.0.0.1:0/",
    )
    return IntegrationTokenManager(creds, http, InMemoryTokenStorage(), clock=emu.clock.now)


def _raw(url: str, data: bytes) -> bytes:
    """Send ``data`` to the listener of the authorize ``url`` and read its whole answer (the
    listener closes the connection after one answer)."""
    redirect = urlsplit(_redirect_of(url))
    assert redirect.hostname is not None
    assert redirect.port is not None
    with socket.create_connection((redirect.hostname, redirect.port), timeout=10) as sock:
        sock.sendall(data)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
        return answer


async def _araw(url: str, data: bytes) -> bytes:
    redirect = urlsplit(_redirect_of(url))
    reader, writer = await asyncio.open_connection(redirect.hostname, redirect.port)
    try:
        writer.write(data)
        return await reader.read()
    finally:
        writer.close()
        await writer.wait_closed()


def test_sync_listener_on_the_root_path_ignores_a_request_line_without_target(
    emu: WebexEmulator,
) -> None:
    """The redirect path is ``/``: a request line without a target is not the redirect (the
    stdlib server refuses it with its own 400 page before our handler runs; with an empty
    target it takes ``HTTP/1.1`` for the target, which gets the 404 page), and the real
    redirect still completes the authorization."""
    http = HttpClient(emu.config())
    try:
        integration = _root_redirect_manager(emu, http)
        answers: list[bytes] = []
        pages: list[httpx.Response] = []
        browsers: list[threading.Thread] = []

        def browse(url: str) -> None:
            answers.append(_raw(url, _NO_TARGET))
            answers.append(_raw(url, _EMPTY_TARGET))
            pages.append(_browse(url))

        def on_url(url: str) -> None:
            thread = threading.Thread(target=browse, args=(url,))
            browsers.append(thread)
            thread.start()

        token = integration.authorize(open_browser=False, timeout=30, on_url=on_url)
        for thread in browsers:
            thread.join(10)
        no_target, empty_target = answers
        # Both are HTTP/0.9 requests: the answer is a body alone, without a status line.
        assert b"<p>Error code: 400</p>" in no_target  # the stdlib's page, not ours
        assert empty_target == b"not found"
        assert [page.status_code for page in pages] == [200]
        assert urlsplit(str(pages[0].url)).path == "/"
        assert integration.get_stored_token() == token
    finally:
        http.close()


async def test_async_listener_on_the_root_path_answers_a_request_line_without_target_not_found(
    emu: WebexEmulator,
) -> None:
    """The redirect path is ``/``: a request line without a target (or with an empty one)
    gets the 404 page, not the 400 page of a state mismatch, and the authorization keeps
    waiting for the real redirect, which completes it."""
    from webex_byova.integration import _http_response

    http = HttpClient(emu.config())
    try:
        integration = _root_redirect_manager(emu, http)
        answers: list[bytes] = []

        async def browse(url: str) -> httpx.Response:
            answers.append(await _araw(url, _NO_TARGET))
            answers.append(await _araw(url, _EMPTY_TARGET))
            return await _abrowse(url)

        token, page = await _aauthorize(integration, browse, timeout=30)
        not_found = _http_response(404, b"not found")
        assert answers == [not_found, not_found]
        assert page.status_code == 200
        assert urlsplit(str(page.url)).path == "/"
        assert await integration.aget_stored_token() == token
    finally:
        await http.aclose()
