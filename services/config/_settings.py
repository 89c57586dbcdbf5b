"""Parse voicelog's configuration once into frozen, typed settings.

Sources, later ones winning: embedded defaults, the YAML file, environment variables.
Environment scheme: ``VOICELOG__<SECTION>__<KEY>`` (e.g. ``VOICELOG__MANAGER_API__SECRET``),
values read as YAML scalars; plus the xiaozhi-compatible ``MANAGER_API_URL`` and
``MANAGER_API_SECRET``. Every bad value fails with the key's name and what is allowed.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from voicelog.services.config._memory import MemorySettings, memory_checks
from voicelog.services.config._secret import Secret

ENV_PREFIX = "VOICELOG__"
CONFIG_ENV = "VOICELOG_CONFIG"
COMPAT_ENV = {"MANAGER_API_URL": ("manager_api", "url"), "MANAGER_API_SECRET": ("manager_api", "secret")}
# xiaozhi configs spell the block with a dash; accept it as the same section.
SECTION_ALIASES = {"manager-api": "manager_api", "chat-history": "chat_history"}


class ConfigError(ValueError):
    """A configuration value is missing, unknown or not allowed; the message names the key."""


@dataclass(frozen=True)
class ManagerApiSettings:
    """Where and how turns are delivered to the Manager API."""

    url: str = ""
    secret: Secret = field(default_factory=lambda: Secret(""))
    timeout: float = 5.0
    api_mode: str = "report"
    report_time_unit: str = "ms"
    max_content_chars: int = 1024
    agent_lookup: bool = False
    send_idempotency_key: bool = True


@dataclass(frozen=True)
class ChatHistorySettings:
    """How captured turns are batched, stored and kept on the edge box."""

    batch_size: int = 5
    send_interval: float = 30.0
    backup_dir: str = "backups"
    spool_path: str = ""  # empty: <backup_dir>/spool.db
    durability: str = "process"
    spool_max_mb: int = 1024
    retention_days: int = 7
    max_undelivered_days: int = 30
    opt_out_macs: tuple[str, ...] = ()
    prune_interval: float = 3600.0
    encrypt_content: bool = False
    encryption_keys_env: str = "VOICELOG_CONTENT_KEYS"
    encryption_keys_file: str = ""

    @property
    def spool_file(self) -> Path:
        """The spool database path, defaulting beside the backups."""
        return Path(self.spool_path) if self.spool_path else Path(self.backup_dir) / "spool.db"


@dataclass(frozen=True)
class ShipperSettings:
    """Delivery loop tuning: concurrency, retry timing and shutdown drain."""

    max_concurrent_sessions: int = 8
    poll_interval: float = 0.5
    retry_initial: float = 0.5
    retry_max: float = 30.0
    parked_retry_interval: float = 300.0
    auth_retry_interval: float = 30.0
    drain_timeout: float = 20.0
    reap_interval: float = 5.0


@dataclass(frozen=True)
class AgentSettings:
    """The LiveKit agent: models (LiveKit inference descriptors) and instructions."""

    agent_name: str = ""
    instructions: str = "You are a friendly, patient companion for a child. Keep answers short."
    stt: str = "deepgram/nova-3"
    llm: str = "openai/gpt-4.1-mini"
    tts: str = "cartesia/sonic-2"
    language: str = "en"


@dataclass(frozen=True)
class LoggingSettings:
    """Log level and rendering."""

    level: str = "INFO"
    format: str = "auto"
    hash_macs: bool = False


@dataclass(frozen=True)
class HttpSettings:
    """The local health and metrics endpoint, and the token that opens its /v1 routes."""

    listen: str = "127.0.0.1:9464"
    api_token: Secret = field(default_factory=lambda: Secret(""))


@dataclass(frozen=True)
class MqttSettings:
    """The optional MQTT fleet channel: retained status and signed commands."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = 1883
    username: str = ""
    password: Secret = field(default_factory=lambda: Secret(""))
    tls: bool = False
    ca_file: str = ""
    node_id: str = ""  # empty: the host name
    topic_prefix: str = "voicelog"
    command_key: Secret = field(default_factory=lambda: Secret(""))
    command_max_age: float = 60.0
    status_interval: float = 60.0


@dataclass(frozen=True)
class Settings:
    """All of voicelog's settings, parsed once at start and passed down."""

    manager_api: ManagerApiSettings = field(default_factory=ManagerApiSettings)
    chat_history: ChatHistorySettings = field(default_factory=ChatHistorySettings)
    shipper: ShipperSettings = field(default_factory=ShipperSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    http: HttpSettings = field(default_factory=HttpSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
    memory: MemorySettings = field(default_factory=MemorySettings)
    source: str = "<defaults>"


Check = Callable[[Any], Any]


def _positive(kind: type) -> Check:
    def check(value: Any) -> Any:
        number = _number(kind)(value)
        if number <= 0:
            raise ValueError("must be greater than 0")
        return number

    return check


def _non_negative(kind: type) -> Check:
    def check(value: Any) -> Any:
        number = _number(kind)(value)
        if number < 0:
            raise ValueError("must be 0 or more")
        return number

    return check


def _number(kind: type) -> Check:
    def check(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"must be a number, got {value!r}")
        if kind is int and value != int(value):
            raise ValueError(f"must be a whole number, got {value!r}")
        return kind(value)

    return check


def _one_of(*allowed: str) -> Check:
    def check(value: Any) -> str:
        if value not in allowed:
            raise ValueError(f"must be one of {', '.join(allowed)}; got {value!r}")
        return value

    return check


def _text(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise ValueError(f"must be a string, got {value!r}")
    return str(value)


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _secret(value: Any) -> Secret:
    return Secret(_text(value))


def _url(value: Any) -> str:
    text = _text(value).rstrip("/")
    if text and (urlparse(text).scheme not in ("http", "https") or not urlparse(text).netloc):
        raise ValueError("must be an http(s) URL with the context path, e.g. http://host:8002/xiaozhi")
    return text


def _mac_list(value: Any) -> tuple[str, ...]:
    from voicelog.services.domain import normalise_mac

    if value is None:
        return ()
    if not isinstance(value, list):
        raise ValueError("must be a list of MAC addresses")
    macs = []
    for item in value:
        mac = normalise_mac(str(item))
        if mac is None:
            raise ValueError(f"{item!r} is not a MAC address")
        macs.append(mac)
    return tuple(macs)


def _listen(value: Any) -> str:
    text = _text(value)
    if text and (":" not in text or not text.rsplit(":", 1)[1].isdigit()):
        raise ValueError("must be HOST:PORT, or empty to disable")
    return text


_CHECKS: dict[str, dict[str, Check]] = {
    "manager_api": {
        "url": _url, "secret": _secret, "timeout": _positive(float),
        "api_mode": _one_of("report", "session"), "report_time_unit": _one_of("ms", "s"),
        "max_content_chars": _positive(int), "agent_lookup": _boolean,
        "send_idempotency_key": _boolean,
    },
    "chat_history": {
        "batch_size": _positive(int), "send_interval": _positive(float), "backup_dir": _text,
        "spool_path": _text, "durability": _one_of("process", "power"),
        "spool_max_mb": _positive(int), "retention_days": _non_negative(int),
        "max_undelivered_days": _positive(int), "opt_out_macs": _mac_list,
        "prune_interval": _positive(float), "encrypt_content": _boolean,
        "encryption_keys_env": _text, "encryption_keys_file": _text,
    },
    "shipper": {
        "max_concurrent_sessions": _positive(int), "poll_interval": _positive(float),
        "retry_initial": _positive(float), "retry_max": _positive(float),
        "parked_retry_interval": _positive(float), "auth_retry_interval": _positive(float),
        "drain_timeout": _non_negative(float), "reap_interval": _positive(float),
    },
    "agent": {k: _text for k in ("agent_name", "instructions", "stt", "llm", "tts", "language")},
    "logging": {
        "level": _one_of("DEBUG", "INFO", "WARNING", "ERROR"),
        "format": _one_of("auto", "json", "console"), "hash_macs": _boolean,
    },
    "http": {"listen": _listen, "api_token": _secret},
    "mqtt": {
        "enabled": _boolean, "host": _text, "port": _positive(int), "username": _text,
        "password": _secret, "tls": _boolean, "ca_file": _text, "node_id": _text,
        "topic_prefix": _text, "command_key": _secret, "command_max_age": _positive(float),
        "status_interval": _positive(float),
    },
    "memory": memory_checks(positive=_positive, boolean=_boolean),
}


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> Settings:
    """Read the file (or ``$VOICELOG_CONFIG``, or embedded defaults) and the environment."""
    environ = os.environ if environ is None else environ
    chosen = path or environ.get(CONFIG_ENV)
    raw: dict[str, Any] = {}
    if chosen:
        raw = _read_yaml(Path(chosen))
    raw = _canonical_sections(raw)
    _apply_environment(raw, environ)
    return _build(raw, source=str(chosen) if chosen else "<defaults>")


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections")
    return data


def _canonical_sections(raw: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for name, body in raw.items():
        section = SECTION_ALIASES.get(name, name)
        if section not in _CHECKS:
            raise ConfigError(f"unknown section {name!r}{_suggest(name, _CHECKS)}")
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ConfigError(f"section {name!r} must be a mapping of keys")
        result.setdefault(section, {}).update(body)
    return result


def _apply_environment(raw: dict[str, Any], environ: Mapping[str, str]) -> None:
    for name, (section, key) in COMPAT_ENV.items():
        if name in environ:
            raw.setdefault(section, {})[key] = environ[name]
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX):
            continue
        parts = name[len(ENV_PREFIX):].lower().split("__")
        if len(parts) != 2:
            raise ConfigError(f"environment variable {name}: expected {ENV_PREFIX}<SECTION>__<KEY>")
        section, key = parts
        if section not in _CHECKS:
            raise ConfigError(f"environment variable {name}: unknown section {section!r}")
        raw.setdefault(section, {})[key] = _env_scalar(key, value)


def _env_scalar(key: str, value: str) -> Any:
    # Secrets and URLs stay strings verbatim; everything else reads like a YAML scalar.
    if key in ("secret", "url", "password", "command_key", "username", "api_token", "redis_url"):
        return value
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError:
        return value


def _build(raw: dict[str, Any], source: str) -> Settings:
    sections = {}
    for section, checks in _CHECKS.items():
        body = raw.get(section, {})
        values = {}
        for key, value in body.items():
            if key not in checks:
                raise ConfigError(f"unknown key {section}.{key}{_suggest(key, checks)}")
            try:
                values[key] = checks[key](value)
            except ValueError as exc:
                raise ConfigError(f"{section}.{key} {exc}") from None
        sections[section] = _SECTION_CLASSES[section](**values)
    settings = Settings(**sections, source=source)
    _cross_check(settings)
    return settings


def _cross_check(settings: Settings) -> None:
    shipper = settings.shipper
    if shipper.retry_max < shipper.retry_initial:
        raise ConfigError("shipper.retry_max must be at least shipper.retry_initial")
    if settings.manager_api.url and not settings.manager_api.secret:
        raise ConfigError("manager_api.secret is required when manager_api.url is set "
                          "(or set MANAGER_API_SECRET)")


def _suggest(name: str, known: Mapping[str, Any]) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"


_SECTION_CLASSES = {"manager_api": ManagerApiSettings, "chat_history": ChatHistorySettings,
                    "shipper": ShipperSettings, "agent": AgentSettings, "logging": LoggingSettings,
                    "http": HttpSettings, "mqtt": MqttSettings, "memory": MemorySettings}
