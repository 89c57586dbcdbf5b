"""Simulated audio I/O: a silent microphone, a real-time speaker and a heard-text recorder."""

from __future__ import annotations

import asyncio
import time

import numpy as np
from livekit import rtc
from livekit.agents.voice import io

from voicelog.agent.simulation.scripted.speech import SAMPLE_RATE, ScriptedSTT

# --- audio I/O ---------------------------------------------------------------------------------


class SilentAudioInput(io.AudioInput):
    """Microphone that hears silence: one silent frame every ``frame_duration * time_scale`` s."""

    def __init__(self, *, time_scale: float = 1.0, frame_duration: float = 0.5) -> None:
        super().__init__(label="SilentAudioInput")
        self._interval = frame_duration * time_scale
        samples = max(1, int(self._interval * SAMPLE_RATE))
        self._frame = rtc.AudioFrame(
            data=b"\x00\x00" * samples,
            sample_rate=SAMPLE_RATE,
            num_channels=1,
            samples_per_channel=samples,
        )

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(self._interval)
        return self._frame


class VoicedAudioInput(io.AudioInput):
    """Microphone that hears the child: a tone while the scripted STT is speaking, silence otherwise.

    Paced by the wall clock like a real microphone: each frame holds the samples of the time
    since the last one, so the audio received always spans the time that passed (a late loop
    makes longer frames, never missing audio), and a turn's clip lasts as long as its utterance.
    """

    def __init__(self, speaker: ScriptedSTT, *, frame_duration: float = 0.02,
                 sample_rate: int = SAMPLE_RATE, tone_hz: float = 440.0) -> None:
        super().__init__(label="VoicedAudioInput")
        self._speaker, self._interval, self._rate, self._tone_hz = speaker, frame_duration, sample_rate, tone_hz
        self._last: float | None = None
        self._phase = 0

    async def __anext__(self) -> rtc.AudioFrame:
        await asyncio.sleep(self._interval)
        now = time.monotonic()
        elapsed = self._interval if self._last is None else min(now - self._last, 1.0)
        self._last = now
        samples = max(1, round(elapsed * self._rate))
        if self._speaker.speaking:
            t = (np.arange(samples) + self._phase) / self._rate
            pcm = (np.sin(2 * np.pi * self._tone_hz * t) * 8000).astype("<i2").tobytes()
        else:
            pcm = b"\x00\x00" * samples
        self._phase += samples
        return rtc.AudioFrame(data=pcm, sample_rate=self._rate, num_channels=1, samples_per_channel=samples)


class SimulatedAudioOutput(io.AudioOutput):
    """Speaker that plays captured audio in wall-clock time and reports how much was heard."""

    def __init__(self) -> None:
        super().__init__(
            label="SimulatedAudioOutput", capabilities=io.AudioOutputCapabilities(pause=False)
        )
        self._loop = asyncio.get_running_loop()
        self._playing = False
        self._pushed = 0.0  # audio captured for the current segment
        self._drains_at = 0.0  # loop time the captured audio will have finished playing
        self._finish_timer: asyncio.TimerHandle | None = None

    async def capture_frame(self, frame: rtc.AudioFrame) -> None:
        await super().capture_frame(frame)
        now = self._loop.time()
        if not self._playing:
            self._playing = True
            self.on_playback_started(created_at=time.time())
        # a frame that arrives after the buffer ran dry starts playing on arrival (underrun)
        self._drains_at = max(self._drains_at, now) + frame.duration
        self._pushed += frame.duration

    def flush(self) -> None:
        super().flush()
        if self._playing and self._finish_timer is None:
            delay = max(0.0, self._drains_at - self._loop.time())
            self._finish_timer = self._loop.call_later(delay, self._finish, False)

    def clear_buffer(self) -> None:
        if self._playing:
            self._finish(interrupted=True)

    def _finish(self, interrupted: bool) -> None:
        if self._finish_timer is not None:
            self._finish_timer.cancel()
        unplayed = max(0.0, self._drains_at - self._loop.time()) if interrupted else 0.0
        position = self._pushed - unplayed
        # whatever was still buffered is dropped, so the next segment starts on arrival
        self._playing, self._pushed, self._drains_at, self._finish_timer = False, 0.0, 0.0, None
        self.on_playback_finished(playback_position=position, interrupted=interrupted)


class HeardTextOutput(io.TextOutput):
    """End of the transcript chain: the text the synchronizer released as the audio played."""

    def __init__(self) -> None:
        super().__init__(label="HeardTextOutput", next_in_chain=None)
        self.segments: list[str] = []
        """One entry per reply that released any text, in playout order."""
        self._open = False
        self._changed = asyncio.Event()

    async def capture_text(self, text: str) -> None:
        if not self._open:
            self.segments.append("")
            self._open = True
        self.segments[-1] += text
        self._changed.set()

    def flush(self) -> None:
        self._open = False
        self._changed.set()

    async def wait_heard(self, segment: int, chars: int) -> None:
        """Wait until ``segments[segment]`` holds ``chars`` characters or has ended."""
        while not self._heard(segment, chars):
            self._changed.clear()
            await self._changed.wait()

    def _heard(self, segment: int, chars: int) -> bool:
        if segment >= len(self.segments):
            return False
        ended = segment < len(self.segments) - 1 or not self._open
        return ended or len(self.segments[segment]) >= chars
