"""The records voicelog keeps: a device session and the turns captured in it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum, StrEnum

from voicelog.services.domain._turn_meta import TurnMeta


class ChatType(IntEnum):
    """Who spoke, in the Manager's numbering."""

    USER = 1
    AGENT = 2


class TurnStatus(StrEnum):
    """Where a turn is in its life; only the shipper moves it past PENDING."""

    OPEN = "open"  # still being captured (a user turn's segments, a reply still playing)
    PENDING = "pending"  # sealed, waiting to be delivered
    DELIVERED = "delivered"
    PARKED = "parked"  # the Manager does not know the device yet; retried slowly
    DEAD_LETTER = "dead_letter"  # the Manager rejected it; kept for replay
    SKIPPED = "skipped"  # nothing was said (empty reply); never sent


# The sets of statuses the code reasons with, named once here.
UNDELIVERED = (TurnStatus.OPEN, TurnStatus.PENDING, TurnStatus.PARKED, TurnStatus.DEAD_LETTER)
WAITING = (TurnStatus.PENDING, TurnStatus.PARKED)  # sealed, and the shipper will send them
FAILED = (TurnStatus.PARKED, TurnStatus.DEAD_LETTER)  # a delivery attempt ended without delivery
RESENDABLE = (TurnStatus.PENDING, TurnStatus.PARKED, TurnStatus.DEAD_LETTER)  # what replay re-sends
DONE = (TurnStatus.DELIVERED, TurnStatus.SKIPPED)  # nothing more will happen to them


@dataclass(frozen=True)
class Turn:
    """One captured message, identified by session id and per-session sequence number."""

    session_id: str
    seq: int
    chat_type: ChatType
    content: str
    report_ms: int
    captured_ms: int
    interrupted: bool
    status: TurnStatus
    attempts: int = 0
    last_error: str | None = None
    next_attempt_ms: int = 0
    wire_time: int | None = None
    delivered_ms: int | None = None
    # What LiveKit measured and the STT language; kept locally, never delivered.
    meta: TurnMeta | None = field(default=None, compare=False)
    wire_limit: int | None = None  # max_content_chars when the wire time was pinned: fixes the split

    @property
    def turn_id(self) -> str:
        """The stable id used for idempotency keys and in backups."""
        return f"{self.session_id}#{self.seq}"


@dataclass(frozen=True)
class SessionRecord:
    """A device session as stored in the spool."""

    session_id: str
    mac: str
    mac_valid: bool
    mac_source: str
    started_ms: int
    ended_ms: int | None
    end_reason: str | None
    owner: str | None
    agent_id: str | None
    skipped: int
    last_wire_time: int
