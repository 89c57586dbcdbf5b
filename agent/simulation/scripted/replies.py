"""Scripted agent replies: an LLM that answers from the script and a TTS of timed silence."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Sequence
from typing import Any

from livekit.agents import (
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    llm,
    tts,
    utils,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

from voicelog.agent.simulation.scripted.speech import SAMPLE_RATE, SECONDS_PER_CHAR
from voicelog.services.memory import MEMORY_ITEM_PREFIX

# --- agent replies -----------------------------------------------------------------------------


class ScriptedLLM(llm.LLM):
    """LLM that answers the n-th user message with the n-th scripted reply, in chunks.

    Remembered turns preloaded into the chat context (ids starting with ``memory_prefix``) are
    not this session's messages, so they do not count: the script stays aligned with memory on.
    """

    memory_prefix = MEMORY_ITEM_PREFIX

    def __init__(self, replies: Sequence[str], *, words_per_chunk: int = 3) -> None:
        super().__init__()
        self._replies = list(replies)
        self._words_per_chunk = words_per_chunk

    def reply_for(self, chat_ctx: llm.ChatContext) -> str:
        """The scripted reply to the latest user message of ``chat_ctx``."""
        # counting user messages (not calls) keeps retries or extra calls from desyncing
        messages = [item for item in chat_ctx.items if isinstance(item, llm.ChatMessage)
                    and not item.id.startswith(self.memory_prefix)]
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
