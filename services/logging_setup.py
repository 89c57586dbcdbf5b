"""Configure structlog once: JSON lines in production, readable console on a terminal.

Defence in depth: known secrets are masked wherever they appear in a log line, and MACs
can be hashed. Chat content is never passed to a log call at INFO or above by our code.
"""

from __future__ import annotations

import hashlib
import logging
import sys
from collections.abc import Iterable
from typing import Any, TextIO

import structlog

from services.config import LoggingSettings

MASK = "***"


def _masker(secrets: Iterable[str]) -> structlog.types.Processor:
    values = [s for s in secrets if s]

    def mask(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        if not values:
            return event
        for key, value in event.items():
            if isinstance(value, str) and any(s in value for s in values):
                for secret in values:
                    value = value.replace(secret, MASK)
                event[key] = value
        return event

    return mask


def _mac_hasher(enabled: bool) -> structlog.types.Processor:
    def hash_mac(_: Any, __: str, event: dict[str, Any]) -> dict[str, Any]:
        if enabled and isinstance(event.get("mac"), str):
            event["mac"] = "mac-" + hashlib.sha256(event["mac"].encode()).hexdigest()[:12]
        return event

    return hash_mac


def configure_logging(settings: LoggingSettings, *, secrets: Iterable[str] = (),
                      stream: TextIO | None = None) -> None:
    """Set up structlog and route the standard library's logs (livekit's) through it."""
    stream = stream or sys.stderr
    as_json = settings.format == "json" or (settings.format == "auto" and not stream.isatty())
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _mac_hasher(settings.hash_macs),
        _masker(list(secrets)),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(ensure_ascii=False) if as_json
        else structlog.dev.ConsoleRenderer(colors=stream.isatty()))
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info,
                    structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        foreign_pre_chain=shared))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.level)
