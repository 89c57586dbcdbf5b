"""Wall-clock time in milliseconds, and report times that never go backwards."""

from __future__ import annotations

import time
from collections.abc import Callable


def wall_ms() -> int:
    """Milliseconds since the epoch from the wall clock (which may jump)."""
    return time.time_ns() // 1_000_000


class ReportClock:
    """Hands out strictly increasing report times for one session, even if the clock jumps back.

    Start it from the session's last stored report time, so a restarted job process continues
    after it whatever the wall clock says (tests/test_clock_jump.py).
    """

    def __init__(self, last_ms: int = 0, now: Callable[[], int] = wall_ms) -> None:
        self._last_ms = last_ms
        self._now = now

    def next(self, at_ms: int | None = None) -> int:
        """The report time for a turn captured now (or at ``at_ms``), after every earlier one."""
        candidate = self._now() if at_ms is None else at_ms
        self._last_ms = max(candidate, self._last_ms + 1)
        return self._last_ms
