"""Play a script through a real AgentSession wired to the scripted parts."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

from livekit.agents import (
    llm,
    utils,
)
from livekit.agents.voice import Agent, AgentSession, SpeechHandle
from livekit.agents.voice.events import CloseEvent, SpeechCreatedEvent
from livekit.agents.voice.transcription import TranscriptSynchronizer

from voicelog.agent.simulation.scripted.audio_io import (
    HeardTextOutput,
    SilentAudioInput,
    SimulatedAudioOutput,
    VoicedAudioInput,
)
from voicelog.agent.simulation.scripted.replies import ScriptedLLM, ScriptedTTS
from voicelog.agent.simulation.scripted.speech import HistoryEntry, ScriptedSTT, ScriptTurn
from voicelog.services.domain import first_of

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


class ScriptedSession(NamedTuple):
    """A built, not yet started, scripted session and the parts a script player needs."""

    session: AgentSession
    stt: ScriptedSTT
    heard: HeardTextOutput
    synchronizer: TranscriptSynchronizer


def build_session(turns: Sequence[ScriptTurn], *, time_scale: float = 1.0,
                  llm_model: llm.LLM | None = None, voiced: bool = False) -> ScriptedSession:
    """Create a session wired to scripted models, a mic and a simulated speaker.

    The mic is silent, or with ``voiced`` hears a tone exactly while the child speaks (so a
    turn's audio clip can be checked against its utterance).
    """
    if time_scale <= 0:
        raise ValueError("time_scale must be positive")
    scripted_stt = ScriptedSTT(time_scale=time_scale)
    session: AgentSession = AgentSession(
        stt=scripted_stt,
        llm=llm_model or ScriptedLLM([turn["agent"] for turn in turns]),
        tts=ScriptedTTS(time_scale=time_scale),
        **session_kwargs(time_scale),
    )
    heard = HeardTextOutput()
    # as RoomIO does: the synchronizer sits in front of both sinks and cuts the
    # interrupted reply's text to what was played; speed follows the scaled clock
    synchronizer = TranscriptSynchronizer(
        next_in_chain_audio=SimulatedAudioOutput(), next_in_chain_text=heard, speed=1 / time_scale
    )
    session.input.audio = (VoicedAudioInput(scripted_stt) if voiced
                           else SilentAudioInput(time_scale=time_scale))
    session.output.audio = synchronizer.audio_output
    session.output.transcription = synchronizer.text_output
    return ScriptedSession(session, scripted_stt, heard, synchronizer)


class _Reply(NamedTuple):
    handle: SpeechHandle
    heard_segment: int  # index its text will take in HeardTextOutput.segments


class _ScriptPlayer:
    """Plays the user side of a script into a started session, one turn at a time."""

    def __init__(self, parts: ScriptedSession) -> None:
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
                await first_of(heard, reply.handle)
            speaking = self._stt.speak(turns[k + 1]["user"])
        for handle in self.handles:
            await handle  # done: played out or cut, and its chat items committed


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
    chat_ctx: llm.ChatContext | None = None,
    llm_model: llm.LLM | None = None,
    voiced: bool = False,
) -> list[HistoryEntry]:
    """Play ``turns`` through a real AgentSession with no room and return its chat history.

    ``on_session`` is called before ``session.start`` so handlers see every event; ``chat_ctx``
    is what the agent starts with (remembered turns); ``llm_model`` replaces the scripted LLM
    (e.g. one that records what it was asked); ``voiced`` gives the session a mic that hears
    a tone while the child speaks (``ScriptedSTT.spoken_spans`` says when). Returns once the last reply has finished
    playing and the session is closed.
    """
    if not turns or any(not turn["user"].strip() for turn in turns):
        raise ValueError("every turn needs user text: an empty utterance never ends a turn")
    parts = build_session(turns, time_scale=time_scale, llm_model=llm_model, voiced=voiced)
    if on_session is not None:
        result = on_session(parts.session)
        if asyncio.iscoroutine(result):
            await result
    player = _ScriptPlayer(parts)
    await parts.session.start(Agent(instructions=INSTRUCTIONS, chat_ctx=chat_ctx))
    try:
        await _unless_closed(parts.session, player.play(turns))
    finally:
        await parts.session.aclose()
        await parts.synchronizer.aclose()
    return chat_history(parts.session)
