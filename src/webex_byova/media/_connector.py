"""The interface a proxy connector (e.g. the WebSocket proxy) implements."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .events import MediaEvent

__all__ = ["MediaConnector"]


@runtime_checkable
class MediaConnector(Protocol):
    """Receives every event a handler can receive, after the local handlers of that event.

    It acts through the same objects handlers use: ``event.turn`` (say/stream/finish/
    transfer_to_agent/end_session/end_input/set_input) and ``event.session`` (state,
    collect_input). An exception it raises is treated like a handler exception. Audio frames
    (``audio_input``) arrive in order, one at a time per RPC.
    """

    async def on_event(self, event: MediaEvent) -> None:
        """Handle one event."""
        ...

    async def aclose(self) -> None:
        """Release resources; called once when the server stops."""
        ...
