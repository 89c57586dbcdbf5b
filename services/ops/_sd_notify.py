"""Tell systemd how the daemon is doing (the sd_notify protocol); does nothing outside systemd.

One datagram per message to ``$NOTIFY_SOCKET`` (a path, or ``@name`` for an abstract socket):
``READY=1`` once serving, ``STATUS=...`` for ``systemctl status``, ``WATCHDOG=1`` at half of
``$WATCHDOG_USEC`` while healthy, ``STOPPING=1`` when the drain begins.
"""

from __future__ import annotations

import asyncio
import os
import socket
from collections.abc import Callable, Mapping

import structlog

log = structlog.get_logger("voicelog.systemd")


class Notifier:
    """Sends sd_notify messages to the socket systemd gave us, or nowhere."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        environ = os.environ if environ is None else environ
        self.address = _socket_address(environ.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(environ)
        self._sock: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        """True when running under a service manager that listens."""
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Send ``KEY=value`` lines as one datagram; False if it could not be sent."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                # Never stall the event loop on a full socket: a lost notification is harmless.
                self._sock.setblocking(False)
            self._sock.sendto("\n".join(assignments).encode(), self.address)
            return True
        except OSError as error:
            log.warning("sd_notify_failed", error=str(error))
            return False

    def ready(self, status: str = "") -> bool:
        """The daemon is serving."""
        return self.send("READY=1", *_status(status))

    def status(self, status: str) -> bool:
        """A one-line status for ``systemctl status``."""
        return self.send(*_status(status))

    def watchdog(self) -> bool:
        """The daemon is alive and well (keep-alive for ``WatchdogSec``)."""
        return self.send("WATCHDOG=1")

    def stopping(self, status: str = "") -> bool:
        """The daemon has begun its shutdown (drain)."""
        return self.send("STOPPING=1", *_status(status))

    def close(self) -> None:
        """Release the socket."""
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    async def keep_alive(self, healthy: Callable[[], bool], stop: asyncio.Event) -> None:
        """Send WATCHDOG=1 at half the watchdog period, but only while ``healthy()`` holds."""
        if self.watchdog_interval is None or self.address is None:
            return
        while not stop.is_set():
            if healthy():
                self.watchdog()
            else:
                # Withholding the ping lets systemd restart a wedged daemon.
                log.error("watchdog_withheld_daemon_unhealthy")
            try:
                await asyncio.wait_for(stop.wait(), self.watchdog_interval)
            except TimeoutError:
                pass


def _socket_address(value: str) -> str | None:
    if value.startswith("@"):
        return "\0" + value[1:]  # abstract namespace socket
    if value.startswith("/"):
        return value
    if value:
        log.warning("sd_notify_socket_unsupported", notify_socket=value)
    return None


def _watchdog_interval(environ: Mapping[str, str]) -> float | None:
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None  # the watchdog is meant for another process (we were forked or exec'd)
    return int(usec) / 1_000_000 / 2


def _status(status: str) -> tuple[str, ...]:
    return (f"STATUS={status.replace(chr(10), ' ')}",) if status else ()
