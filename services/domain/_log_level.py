"""A cheap "would this DEBUG line be kept?" for log calls on hot paths.

structlog drops a filtered DEBUG line only after building its event and calling into the
processor chain: 6-18 us per call on this box, once per request and per captured turn. Asking
the standard library's logger first (``isEnabledFor`` is cached) costs well under a microsecond.
When structlog is configured some other way (``structlog.testing.capture_logs`` in tests, or
not configured at all) the chain decides, so the answer is yes.
"""

from __future__ import annotations

import logging

import structlog


def debug_enabled(logger_name: str) -> bool:
    """Whether a ``log.debug`` on ``logger_name`` can reach any output now."""
    processors = structlog.get_config()["processors"]
    if not processors or processors[0] is not structlog.stdlib.filter_by_level:
        return True
    logger = _loggers.get(logger_name)
    if logger is None:  # getLogger takes the logging module's lock: once per name, not per call
        logger = _loggers[logger_name] = logging.getLogger(logger_name)
    return logger.isEnabledFor(logging.DEBUG)


_loggers: dict[str, logging.Logger] = {}  # loggers live as long as the process: safe to keep
