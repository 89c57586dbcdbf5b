"""The last seconds of audio a session received, to cut a turn's clip from by wall-clock time.

Audio is kept as runs of contiguous samples. A run starts at a frame's arrival (a frame
arrives once its audio has been captured, so its samples lie just before that wall-clock time)
and counts on by its samples, one every 1/16000 s, while frames keep arriving within ``GAP`` of
where the run ends (network jitter then moves nothing). A frame further off, either way (the
input paused, or ran ahead of the wall clock), starts a new run, so a run's times are never off
by more than ``GAP``; a pause is absent from any clip. Runs are at most ``RUN_SECONDS`` long (so
they are re-anchored at least that often, and a cut touches a handful of them: its cost follows
the clip, not the ring). Bounded: the oldest samples go once ``seconds`` are held.
"""

from __future__ import annotations

from collections import deque

from voicelog.services.audio._codec import CLIP_RATE

_BYTES_PER_SECOND = CLIP_RATE * 2
GAP = 0.1  # seconds a frame may arrive off its run's clock and still extend it
RUN_SECONDS = 1.0


class _Run:
    __slots__ = ("ends_at", "pcm")

    def __init__(self, ends_at: float, pcm: bytes) -> None:
        self.ends_at, self.pcm = ends_at, bytearray(pcm)


class AudioRing:
    """A bounded, time-stamped buffer of 16 kHz mono s16 PCM."""

    def __init__(self, seconds: float) -> None:
        self._limit = int(seconds * _BYTES_PER_SECOND)
        self._runs: deque[_Run] = deque()
        self._held = 0

    @property
    def held_seconds(self) -> float:
        """Seconds of audio held now."""
        return self._held / _BYTES_PER_SECOND

    def push(self, pcm: bytes, received_at: float) -> None:
        """Add audio whose last sample was received at ``received_at`` (``time.time()``)."""
        if not pcm:
            return
        last = self._runs[-1] if self._runs else None
        seconds = len(pcm) / _BYTES_PER_SECOND
        if last is not None and len(last.pcm) < RUN_SECONDS * _BYTES_PER_SECOND \
                and abs(received_at - seconds - last.ends_at) <= GAP:
            last.pcm += pcm  # within a run the samples keep their own clock
            last.ends_at += seconds
        else:
            self._runs.append(_Run(received_at, pcm))
        self._held += len(pcm)
        while self._held > self._limit:
            oldest, excess = self._runs[0], self._held - self._limit
            if len(oldest.pcm) <= excess:
                self._runs.popleft()
                self._held -= len(oldest.pcm)
            else:
                del oldest.pcm[: excess + excess % 2]  # its end (and stamp) stays
                self._held -= excess + excess % 2

    def cut(self, start: float, end: float) -> bytes:
        """The audio received between wall-clock ``start`` and ``end``, in order."""
        parts = []
        for run in reversed(self._runs):  # newest first: stop at the first run before ``start``
            if run.ends_at <= start:
                break
            begins_at = run.ends_at - len(run.pcm) / _BYTES_PER_SECOND
            if begins_at >= end:
                continue
            first = max(0, int((start - begins_at) * CLIP_RATE)) * 2
            last = min(len(run.pcm), int((end - begins_at) * CLIP_RATE) * 2)
            parts.append(bytes(run.pcm[first:last]))
        return b"".join(reversed(parts))

    def clear(self) -> None:
        """Forget everything held."""
        self._runs.clear()
        self._held = 0
