"""Server-wide settings of the BYOVA media server (:class:`MediaServerConfig`)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ._endpoint import (
    DEFAULT_COMPLETE_TIMEOUT_MS,
    DEFAULT_ENERGY_HANGOVER_MS,
    DEFAULT_MAX_SPEECH_MS,
    DEFAULT_MIN_SPEECH_MS,
    DEFAULT_RESUME_GRACE_MS,
    DEFAULT_TALKER_MARGIN_DB,
)

__all__ = [
    "DEFAULT_SCHEMA_ID",
    "DEFAULT_WS_SCHEMA_ID",
    "ENV_PREFIX",
    "ConversationStoreSpec",
    "MediaServerConfig",
    "parse_conversation_store",
]

ENV_PREFIX = "WEBEX_MEDIA_"
DEFAULT_SCHEMA_ID = "5397013b-7920-4ffc-807c-e8a3e0a18f43"
#: The BYOVA-over-WebSocket data-source schema (its tokens carry this schema id).
DEFAULT_WS_SCHEMA_ID = "a38a10b7-43e4-4676-a076-a7d6dce9387d"
MIN_CHUNK_BYTES = 100
MAX_CHUNK_BYTES = 64 * 1024
DTMF_KEYS = "0123456789*#ABCD"


class MediaServerConfig(BaseModel):
    """Validated server-wide settings for the BYOVA media server.

    Every field can be set from an environment variable named ``WEBEX_MEDIA_<FIELD>`` (upper
    case), e.g. ``WEBEX_MEDIA_PORT=50051`` or ``WEBEX_MEDIA_AUDIO_MODE=chunk``; list fields take
    comma-separated values. See :meth:`from_env`.

    gRPC wire defaults, from the protocol facts (docs/media-server.md, "Wire choices"):

    * ``realtime_pacing=False``: CHUNK audio goes out as soon as it exists. Webex buffers and
      paces playback itself (the WebSocket guide says so outright and NVIDIA's gRPC BYOVA
      adapter had to remove paced output for the same reason); pacing only adds latency and
      holds a turn open for the prompt's length. Barge-in does not need it: Webex stops
      playback when it gets START_OF_INPUT. Turn it on to keep a streamed prompt cuttable
      server-side while the source is still producing.
    * ``boundary_response_type="FINAL"``: START_OF_INPUT and END_OF_INPUT go out as standalone
      event-only FINAL responses, the form Cisco's gateway uses against real Webex (so Webex
      keeps forwarding caller audio); ``CHUNK`` keeps the earlier non-FINAL form
      (``WEBEX_MEDIA_BOUNDARY_RESPONSE_TYPE=CHUNK``).
    * A turn's reply FINAL goes out as soon as the reply is complete, half-closed or not; the
      RPC is completed when Webex half-closes, ``half_close_timeout_s`` after the FINAL at the
      latest, and at once after a terminal (transfer / session end) response.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)

    # -- network ------------------------------------------------------------------------------
    host: str = Field("0.0.0.0", description="Interface to bind.")
    port: int = Field(50051, ge=0, le=65535, description="TCP port; 0 picks a free port.")
    tls_cert_file: Path | None = Field(None, description="PEM certificate chain (enables TLS).")
    tls_key_file: Path | None = Field(None, description="PEM private key for tls_cert_file.")
    tls_client_ca_file: Path | None = Field(
        None, description="PEM CA bundle for client certificates (mutual TLS)."
    )
    tls_require_client_cert: bool = Field(False, description="Reject clients without a cert.")
    reflection: bool = Field(False, description="Serve gRPC server reflection.")
    health_requires_auth: bool = Field(
        False, description="Also require a token for grpc.health.v1 (load balancers send none)."
    )

    # -- WebSocket transport (BYOVA over WebSocket: /v1/va and /v1/listVirtualAgents) ----------
    transport: Literal["grpc", "websocket", "both"] = Field(
        "grpc", description="Which front ends to run: gRPC, WebSocket or both (same handlers)."
    )
    ws_host: str = Field("0.0.0.0", description="Interface the WebSocket listener binds.")
    ws_port: int = Field(8765, ge=0, le=65535, description="WebSocket TCP port; 0 = free port.")
    ws_tls_cert_file: Path | None = Field(
        None, description="PEM certificate chain for wss:// (no mTLS on this transport)."
    )
    ws_tls_key_file: Path | None = Field(None, description="PEM private key for ws_tls_cert_file.")
    ws_expected_url: str | None = Field(
        None, description="Required data-source URL claim: the registered wss:// origin."
    )
    ws_expected_schema_id: str = Field(
        DEFAULT_WS_SCHEMA_ID, description="Required schema claim of WebSocket tokens."
    )
    ws_session_start_timeout_s: float = Field(
        10.0, gt=0, le=300, description="A socket without SESSION_START this long is closed."
    )
    ws_close_grace_s: float = Field(
        10.0,
        ge=0,
        le=300,
        description="After a terminal response or the caller's SESSION_END, wait this long "
        "for Webex to close the socket before closing it (1000).",
    )
    ws_max_message_bytes: int = Field(
        128 * 1024, ge=4096, le=16 * 1024 * 1024, description="Largest inbound text message."
    )
    ws_max_audio_bytes: int = Field(
        64 * 1024, ge=1024, le=8 * 1024 * 1024, description="Largest decoded caller audio."
    )
    ws_reply_chunk_bytes: int = Field(
        8000, ge=320, le=32000, description="Decoded bytes per outbound audio piece (1 s)."
    )
    ws_queue_size: int = Field(
        64, ge=4, le=10000, description="Outbound frames buffered per socket."
    )

    # -- audio ---------------------------------------------------------------------------------
    audio_mode: Literal["wav", "chunk"] = Field(
        "wav", description="wav: one FINAL with a WAV per reply; chunk: paced raw CHUNKs + FINAL."
    )
    sample_rate: int = Field(8000, description="Output sample rate in Hz.")
    chunk_ms: int = Field(80, ge=10, le=4000, description="Audio per outbound CHUNK in ms.")
    realtime_pacing: bool = Field(
        False,
        description="Pace CHUNKs at playback speed (off: send audio as soon as it exists; "
        "Webex buffers and paces playback itself).",
    )
    pacing_lead_ms: int = Field(
        200, ge=0, le=5000, description="How far CHUNK streaming may run ahead of playback."
    )
    input_sample_rate: int = Field(
        8000, description="Assumed caller sample rate when a frame does not say."
    )
    min_frame_bytes: int = Field(15, ge=0, description="Caller frames shorter than this dropped.")

    # -- caller input defaults (sent in input_handling_config) ------------------------------------
    input_mode: Literal["voice", "dtmf", "voice_dtmf"] = Field("voice_dtmf")
    barge_in: bool = Field(False, description="Default per-prompt barge-in.")
    dtmf_input_length: int = Field(1, ge=1, le=64)
    dtmf_inter_digit_timeout_ms: int = Field(3000, ge=0, le=60000)
    dtmf_terminator: str = Field("#", description="Key that ends DTMF collection ('' = none).")
    complete_timeout_ms: int = Field(
        int(DEFAULT_COMPLETE_TIMEOUT_MS),
        ge=50,
        le=60000,
        description="Silence after speech that ends the utterance.",
    )
    incomplete_timeout_ms: int = Field(0, ge=0, le=60000)
    max_speech_timeout_ms: int = Field(int(DEFAULT_MAX_SPEECH_MS), ge=500, le=600000)
    no_input_timeout_ms: int = Field(5000, ge=0, le=600000, description="0 = no timeout.")
    min_speech_ms: int = Field(
        int(DEFAULT_MIN_SPEECH_MS), ge=0, le=2000, description="Speech needed to start input."
    )
    boundary_response_type: Literal["FINAL", "CHUNK", "PARTIAL"] = Field(
        "FINAL",
        description="How gRPC sends START_OF_INPUT/END_OF_INPUT: FINAL = standalone event-only "
        "FINAL responses as Cisco's gateway does (Webex keeps forwarding caller audio); "
        "CHUNK/PARTIAL = non-FINAL responses, leaving the reply FINAL the RPC's only one.",
    )

    # -- end-pointing (webex_byova.media.vad.detector_from_config maps these) ------------------
    vad: Literal["auto", "silero", "energy", "webrtc"] = Field(
        "auto", description="Speech detector; auto = silero with the 'vad' extra, else energy."
    )
    vad_resume_grace_ms: int = Field(
        int(DEFAULT_RESUME_GRACE_MS),
        ge=0,
        le=5000,
        description="Speech resuming this soon after an end continues the turn (0 = off).",
    )
    vad_talker_margin_db: float | None = Field(
        DEFAULT_TALKER_MARGIN_DB,
        gt=0,
        le=60,
        description="Speech this far below the caller's level is a background talker ('' = off).",
    )
    vad_noise_window_ms: int = Field(
        2000, ge=100, le=60000, description="Window of the noise-floor tracker."
    )
    vad_energy_start_margin_db: float = Field(5.0, ge=0, le=40)
    vad_energy_continue_margin_db: float = Field(1.0, ge=0, le=40)
    vad_energy_min_level_dbfs: float = Field(-50.0, ge=-100, le=0)
    vad_energy_hangover_ms: int = Field(
        int(DEFAULT_ENERGY_HANGOVER_MS),
        ge=0,
        le=2000,
        description="Energy: speech still counts this long after a clearly loud frame.",
    )
    vad_webrtc_aggressiveness: int = Field(2, ge=0, le=3)
    vad_webrtc_gate_db: float = Field(3.0, ge=0, le=40)
    vad_silero_threshold: float = Field(0.5, gt=0, lt=1)
    vad_silero_release: float = Field(
        0.05, ge=0, lt=1, description="In speech the bar is threshold - release."
    )
    vad_silero_gate_db: float | None = Field(
        0.5, ge=0, le=40, description="Skip the model below noise + this ('' = never skip)."
    )
    vad_batch_ms: int = Field(
        20,
        ge=0,
        le=100,
        description="Silero with onnxruntime ('vadbatch' extra): score every conversation's "
        "audio in one model run per this many ms (0 = each conversation on its own, at once).",
    )

    # -- auth ----------------------------------------------------------------------------------
    verify_tokens: bool = Field(True, description="Verify every RPC's authorization JWS.")
    expected_url: str | None = Field(None, description="Required data-source URL claim.")
    expected_schema_id: str = Field(DEFAULT_SCHEMA_ID)
    expected_audience: str | None = None
    expected_org_id: str | None = None
    region: Literal["us", "eu"] = "us"
    extra_issuers: tuple[str, ...] = ()
    token_leeway_s: float = Field(30.0, ge=0, le=600)

    # -- agents & errors -------------------------------------------------------------------------
    agents: tuple[str, ...] = Field((), description="Virtual agent ids ('id' or 'id=Name').")
    error_response: Literal["prompt", "custom_event"] = "prompt"
    error_prompt_text: str = "Sorry, something went wrong. Please try again."
    end_call_on_error: bool = False
    handler_timeout_s: float = Field(
        20.0,
        ge=0,
        description="A turn whose reply is not requested this long after its input was "
        "dispatched is answered as a handler error (0 = no timeout).",
    )

    # -- limits & lifecycle ----------------------------------------------------------------------
    max_conversations: int = Field(1000, ge=1)
    max_rpcs_per_conversation: int = Field(4, ge=1, le=64)
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=64 * 1024, le=64 * 1024 * 1024)
    max_utterance_ms: int = Field(60000, ge=1000, description="Utterance audio kept per turn.")
    response_queue_size: int = Field(64, ge=4, le=10000)
    idle_timeout_s: float = Field(900.0, gt=0, description="Idle conversations expire.")
    half_close_timeout_s: float = Field(
        5.0,
        gt=0,
        description="gRPC: the FINAL goes out when the reply is complete; the RPC is then "
        "completed when Webex half-closes, or this long after the FINAL at the latest.",
    )
    keepalive_time_s: float = Field(
        30.0,
        gt=0,
        description="HTTP/2 keepalive: ping a connection idle this long (dead peers are found).",
    )
    keepalive_timeout_s: float = Field(
        10.0, gt=0, description="HTTP/2 keepalive: drop a connection whose ping is unanswered."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"

    # -- production operation ----------------------------------------------------------------
    reuse_port: bool = Field(
        False,
        description="Bind with SO_REUSEPORT so several processes share the port (workers).",
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Serve Prometheus /metrics on this port (None = off)."
    )
    conversation_store: str | None = Field(
        None,
        description="Where conversation records live: 'memory' (default) or a redis:// URL.",
        repr=False,  # a redis URL may hold a password
    )
    drain_timeout_s: float = Field(
        30.0,
        ge=0,
        description="Graceful drain (SIGTERM): live conversations may continue this long "
        "while new ones are refused; what is still live then gets drain_action.",
    )
    drain_action: Literal["transfer_to_agent", "end_session"] = Field(
        "transfer_to_agent",
        description="How a conversation still live when the drain times out is ended: "
        "handed to a human agent (default) or ended with SESSION_END.",
    )

    @field_validator("conversation_store")
    @classmethod
    def _store_url(cls, value: str | None) -> str | None:
        if value is not None:
            parse_conversation_store(value)
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("sample_rate", "input_sample_rate")
    @classmethod
    def _rate(cls, value: int) -> int:
        if value not in (8000, 16000):
            raise ValueError(f"must be 8000 or 16000 Hz, got {value}")
        return value

    @field_validator("dtmf_terminator")
    @classmethod
    def _terminator(cls, value: str) -> str:
        value = value.strip().upper()
        if value and (len(value) != 1 or value not in DTMF_KEYS):
            raise ValueError(f"must be one DTMF key of {DTMF_KEYS!r} or empty, got {value!r}")
        return value

    @field_validator("expected_url")
    @classmethod
    def _url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError(f"must be an http(s) URL, got {value!r}")
        return value

    @field_validator("ws_expected_url")
    @classmethod
    def _ws_url(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, sep, rest = value.partition("://")
        if scheme not in ("wss", "ws") or not sep or not rest or any(c in rest for c in "/?#@"):
            raise ValueError(f"must be a bare wss:// origin (no path), got {value!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MediaServerConfig:
        if (self.tls_cert_file is None) != (self.tls_key_file is None):
            raise ValueError("tls_cert_file and tls_key_file must be set together")
        if self.tls_client_ca_file is not None and self.tls_cert_file is None:
            raise ValueError("tls_client_ca_file (mutual TLS) needs tls_cert_file/tls_key_file")
        if self.tls_require_client_cert and self.tls_client_ca_file is None:
            raise ValueError("tls_require_client_cert needs tls_client_ca_file")
        if (self.ws_tls_cert_file is None) != (self.ws_tls_key_file is None):
            raise ValueError("ws_tls_cert_file and ws_tls_key_file must be set together")
        if self.transport != "grpc" and self.sample_rate != 8000:
            raise ValueError("the WebSocket transport carries 8 kHz µ-law only: sample_rate=8000")
        if self.vad_silero_release >= self.vad_silero_threshold:
            raise ValueError("vad_silero_release must be below vad_silero_threshold")
        if self.vad_energy_continue_margin_db > self.vad_energy_start_margin_db:
            raise ValueError(
                "vad_energy_continue_margin_db must not exceed vad_energy_start_margin_db"
            )
        if not MIN_CHUNK_BYTES <= self.chunk_bytes <= MAX_CHUNK_BYTES:
            raise ValueError(
                f"chunk_ms={self.chunk_ms} gives {self.chunk_bytes} bytes per chunk; Webex "
                f"accepts {MIN_CHUNK_BYTES}..{MAX_CHUNK_BYTES}"
            )
        return self

    @property
    def chunk_bytes(self) -> int:
        """Raw µ-law bytes per outbound chunk (one byte per sample at ``sample_rate``)."""
        return self.sample_rate * self.chunk_ms // 1000

    @property
    def ws_tls(self) -> bool:
        """Whether the WebSocket listener uses TLS (``wss://``)."""
        return self.ws_tls_cert_file is not None

    @property
    def tls(self) -> bool:
        """Whether the server listens with TLS."""
        return self.tls_cert_file is not None

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> MediaServerConfig:
        """Build configuration from ``WEBEX_MEDIA_*`` environment variables.

        ``overrides`` win over the environment. Invalid values raise :class:`ValueError` naming
        the environment variable.
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        sources: dict[str, str] = {}
        for name, info in cls.model_fields.items():
            key = ENV_PREFIX + name.upper()
            raw = env.get(key)
            if raw is None:
                continue
            sources[name] = key
            if info.annotation == tuple[str, ...]:
                values[name] = tuple(p.strip() for p in raw.split(",") if p.strip())
            elif raw.strip() == "" and name in _NULLABLE:
                values[name] = None
            else:
                values[name] = raw.strip()
        values.update(overrides)
        try:
            return cls(**values)
        except ValidationError as exc:
            problems = []
            for err in exc.errors():
                field = str(err["loc"][0]) if err["loc"] else ""
                where = sources.get(field, field) if field not in overrides else field
                problems.append(f"{where or 'config'}: {err['msg']}")
            raise ValueError("invalid media server configuration: " + "; ".join(problems)) from None


_NULLABLE = frozenset(
    {
        "tls_cert_file",
        "tls_key_file",
        "tls_client_ca_file",
        "expected_url",
        "expected_audience",
        "expected_org_id",
        "metrics_port",
        "conversation_store",
        "ws_tls_cert_file",
        "ws_tls_key_file",
        "ws_expected_url",
        "vad_talker_margin_db",
        "vad_silero_gate_db",
    }
)

DEFAULT_STORE_KEY_PREFIX = "webex_byova:conversation:"


@dataclass(frozen=True, slots=True)
class ConversationStoreSpec:
    """A parsed ``conversation_store`` setting (``WEBEX_MEDIA_CONVERSATION_STORE``).

    Attributes:
        kind: ``"memory"`` or ``"redis"``.
        url: The Redis URL without our own query parameters ('' for memory).
        key_prefix: Prefix of every Redis key (``?prefix=`` in the URL).
    """

    kind: Literal["memory", "redis"]
    url: str = ""
    key_prefix: str = DEFAULT_STORE_KEY_PREFIX

    def __repr__(self) -> str:
        parts = urlsplit(self.url)
        safe = self.url
        if parts.password:
            netloc = parts.netloc.rpartition("@")[2]
            user = parts.username or ""
            safe = urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))
        return (
            f"ConversationStoreSpec(kind={self.kind!r}, url={safe!r}, prefix={self.key_prefix!r})"
        )


def parse_conversation_store(value: str) -> ConversationStoreSpec:
    """Parse ``memory`` or ``redis[s]://[user:password@]host[:port][/db][?prefix=...]``.

    ``unix://`` socket URLs are accepted as Redis too. Raises :class:`ValueError` otherwise.
    """
    text = value.strip()
    if text in ("", "memory", "memory://"):
        return ConversationStoreSpec("memory")
    parts = urlsplit(text)
    if parts.scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            "conversation store must be 'memory' or a redis://, rediss:// or unix:// URL"
        )
    if parts.scheme != "unix" and not parts.hostname:
        raise ValueError("redis conversation store URL needs a host")
    query = parse_qs(parts.query, keep_blank_values=True)
    prefixes = query.pop("prefix", [])
    prefix = prefixes[-1] if prefixes else DEFAULT_STORE_KEY_PREFIX
    if not prefix:
        raise ValueError("conversation store prefix must not be empty")
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    url = urlunsplit(parts._replace(query=rest))
    return ConversationStoreSpec("redis", url, prefix)
