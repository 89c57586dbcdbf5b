"""The closed choices among the settings, one enum each: code compares members, never strings.

Each is a ``StrEnum``, so a member equals its spelling in ``config.yaml`` and prints as it.
"""

from __future__ import annotations

from enum import StrEnum


class Durability(StrEnum):
    """What a captured turn survives once ``add_message`` has returned."""

    PROCESS = "process"  # any process crash (SQLite synchronous=NORMAL)
    POWER = "power"  # power loss too (fsync per turn)


class ApiMode(StrEnum):
    """Which Manager API endpoint turns are delivered to."""

    REPORT = "report"  # POST /agent/chat-history/report, one message per request
    SESSION = "session"  # POST /agent/chat-history/session, the whole session once it ends


class ReportTimeUnit(StrEnum):
    """The unit the Manager reads ``reportTime`` in."""

    MS = "ms"
    S = "s"


class LogLevel(StrEnum):
    """The lowest level of log events written."""

    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    """How log lines are rendered."""

    AUTO = "auto"  # readable on a terminal, JSON lines otherwise
    JSON = "json"
    CONSOLE = "console"


class MemoryBackend(StrEnum):
    """Where a device's recent turns are read from at session start."""

    LOCAL = "local"  # this host's spool
    REDIS = "redis"  # a Redis shared by the fleet, with this host's spool as the fallback
