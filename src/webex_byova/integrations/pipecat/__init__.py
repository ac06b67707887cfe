"""A pipecat transport for BYOVA calls: ``pip install 'webex-byova-sdk[pipecat]'``.

:class:`BYOVATransport` binds one Webex conversation of a
:class:`~webex_byova.media.BYOVAMediaServer` to a pipecat pipeline through the server's public
handler API (the same on every BYOVA transport), so any pipecat bot becomes a Webex Contact
Center virtual agent. See ``docs/pipecat.md``.
"""

from __future__ import annotations

import warnings

from ..._optional import MissingExtraError

with warnings.catch_warnings():
    # pipecat's audio helpers import the stdlib audioop, deprecated on Python 3.11/3.12 (pipecat
    # installs audioop-lts from 3.13 on): not ours to fix, and fatal under ``-W error``.
    warnings.filterwarnings("ignore", "'audioop' is deprecated", DeprecationWarning)
    try:
        import pipecat.audio.utils  # noqa: F401
    except ImportError as exc:  # pragma: no cover - exercised only without the extra
        raise MissingExtraError("pipecat", "pipecat") from exc

from ._frames import BYOVATransferFrame
from ._replies import BotResponse, ResponseTracker
from ._transport import (
    TRANSPORT_EVENTS,
    BYOVAInputTransport,
    BYOVAOutputTransport,
    BYOVATransport,
    BYOVATransportParams,
)

__all__ = [
    "TRANSPORT_EVENTS",
    "BYOVAInputTransport",
    "BYOVAOutputTransport",
    "BYOVATransferFrame",
    "BYOVATransport",
    "BYOVATransportParams",
    "BotResponse",
    "ResponseTracker",
]
