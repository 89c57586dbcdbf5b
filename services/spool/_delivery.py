"""The shipper's view of the spool: which turns wait for delivery, and what each attempt did.

Built over a ``Spool`` by whoever wires the shipper and handed to it (as aiokafka's producer
hands its accumulator to its sender). The capture side never uses it, and it knows no HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from voicelog.services.domain import SessionRecord, Turn, TurnStatus, wall_ms
from voicelog.services.sealing import ContentCipher
from voicelog.services.spool import _queries as q
from voicelog.services.spool._schema import turn_record
from voicelog.services.spool._spool import Spool

_CLOCK_SLACK_MS = 1000  # how far "in the future" a time may be before it means a clock jump


@dataclass(frozen=True)
class Backlog:
    """A session with turns waiting for delivery, as the shipper sees it."""

    session_id: str
    mac: str
    mac_valid: bool
    ended: bool
    flush_requested: bool
    waiting: int
    oldest_captured_ms: int
    next_attempt_ms: int
    parked: int


class DeliveryState:
    """Delivery-state queries and updates over one spool connection."""

    def __init__(self, spool: Spool, now: Callable[[], int] = wall_ms) -> None:
        self.spool = spool
        self._connection = spool.connection
        self._now = now

    @property
    def cipher(self) -> ContentCipher | None:
        """The cipher sealed content is opened with for sending (None: stored in plaintext)."""
        return self.spool.cipher

    def session(self, session_id: str) -> SessionRecord | None:
        """One session's record, or None."""
        return self.spool.session(session_id)

    def backlog(self) -> list[Backlog]:
        """One summary per session that has turns waiting for delivery.

        A time recorded in the future means the wall clock jumped back since; how long ago it
        really was is unknown, so such a retry time or capture time counts as already passed:
        one early retry instead of waiting out the jump.
        """
        rows = self._connection.db.execute(q.BACKLOG, {
            "future": self._now() + _CLOCK_SLACK_MS, "pending": TurnStatus.PENDING.value,
            "parked": TurnStatus.PARKED.value}).fetchall()
        return [Backlog(r[0], r[1], bool(r[2]), bool(r[3]), bool(r[4]), r[5], r[6], r[7], r[8])
                for r in rows]

    def deliverable(self, session_id: str) -> list[Turn]:
        """Waiting turns in order, up to (not past) the first turn still being captured."""
        rows = self._connection.db.execute(q.DELIVERABLE, _deliverable_of(session_id)).fetchall()
        return [turn_record(row) for row in rows]

    def has_deliverable(self, session_id: str) -> bool:
        """Whether ``deliverable`` would return anything (one EXISTS, no rows decoded)."""
        return bool(self._connection.db.execute(q.HAS_DELIVERABLE, _deliverable_of(session_id)).fetchone()[0])

    def parts_sent(self, session_id: str, seq: int) -> int:
        """How many parts of a split turn the Manager already accepted."""
        row = self._connection.db.execute(q.TURN_PARTS_SENT, (session_id, seq)).fetchone()
        return int(row[0]) if row else 0

    def fix_wire_times(self, session_id: str, pins: Iterable[tuple[int, int, int]],
                       last_wire_time: int) -> None:
        """Pin the report times (and split limits) of several turns, ``(seq, wire_time, wire_limit)``,
        and the session's last report time, in one transaction: one commit per round, not per turn."""
        with self._connection.write() as db:
            db.executemany(q.TURN_SET_WIRE_TIME, [(wire, limit, session_id, seq) for seq, wire, limit in pins])
            db.execute(q.SESSION_SET_LAST_WIRE_TIME, (last_wire_time, session_id))

    def record_parts_sent(self, session_id: str, seq: int, parts_sent: int) -> None:
        """Remember progress through a split turn."""
        self._connection.db.execute(q.TURN_SET_PARTS_SENT, (parts_sent, session_id, seq))

    def mark_delivered(self, session_id: str, seqs: Iterable[int], now_ms: int) -> None:
        """Record that the Manager accepted these turns."""
        self.mark_delivered_many({session_id: seqs}, now_ms)

    def mark_delivered_many(self, accepted: Mapping[str, Iterable[int]], now_ms: int) -> None:
        """Record accepted turns of several sessions in one transaction (one commit, not one per session)."""
        with self._connection.write() as db:
            db.executemany(q.TURN_MARK_DELIVERED, [(now_ms, now_ms, session_id, seq)
                                                   for session_id, seqs in accepted.items() for seq in seqs])

    def mark_attempt_failed(self, session_id: str, seqs: Iterable[int], *, status: TurnStatus,
                            error: str, next_attempt_ms: int, now_ms: int) -> None:
        """Record a failed attempt: still pending (retry), parked or dead-lettered, with why."""
        with self._connection.write() as db:
            db.executemany(q.TURN_MARK_FAILED, [(status.value, error[:1000], next_attempt_ms, now_ms,
                                                 session_id, seq) for seq in seqs])

    def clear_flush_request(self, session_id: str) -> None:
        """The requested flush has been served."""
        self._connection.db.execute(q.SESSION_CLEAR_FLUSH, (session_id,))

    def set_agent_id(self, session_id: str, agent_id: str) -> None:
        """Remember which Manager agent the device is bound to."""
        self._connection.db.execute(q.SESSION_SET_AGENT, (agent_id, session_id))

    def requeue(self, session_id: str, seqs: Iterable[int], now_ms: int) -> int:
        """Make parked or dead-lettered turns pending again (replay); returns how many."""
        with self._connection.write() as db:
            return sum(db.execute(q.TURN_REQUEUE_FAILED, (now_ms, session_id, seq)).rowcount
                       for seq in seqs)


def _deliverable_of(session_id: str) -> dict[str, str]:
    """The parameters of DELIVERABLE and HAS_DELIVERABLE (one set of turns, two questions)."""
    return {"session": session_id, "pending": TurnStatus.PENDING.value, "parked": TurnStatus.PARKED.value}
