"""A credential-free toy LLM for ``voicelog talk`` and tests: it answers anything, remembers names,
and calls the agent's tools when asked, so a factory's own tools run with no model at all.

Rules, on the latest item of the chat context:
- a tool's output (after a call it made): it says the output;
- "my name is X": it greets X; "what is my name?": it finds "my name is X" anywhere in the
  context (remembered turns included) or says it does not know;
- a message naming every word of a tool (``roll_dice``: "roll" and "dice"): it calls that tool
  with no arguments (the tool's defaults);
- anything else: it repeats what it heard.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

from livekit.agents import NOT_GIVEN, APIConnectOptions, NotGivenOr, llm, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS

_NAME_IS = re.compile(r"\bmy name is (\w[\w'-]*)", re.IGNORECASE)
_ASKS_NAME = re.compile(r"\bwhat(?:'s| is) my name\b", re.IGNORECASE)


class ToyLLM(llm.LLM):
    """LLM that answers from simple rules (see the module docstring), streamed in chunks."""

    @property
    def model(self) -> str:
        return "scripted-toy"

    @property
    def provider(self) -> str:
        return "voicelog"

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
        return _ToyStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=conn_options)


def toy_answer(chat_ctx: llm.ChatContext, tools: list[Any]) -> str | llm.FunctionToolCall:
    """What the toy says (or the tool it calls) next, given the conversation so far."""
    last = chat_ctx.items[-1] if chat_ctx.items else None
    if isinstance(last, llm.FunctionCallOutput):
        return f"Here you go: {last.output}"
    said = last.text_content or "" if isinstance(last, llm.ChatMessage) and last.role == "user" else ""
    if (name := _NAME_IS.search(said)) is not None:
        return f"Nice to meet you, {name.group(1)}!"
    if _ASKS_NAME.search(said):
        for message in reversed(chat_ctx.messages()):
            known = _NAME_IS.search(message.text_content or "") if message.role == "user" else None
            if known is not None:
                return f"Your name is {known.group(1)}."
        return "I don't know your name yet. What is it?"
    words = set(re.findall(r"\w+", said.lower()))
    for tool in tools:
        tool_id = getattr(tool, "id", "")
        if tool_id and set(tool_id.lower().split("_")) <= words:
            return llm.FunctionToolCall(name=tool_id, arguments=json.dumps({}),
                                        call_id=utils.shortuuid("toycall_"))
    return f"You said: {said}. Tell me more!" if said else "Hello! What shall we talk about?"


class _ToyStream(llm.LLMStream):
    """One answer, sent as assistant deltas a few words at a time (or as one tool call)."""

    async def _run(self) -> None:
        request_id = utils.shortuuid("toy_")
        answer = toy_answer(self._chat_ctx, list(self._tools))
        if isinstance(answer, llm.FunctionToolCall):
            delta = llm.ChoiceDelta(role="assistant", tool_calls=[answer])
            self._event_ch.send_nowait(llm.ChatChunk(id=request_id, delta=delta))
            return
        words = re.findall(r"\s*\S+\s*", answer) or [answer]
        for start in range(0, len(words), 3):
            delta = llm.ChoiceDelta(role="assistant", content="".join(words[start:start + 3]))
            self._event_ch.send_nowait(llm.ChatChunk(id=request_id, delta=delta))
            await asyncio.sleep(0)  # let the pipeline consume deltas as a real stream would
