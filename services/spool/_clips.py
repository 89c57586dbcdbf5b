"""A user turn's audio in the spool: one Ogg/Opus clip per turn, in the ``clips`` table.

Built over a ``Spool`` (capture's, the shipper's, support's), as memory builds ``SpoolMemory``.
A clip is reserved when its turn's audio is cut (data NULL while it is encoded off the event
loop), then filled, or dropped when the box's clips are at ``audio.max_mb``. The bytes are
sealed with the spool's cipher when encryption is on, and a clip never outlives its turn (the
``clips_follow_their_turn`` trigger), so erasure, retention, purge and opt-out cover clips by
construction. The clip bytes are opaque here: encoding is ``voicelog.services.audio``'s.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from voicelog.services.sealing import ContentKeyError, is_sealed_bytes
from voicelog.services.spool import _queries as q
from voicelog.services.spool._spool import Spool

# Box-wide counters in the meta table (read by /metrics, `voicelog stats` and support).
CLIPS_SKIPPED_FULL = "clips_skipped_full"  # clips not kept because the box's clips were at the cap
CLIPS_UNREADABLE = "clips_unreadable"  # clips that could not be read or decoded: the turn went without audio


class ClipUnreadable(ValueError):
    """A stored clip is damaged, or sealed with a key this box does not have."""


@dataclass(frozen=True)
class ClipInfo:
    """What the spool knows of one turn's clip, without its bytes."""

    seq: int
    seconds: float
    bytes: int
    encoding: bool  # reserved, not filled yet (or its job process died while encoding)


@dataclass(frozen=True)
class StoredClip:
    """A clip as stored: its bytes (sealed or not), and whether they still match their digest."""

    data: bytes | None  # None: still being encoded
    created_ms: int
    seconds: float
    intact: bool


class ClipStore:
    """Reserve, fill, read and count the clips of the spool's turns."""

    def __init__(self, spool: Spool) -> None:
        self.spool = spool

    def reserve(self, session_id: str, seq: int, now_ms: int) -> bool:
        """Hold the turn's place for a clip being encoded; False if the turn does not exist."""
        cursor = self.spool.connection.db.execute(q.CLIP_RESERVE, (session_id, seq, now_ms, session_id, seq))
        return cursor.rowcount == 1

    def fill(self, session_id: str, seq: int, clip: bytes, seconds: float, max_bytes: int) -> bool | None:
        """Store the encoded clip (sealed when encryption is on).

        True: stored. False: the box's clips are at the cap (no clip, counted). None: its place
        is gone (the turn was erased, or delivery gave up waiting for it).
        """
        stored = self.spool.cipher.seal_bytes(clip) if self.spool.cipher is not None else clip
        digest = hashlib.sha256(stored).hexdigest()
        with self.spool.connection.write() as db:
            if db.execute(q.CLIP_FILL, (stored, len(stored), round(seconds, 3), digest,
                                        session_id, seq, len(stored), max_bytes)).rowcount == 1:
                return True
            if db.execute(q.CLIP_DROP_UNFILLED, (session_id, seq)).rowcount == 0:
                return None
            db.execute(q.COUNTER_ADD, (CLIPS_SKIPPED_FULL, 1))
        return False

    def drop(self, session_id: str, seq: int) -> None:
        """Give up a reserved clip (encoding failed, or delivery stopped waiting for it)."""
        self.spool.connection.db.execute(q.CLIP_DROP_UNFILLED, (session_id, seq))

    def is_full(self, max_bytes: int) -> bool:
        """The box's clips are at the cap already (checked before encoding, to spare the work)."""
        row = self.spool.connection.db.execute(q.CLIP_BYTES).fetchone()
        return row is not None and int(row[0]) >= max_bytes

    def count_skipped(self) -> None:
        """Count a clip not kept because the box was full."""
        self.spool.connection.db.execute(q.COUNTER_ADD, (CLIPS_SKIPPED_FULL, 1))

    def count_unreadable(self) -> None:
        """Count a clip that could not be read: its turn was delivered without audio."""
        self.spool.connection.db.execute(q.COUNTER_ADD, (CLIPS_UNREADABLE, 1))

    def counter(self, key: str) -> int:
        """A box-wide clip counter (``CLIPS_SKIPPED_FULL``, ``CLIPS_UNREADABLE``)."""
        row = self.spool.connection.db.execute(q.COUNTER_GET, (key,)).fetchone()
        return int(row[0]) if row else 0

    def totals(self) -> tuple[int, int]:
        """(clips stored, their bytes) on this box."""
        count, size = self.spool.connection.db.execute(q.CLIPS_TOTAL).fetchone()
        return int(count), int(size)

    def of_session(self, session_id: str) -> dict[int, ClipInfo]:
        """A session's clips by turn sequence number."""
        rows = self.spool.connection.db.execute(q.CLIPS_OF_SESSION, (session_id,)).fetchall()
        return {seq: ClipInfo(seq, seconds, size, bool(encoding)) for seq, seconds, size, encoding in rows}

    def sessions(self) -> list[str]:
        """Sessions with at least one clip."""
        return [row[0] for row in self.spool.connection.db.execute(q.CLIPS_SESSIONS)]

    def stored(self, session_id: str, seq: int) -> StoredClip | None:
        """The clip of one turn as stored, or None when the turn has none."""
        row = self.spool.connection.db.execute(q.CLIP_GET, (session_id, seq)).fetchone()
        if row is None:
            return None
        data, digest, created_ms, seconds, _ = row
        intact = data is None or hashlib.sha256(data).hexdigest() == digest
        return StoredClip(None if data is None else bytes(data), created_ms, seconds, intact)

    def opened(self, clip: StoredClip) -> bytes:
        """A stored clip's Opus bytes, checked and unsealed; ``ClipUnreadable`` says why not."""
        if clip.data is None:
            raise ClipUnreadable("the clip was never finished (its job process ended while encoding)")
        if not clip.intact:
            raise ClipUnreadable("the clip's bytes do not match their digest (damaged)")
        if self.spool.cipher is None:
            if is_sealed_bytes(clip.data):
                raise ClipUnreadable("the clip is encrypted and no key is configured")
            return clip.data
        try:
            return self.spool.cipher.open_bytes(clip.data)
        except ContentKeyError as exc:
            raise ClipUnreadable(str(exc)) from None

    def forget_unfinished(self, before_ms: int) -> int:
        """Remove reservations never filled (their job process died mid-encode) older than ``before_ms``."""
        return self.spool.connection.db.execute(q.CLIPS_UNFINISHED_BEFORE, (before_ms,)).rowcount
