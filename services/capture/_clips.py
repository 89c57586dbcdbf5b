"""Keep each user turn's audio as a clip: encoded off the event loop, stored beside the turn.

The voice loop only hands over the cut PCM (``keep``): the cap check and the reservation are
one SQLite statement each (tens of microseconds, as a turn write), the Opus encode runs on the
process's one audio thread, and the clip is stored when it is done. Audio never holds text
back: every failure here is counted and logged, and the turn's text is already durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import structlog

from voicelog.services.audio import encode_clip, pcm_seconds
from voicelog.services.config import AudioSettings
from voicelog.services.domain import wall_ms
from voicelog.services.spool import STORAGE_ERRORS, ClipStore, Spool

log = structlog.get_logger("voicelog.capture")
MIN_SECONDS = 0.1  # less received audio than this is no clip (the input was silent or absent)
_ENCODER: ThreadPoolExecutor | None = None


def _encoder() -> ThreadPoolExecutor:
    # One thread per process: sessions' encodes queue instead of competing with the voice loop.
    global _ENCODER
    if _ENCODER is None:
        _ENCODER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="voicelog-audio")
    return _ENCODER


@dataclass
class ClipStats:
    """What one session's clip keeping did."""

    kept: int = 0
    skipped_full: int = 0  # the box's clips were at audio.max_mb
    failed: int = 0  # encoding or storing failed (the turn's text is unaffected)
    no_audio: int = 0  # the turn had no timing or (almost) no received audio
    capped: int = 0  # turns longer than audio.max_seconds, kept cut


class ClipKeeper:
    """One session's clips: reserve on the loop, encode on the audio thread, store when done."""

    def __init__(self, spool: Spool, settings: AudioSettings, session_id: str, *,
                 executor: ThreadPoolExecutor | None = None) -> None:
        self.store = ClipStore(spool)
        self.settings = settings
        self.session_id = session_id
        self.stats = ClipStats()
        self._executor = executor
        self._encoding: set[asyncio.Task[None]] = set()
        self._log = log.bind(session_id=session_id)

    def keep(self, seq: int, pcm: bytes) -> None:
        """Start keeping ``pcm`` (16 kHz mono s16) as turn ``seq``'s clip; returns at once."""
        seconds = pcm_seconds(pcm)
        if seconds < MIN_SECONDS:
            self.stats.no_audio += 1
            return
        try:
            if self.store.is_full(self.settings.max_bytes):
                self.store.count_skipped()
                self._skipped_full(seq)
                return
            if not self.store.reserve(self.session_id, seq, wall_ms()):
                self.stats.no_audio += 1  # the turn is not in the spool (disk refused it, or erased)
                return
        except STORAGE_ERRORS as exc:
            self._failed(seq, exc)
            return
        encoding = asyncio.get_running_loop().run_in_executor(self._executor or _encoder(), encode_clip, pcm)
        task = asyncio.ensure_future(self._store(seq, encoding, seconds))
        self._encoding.add(task)
        task.add_done_callback(self._encoding.discard)

    async def _store(self, seq: int, encoding: asyncio.Future[bytes], seconds: float) -> None:
        try:
            clip = await encoding
            stored = self.store.fill(self.session_id, seq, clip, seconds, self.settings.max_bytes)
            if stored:
                self.stats.kept += 1
            elif stored is False:
                self._skipped_full(seq)
            else:
                self.stats.failed += 1  # erased meanwhile, or its turn already went without it
        except Exception as exc:  # noqa: BLE001 - a clip that cannot be kept must never reach the voice loop
            with contextlib.suppress(*STORAGE_ERRORS):
                self.store.drop(self.session_id, seq)
            self._failed(seq, exc)

    def _skipped_full(self, seq: int) -> None:
        self.stats.skipped_full += 1
        if self.stats.skipped_full == 1:
            self._log.warning("audio_clip_skipped_box_full", seq=seq, max_mb=self.settings.max_mb,
                              hint="text is still captured; raise audio.max_mb or let retention free space")

    def _failed(self, seq: int, exc: BaseException) -> None:
        self.stats.failed += 1
        self._log.error("audio_clip_not_kept", seq=seq, error=f"{type(exc).__name__}: {exc}"[:300])

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for the clips still being encoded, so the session ends with them stored."""
        if self._encoding:
            await asyncio.wait(list(self._encoding), timeout=timeout)
