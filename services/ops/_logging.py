"""Configure structlog once: JSON lines in production, readable console on a terminal.

Defence in depth, on top of our code never passing chat content or secrets to a log call:
- known secrets are masked in every rendered line, whatever field, traceback or library
  (livekit, aiohttp, paho) the text came from, where they stand as values (never the letters
  of another word: ``SecretMask``);
- fields that by name carry chat text (``content``, ``text``, ``transcript``...) are replaced
  by their length at INFO and above;
- MACs can be hashed.
Context bound with ``structlog.contextvars`` (``session_id``, ``seq``) lands on every line.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

from voicelog.services.config import LogFormat, LoggingSettings, Settings
from voicelog.services.domain import SecretMask

MASK = SecretMask.MASK
CHAT_FIELDS = frozenset({"content", "text", "transcript", "message_text", "user_text",
                         "agent_text", "chat_content"})
_QUIET_LEVELS = frozenset({"debug", "notset"})
# The ``extra`` fields of library log records kept in our lines: ids, counts and causes, never text.
LIBRARY_EXTRAS = ("error", "url", "retry_count", "max_retry", "pid", "job_id", "worker_id", "id", "agent_name",
                  "region", "elapsed_time", "timeout", "version", "rtc-version")
# The secrets the active configuration masks; extended by add_secrets() after start.
_secrets: set[str] = set()
_mask = SecretMask()


def settings_secrets(settings: Settings) -> list[str]:
    """Every secret value a configuration holds, for masking (the Redis URL's password too)."""
    from urllib.parse import urlsplit

    redis_password = urlsplit(settings.memory.redis_url).password or ""
    return [s.reveal() for s in (settings.manager_api.secret, settings.mqtt.password,
                                 settings.mqtt.command_key, settings.http.api_token) if s] + \
        ([redis_password] if redis_password else [])


def add_secrets(*values: str) -> None:
    """Mask these values too from now on (e.g. broker credentials learnt after start)."""
    global _mask
    fresh = {v for v in values if v} - _secrets
    if fresh:
        _secrets.update(fresh)
        _mask = SecretMask(_secrets)


def mask_text(text: str) -> str:
    """``text`` with every known secret (raw or JSON-escaped) that stands as a value replaced by ***."""
    return _mask.apply(text)


def _mask_line(_: Any, __: str, line: Any) -> Any:
    # Last in the chain: catches secrets in nested values, exceptions and foreign records.
    return mask_text(line) if isinstance(line, str) else line


def _hide_chat(_: Any, method: str, event: dict[str, Any]) -> dict[str, Any]:
    if str(event.get("level", method)).lower() in _QUIET_LEVELS:
        return event
    for key in CHAT_FIELDS.intersection(event):
        value = event[key]
        event[key] = f"<{len(value)} chars hidden>" if isinstance(value, str) else "<hidden>"
    return event


def _mac_hasher(enabled: bool) -> structlog.types.Processor:
    def hash_mac(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        if enabled and isinstance(event.get("mac"), str):
            event["mac"] = "mac-" + hashlib.sha256(event["mac"].encode()).hexdigest()[:12]
        return event

    return hash_mac


class _CurrentStderrHandler(logging.StreamHandler):
    """A stream handler bound to sys.stderr as it is when a line is written, not when it was made."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self) -> TextIO:  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, _value: TextIO) -> None:  # the base class assigns it once; sys.stderr wins
        pass


def configure_logging(settings: LoggingSettings, *, secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> None:
    """Set up structlog and route the standard library's logs (livekit's) through it."""
    global _mask
    _secrets.clear()
    _mask = SecretMask()
    add_secrets(*secrets)
    shown_on = stream or sys.stderr
    as_json = settings.format == LogFormat.JSON or (settings.format == LogFormat.AUTO and not _is_tty(shown_on))
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mac_hasher(settings.hash_macs),
        _hide_chat,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if as_json
        else structlog.dev.ConsoleRenderer(colors=_is_tty(shown_on)))
    structlog.configure(
        # Drop below-level events first, before any processor runs (capture logs at DEBUG).
        processors=[structlog.stdlib.filter_by_level, *shared, structlog.processors.format_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    # Without a given stream, write to whatever sys.stderr is at the time of the event, so that a
    # live view (rich's Live redirects stderr) prints log lines above itself instead of over it.
    handler = logging.StreamHandler(stream) if stream is not None else _CurrentStderrHandler()
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([structlog.processors.format_exc_info] if as_json else []),
                    renderer, _mask_line],
        # A library's ``extra`` fields hold its details (livekit puts the cause of a failed
        # connection there), but also what was said (livekit's "lk.pii.*"): only known ones pass.
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(allow=LIBRARY_EXTRAS), *shared]))
    logging.captureWarnings(True)  # a library's warnings become log lines too, not raw stderr text
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
