"""Counts and figures in words, the same way in every summary a command prints."""

from __future__ import annotations

IRREGULAR = {"was": "were", "is": "are", "its": "their", "has": "have"}
STATUS_WORDS = {"pending": "pending", "parked": "parked", "dead_letter": "dead-letter", "open": "open",
                "delivered": "delivered", "skipped": "skipped"}


def plural(count: int, noun: str) -> str:
    """``1 session``, ``2 sessions``, ``1 reply``, ``3 replies``."""
    if count == 1:
        return f"{count} {noun}"
    head, _, last = noun.rpartition(" ")
    if last in IRREGULAR:
        last = IRREGULAR[last]
    elif last.endswith("y") and last[-2:-1] not in ("a", "e", "o", "u"):
        last = last[:-1] + "ies"
    else:
        last += "es" if last.endswith(("s", "x", "ch", "sh")) else "s"
    return f"{count} {head + ' ' if head else ''}{last}"


def turns_and_rows(turns: int, rows: int) -> str:
    """``44 turns as 48 rows`` (a long turn is split into rows), or just ``44 turns``."""
    if rows and rows != turns:
        return f"{plural(turns, 'turn')} as {plural(rows, 'row')}"
    return plural(turns, "turn")


def status_counts(counts: dict[str, int], order: tuple[str, ...] = tuple(STATUS_WORDS)) -> str:
    """``8 pending, 44 parked`` for the statuses that occur, in a fixed order."""
    parts = [f"{counts[name]} {STATUS_WORDS.get(name, name)}" for name in order if counts.get(name)]
    return ", ".join(parts)


def mib(size: int) -> str:
    """A size in MiB with one decimal."""
    return f"{size / 1024 / 1024:.1f} MiB"


def age(seconds: float | None) -> str:
    """``42 s``, ``12 min``, ``3.5 h``, ``2.0 days``; ``-`` when there is none."""
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
