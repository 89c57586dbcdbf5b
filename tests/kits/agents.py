"""Agents for tests: factories written as real modules on disk, scripted models, remembered turns."""

from __future__ import annotations

import importlib
import sys
import textwrap
import uuid
from collections.abc import Mapping
from pathlib import Path
from types import ModuleType
from typing import Any

from voicelog.agent.wiring import Remembered

MAC = "68:25:dd:ba:39:78"
SCRIPTED = {"stt": "scripted", "llm": "scripted", "tts": "scripted"}

# A toy maker's factory: a persona, a function tool, the memory it is given; it notes each call.
TOY_FACTORY = '''
from livekit.agents import Agent, function_tool

CALLS = []


@function_tool
async def roll_dice(sides: int = 6) -> str:
    """Roll a dice with the given number of sides and say what came up."""
    ROLLS.append(sides)
    return "4"  # chosen by a fair dice roll


ROLLS = []


def make_agent(ctx):
    CALLS.append({"mac": ctx.mac, "session_id": ctx.session_id, "remembered_turns": ctx.remembered_turns,
                  "memory": [(m.role, m.text_content) for m in ctx.memory.messages()]})
    return Agent(instructions="You are Pip, a small friendly dragon.", tools=[roll_dice], chat_ctx=ctx.memory)


def raises(ctx):
    raise RuntimeError("the persona service is down")


def returns_text(ctx):
    return "an agent"


NOT_A_FUNCTION = 42
'''


def write_module(directory: Path, source: str, prefix: str = "toy_factory") -> str:
    """Write ``source`` as a new, uniquely named module in ``directory`` (put on sys.path); its name."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
    if str(directory) not in sys.path:
        sys.path.insert(0, str(directory))
    importlib.invalidate_caches()
    return name


def module(name: str) -> ModuleType:
    """The module voicelog imported for a factory (to read what the factory noted)."""
    return sys.modules[name]


def remembering(*turns: tuple[str, str]):
    """A memory loader (the seam voicelog.services.memory fills) that remembers ``turns``."""

    async def load(identity: Any, settings: Any, attributes: Mapping[str, str]) -> Remembered:
        from livekit.agents import llm

        chat_ctx = llm.ChatContext.empty()
        for role, text in turns:
            chat_ctx.add_message(role=role, content=text)
        return Remembered(chat_ctx, len(turns))

    return load
