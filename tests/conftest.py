"""Cross-area test configuration.

pytest-socket is configured in pyproject (``--allow-hosts``) so only loopback is reachable; the
``webex_emulator`` fixture comes from the SDK's own pytest plugin (a ``pytest11`` entry point).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import pytest

# `byova serve` and serve() drain on SIGTERM/SIGINT (live calls continue for
# WEBEX_MEDIA_DRAIN_TIMEOUT_S, default 30 s). Tests that stop a server under a call they left
# open want the immediate stop; the drain tests set their own timeout.
os.environ.setdefault("WEBEX_MEDIA_DRAIN_TIMEOUT_S", "0")

if TYPE_CHECKING:
    from webex_byova.media.server import BYOVAMediaServer
    from webex_byova.testing import WebexCaller


@pytest.fixture
async def caller_factory() -> AsyncIterator[Callable[..., WebexCaller]]:
    """Factory of Webex-side callers for a media server (unpaced by default), closed after."""
    from webex_byova.testing import WebexCaller

    callers: list[WebexCaller] = []

    def factory(server: BYOVAMediaServer, **kwargs: Any) -> WebexCaller:
        kwargs.setdefault("realtime", False)
        kwargs.setdefault("rpc_timeout", 20.0)
        caller = WebexCaller(server.address, **kwargs)
        callers.append(caller)
        return caller

    yield factory
    for caller in callers:
        await caller.aclose()
