"""Every setting, declared once: its kind, default, limits and documentation in one ``Field``.

The checks (``_types`` and the limits below), the documented ``config.yaml`` (``_render``) and the
JSON schema (``Settings.model_json_schema()``) are all derived from these declarations. A field's
``description`` is the comment written above it in ``config.yaml``, line for line.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import MappingProxyType
from typing import Annotated
from urllib.parse import urlparse

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from voicelog.services.config._choices import (
    ApiMode,
    Durability,
    LogFormat,
    LogLevel,
    MemoryBackend,
    ReportTimeUnit,
)
from voicelog.services.config._types import (
    SECRET_MIN_CHARS,
    FilePath,
    Flag,
    Listen,
    MacList,
    Number,
    Secret,
    StrongSecret,
    Text,
    Url,
    VerbatimText,
    Whole,
    short_secret,
)


class _Frozen(BaseModel):
    """A settings value: immutable once parsed, and refusing keys it does not declare."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class ManagerApiSettings(_Frozen):
    """Where and how turns are delivered to the Manager API."""

    url: Url = Field("", description=(
        "Base URL of the Manager API including its context path, e.g. http://10.0.0.5:8002/xiaozhi\n"
        "(upstream) or http://10.0.0.5:8002/toy (toy fork). Empty: capture only, deliver nothing."))
    secret: StrongSecret = Field(Secret(""), description=(
        'Server secret sent as "Authorization: Bearer <secret>". Prefer MANAGER_API_SECRET in the\n'
        "environment (systemd EnvironmentFile) to keeping it here. Never printed or logged.\n"
        f"At least {SECRET_MIN_CHARS} characters (a shorter one is refused at start)."))
    timeout: Number = Field(5.0, gt=0, description="Seconds one request may take before it is retried.")
    api_mode: ApiMode = Field(ApiMode.REPORT, description=(
        "report: POST /agent/chat-history/report, one message per request (upstream).\n"
        "session: POST /agent/chat-history/session, the whole session once it ends (newer toy backend)."))
    report_time_unit: ReportTimeUnit = Field(ReportTimeUnit.MS, description=(
        'Unit of reportTime: "ms" for upstream since 2026-04-20, "s" for older upstream and the toy fork.'))
    max_content_chars: Whole = Field(1024, gt=0, description=(
        "Longest content one row can hold (VARCHAR(1024) in older schemas). Longer turns are sent\n"
        'as several rows in order, later ones marked "(cont. i/n)"; nothing is truncated.'))
    agent_lookup: Flag = Field(False, description=(
        "Look up the device's agent id (GET /agent/device/{mac}/agent-id, toy fork only) to enrich\n"
        "session uploads and warn early about unbound devices. Never gates capture or delivery."))
    send_idempotency_key: Flag = Field(True, description=(
        "Send an Idempotency-Key header (stable per turn, per upload in session mode)."))

    @model_validator(mode="after")
    def _secret_comes_with_the_url(self) -> ManagerApiSettings:
        if self.url and not self.secret:
            raise ValueError("manager_api.secret is required when manager_api.url is set "
                             "(or set MANAGER_API_SECRET)")
        return self


class ChatHistorySettings(_Frozen):
    """How captured turns are batched, stored and kept on the edge box."""

    batch_size: Whole = Field(5, gt=0, description=(
        "A session's waiting turns are sent when this many are pending ..."))
    send_interval: Number = Field(30.0, gt=0, description=(
        "... or when the oldest has waited this many seconds, or when the session ends."))
    backup_dir: FilePath = Field("backups", description=(
        "Per-session JSON backups: <backup_dir>/<YYYY-MM-DD>/<session id>.json. Every relative path in\n"
        "this file is relative to the folder of this file (with no config file: the current folder)."))
    spool_path: FilePath = Field("", description=(
        "The spool (SQLite, shared by all job processes). Empty: <backup_dir>/spool.db"))
    durability: Durability = Field(Durability.PROCESS, description=(
        "process: a captured turn survives any process crash (SQLite synchronous=NORMAL).\n"
        "power: it also survives power loss (fsync per turn; see docs/guarantees.md for the cost)."))
    spool_max_mb: Whole = Field(1024, gt=0, description=(
        "Size cap of the spool in MiB. When reached, new turns are held in memory (bounded) and\n"
        "counted as lost beyond that; stored turns are never evicted to make room."))
    retention_days: Whole = Field(7, ge=0, description=(
        "Delivered turns are removed from the spool and backups after this many days."))
    max_undelivered_days: Whole = Field(30, gt=0, description=(
        "Undelivered turns are removed after this many days (with warnings before)."))
    opt_out_macs: MacList = Field((), description=(
        "Devices whose chats are never stored anywhere (MACs, any common notation)."))
    prune_interval: Number = Field(3600.0, gt=0, description=(
        'Seconds between automatic prunes by the daemon (the same work as "backups prune").'))
    encrypt_content: Flag = Field(False, description=(
        "Encrypt chat content in the spool and backups (Fernet: AES-128-CBC + HMAC-SHA256)."))
    encryption_keys_env: Text = Field("VOICELOG_CONTENT_KEYS", description=(
        "Keys: comma-separated Fernet keys, the first encrypts, all decrypt (rotation: put the new\n"
        "key first). Read from the environment variable named here, else from the file below."))
    encryption_keys_file: FilePath = Field("", description=(
        "File holding the keys (comma- or line-separated) when that variable is unset or empty."))

    @property
    def spool_file(self) -> Path:
        """The spool database path, defaulting beside the backups."""
        return Path(self.spool_path) if self.spool_path else Path(self.backup_dir) / "spool.db"


class ShipperSettings(_Frozen):
    """Delivery loop tuning: concurrency, retry timing and shutdown drain."""

    max_concurrent_sessions: Whole = Field(8, gt=0, description=(
        "Sessions delivered concurrently (turns within a session always go one at a time, in order)."))
    poll_interval: Number = Field(0.5, gt=0, description=(
        "Seconds between looks at the spool for turns captured by other processes."))
    retry_initial: Number = Field(0.5, gt=0, description=(
        "Retry backoff: exponential with full jitter, from retry_initial up to retry_max seconds;\n"
        "a Retry-After from the Manager is honoured. There is no retry deadline."))
    retry_max: Number = Field(30.0, gt=0, description=(
        "Longest wait between two tries of a turn, in seconds (at least retry_initial)."))
    parked_retry_interval: Number = Field(300.0, gt=0, description=(
        "Seconds between retries of turns the Manager could not route (device not bound)."))
    auth_retry_interval: Number = Field(30.0, gt=0, description=(
        "Seconds between secret checks while the Manager refuses our secret (delivery paused)."))
    drain_timeout: Number = Field(20.0, ge=0, description=(
        "Seconds a stop (SIGTERM) may spend letting sessions end and flushing to the Manager."))
    reap_interval: Number = Field(5.0, gt=0, description=(
        "Seconds between checks for sessions whose job process died (their turns are then sealed)."))

    @model_validator(mode="after")
    def _backoff_grows(self) -> ShipperSettings:
        if self.retry_max < self.retry_initial:
            raise ValueError("shipper.retry_max must be at least shipper.retry_initial")
        return self


class PluginModel(_Frozen):
    """A model built from a LiveKit plugin package (livekit-plugins-<plugin>) with its options."""

    plugin: Text = Field(description="The plugin: openai -> livekit.plugins.openai (its STT, LLM or TTS class).")
    model: Text = Field("", description="The model name; empty = the plugin's default.")
    base_url: Text = Field("", description="Where the service answers, e.g. an OpenAI-compatible server.")
    api_key_env: Text = Field("", description="Environment variable holding the API key (never the key itself).")
    options: dict[str, bool | int | float | str] = Field(default_factory=dict, description=(
        "More keyword arguments for the plugin's class, e.g. {temperature: 0.7}."))

    @model_validator(mode="after")
    def _plugin_is_a_module_name(self) -> PluginModel:
        if not _PLUGIN_NAME.fullmatch(self.plugin):
            raise ValueError(f"plugin {self.plugin!r} must be a plugin's module name, e.g. openai or deepgram")
        return self


_PLUGIN_NAME = re.compile(r"[a-z][a-z0-9_]*")
_FACTORY = re.compile(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*")


def _factory_spec(value: str) -> str:
    if value and not _FACTORY.fullmatch(value):
        raise ValueError(f"{value!r} must be \"package.module:function\" (like gunicorn's module:app)")
    return value


ModelChoice = Text | PluginModel


class AgentSettings(_Frozen):
    """The LiveKit agent: your own (a factory) or the built-in one, its models and instructions."""

    agent_name: Text = Field("", description=(
        "LiveKit agent name for explicit dispatch; empty = automatic dispatch."))
    factory: Annotated[Text, AfterValidator(_factory_spec)] = Field("", description=(
        'Your own agent: "package.module:function", imported once per job process and called for\n'
        "each session with a FactoryContext (device identity, settings, remembered turns); it returns\n"
        "a livekit Agent or voicelog AgentParts (docs/own-agent.md). Empty = the built-in agent below."))
    instructions: Text = Field(
        "You are a friendly, patient companion for a child. Keep answers short.",
        description="The built-in agent's instructions (its system prompt).")
    stt: ModelChoice = Field("deepgram/nova-3", description=(
        'Speech-to-text: a LiveKit inference descriptor "provider/model" (credentials from LIVEKIT_URL,\n'
        'LIVEKIT_API_KEY, LIVEKIT_API_SECRET), "scripted" (no credentials: what simulate and talk use),\n'
        "or a plugin: {plugin: deepgram, model: nova-3, api_key_env: DEEPGRAM_API_KEY}."))
    llm: ModelChoice = Field("openai/gpt-4.1-mini", description=(
        "Language model, likewise; e.g. an OpenAI-compatible server:\n"
        "{plugin: openai, model: qwen2.5, base_url: http://10.0.0.7:8000/v1, api_key_env: LLM_KEY}"))
    tts: ModelChoice = Field("cartesia/sonic-2", description="Text-to-speech model, likewise.")
    language: Text = Field("en", description="Language of the conversations (a language code).")


class LoggingSettings(_Frozen):
    """Log level and rendering."""

    level: LogLevel = Field(LogLevel.INFO, description=(
        "DEBUG, INFO, WARNING or ERROR. Chat content is never logged at INFO or above."))
    format: LogFormat = Field(LogFormat.AUTO, description=(
        "auto: readable on a terminal, JSON lines otherwise; or force json / console."))
    hash_macs: Flag = Field(False, description="Replace MACs in logs with a short hash.")


class HttpSettings(_Frozen):
    """The local health and metrics endpoint, and the token that opens its /v1 routes."""

    listen: Listen = Field("127.0.0.1:9464", description=(
        "Local address for /healthz, /readyz and /metrics; empty disables it."))
    api_token: Secret = Field(Secret(""), description=(
        "Bearer token for the /v1 routes (device memory and sessions, for support staff and the\n"
        "console). Empty: the /v1 routes are off (404). Prefer VOICELOG__HTTP__API_TOKEN."))


class MqttSettings(_Frozen):
    """The optional MQTT fleet channel: retained status and signed commands."""

    enabled: Flag = Field(False, description=(
        "Fleet channel over the broker the toys already use (off by default)."))
    host: Text = Field("127.0.0.1", description="The broker's host name or address.")
    port: Whole = Field(1883, gt=0, description="The broker's port.")
    username: VerbatimText = Field("", description="Broker user name; empty = connect without credentials.")
    password: Secret = Field(Secret(""), description=(
        "Broker password; prefer VOICELOG__MQTT__PASSWORD in the environment. Never printed or logged."))
    tls: Flag = Field(False, description="TLS to the broker.")
    ca_file: FilePath = Field("", description=(
        "CA file the broker's certificate is checked against; empty = the system's trust store."))
    node_id: Text = Field("", description="This box's name in topics; empty = the host name.")
    topic_prefix: Text = Field("voicelog", description=(
        "Topics: <topic_prefix>/<node_id>/status (retained), .../cmd, .../cmd/result"))
    command_key: StrongSecret = Field(Secret(""), description=(
        "HMAC-SHA256 key that commands must be signed with; empty disables commands.\n"
        f"Prefer VOICELOG__MQTT__COMMAND_KEY in the environment. At least {SECRET_MIN_CHARS} characters."))
    command_max_age: Number = Field(60.0, gt=0, description=(
        "Seconds a signed command stays valid (older ones are refused as replays)."))
    status_interval: Number = Field(60.0, gt=0, description=(
        "Seconds between periodic status publications (also published on change)."))


MAX_PUSH_INTERVAL = 0.5  # seconds: a turn must reach Redis within 1 s while the daemon runs


def _redis_url(value: str) -> str:
    if urlparse(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError("must be a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/0")
    return value


def _key_prefix(value: str) -> str:
    if not value or any(c in value for c in "{}*?[] \t\n"):
        raise ValueError("must be a non-empty name without spaces, braces or glob characters")
    return value


class MemorySettings(_Frozen):
    """Conversation memory: the recent turns a device's next session starts with."""

    enabled: Flag = Field(True, description=(
        "Start each device session with its recent turns, word for word (what the child said and\n"
        "what the child heard of each reply). Sessions without a valid MAC and opted-out devices\n"
        "have no memory."))
    backend: MemoryBackend = Field(MemoryBackend.LOCAL, description=(
        "local: read from this host's spool. redis: a Redis shared by the fleet (a toy that\n"
        "reconnects to another host still remembers), with this host's spool as the fallback."))
    ttl_hours: Number = Field(24.0, gt=0, description=(
        "Turns older than this many hours are never preloaded (and expire from Redis)."))
    max_turns: Whole = Field(20, gt=0, description="At most this many of the newest turns ...")
    max_chars: Whole = Field(4000, gt=0, description=(
        "... and at most this many characters, dropping whole turns, oldest first."))
    read_timeout_ms: Whole = Field(150, gt=0, description=(
        "Budget for reading memory at session start; past it the session starts without memory."))
    redis_url: Annotated[VerbatimText, AfterValidator(_redis_url)] = Field(
        "redis://127.0.0.1:6379/0", description=(
            "The Redis for backend: redis (redis://[:password@]host:port/db, rediss://, unix://).\n"
            "Prefer VOICELOG__MEMORY__REDIS_URL when it holds a password."))
    key_prefix: Annotated[Text, AfterValidator(_key_prefix)] = Field("voicelog:mem", description=(
        "Start of every Redis key voicelog writes; keys name devices by a hash, never the MAC."))
    redis_timeout_ms: Whole = Field(100, gt=0, description=(
        "Connect and socket timeout per Redis call in ms (one retry), so a dead Redis fails fast."))
    push_interval: Number = Field(0.5, gt=0, le=MAX_PUSH_INTERVAL, description=(
        "Seconds between the daemon's pushes of newly sealed turns to Redis (at most 0.5)."))

    @property
    def ttl_ms(self) -> int:
        """The TTL in milliseconds."""
        return int(self.ttl_hours * 3_600_000)

    @property
    def uses_redis(self) -> bool:
        """Memory is on and kept in Redis."""
        return self.enabled and self.backend is MemoryBackend.REDIS


class AudioSettings(_Frozen):
    """The child's voice per turn, kept and sent as sound: off unless the operator asks for it."""

    enabled: Flag = Field(False, description=(
        "Keep what the child said in each user turn as a short Opus clip (cut from the audio the\n"
        "agent received) and send it as audioBase64 (16 kHz mono 16-bit WAV) on that turn's report.\n"
        "Off: no audio is teed, stored or sent. Children's voices: turn on only when asked to; the\n"
        "Manager keeps it only for agents with chat_history_conf 2. Session mode sends no audio."))
    replies: Flag = Field(False, description=(
        "Also keep the toy's reply audio as played (cut where the child interrupted it) and send it\n"
        "on the reply's report. Needs enabled."))
    max_seconds: Number = Field(30.0, gt=0, le=300, description=(
        "Longest clip kept per turn in seconds; a longer turn keeps its first max_seconds."))
    max_mb: Number = Field(200, gt=0, description=(
        "Total size of all clips on this box in MB; when full, new clips are skipped and counted\n"
        "(text capture is never affected). Delivered clips go with retention and purge."))
    margin_ms: Whole = Field(200, ge=0, le=2000, description=(
        "Audio kept before the child started and after the child stopped speaking, in ms."))
    ring_seconds: Number = Field(60.0, gt=0, le=600, description=(
        "Seconds of received audio held in memory per session to cut clips from (16 kHz mono:\n"
        "32 KB per second); must cover max_seconds plus the end-of-turn delay."))

    @model_validator(mode="after")
    def _ring_covers_clip(self) -> AudioSettings:
        if self.ring_seconds < self.max_seconds + 2 * self.margin_ms / 1000:
            raise ValueError("audio.ring_seconds must be at least max_seconds plus both margins")
        return self

    @property
    def max_bytes(self) -> int:
        """The clip cap in bytes."""
        return int(self.max_mb * 1024 * 1024)


class Settings(_Frozen):
    """All of voicelog's settings, parsed once at start and passed down."""

    manager_api: ManagerApiSettings = Field(default_factory=ManagerApiSettings)
    chat_history: ChatHistorySettings = Field(default_factory=ChatHistorySettings)
    shipper: ShipperSettings = Field(default_factory=ShipperSettings)
    agent: AgentSettings = Field(default_factory=AgentSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)
    mqtt: MqttSettings = Field(default_factory=MqttSettings)
    memory: MemorySettings = Field(default_factory=MemorySettings)
    audio: AudioSettings = Field(default_factory=AudioSettings)
    source: str = Field("<defaults>", description="The file these settings were read from, or <defaults>.")

    @model_validator(mode="after")
    def _clips_leave_room_for_text(self) -> Settings:
        # Clips live in the spool, so its cap covers them: they must never crowd text out.
        if self.audio.enabled and self.audio.max_mb > self.chat_history.spool_max_mb / 2:
            raise ValueError(f"audio.max_mb ({self.audio.max_mb:g}) must be at most half of "
                             f"chat_history.spool_max_mb ({self.chat_history.spool_max_mb}): clips share the "
                             "spool's cap and must leave room for text")
        return self

    def notices(self) -> list[str]:
        """Settings that are allowed but worth a warning at start, one line each."""
        found = []
        if short_secret(self.mqtt.password):
            # The broker's password is not ours to choose, so it is accepted, with this warning.
            found.append(f"mqtt.password is shorter than {SECRET_MIN_CHARS} characters: logs mask it only "
                         "where it stands as a whole word")
        return found


# The sections of config.yaml, in order: every field of Settings that is itself a settings value.
SECTIONS: MappingProxyType[str, type[_Frozen]] = MappingProxyType({
    name: field.annotation for name, field in Settings.model_fields.items()
    if isinstance(field.annotation, type) and issubclass(field.annotation, _Frozen)
})
