"""Scripted user speech: a streaming STT that emits interims, several finals and end of speech."""

from __future__ import annotations

import asyncio
import time
from typing import NamedTuple, TypedDict

from livekit.agents import (
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    stt,
    utils,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.utils import AudioBuffer
from typing_extensions import NotRequired

SECONDS_PER_CHAR = 0.060
"""Reply audio length per character at time_scale 1.0."""
USER_EVENT_INTERVAL = 0.25
"""Gap between two STT events of one user utterance at time_scale 1.0."""
SAMPLE_RATE = 16000


class ScriptTurn(TypedDict):
    """One exchange: what the user says and what the agent answers."""

    user: str
    agent: str
    barge_in_after_chars: NotRequired[int | None]
    """Start the next user turn once this many characters of ``agent`` were heard."""


class HistoryEntry(NamedTuple):
    """One chat message of the finished session."""

    role: str
    text: str
    interrupted: bool


# --- user speech -------------------------------------------------------------------------------


def final_segments(text: str) -> list[str]:
    """Split an utterance into the 1-3 FINAL_TRANSCRIPT segments the scripted STT emits.

    Splits at whitespace only, so text without any (a single word, unspaced CJK) stays one
    final. LiveKit joins finals with one space: the committed user message is the words of
    ``text`` joined by single spaces.
    """
    words = text.split()
    size = max(1, -(-len(words) // 3))  # ceil(len / 3): at most 3 segments
    return [" ".join(words[i : i + size]) for i in range(0, len(words), size)]


def _interims(segment: str) -> list[str]:
    """Growing partial transcripts of one segment, as a streaming STT would send."""
    words = segment.split()
    half = " ".join(words[: max(1, len(words) // 2)])
    return [half, segment] if half != segment else [segment]


class _Utterance(NamedTuple):
    text: str
    spoken: asyncio.Future[None]  # resolved once END_OF_SPEECH went out


class ScriptedSTT(stt.STT):
    """Streaming STT that turns queued utterances into START/INTERIM/FINAL/END events."""

    def __init__(self, *, time_scale: float = 1.0, language: str = "en") -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                # manual_flush: closing the session flushes the stream, and answering with a
                # final spares aclose() its session_close_transcript_timeout wait
                streaming=True, interim_results=True, offline_recognize=False, manual_flush=True
            )
        )
        self._interval = USER_EVENT_INTERVAL * time_scale
        self._language = language
        self._utterances: asyncio.Queue[_Utterance] = asyncio.Queue()
        self.speaking = False  # between START_OF_SPEECH and END_OF_SPEECH (a voiced mic follows it)
        self.spoken_spans: list[tuple[float, float]] = []  # wall-clock (start, end) of each utterance

    def speak(self, text: str) -> asyncio.Future[None]:
        """Queue an utterance; the future resolves after its END_OF_SPEECH event."""
        spoken = asyncio.get_running_loop().create_future()
        self._utterances.put_nowait(_Utterance(text, spoken))
        return spoken

    async def _recognize_impl(
        self,
        buffer: AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        raise NotImplementedError("ScriptedSTT only streams")

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> _ScriptedSpeechStream:
        return _ScriptedSpeechStream(stt=self, conn_options=conn_options)


class _ScriptedSpeechStream(stt.RecognizeStream):
    """Recognize stream that ignores the audio and plays queued utterances as events."""

    _stt: ScriptedSTT

    async def _run(self) -> None:
        audio_drained = asyncio.create_task(self._drain_audio())
        next_utterance: asyncio.Task[_Utterance] | None = None
        try:
            while True:
                next_utterance = asyncio.create_task(self._stt._utterances.get())
                await asyncio.wait(
                    [next_utterance, audio_drained], return_when=asyncio.FIRST_COMPLETED
                )
                if not next_utterance.done():  # audio input ended: the session is closing
                    return
                await self._play(next_utterance.result())
        finally:
            # Both waiters are ours: end them, also when the stream is cancelled mid-wait (a
            # waiter left pending would be destroyed later by the garbage collector, noisily).
            await utils.aio.cancel_and_wait(*(t for t in (audio_drained, next_utterance) if t is not None))

    async def _drain_audio(self) -> None:
        # the mic is silent: frames are read only to keep the channel from growing
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, "")  # heard nothing

    async def _play(self, utterance: _Utterance) -> None:
        started = time.time()
        self._stt.speaking = True
        try:
            self._send(stt.SpeechEventType.START_OF_SPEECH)
            for segment in final_segments(utterance.text):
                for partial in _interims(segment):
                    await asyncio.sleep(self._stt._interval)
                    self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, partial)
                await asyncio.sleep(self._stt._interval)
                self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, segment)
            await asyncio.sleep(self._stt._interval)
            self._stt.speaking = False
            self._stt.spoken_spans.append((started, time.time()))
            self._send(stt.SpeechEventType.END_OF_SPEECH)
            utterance.spoken.set_result(None)
        finally:
            self._stt.speaking = False
            if not utterance.spoken.done():  # the stream closed mid-utterance
                utterance.spoken.set_exception(RuntimeError("STT stream closed mid-utterance"))

    def _send(self, kind: stt.SpeechEventType, text: str | None = None) -> None:
        alternatives = [] if text is None else [self._speech_data(text)]
        self._event_ch.send_nowait(stt.SpeechEvent(type=kind, alternatives=alternatives))

    def _speech_data(self, text: str) -> stt.SpeechData:
        return stt.SpeechData(language=self._stt._language, text=text, confidence=1.0)
