"""Typed input (RoomIO's chat topic, talk without a scripted STT) is stored in conversation order."""

from __future__ import annotations

from livekit.agents import Agent, AgentSession
from livekit.agents.voice.transcription import TranscriptSynchronizer

from tests.kits.settings import make_settings
from voicelog.agent.simulation.scripted import (
    HeardTextOutput,
    ScriptedSTT,
    ScriptedTTS,
    SilentAudioInput,
    SimulatedAudioOutput,
    session_kwargs,
)
from voicelog.agent.simulation.scripted.toy import ToyLLM
from voicelog.agent.talk import reply_to
from voicelog.agent.wiring import attach_capture, host_spool
from voicelog.services.domain import ChatType, TurnStatus, resolve_identity

SCALE = 0.05
ROOM = "typed-0000_6825ddba3978"


async def test_typed_spoken_and_greeting_turns_are_stored_in_the_order_they_happened(tmp_path):
    """A greeting, typed lines and a spoken line: each reply follows the turn it answers."""
    settings = make_settings(tmp_path)
    spool = host_spool(settings)
    stt = ScriptedSTT(time_scale=SCALE)
    session = AgentSession(stt=stt, llm=ToyLLM(), tts=ScriptedTTS(time_scale=SCALE), **session_kwargs(SCALE))
    synchronizer = TranscriptSynchronizer(next_in_chain_audio=SimulatedAudioOutput(),
                                          next_in_chain_text=HeardTextOutput(), speed=1 / SCALE)
    session.input.audio = SilentAudioInput(time_scale=SCALE)
    session.output.audio, session.output.transcription = synchronizer.audio_output, synchronizer.text_output
    capture = attach_capture(session, resolve_identity(ROOM), settings, spool)
    await session.start(Agent(instructions="You are a toy."), record=False)
    try:
        await session.generate_reply(instructions="Greet the child.")
        await session.run(user_input="I typed this")
        await reply_to(session, "and I said this")  # spoken through the scripted STT
        await session.run(user_input="typed again")
    finally:
        await session.aclose()
        await synchronizer.aclose()
        await capture.close("test finished")
    turns = spool.turns(ROOM)
    spool.close()
    assert [(t.chat_type, t.content) for t in turns] == [
        (ChatType.AGENT, "Hello! What shall we talk about?"),
        (ChatType.USER, "I typed this"), (ChatType.AGENT, "You said: I typed this. Tell me more!"),
        (ChatType.USER, "and I said this"), (ChatType.AGENT, "You said: and I said this. Tell me more!"),
        (ChatType.USER, "typed again"), (ChatType.AGENT, "You said: typed again. Tell me more!")]
    assert all(t.status is TurnStatus.PENDING for t in turns)
    typed, spoken = turns[1], turns[3]
    assert typed.meta is None  # livekit measures nothing for typed input, and there is no STT language
    assert spoken.meta.language == "en" and "stopped_speaking_at_ms" in spoken.meta.metrics
