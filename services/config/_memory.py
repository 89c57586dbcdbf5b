"""The ``memory:`` section: which recent turns a device's next session starts with, and where they live.

Kept in its own room so the section can move into the settings model as one piece.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any
from urllib.parse import urlparse

Check = Callable[[Any], Any]
MAX_PUSH_INTERVAL = 0.5  # seconds: a turn must reach Redis within 1 s while the daemon runs


class MemoryBackend(StrEnum):
    """Where a device's recent turns are read from at session start."""

    LOCAL = "local"  # this host's spool
    REDIS = "redis"  # a Redis shared by the fleet, with this host's spool as the fallback


@dataclass(frozen=True)
class MemorySettings:
    """Conversation memory: the recent turns a device's next session starts with."""

    enabled: bool = True
    backend: MemoryBackend = MemoryBackend.LOCAL
    ttl_hours: float = 24.0
    max_turns: int = 20
    max_chars: int = 4000
    read_timeout_ms: int = 150
    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "voicelog:mem"
    redis_timeout_ms: int = 100
    push_interval: float = 0.5

    @property
    def ttl_ms(self) -> int:
        """The TTL in milliseconds."""
        return int(self.ttl_hours * 3_600_000)

    @property
    def uses_redis(self) -> bool:
        """Memory is on and kept in Redis."""
        return self.enabled and self.backend is MemoryBackend.REDIS


def parse_backend(value: Any) -> MemoryBackend:
    """``memory.backend`` from the file or the environment."""
    try:
        return MemoryBackend(value)
    except ValueError:
        raise ValueError(f"must be one of {', '.join(b.value for b in MemoryBackend)}; got {value!r}") from None


def parse_redis_url(value: Any) -> str:
    """``memory.redis_url``: a URL redis-py understands."""
    if not isinstance(value, str) or urlparse(value).scheme not in ("redis", "rediss", "unix"):
        raise ValueError(f"must be a redis://, rediss:// or unix:// URL, e.g. redis://127.0.0.1:6379/0; "
                         f"got {value!r}")
    return value


def parse_key_prefix(value: Any) -> str:
    """``memory.key_prefix``: the start of every Redis key voicelog writes."""
    if not isinstance(value, str) or not value or any(c in value for c in "{}*?[] \t\n"):
        raise ValueError(f"must be a non-empty name without spaces, braces or glob characters; got {value!r}")
    return value


def memory_checks(*, positive: Callable[[type], Check], boolean: Check) -> dict[str, Check]:
    """How each key of the section is checked (the number and boolean checks are the house's)."""

    def push_interval(value: Any) -> float:
        seconds = positive(float)(value)
        if seconds > MAX_PUSH_INTERVAL:
            raise ValueError(f"must be at most {MAX_PUSH_INTERVAL} (a turn reaches Redis within 1 s)")
        return seconds

    return {"enabled": boolean, "backend": parse_backend, "ttl_hours": positive(float),
            "max_turns": positive(int), "max_chars": positive(int), "read_timeout_ms": positive(int),
            "redis_url": parse_redis_url, "key_prefix": parse_key_prefix,
            "redis_timeout_ms": positive(int), "push_interval": push_interval}
