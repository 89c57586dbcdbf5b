"""Tee the audio the agent's STT receives, and cut each user turn's clip from it (audio.enabled).

Event facts this relies on (livekit-agents 1.8.9, see docs/livekit-events.md):
- Every frame the STT is given passes through ``Agent.stt_node(audio, model_settings)``; the
  session builds its STT pipeline from the agent's ``stt_node`` when it starts (and keeps that
  pipeline across a handoff while the node is the default one). The tap wraps the node of the
  agent given to ``session.start`` / ``session.update_agent``, before the session calls it.
- The committed user ``ChatMessage.metrics`` holds ``started_speaking_at`` and
  ``stopped_speaking_at`` (wall-clock seconds, ``time.time()``), from VAD or, with STT turn
  detection, from START_OF_SPEECH and the last final. A turn without them (typed text) has no clip.
- With ``audio.replies``: a reply's audio is made by ``Agent.tts_node``, run inside the reply's
  generation task, where livekit keeps its ``SpeechHandle`` in the (private, pinned-version)
  ``agent_activity._SpeechHandleContextVar``; the assistant message's ``started_speaking_at`` /
  ``stopped_speaking_at`` say how long it played, so an interrupted reply keeps what was heard.
Frames are resampled to 16 kHz mono with livekit's ``rtc.AudioResampler`` (C, microseconds per
frame) and stamped with the time they reached the STT path. A tap failure only costs clips.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import structlog

from voicelog.services.audio import CLIP_RATE, AudioRing
from voicelog.services.capture import ClipKeeper
from voicelog.services.config import AudioSettings

log = structlog.get_logger("voicelog.capture")
_BYTES_PER_SECOND = CLIP_RATE * 2


class AudioTap:
    """One session's received audio: a bounded ring fed from the STT path, cut per user turn."""

    def __init__(self, keeper: ClipKeeper, settings: AudioSettings, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.keeper = keeper
        self.settings = settings
        self.ring = AudioRing(settings.ring_seconds)
        self.errors = 0
        self.frames = 0
        self._clock = clock
        self._heard_pcm, self._reply_pcm = _ClipPcm(), _ClipPcm()  # each keeps its own resampler state
        self._replies: dict[Any, bytearray] = {}  # speech handle -> its synthesized audio so far
        self._tapped: set[int] = set()

    def attach(self, session: Any) -> AudioTap:
        """Wrap ``session.start`` and ``session.update_agent`` so each agent's STT node is tapped."""
        start, update_agent = session.start, session.update_agent

        async def tapped_start(*args: Any, **kwargs: Any) -> Any:
            self.tap_agent(kwargs.get("agent", args[0] if args else None))
            return await start(*args, **kwargs)

        def tapped_update_agent(agent: Any) -> Any:
            self.tap_agent(agent)
            return update_agent(agent)

        session.start, session.update_agent = tapped_start, tapped_update_agent
        return self

    def tap_agent(self, agent: Any) -> None:
        """Wrap this agent's ``stt_node`` (once) so every frame it is given is teed into the ring.

        With ``audio.replies`` its ``tts_node`` too: each reply's synthesized frames are kept
        (up to ``max_seconds``) under the speech handle they were made for.
        """
        if agent is None or id(agent) in self._tapped:
            return
        self._tapped.add(id(agent))
        node = agent.stt_node

        def stt_node(audio: AsyncIterable[Any], model_settings: Any) -> Any:
            return node(self._tee(audio), model_settings)

        agent.stt_node = stt_node
        if self.settings.replies:
            speak = agent.tts_node

            def tts_node(text: AsyncIterable[str], model_settings: Any) -> Any:
                return self._tee_reply(speak(text, model_settings))

            agent.tts_node = tts_node

    async def _tee(self, audio: AsyncIterable[Any]) -> AsyncIterator[Any]:
        async for frame in audio:
            self._push(frame)
            yield frame

    async def _tee_reply(self, node: Any) -> AsyncIterator[Any]:
        # Called inside the reply's generation task, where livekit holds its speech handle.
        from livekit.agents.voice.agent_activity import _SpeechHandleContextVar

        handle = _SpeechHandleContextVar.get(None)
        if asyncio.iscoroutine(node):
            node = await node
        if node is None:
            return
        try:
            async for frame in node:
                self._push_reply(handle, frame)
                yield frame
        finally:
            # A reply cut short closes this generator: close the node's now, not at GC time.
            closing = getattr(node, "aclose", None)
            if closing is not None:
                await closing()

    def _push_reply(self, handle: Any, frame: Any) -> None:
        try:
            kept = self._replies.setdefault(handle, bytearray())
            if len(kept) < self.settings.max_seconds * _BYTES_PER_SECOND:  # bounded like a clip
                kept += self._reply_pcm.convert(frame)
        except Exception:  # noqa: BLE001 - the toy must say its reply whatever happens here
            self._failed("audio_reply_tap_failed")

    def _push(self, frame: Any) -> None:
        try:
            self.ring.push(self._heard_pcm.convert(frame), self._clock())
            self.frames += 1
        except Exception:  # noqa: BLE001 - the STT must get its frame whatever happens here
            self._failed("audio_tap_failed")

    def _failed(self, event: str) -> None:
        self.errors += 1
        if self.errors == 1:
            log.exception(event, session_id=self.keeper.session_id)

    def turn_committed(self, seq: int, message: Any) -> None:
        """Cut the committed user turn ``seq``'s clip by its measured speaking times and keep it."""
        try:
            metrics = getattr(message, "metrics", None) or {}
            started, stopped = metrics.get("started_speaking_at"), metrics.get("stopped_speaking_at")
            if started is None or stopped is None or stopped < started:
                self.keeper.stats.no_audio += 1
                return
            margin = self.settings.margin_ms / 1000
            start, end = started - margin, stopped + margin
            if end - start > self.settings.max_seconds:
                end = start + self.settings.max_seconds
                self.keeper.stats.capped += 1
            self.keeper.keep(seq, self.ring.cut(start, end))
        except Exception:  # noqa: BLE001 - a clip must never break the voice session
            self.errors += 1
            log.exception("audio_clip_cut_failed", session_id=self.keeper.session_id, seq=seq)

    def reply_done(self, seq: int, handle: Any, messages: list[Any]) -> None:
        """Keep reply ``seq``'s audio as played: its synthesized audio, cut to how long it played."""
        try:
            pcm = bytes(self._replies.pop(handle, b""))
            played = None
            for message in messages:
                metrics = getattr(message, "metrics", None) or {}
                started, stopped = metrics.get("started_speaking_at"), metrics.get("stopped_speaking_at")
                if started is not None and stopped is not None and stopped >= started:
                    played = (played or 0.0) + stopped - started
            if played is None:  # never played (cut before its first frame, or emoji only)
                self.keeper.stats.no_audio += 1
                return
            played = min(played, self.settings.max_seconds)
            self.keeper.keep(seq, pcm[: int(played * CLIP_RATE) * 2])
        except Exception:  # noqa: BLE001 - a clip must never break the voice session
            self._failed("audio_reply_clip_failed")

    async def drain(self, timeout: float = 5.0) -> None:
        """Wait (bounded) for clips still being encoded; forget replies that never finished."""
        self._replies.clear()
        await self.keeper.drain(timeout)


class _ClipPcm:
    """Frames to 16 kHz mono s16 PCM, with livekit's resampler (C, microseconds per frame)."""

    def __init__(self) -> None:
        self._resampler: Any = None
        self._rate: int | None = None  # the input rate the resampler is for

    def convert(self, frame: Any) -> bytes:
        data = bytes(frame.data.cast("b")) if hasattr(frame.data, "cast") else bytes(frame.data)
        channels, rate = frame.num_channels, frame.sample_rate
        if channels > 1:  # a toy sends mono; anything else is mixed down, not dropped
            import numpy as np

            mixed = np.frombuffer(data, dtype="<i2").reshape(-1, channels).mean(axis=1)
            data = mixed.astype("<i2").tobytes()
        if rate == CLIP_RATE:
            return data
        from livekit import rtc

        if self._rate != rate:
            self._resampler, self._rate = rtc.AudioResampler(rate, CLIP_RATE, num_channels=1), rate
        mono = rtc.AudioFrame(data=data, sample_rate=rate, num_channels=1, samples_per_channel=len(data) // 2)
        return b"".join(bytes(out.data.cast("b")) for out in self._resampler.push(mono))
