"""Scripted STT/LLM/TTS and audio I/O that drive a real AgentSession with no LiveKit server.

Every part subclasses the livekit-agents base class it stands in for, so the session runs its
own turn detection, interruption and transcript-synchronisation code unchanged. One knob,
``time_scale``, shrinks every simulated duration (user speech pacing, reply audio length,
endpointing delays) so long scripts run many times faster than real time.

Time model: ``ScriptedTTS`` makes audio that is already ``time_scale`` long (60 ms per character
times ``time_scale``) and ``SimulatedAudioOutput`` plays it at wall-clock speed. Scaling the audio
rather than the playback keeps the ``TranscriptSynchronizer`` honest: it paces words against
audio duration, so both must live on the same clock. The clock is the wall clock, so a
saturated event loop lags every part alike; barge-ins then land late (see
docs/livekit-events.md).

Barge-in: ``barge_in_after_chars`` on turn k starts turn k+1's utterance once the synchronizer
has released that many characters of reply k; its first interim cuts the reply.
"""

from voicelog.agent.simulation.scripted.audio_io import (
           HeardTextOutput,
           SilentAudioInput,
           SimulatedAudioOutput,
           VoicedAudioInput,
)
from voicelog.agent.simulation.scripted.replies import ScriptedLLM, ScriptedTTS
from voicelog.agent.simulation.scripted.runner import (
           INSTRUCTIONS,
           ScriptedSession,
           build_session,
           chat_history,
           run_conversation,
           session_kwargs,
)
from voicelog.agent.simulation.scripted.speech import (
           SAMPLE_RATE,
           SECONDS_PER_CHAR,
           USER_EVENT_INTERVAL,
           HistoryEntry,
           ScriptedSTT,
           ScriptTurn,
           final_segments,
)

__all__ = ["INSTRUCTIONS", "SAMPLE_RATE", "SECONDS_PER_CHAR", "USER_EVENT_INTERVAL", "HeardTextOutput",
           "HistoryEntry", "ScriptTurn", "ScriptedLLM", "ScriptedSTT", "ScriptedSession", "ScriptedTTS",
           "SilentAudioInput", "SimulatedAudioOutput", "VoicedAudioInput", "build_session", "chat_history", "final_segments",
           "run_conversation", "session_kwargs"]
