"""Pipecat frames of the BYOVA transport (public in :mod:`webex_byova.integrations.pipecat`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipecat.frames.frames import DataFrame

__all__ = ["BYOVATransferFrame"]


@dataclass
class BYOVATransferFrame(DataFrame):
    """Hand the call to a human agent: Webex gets ``TRANSFER_TO_AGENT`` and the session ends.

    Push it downstream like any data frame: the output transport sends it after the audio
    queued before it. ``summary`` reaches the agent (``metadata.summary`` of the event and
    the session summary); ``text`` is an optional last prompt (Webex TTS); ``transcript``
    is kept as the session transcript; ``metadata`` is added to the event.

    Parameters:
        summary: What the agent should know about the call.
        text: Optional last prompt before the transfer.
        transcript: Optional session transcript.
        metadata: Extra event metadata.
        event_name: The output event's name.
    """

    summary: str = ""
    text: str | None = None
    transcript: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    event_name: str = "transfer_requested"
