"""A toy maker's own agent for voicelog: a persona, a function tool, and the device's memory.

Run it with no credentials at all (scripted speech and a rule-based toy LLM):

    VOICELOG__AGENT__FACTORY=examples.toy_agent:make_agent \\
    VOICELOG__AGENT__STT=scripted VOICELOG__AGENT__LLM=scripted VOICELOG__AGENT__TTS=scripted \\
    voicelog talk --mac 68:25:dd:ba:39:78

then type "roll the dice" (the toy LLM calls ``roll_dice``) or "my name is Mia". Run it for real
with ``voicelog start`` and real models in ``agent.stt/llm/tts``, or return your own models with
``AgentParts`` (see ``make_agent_with_models``). docs/own-agent.md has the whole contract.
"""

from __future__ import annotations

import random

from livekit.agents import Agent, RunContext, function_tool

from voicelog.agent.factory import AgentParts, FactoryContext

try:  # plugins register with livekit on import, on the main thread only: import them at the top
    from livekit.plugins import openai
except ImportError:  # optional: only make_agent_with_models needs it
    openai = None

PERSONA = ("You are Pip, a small friendly dragon who lives in a child's toy. Speak in one or two short, "
           "warm sentences, never scary, and ask a question back now and then.")


@function_tool
async def roll_dice(context: RunContext, sides: int = 6) -> str:
    """Roll a dice for a game with the child.

    Args:
        sides: how many sides the dice has (6 unless the child asks for another)
    """
    return str(random.randint(1, max(2, sides)))


def make_agent(ctx: FactoryContext) -> Agent:
    """Pip for one device session: persona, tools, and what this device remembers.

    Called by voicelog for every session, in the job's event loop: keep it quick (no blocking I/O;
    an ``async def`` factory may await). Pass ``chat_ctx=ctx.memory`` so the remembered turns come
    first; voicelog adds them itself if you do not.
    """
    greeting = "" if ctx.remembered_turns else " This is the first time you meet this child."
    return Agent(instructions=PERSONA + greeting, tools=[roll_dice], chat_ctx=ctx.memory)


def make_agent_with_models(ctx: FactoryContext) -> AgentParts:
    """The same agent with its own models: an OpenAI-compatible LLM on your own server.

    Needs ``pip install livekit-plugins-openai`` (and the key in LLM_API_KEY); voicelog still
    builds the session, attaches capture and memory, and starts it.
    """
    import os

    if openai is None:
        raise RuntimeError("livekit-plugins-openai is not installed")
    llm = openai.LLM(model="qwen2.5-7b-instruct", base_url="http://10.0.0.7:8000/v1",
                     api_key=os.environ["LLM_API_KEY"])
    return AgentParts(make_agent(ctx), llm=llm)
