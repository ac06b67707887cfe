"""Adapters between the proxy's messages and what a backend speaks on its WebSocket.

An adapter turns each :data:`~webex_byova.media.proxy._protocol.OutboundMessage` into zero or
more WebSocket frames and each received frame into zero or more inbound messages. The connector
creates one adapter per conversation (adapters may keep per-call state such as sequence
numbers), so ``adapter=`` takes a factory: the adapter class itself, or any callable.

* :class:`JsonAdapter` (default) speaks the documented webex_byova proxy protocol.
* :class:`TwilioMediaStreamsAdapter` speaks a Twilio-Media-Streams-like dialect (``connected``,
  ``start``, ``media``, ``dtmf``, ``mark``, ``stop``) for bots written against that format.

Adapters are sans-IO and must not raise on bad input: they return
:class:`~webex_byova.media.proxy._protocol.InvalidMessage` or
:class:`~webex_byova.media.proxy._protocol.UnknownMessage` instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol, runtime_checkable

from .. import audio as _audio
from ._protocol import (
    AudioChunk,
    AudioEnd,
    AudioFrame,
    ClientEvent,
    Dtmf,
    EndSession,
    InboundMessage,
    InvalidMessage,
    OutboundMessage,
    SessionEnded,
    SessionStarted,
    Transfer,
    UnknownMessage,
    decode_inbound,
    encode_message,
)

__all__ = [
    "AdapterFactory",
    "Decoded",
    "JsonAdapter",
    "ProxyAdapter",
    "TwilioMediaStreamsAdapter",
]

#: What an adapter returns for one received frame.
Decoded = InboundMessage | UnknownMessage | InvalidMessage
Frame = str | bytes


@runtime_checkable
class ProxyAdapter(Protocol):
    """Translates one conversation's messages to and from the backend's wire format."""

    def encode(self, message: OutboundMessage) -> Sequence[Frame]:
        """Frames to send for ``message`` (may be empty: the message is not forwarded)."""
        ...

    def decode(self, frame: Frame) -> Sequence[Decoded]:
        """Messages carried by one received frame. Must not raise."""
        ...


#: Builds a fresh adapter for each conversation (e.g. the adapter class).
AdapterFactory = Callable[[], ProxyAdapter]


class JsonAdapter:
    """The webex_byova JSON protocol (``docs/proxy-protocol.md``): one message per text frame."""

    def encode(self, message: OutboundMessage) -> Sequence[Frame]:
        """One JSON text frame."""
        return (encode_message(message),)

    def decode(self, frame: Frame) -> Sequence[Decoded]:
        """One message per frame (binary frames are invalid in this protocol)."""
        if isinstance(frame, bytes):
            return (InvalidMessage(error="binary frames are not part of the JSON protocol"),)
        return (decode_inbound(frame),)


def _dumps(data: dict[str, Any]) -> str:
    return json.dumps(data, separators=(",", ":"))


class TwilioMediaStreamsAdapter:
    """A Twilio-Media-Streams-like dialect.

    To the backend: ``connected`` then ``start`` (``callSid`` = conversation id, ``accountSid``
    = org id, ``customParameters`` = agent, language, metadata, ``resumed``), ``media`` per caller
    frame (8 kHz µ-law base64; other encodings are converted), ``dtmf`` per key, ``mark`` named
    after each client event (``end_of_input`` …), ``stop`` at the end.

    From the backend: ``media`` -> streamed reply audio (8 kHz µ-law); ``mark`` -> the streamed
    reply is complete; ``clear`` is ignored (barge-in is decided by Webex); the extensions
    ``{"event": "transfer", "text": ...}`` and ``{"event": "hangup", "text": ...}`` transfer or
    end the call. Anything else is reported as unknown.
    """

    def __init__(self) -> None:
        self.stream_sid = "MZ" + uuid.uuid4().hex
        self._seq = 0
        self._chunk = 0
        self._timestamp_ms = 0.0
        self._connected = False

    def _next(self) -> str:
        self._seq += 1
        return str(self._seq)

    def _envelope(self, event: str, **body: Any) -> str:
        return _dumps(
            {"event": event, "sequenceNumber": self._next(), "streamSid": self.stream_sid, **body}
        )

    def encode(self, message: OutboundMessage) -> Sequence[Frame]:
        """Frames for one message (see the class docstring)."""
        if isinstance(message, AudioFrame):
            ulaw = _audio.to_webex_ulaw(
                message.audio, encoding=message.encoding, sample_rate=message.sample_rate
            )
            self._chunk += 1
            media = {
                "track": "inbound",
                "chunk": str(self._chunk),
                "timestamp": str(int(self._timestamp_ms)),
                "payload": base64.b64encode(ulaw).decode("ascii"),
            }
            self._timestamp_ms += len(ulaw) / 8
            return (self._envelope("media", media=media),)
        if isinstance(message, SessionStarted):
            frames: list[Frame] = []
            if not self._connected:
                self._connected = True
                frames.append(
                    _dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})
                )
            params = {
                "agentId": message.agent_id,
                "language": message.language,
                "resumed": str(message.resumed).lower(),
                **{str(k): str(v) for k, v in message.metadata.items()},
            }
            start = {
                "streamSid": self.stream_sid,
                "accountSid": message.org_id,
                "callSid": message.conversation_id,
                "tracks": ["inbound"],
                "customParameters": params,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            }
            frames.append(self._envelope("start", start=start))
            return frames
        if isinstance(message, Dtmf):
            return tuple(
                self._envelope("dtmf", dtmf={"track": "inbound_track", "digit": d})
                for d in message.digits
            )
        if isinstance(message, ClientEvent):
            name = message.event_name if message.name == "custom_event" else message.name
            return (self._envelope("mark", mark={"name": name or message.name}),)
        if isinstance(message, SessionEnded):
            stop = {"accountSid": "", "callSid": "", "reason": message.reason}
            return (self._envelope("stop", stop=stop),)
        return ()

    def decode(self, frame: Frame) -> Sequence[Decoded]:
        """Messages carried by one backend frame (see the class docstring)."""
        try:
            data = json.loads(frame)
        except (ValueError, UnicodeDecodeError) as exc:
            return (InvalidMessage(error=f"not JSON: {exc}"),)
        if not isinstance(data, dict) or not isinstance(data.get("event"), str):
            return (InvalidMessage(error="expected an object with a string 'event'"),)
        event = data["event"]
        if event == "media":
            media = data.get("media")
            payload = media.get("payload") if isinstance(media, dict) else None
            if not isinstance(payload, str):
                return (InvalidMessage(error="media without a payload"),)
            try:
                ulaw = base64.b64decode(payload, validate=True)
            except (binascii.Error, ValueError):
                return (InvalidMessage(error="media payload is not base64"),)
            return (AudioChunk(audio=ulaw, encoding="MULAW", sample_rate=8000),)
        if event == "mark":
            return (AudioEnd(),)
        text = data.get("text")
        text = text if isinstance(text, str) else ""
        if event == "transfer":
            return (Transfer(text=text, reason=str(data.get("reason", ""))),)
        if event == "hangup":
            return (EndSession(text=text),)
        return (UnknownMessage(type=event, data=data),)
