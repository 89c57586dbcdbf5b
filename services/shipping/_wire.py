"""What a stored turn looks like on the wire: report times in the Manager's unit, split parts.

The console orders a session by ``created_at`` with no tiebreak, so each row sent for a
session gets a strictly larger report time than the one before, in the configured unit.
"""

from __future__ import annotations

from voicelog.services.config import ReportTimeUnit
from voicelog.services.domain import Turn
from voicelog.services.shipping.manager import split_content

CONTINUATION = "(cont. {index}/{total}) "
# Room kept in each part for the continuation marker, so a marked part still fits the column.
MARKER_ROOM = 24


def to_unit(report_ms: int, unit: ReportTimeUnit) -> int:
    """A millisecond report time in the Manager's unit (``ms`` or ``s``)."""
    return report_ms if unit == ReportTimeUnit.MS else report_ms // 1000


def wire_parts(content: str, max_chars: int) -> list[str]:
    """The rows a turn's text becomes: itself, or marked parts when longer than the column."""
    if len(content) <= max_chars:
        return [content]
    parts = split_content(content, max(1, max_chars - MARKER_ROOM))
    total = len(parts)
    return [part if i == 0 else CONTINUATION.format(index=i + 1, total=total) + part
            for i, part in enumerate(parts)]


def first_wire_time(turn: Turn, last_wire_time: int, unit: ReportTimeUnit) -> int:
    """The report time for a turn's first row: its own time, or just after the previous row."""
    return max(to_unit(turn.report_ms, unit), last_wire_time + 1)


def idempotency_key(turn: Turn, part: int, total: int) -> str:
    """A key stable across retries and restarts: the turn id, plus the part when split."""
    return turn.turn_id if total == 1 else f"{turn.turn_id}/{part + 1}of{total}"
