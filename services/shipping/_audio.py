"""A turn's clip (the child's; with ``audio.replies`` the toy's too) as the Manager takes it: ``audioBase64``, a 16 kHz mono 16-bit WAV.

Read from the spool when the turn is sent (so every retry sends the same audio), unsealed,
decoded from Opus and wrapped as WAV on a worker thread. A clip still being encoded when its
turn is due is waited for a moment (``ENCODING_GRACE``); one that cannot be read (damaged,
never finished, sealed with a key this box lacks) is left out and counted: the text goes on.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib

import structlog

from voicelog.services.audio import ClipError, decode_clip, wav_bytes
from voicelog.services.config import AudioSettings
from voicelog.services.domain import ChatType, Turn, wall_ms
from voicelog.services.spool import STORAGE_ERRORS, ClipStore, ClipUnreadable, DeliveryState, StoredClip

log = structlog.get_logger("voicelog.shipper")
ENCODING_GRACE_MS = 5_000  # how long a turn waits for its clip to finish encoding
_POLL = 0.05


def wav_base64(clip: bytes, seconds: float | None = None) -> str:
    """An Opus clip as the base64 of a 16 kHz mono s16 WAV (``ClipError`` if it cannot be decoded)."""
    return base64.b64encode(wav_bytes(decode_clip(clip, max_seconds=seconds))).decode("ascii")


class ClipAttacher:
    """The ``audioBase64`` of each user turn sent in report mode (None: no audio)."""

    def __init__(self, delivery: DeliveryState, settings: AudioSettings, *,
                 grace_ms: int = ENCODING_GRACE_MS) -> None:
        self.clips = ClipStore(delivery.spool)
        self.settings = settings
        self.grace_ms = grace_ms
        self.attached = 0
        self.unreadable = 0

    async def audio_for(self, turn: Turn) -> str | None:
        """The turn's clip as base64 WAV; None when it has none or it cannot be read (counted)."""
        if turn.chat_type != ChatType.USER and not (turn.chat_type == ChatType.AGENT and self.settings.replies):
            return None
        try:
            stored = await self._finished(turn)
            if stored is None:
                return None
            opus = self.clips.opened(stored)
            audio = await asyncio.to_thread(wav_base64, opus, stored.seconds or None)
        except (ClipUnreadable, ClipError) as exc:
            self.unreadable += 1
            with contextlib.suppress(*STORAGE_ERRORS):
                self.clips.count_unreadable()
                self.clips.drop(turn.session_id, turn.seq)  # never finished: its place goes with it
            log.warning("audio_clip_unreadable_sent_without", session_id=turn.session_id, seq=turn.seq,
                        error=str(exc)[:300])
            return None
        except STORAGE_ERRORS as exc:
            log.warning("audio_clip_not_read_sent_without", session_id=turn.session_id, seq=turn.seq,
                        error=str(exc)[:300])
            return None
        self.attached += 1
        return audio

    async def _finished(self, turn: Turn) -> StoredClip | None:
        """The stored clip, once encoded or given up on after the grace."""
        stored = self.clips.stored(turn.session_id, turn.seq)
        while stored is not None and stored.data is None and wall_ms() - stored.created_ms < self.grace_ms:
            await asyncio.sleep(_POLL)
            stored = self.clips.stored(turn.session_id, turn.seq)
        return stored
