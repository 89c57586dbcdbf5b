"""What capture counts per session, and a spool write waiting its turn in memory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class CaptureStats:
    """What one session's capture did; counters for metrics and the simulate summary."""

    stored: int = 0
    skipped_empty: int = 0
    held_in_memory: int = 0  # writes waiting for the disk right now
    lost: int = 0  # turns that never reached the spool (backlog full, or session ended first)
    dropped_writes: int = 0  # updates and marks that never reached the spool, or failed for good
    write_failures: int = 0  # attempts the spool refused
    cut_turns: int = 0  # turns longer than the cap, stored cut with a marker
    erased_refused: int = 0  # turns refused because the session was erased on request (purge)
    storage_error: str | None = None  # why the spool refuses writes now; None when it takes them


@dataclass
class HeldWrite:
    """One spool write waiting its turn; ``new_turn`` is set for inserts (they count as turns)."""

    apply: Callable[[], object]
    new_turn: bool = False
    reregistered: bool = False  # the session was registered again for it once (never a loop)
