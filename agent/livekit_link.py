"""Whether the LiveKit worker is registered with the server, read from the worker's own signals.

livekit-agents 1.8.9 emits ``worker_registered`` once the server accepts the worker, and logs
"failed to connect to livekit, retrying in Ns" (with the exception as ``error``) each time the
connection fails or drops; it has no event for the loss. ``LiveKitLink`` listens to both, so
``/readyz`` can say "not registered" with the URL and the cause, and the logs name them too.

It also corrects one misleading line: when the whole process group gets SIGTERM (``timeout``,
``kill -- -PGID``, a container stop), the multiprocessing forkserver dies with it, the exit
status of the idle job processes can no longer be read, and livekit logs "process exited with
non-zero exit code 255" at ERROR. During our own shutdown that is a normal end: INFO.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

log = structlog.get_logger("voicelog.livekit")
LIVEKIT_LOGGER = "livekit.agents"
CONNECT_FAILED = "failed to connect to livekit"
JOB_EXITED = "process exited with non-zero exit code"


@dataclass(frozen=True)
class LinkState:
    """The worker's registration as last seen."""

    registered: bool
    url: str
    reason: str  # why not registered ("" when registered)
    worker_id: str
    since: float  # time.monotonic() of the last change

    def to_dict(self) -> dict[str, object]:
        """For /readyz."""
        return {"registered": self.registered, "url": self.url, "reason": self.reason or None,
                "worker_id": self.worker_id or None}


class LiveKitLink(logging.Filter):
    """Tracks registration from the worker's event and its connection-failure log lines."""

    def __init__(self, url: str, *, stopping: Callable[[], bool],
                 on_change: Callable[[LinkState], None] = lambda state: None) -> None:
        super().__init__()
        self._stopping, self.on_change = stopping, on_change
        self.state = LinkState(False, url, "connecting: not registered yet", "", time.monotonic())

    def attach(self, server: Any) -> None:
        """Listen to ``server`` (an AgentServer) and to livekit's logger."""
        server.on("worker_registered", self._registered)
        logging.getLogger(LIVEKIT_LOGGER).addFilter(self)

    def detach(self) -> None:
        """Stop listening to livekit's logger."""
        logging.getLogger(LIVEKIT_LOGGER).removeFilter(self)

    def readiness(self) -> dict[str, object]:
        """What /readyz shows about LiveKit."""
        return self.state.to_dict()

    def _registered(self, worker_id: str, server_info: Any = None) -> None:
        self._change(True, "", worker_id)
        log.info("livekit_worker_registered", url=self.state.url, worker_id=worker_id,
                 region=getattr(server_info, "region", None) or None)

    def filter(self, record: logging.LogRecord) -> bool:
        """Note connection failures (adding the URL and cause to the line); calm shutdown exits."""
        try:
            self._read(record)
        except Exception:  # noqa: BLE001 - runs inside livekit's log call: must never raise there
            log.exception("livekit_log_reading_failed")
        return True

    def _read(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(CONNECT_FAILED):
            cause = describe(getattr(record, "error", None))
            record.url, record.error = self.state.url, cause  # the cause in words, not a repr
            was = self.state.registered
            self._change(False, f"cannot connect to {self.state.url}: {cause}", "")
            if was:
                log.warning("livekit_connection_lost", url=self.state.url, cause=cause)
        elif message.startswith(JOB_EXITED) and self._stopping():
            record.levelno, record.levelname = logging.INFO, "INFO"
            record.msg, record.args = ("job process ended during shutdown (%s)", message)

    def _change(self, registered: bool, reason: str, worker_id: str) -> None:
        old = self.state
        self.state = LinkState(registered, old.url, reason, worker_id,
                               time.monotonic() if registered != old.registered else old.since)
        if registered != old.registered or reason != old.reason:
            self.on_change(self.state)


def describe(error: object) -> str:
    """An exception as ``Kind: message`` (aiohttp's connector errors name the host and the errno)."""
    if error is None:
        return "no detail given"
    if isinstance(error, BaseException):
        text = str(error) or repr(error)
        return f"{type(error).__name__}: {text}"
    return str(error)
