"""The last seconds of audio a session received, to cut a turn's clip from by wall-clock time.

Chunks are kept as they arrived, each stamped with the wall-clock time its last sample was
received (a frame arrives once its audio has been captured). A cut takes the parts of the
chunks that overlap ``[start, end]``; a gap in the input (nothing received) is simply absent
from the clip. Bounded: the oldest chunks go once more than ``seconds`` are held.
"""

from __future__ import annotations

from collections import deque

from voicelog.services.audio._codec import CLIP_RATE

_BYTES_PER_SECOND = CLIP_RATE * 2


class AudioRing:
    """A bounded, time-stamped buffer of 16 kHz mono s16 PCM."""

    def __init__(self, seconds: float) -> None:
        self._limit = int(seconds * _BYTES_PER_SECOND)
        self._chunks: deque[tuple[float, bytes]] = deque()  # (wall time of the last sample, pcm)
        self._held = 0

    @property
    def held_seconds(self) -> float:
        """Seconds of audio held now."""
        return self._held / _BYTES_PER_SECOND

    def push(self, pcm: bytes, received_at: float) -> None:
        """Add audio whose last sample was received at ``received_at`` (``time.time()``)."""
        if not pcm:
            return
        self._chunks.append((received_at, pcm))
        self._held += len(pcm)
        while self._held - len(self._chunks[0][1]) >= self._limit:
            self._held -= len(self._chunks.popleft()[1])

    def cut(self, start: float, end: float) -> bytes:
        """The audio received between wall-clock ``start`` and ``end``, in order."""
        # Newest first, stopping at the first chunk wholly before ``start``: the cost follows the
        # clip's length, not the ring's (a turn is cut on the voice loop).
        parts = []
        for ends_at, pcm in reversed(self._chunks):
            if ends_at <= start:
                break
            begins_at = ends_at - len(pcm) / _BYTES_PER_SECOND
            if begins_at >= end:
                continue
            first = max(0, int((start - begins_at) * CLIP_RATE)) * 2
            last = min(len(pcm), int((end - begins_at) * CLIP_RATE) * 2)
            parts.append(pcm[first:last])
        return b"".join(reversed(parts))

    def clear(self) -> None:
        """Forget everything held."""
        self._chunks.clear()
        self._held = 0
