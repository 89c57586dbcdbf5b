"""Scripted STT/LLM/TTS and audio I/O that drive a real AgentSession with no LiveKit server.

Every part subclasses the livekit-agents base class it stands in for, so the session runs its
own turn detection, interruption and transcript-synchronisation code unchanged. One knob,
``time_scale``, shrinks every simulated duration (user speech pacing, reply audio length,
endpointing delays) so long scripts run many times faster than real time.

Time model: ``ScriptedTTS`` makes audio that is already ``time_scale`` long (60 ms per character
times ``time_scale``) and ``SimulatedAudioOutput`` plays it at wall-clock speed. Scaling the audio
rather than the playback keeps the ``TranscriptSynchronizer`` honest: it paces words against
audio duration, so both must live on the same clock.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple, TypedDict

from typing_extensions import NotRequired

from livekit import rtc
from livekit.agents import NOT_GIVEN, APIConnectOptions, NotGivenOr, llm, stt, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS
from livekit.agents.utils import AudioBuffer
from livekit.agents.voice import Agent, AgentSession, SpeechHandle, io
from livekit.agents.voice.events import CloseEvent, SpeechCreatedEvent
from livekit.agents.voice.transcription import TranscriptSynchronizer

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
        try:
            while True:
                next_utterance = asyncio.ensure_future(self._stt._utterances.get())
                await asyncio.wait(
                    [next_utterance, audio_drained], return_when=asyncio.FIRST_COMPLETED
                )
                if not next_utterance.done():  # audio input ended: the session is closing
                    next_utterance.cancel()
                    return
                await self._play(next_utterance.result())
        finally:
            await utils.aio.cancel_and_wait(audio_drained)

    async def _drain_audio(self) -> None:
        # the mic is silent: frames are read only to keep the channel from growing
        async for item in self._input_ch:
            if isinstance(item, self._FlushSentinel):
                self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, "")  # heard nothing

    async def _play(self, utterance: _Utterance) -> None:
        try:
            self._send(stt.SpeechEventType.START_OF_SPEECH)
            for segment in final_segments(utterance.text):
                for partial in _interims(segment):
                    await asyncio.sleep(self._stt._interval)
                    self._send(stt.SpeechEventType.INTERIM_TRANSCRIPT, partial)
                await asyncio.sleep(self._stt._interval)
                self._send(stt.SpeechEventType.FINAL_TRANSCRIPT, segment)
            await asyncio.sleep(self._stt._interval)
            self._send(stt.SpeechEventType.END_OF_SPEECH)
            utterance.spoken.set_result(None)
        finally:
            if not utterance.spoken.done():  # the stream closed mid-utterance
                utterance.spoken.set_exception(RuntimeError("STT stream closed mid-utterance"))

    def _send(self, kind: stt.SpeechEventType, text: str | None = None) -> None:
        alternatives = [] if text is None else [self._speech_data(text)]
        self._event_ch.send_nowait(stt.SpeechEvent(type=kind, alternatives=alternatives))

    def _speech_data(self, text: str) -> stt.SpeechData:
        return stt.SpeechData(language=self._stt._language, text=text, confidence=1.0)


# --- agent replies -----------------------------------------------------------------------------


class ScriptedLLM(llm.LLM):
    """LLM that answers the n-th user message with the n-th scripted reply, in chunks."""

    def __init__(self, replies: Sequence[str], *, words_per_chunk: int = 3) -> None:
        super().__init__()
        self._replies = list(replies)
        self._words_per_chunk = words_per_chunk

    def reply_for(self, chat_ctx: llm.ChatContext) -> str:
        """The scripted reply to the latest user message of ``chat_ctx``."""
        # counting user messages (not calls) keeps retries or extra calls from desyncing
        messages = [item for item in chat_ctx.items if isinstance(item, llm.ChatMessage)]
        user_turns = sum(1 for message in messages if message.role == "user")
        return self._replies[min(max(user_turns - 1, 0), len(self._replies) - 1)]

    def chunks(self, text: str) -> list[str]:
        """Split a reply into streamed deltas that concatenate back to it exactly."""
        words = re.findall(r"\s*\S+\s*", text) or [text]
        n = self._words_per_chunk
        return ["".join(words[i : i + n]) for i in range(0, len(words), n)]

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> llm.LLMStream:
        return _ScriptedLLMStream(
            self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options
        )


class _ScriptedLLMStream(llm.LLMStream):
    """LLM stream that sends the scripted reply as assistant deltas."""

    _llm: ScriptedLLM

    async def _run(self) -> None:
        request_id = utils.shortuuid("scripted_")
        for chunk in self._llm.chunks(self._llm.reply_for(self._chat_ctx)):
            delta = llm.ChoiceDelta(role="assistant", content=chunk)
            self._event_ch.send_nowait(llm.ChatChunk(id=request_id, delta=delta))
            await asyncio.sleep(0)  # let the pipeline consume deltas as a real stream would


class ScriptedTTS(tts.TTS):
    """TTS that returns silence lasting SECONDS_PER_CHAR * time_scale per input character."""

    def __init__(self, *, time_scale: float = 1.0, sample_rate: int = SAMPLE_RATE) -> None:
        super().__init__(
            # not streaming: the session wraps it in a sentence-splitting StreamAdapter
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=sample_rate,
            num_channels=1,
        )
        self._seconds_per_char = SECONDS_PER_CHAR * time_scale

    def speech_duration(self, text: str) -> float:
        """How long the synthesized audio for ``text`` lasts."""
        return max(len(text) * self._seconds_per_char, 0.001)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _SilentChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _SilentChunkedStream(tts.ChunkedStream):
    """One synthesis request: silence as long as the text would take to say."""

    _tts: ScriptedTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid("scripted_"),
            sample_rate=self._tts.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        samples = max(1, int(self._tts.speech_duration(self._input_text) * self._tts.sample_rate))
        output_emitter.push(b"\x00\x00" * samples)
        output_emitter.flush()


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
        self._playing, self._pushed, self._finish_timer = False, 0.0, None
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


# --- running a script --------------------------------------------------------------------------

INSTRUCTIONS = "You are a friendly toy. Answer in one or two short sentences."


def session_kwargs(time_scale: float) -> dict[str, Any]:
    """AgentSession options that keep a scripted run model-free, deterministic and scaled."""
    return {
        "vad": None,  # None, not omitted: omitting it loads the bundled silero VAD
        "turn_handling": {
            "turn_detection": "stt",  # END_OF_SPEECH ends the turn, no turn-detector model
            "endpointing": {"min_delay": 0.5 * time_scale, "max_delay": 3.0 * time_scale},
            # pause-and-resume would turn the interim that barges in into a pause, not a cut
            "interruption": {
                "resume_false_interruption": False,
                "false_interruption_timeout": None,
            },
            # a preemptive reply emits an extra speech_created per turn
            "preemptive_generation": {"enabled": False},
        },
        "aec_warmup_duration": None,  # otherwise the first 3 s of agent speech ignore barge-in
        "session_close_transcript_timeout": 2.0 * time_scale,  # aclose waits this for a final
    }


class _ScriptedSession(NamedTuple):
    session: AgentSession
    stt: ScriptedSTT
    heard: HeardTextOutput
    synchronizer: TranscriptSynchronizer


def build_session(turns: Sequence[ScriptTurn], *, time_scale: float = 1.0) -> _ScriptedSession:
    """Create a session wired to scripted models, a silent mic and a simulated speaker."""
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    scripted_stt = ScriptedSTT(time_scale=time_scale)
    session: AgentSession = AgentSession(
        stt=scripted_stt,
        llm=ScriptedLLM([turn["agent"] for turn in turns]),
        tts=ScriptedTTS(time_scale=time_scale),
        **session_kwargs(time_scale),
    )
    heard = HeardTextOutput()
    # as RoomIO does: the synchronizer sits in front of both sinks and cuts the
    # interrupted reply's text to what was played; speed follows the scaled clock
    synchronizer = TranscriptSynchronizer(
        next_in_chain_audio=SimulatedAudioOutput(), next_in_chain_text=heard, speed=1 / time_scale
    )
    session.input.audio = SilentAudioInput(time_scale=time_scale)
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output
    return _ScriptedSession(session, scripted_stt, heard, synchronizer)


class _Reply(NamedTuple):
    handle: SpeechHandle
    heard_segment: int  # index its text will take in HeardTextOutput.segments


class _ScriptPlayer:
    """Plays the user side of a script into a started session, one turn at a time."""

    def __init__(self, parts: _ScriptedSession) -> None:
        self._stt, self._heard = parts.stt, parts.heard
        self._replies: asyncio.Queue[_Reply] = asyncio.Queue()
        self.handles: list[SpeechHandle] = []
        parts.session.on("speech_created", self._on_speech_created)

    def _on_speech_created(self, ev: SpeechCreatedEvent) -> None:
        # earlier replies have played or been cut by now, so this reply's text
        # is the next segment the synchronizer releases
        self.handles.append(ev.speech_handle)
        self._replies.put_nowait(_Reply(ev.speech_handle, len(self._heard.segments)))

    async def play(self, turns: Sequence[ScriptTurn]) -> None:
        speaking = self._stt.speak(turns[0]["user"])
        for k, turn in enumerate(turns):
            await speaking
            reply = await self._replies.get()
            if k + 1 == len(turns):
                break
            barge_in = turn.get("barge_in_after_chars")
            if barge_in is None:
                await reply.handle
            else:
                # a reply with nothing to play (e.g. emoji only) never releases heard text
                heard = self._heard.wait_heard(reply.heard_segment, barge_in)
                await _first_of(heard, reply.handle)
            speaking = self._stt.speak(turns[k + 1]["user"])
        for handle in self.handles:
            await handle  # done: played out or cut, and its chat items committed


async def _first_of(*aws: Awaitable[Any]) -> None:
    """Wait until any of ``aws`` completes, then cancel the others."""
    tasks = [asyncio.ensure_future(aw) for aw in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await utils.aio.cancel_and_wait(*tasks)


async def _unless_closed(session: AgentSession, work: Awaitable[None]) -> None:
    """Run ``work`` but fail fast if the session closes under it (e.g. repeated errors)."""
    closed: asyncio.Future[CloseEvent] = asyncio.get_running_loop().create_future()

    def _on_close(ev: CloseEvent) -> None:
        if not closed.done():
            closed.set_result(ev)

    session.on("close", _on_close)
    task = asyncio.ensure_future(work)
    try:
        await asyncio.wait([task, closed], return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            ev = closed.result()
            raise RuntimeError(f"session closed mid-script: {ev.reason} {ev.error!r}")
        task.result()
    finally:
        session.off("close", _on_close)
        await utils.aio.cancel_and_wait(task)


def chat_history(session: AgentSession) -> list[HistoryEntry]:
    """The user and assistant messages of ``session.history``, in order."""
    return [
        HistoryEntry(item.role, item.text_content or "", item.interrupted)
        for item in session.history.items
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant")
    ]


async def run_conversation(
    turns: Sequence[ScriptTurn],
    *,
    time_scale: float = 1.0,
    on_session: Callable[[AgentSession], object] | None = None,
) -> list[HistoryEntry]:
    """Play ``turns`` through a real AgentSession with no room and return its chat history.

    ``on_session`` is called before ``session.start`` so handlers see every event. Returns
    once the last reply has finished playing and the session is closed.
    """
    if not turns or any(not turn["user"].strip() for turn in turns):
        raise ValueError("every turn needs user text: an empty utterance never ends a turn")
    parts = build_session(turns, time_scale=time_scale)
    if on_session is not None:
        result = on_session(parts.session)
        if asyncio.iscoroutine(result):
            await result
    player = _ScriptPlayer(parts)
    await parts.session.start(Agent(instructions=INSTRUCTIONS))
    try:
        await _unless_closed(parts.session, player.play(turns))
    finally:
        await parts.session.aclose()
        await parts.synchronizer.aclose()
    return chat_history(parts.session)
